"""Per-pixel certification of binary top-K maps (segmentation smoothing, Fischer et al. 2021).

For each pixel p of a top-K map and n binary samples h_K(x + sigma*eps_i):

1. **select**: m_p = the majority label over the first n0 samples (a tie goes to 0, "not important");
2. **count**: c_p = how many of the remaining n - n0 samples equal m_p;
3. **test**: p-value P(Bin(n - n0, tau) >= c_p), one-sided;
4. **certify or abstain**: certify p with label m_p when its p-value passes the multiple-testing
   correction over the P pixels of the map at level alpha (Bonferroni: p <= alpha/P; Holm's step-down
   certifies a superset), otherwise abstain.

The statistics of steps 1, 3 and 4 are :mod:`certattr.engine.statistics`; this module counts the binary maps
(:class:`MapCounter`, streaming: chunk by chunk, whatever n) and turns the counts into a
:class:`certattr.engine.certificate.Certificate`.

Guarantee: with probability >= 1 - alpha (over the sampling), every certified pixel's label equals the
label of the smoothed map, which is constant for all perturbations ||delta||_2 < R = sigma * Phi^-1(tau)
(strict: at ||delta||_2 = R the bound only gives a probability >= 1/2, which does not decide the label).

**Per-pixel radius** (Cohen et al. 2019's rule, per pixel): from the same counts, pixel p certifies its
label m_p for every ||delta||_2 < R_p = sigma * Phi^-1(p_lower), p_lower the one-sided Clopper-Pearson
lower bound of c_p successes out of n - n0 at level alpha/P; R_p = 0 where p_lower <= 1/2 (no radius). With
probability >= 1 - alpha all P lower bounds hold together (Bonferroni), and on that event every fixed-tau claim
holds as well: P(Bin(n - n0, tau) >= c_p) <= alpha/P exactly when p_lower >= tau, so R_p >= R at every pixel the
Bonferroni certificate certifies. Holm's step-down certificate uses the same alpha/P level for its radii (valid,
since simultaneous confidence bounds need the Bonferroni level; Holm's step-down does not give them), so a pixel
that only Holm certifies may have R_p < R.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from .certificate import ABSTAIN, Certificate
from .config import DEFAULT_CERT
from .sparsify import flat_maps, sparsify
from .statistics import agreeing_counts, binomial_pvalues, majority_labels, min_samples_to_certify, passes_correction
from .validation import (CertattrError, check_alpha, check_correction, check_ks, check_n, check_positive_int,
                         check_sigma, check_tau)

__all__ = ["certify_binary", "certify_maps", "CertificationWarning", "DegenerateMapWarning", "MapCounter",
           "degenerate_reason"]

DEGENERATE_FRACTION = 0.1  #: a certificate is degenerate when at least this fraction of its n maps are


class CertificationWarning(UserWarning):
    """The parameters cannot certify any pixel (n too small for tau, alpha and P)."""


class DegenerateMapWarning(UserWarning):
    """The noisy maps are constant up to float rounding (or select no pixel): the top-K set is decided by
    rounding or ties, not by the image. The certificate's ``degenerate`` says so too."""


def _labels_from_counts(ones_select, ones_test, n: int, n0: int, tau: float, alpha: float, correction: str):
    """Select, test and abstain from the per-pixel counts of '1' among the n0 selection and the n - n0 test
    samples: (labels int8 in {1, 0, ABSTAIN}, majority int8, counts int32, pvalues float64), each (H, W)."""
    n_test = n - n0
    majority = majority_labels(ones_select, n0)                      # select
    counts = agreeing_counts(majority, ones_test, n_test)
    pvalues = binomial_pvalues(n_test, tau)[counts]                  # test
    certified = passes_correction(pvalues, alpha, correction)        # abstain where not certified
    labels = np.where(certified, majority, ABSTAIN).astype(np.int8)
    return labels, majority, counts, pvalues


