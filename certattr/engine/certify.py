"""Per-pixel certification of binary top-K maps (SPEC §1.4-§1.6; segmentation smoothing, Fischer et al. 2021).

For each pixel p of a top-K map and n binary samples h_K(x + sigma*eps_i):

1. **select**: m_p = the majority label over the first n0 samples (a tie goes to 0, "not important");
2. **count**: c_p = how many of the remaining n - n0 samples equal m_p;
3. **test**: p-value P(Bin(n - n0, tau) >= c_p), one-sided;
4. **certify or abstain**: certify p with label m_p when its p-value passes the multiple-testing
   correction over the P pixels of the map at level alpha (Bonferroni: p <= alpha/P; Holm's step-down
   certifies a superset), otherwise abstain.

Guarantee: with probability >= 1 - alpha (over the sampling), every certified pixel's label equals the
label of the smoothed map, which is constant for all perturbations ||delta||_2 < R = sigma * Phi^-1(tau)
(strict: at ||delta||_2 = R the bound only gives a probability >= 1/2, which does not decide the label).

**Per-pixel radius** (Cohen et al. 2019's rule, per pixel): from the same counts, pixel p certifies its
label m_p for every ||delta||_2 < R_p = sigma * Phi^-1(p_lower), p_lower the one-sided Clopper-Pearson
lower bound of c_p successes out of n - n0 at level alpha/P (:func:`clopper_pearson_lower`); R_p = 0 where
p_lower <= 1/2 (no radius). With probability >= 1 - alpha all P lower bounds hold together (Bonferroni),
and on that event every fixed-tau claim holds as well: P(Bin(n - n0, tau) >= c_p) <= alpha/P exactly when
p_lower >= tau, so R_p >= R at every pixel the Bonferroni certificate certifies. Holm's step-down
certificate uses the same alpha/P level for its radii (valid, since simultaneous confidence bounds need the
Bonferroni level; Holm's step-down does not give them), so a pixel that only Holm certifies may have R_p < R.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy.stats import beta, binom, norm

from .config import DEFAULT
from .certificate import ABSTAIN, Certificate
from .sparsify import sparsify
from .validation import CertattrError, check_alpha, check_correction, check_ks, check_n, check_sigma, check_tau

__all__ = ["certified_radius", "clopper_pearson_lower", "pixel_radius_table", "binomial_pvalues", "min_samples_to_certify", "certify_binary", "certify_maps",
           "CertificationWarning", "DegenerateMapWarning", "MapCounter", "flat_maps", "degenerate_reason"]

FLAT_RTOL = 2.0 ** -16  #: a map whose |a| spreads less than this fraction of its max is constant up to rounding
DEGENERATE_FRACTION = 0.1  #: a certificate is degenerate when at least this fraction of its n maps are


class CertificationWarning(UserWarning):
    """The parameters cannot certify any pixel (n too small for tau, alpha and P)."""


class DegenerateMapWarning(UserWarning):
    """The noisy maps are constant up to float rounding (or select no pixel): the top-K set is decided by
    rounding or ties, not by the image. The certificate's ``degenerate`` says so too."""


def certified_radius(sigma: float, tau: float) -> float:
    """R = sigma * Phi^-1(tau), in [0,1] pixel units (l2 norm over all 3*H*W values)."""
    return check_sigma(sigma) * float(norm.ppf(check_tau(tau)))