def certify_binary(binary: np.ndarray, n0: int, tau: float, alpha: float, correction: str = DEFAULT_CERT.correction):
    """Certify each pixel of n binary maps (n, H, W) of one K.

    Returns ``(labels, majority, counts, pvalues)``: labels int8 (H, W) in {1, 0, ABSTAIN=-1}; majority
    int8 (H, W); counts int32 (H, W) = c_p; pvalues float64 (H, W).
    """
    binary = np.asarray(binary, dtype=bool)
    if binary.ndim != 3:
        raise CertattrError(f"binary maps of shape {binary.shape} are not allowed: give (n, H, W)")
    n = binary.shape[0]
    n, n0 = check_n(n, n0)
    tau, alpha = check_tau(tau), check_alpha(alpha)
    correction = check_correction(correction)
    return _labels_from_counts(binary[:n0].sum(axis=0, dtype=np.int32), binary[n0:].sum(axis=0, dtype=np.int32),
                               n, n0, tau, alpha, correction)


def degenerate_reason(n: int, ks, flat: int, empty) -> str:
    """"" unless at least DEGENERATE_FRACTION of the n noisy maps are flat
    (:func:`certattr.engine.sparsify.flat_maps`) or, at some K, select no pixel (a tie at the top); else one
    sentence with the counts."""
    limit = max(1, math.ceil(DEGENERATE_FRACTION * n))
    empty = [int(e) for e in empty]
    if flat < limit and all(e < limit for e in empty):
        return ""
    parts = []
    if flat:
        parts.append(f"{flat} of the {n} noisy maps are constant up to float rounding")
    bad = [(k, e) for k, e in zip(ks, empty) if e >= limit]
    if bad:
        parts.append("; ".join(f"at K = {k:g}% {e} of the {n} maps select no pixel (ties)" for k, e in bad))
    return ("the top-K set is decided by rounding or ties, not by the image: " + "; ".join(parts))


class MapCounter:
    """The count step: feed the binary top-K maps of the n samples chunk by chunk, in sample order
    (:meth:`add`), then :meth:`certificate` tests the counts and abstains. Memory is a few (len(ks), H, W)
    count arrays, whatever n; the result is bit for bit that of :func:`certify_maps` on all n maps at once.

    ``n0``: the first n0 samples are counted apart (they select each pixel's label); counting allows any
    0 <= n0 <= n, a certificate needs 1 <= n0 < n (checked by :meth:`certificate`).
    """

    def __init__(self, ks, n: int, n0: int, shape):
        self.ks, self.n = check_ks(ks), check_positive_int("n", n)
        self.n0 = check_positive_int("n0", n0, 0)
        if self.n0 > self.n:
            raise CertattrError(f"n0={n0} is not allowed with n={n}: the selection samples are at most n")
        shape = (len(self.ks), *(int(s) for s in shape))
        self.ones_select = np.zeros(shape, dtype=np.int32)  #: per K and pixel: selections among samples < n0
        self.ones_test = np.zeros(shape, dtype=np.int32)  #: per K and pixel: selections among samples >= n0
        self.seen = 0
        self.flat = 0
        self.empty = np.zeros(len(self.ks), dtype=np.int64)

    def add(self, binary, flat) -> None:
        """Count the top-K maps of the next b samples: ``binary`` bool (len(ks), b, H, W) =
        :func:`certattr.engine.sparsify.sparsify` of their maps at the counter's ks, ``flat`` bool (b,) =
        :func:`certattr.engine.sparsify.flat_maps` of them (both what the compact cache stores,
        :mod:`certattr.engine.encodings`)."""
        binary, flat = np.asarray(binary, dtype=bool), np.asarray(flat, dtype=bool)
        if binary.ndim != 4 or binary.shape[0] != len(self.ks) or binary.shape[2:] != self.ones_test.shape[1:] \
                or flat.shape != (binary.shape[1],):
            raise CertattrError(f"top-K maps of shape {binary.shape} with {flat.shape} flags are not allowed: give "
                                f"({len(self.ks)}, b, {', '.join(map(str, self.ones_test.shape[1:]))}) and (b,)")
        b = binary.shape[1]
        if self.seen + b > self.n:
            raise CertattrError(f"{self.seen + b} maps were given, more than n = {self.n}")
        cut = min(max(self.n0 - self.seen, 0), b)
        self.ones_select += binary[:, :cut].sum(axis=1, dtype=np.int32)
        self.ones_test += binary[:, cut:].sum(axis=1, dtype=np.int32)
        self.flat += int(flat.sum())
        self.empty += (~binary.any(axis=(2, 3)) & ~flat[None]).sum(axis=1)
        self.seen += b

    def frequencies(self) -> np.ndarray:
        """float64 (len(ks), H, W): the fraction of the n samples whose top-K set holds each pixel (the
        Monte-Carlo estimate of the smoothed top-K probability)."""
        self._check_complete()
        return (self.ones_select + self.ones_test).astype(np.float64) / self.n

    def _check_complete(self) -> None:
        if self.seen != self.n:
            raise CertattrError(f"only {self.seen} of the n = {self.n} maps were given")

    def certificate(self, *, sigma: float, tau: float, alpha: float, correction: str,
                    metadata: dict | None = None) -> Certificate:
        """Test every pixel's count and abstain where the test fails (:mod:`certattr.engine.statistics`)."""
        self._check_complete()
        check_n(self.n, self.n0)
        sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
        correction = check_correction(correction)
        n_pixels = self.ones_test.shape[1] * self.ones_test.shape[2]
        needed = min_samples_to_certify(self.n0, tau, alpha, n_pixels)
        if self.n < needed:
            warnings.warn(f"n={self.n} cannot certify any pixel at tau={tau}, alpha={alpha}, P={n_pixels} pixels "
                          f"(n0={self.n0}): every pixel will abstain; the smallest n that could certify is {needed}",
                          CertificationWarning, stacklevel=3)
        parts = [_labels_from_counts(self.ones_select[i], self.ones_test[i], self.n, self.n0, tau, alpha, correction)
                 for i in range(len(self.ks))]
        labels, majority, counts, pvalues = (np.stack(p) for p in zip(*parts))
        ones = self.ones_select + self.ones_test
        mean = (ones.astype(np.float64) / self.n).astype(np.float32)  # = binary.mean(axis=1, dtype=float32)
        meta = dict(metadata or {})
        reason = degenerate_reason(self.n, self.ks, self.flat, self.empty)
        if reason:
            where = f"{meta['method']}@{meta['layer']}" if "method" in meta and "layer" in meta else "these maps"
            image = f" of image {meta['image_id']!r}" if "image_id" in meta else ""
            warnings.warn(f"{where}{image}: {reason}; its certificate is flagged degenerate", DegenerateMapWarning,
                          stacklevel=3)
        return Certificate(labels=labels, majority=majority, counts=counts, pvalues=pvalues, mean_sparsified=mean,
                           ks=self.ks, sigma=sigma, tau=tau, alpha=alpha, n=self.n, n0=self.n0,
                           correction=correction, metadata=meta, degenerate=reason)


def certify_maps(maps, ks: Sequence[float], *, sigma: float, n0: int = DEFAULT_CERT.n0, tau: float = DEFAULT_CERT.tau,
                 alpha: float = DEFAULT_CERT.alpha, correction: str = DEFAULT_CERT.correction,
                 metadata: dict | None = None) -> Certificate:
    """Sparsify n attribution maps (n, H, W) at each K and certify every pixel.

    ``maps`` are the attribution maps of the n noisy copies, already at input resolution, in the order
    of their sample indices (the first n0 select, the rest test). When the maps are degenerate (see
    :func:`degenerate_reason`) the certificate's ``degenerate`` says why and a :class:`DegenerateMapWarning`
    is emitted.
    """
    ks = check_ks(ks)
    sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
    correction = check_correction(correction)
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise CertattrError(f"maps of shape {maps.shape} are not allowed: give (n, H, W)")
    n, n0 = check_n(maps.shape[0], n0)
    counter = MapCounter(ks, n, n0, maps.shape[1:])
    counter.add(sparsify(maps, ks), flat_maps(maps))
    return counter.certificate(sigma=sigma, tau=tau, alpha=alpha, correction=correction, metadata=metadata)