def clopper_pearson_lower(successes, trials: int, level: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower confidence bound at level ``level`` (coverage 1 - level):
    the p with P(Bin(trials, p) >= c) = level, i.e. Beta(level; c, trials - c + 1); 0 for c = 0."""
    c = np.asarray(successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = beta.ppf(level, np.maximum(c, 1), trials - c + 1)
    return np.where(c > 0, out, 0.0)


def pixel_radius_table(n_test: int, sigma: float, level: float) -> np.ndarray:
    """R(c) = sigma * Phi^-1(p_lower(c)) for c = 0..n_test agreeing samples, 0 where p_lower <= 1/2."""
    p_lower = clopper_pearson_lower(np.arange(n_test + 1), n_test, level)
    return np.where(p_lower > 0.5, float(sigma) * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)


def binomial_pvalues(n_test: int, tau: float) -> np.ndarray:
    """Table pv[c] = P(Bin(n_test, tau) >= c) for c = 0..n_test (float64)."""
    c = np.arange(n_test + 1)
    return binom.sf(c - 1, n_test, tau)


def min_samples_to_certify(n0: int, tau: float, alpha: float, n_pixels: int) -> int:
    """The smallest n at which a pixel whose n - n0 test samples all agree is certified (Bonferroni)."""
    # P(Bin(m, tau) >= m) = tau^m <= alpha / P  <=>  m >= log(alpha / P) / log(tau)
    m = math.ceil(math.log(alpha / n_pixels) / math.log(tau) - 1e-12)
    while tau ** m > alpha / n_pixels:  # guard against rounding in the logarithms
        m += 1
    return n0 + max(m, 1)


def _holm(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections for a flat array of p-values at family-wise level alpha."""
    P = pvalues.size
    order = np.argsort(pvalues, kind="stable")
    thresholds = alpha / (P - np.arange(P))
    passing = pvalues[order] <= thresholds
    n_reject = P if passing.all() else int(np.argmin(passing))
    out = np.zeros(P, dtype=bool)
    out[order[:n_reject]] = True
    return out


def _counts_to_labels(ones_select, ones_test, n: int, n0: int, tau: float, alpha: float, correction: str):
    """Steps 1-4 from the per-pixel counts of '1' among the n0 selection and the n - n0 test samples."""
    n_test = n - n0
    majority = (2 * ones_select > n0).astype(np.int8)
    counts = np.where(majority == 1, ones_test, n_test - ones_test).astype(np.int32)
    pvalues = binomial_pvalues(n_test, tau)[counts]
    if correction == "bonferroni":
        certified = pvalues <= alpha / pvalues.size
    else:
        certified = _holm(pvalues.ravel(), alpha).reshape(pvalues.shape)
    labels = np.where(certified, majority, ABSTAIN).astype(np.int8)
    return labels, majority, counts, pvalues


def certify_binary(binary: np.ndarray, n0: int, tau: float, alpha: float, correction: str = DEFAULT.correction):
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
    return _counts_to_labels(binary[:n0].sum(axis=0, dtype=np.int32), binary[n0:].sum(axis=0, dtype=np.int32),
                             n, n0, tau, alpha, correction)


def flat_maps(maps) -> np.ndarray:
    """bool (n,): maps (n, H, W) whose |a| is constant up to float rounding, max|a| - min|a| <= FLAT_RTOL max|a|
    (all-zero maps included). Their top-K sets are chosen by rounding (or are empty), not by the image."""
    a = np.abs(np.asarray(maps, dtype=np.float64).reshape(len(maps), -1))
    hi, lo = a.max(axis=1), a.min(axis=1)
    return (hi - lo) <= FLAT_RTOL * hi


def degenerate_reason(n: int, ks, flat: int, empty) -> str:
    """"" unless at least DEGENERATE_FRACTION of the n noisy maps are flat (:func:`flat_maps`) or, at some K,
    select no pixel (a tie at the top); else one sentence with the counts."""
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
    """Streaming certification: feed the n maps (b, H, W) chunk by chunk, in sample order, then
    :meth:`certificate`. Memory is that of one chunk plus a few (len(ks), H, W) count arrays, whatever n;
    the result is bit for bit that of :func:`certify_maps` on all n maps at once."""

    def __init__(self, ks, n: int, n0: int, shape):
        self.ks, self.n, self.n0 = check_ks(ks), *check_n(n, n0)
        shape = (len(self.ks), *(int(s) for s in shape))
        self.ones_select = np.zeros(shape, dtype=np.int32)
        self.ones_test = np.zeros(shape, dtype=np.int32)
        self.seen = 0
        self.flat = 0
        self.empty = np.zeros(len(self.ks), dtype=np.int64)

    def add(self, maps) -> None:
        maps = np.asarray(maps)
        if maps.ndim != 3 or tuple(maps.shape[1:]) != self.ones_test.shape[1:]:
            raise CertattrError(f"maps of shape {maps.shape} are not allowed: give (b, H, W) = (b, "
                                f"{', '.join(map(str, self.ones_test.shape[1:]))})")
        if self.seen + len(maps) > self.n:
            raise CertattrError(f"{self.seen + len(maps)} maps were given, more than n = {self.n}")
        self.add_binary(sparsify(maps, self.ks), flat_maps(maps))

    def add_binary(self, binary, flat) -> None:
        """Feed the top-K maps of b samples directly: ``binary`` bool (len(ks), b, H, W) = ``sparsify(maps, ks)``
        and ``flat`` bool (b,) = ``flat_maps(maps)`` (what the compact cache stores, :mod:`certattr.engine.encodings`)."""
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

    def certificate(self, *, sigma: float, tau: float, alpha: float, correction: str,
                    metadata: dict | None = None) -> Certificate:
        if self.seen != self.n:
            raise CertattrError(f"only {self.seen} of the n = {self.n} maps were given")
        sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
        correction = check_correction(correction)
        n_pixels = self.ones_test.shape[1] * self.ones_test.shape[2]
        needed = min_samples_to_certify(self.n0, tau, alpha, n_pixels)
        if self.n < needed:
            warnings.warn(f"n={self.n} cannot certify any pixel at tau={tau}, alpha={alpha}, P={n_pixels} pixels "
                          f"(n0={self.n0}): every pixel will abstain; the smallest n that could certify is {needed}",
                          CertificationWarning, stacklevel=3)
        parts = [_counts_to_labels(self.ones_select[i], self.ones_test[i], self.n, self.n0, tau, alpha, correction)
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


def certify_maps(maps, ks: Sequence[float], *, sigma: float, n0: int = DEFAULT.n0, tau: float = DEFAULT.tau,
                 alpha: float = DEFAULT.alpha, correction: str = DEFAULT.correction,
                 metadata: dict | None = None) -> Certificate:
    """Sparsify n attribution maps (n, H, W) at each K and certify every pixel (SPEC §1.3-§1.6).

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
    counter = MapCounter(ks, maps.shape[0], n0, maps.shape[1:])
    counter.add(maps)
    return counter.certificate(sigma=sigma, tau=tau, alpha=alpha, correction=correction, metadata=metadata)
