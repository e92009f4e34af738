"""Anytime certification: sample chunk by chunk and stop as soon as the map is decided.

After every chunk of samples, each pixel p and each K_j of the ladder has a time-uniform confidence interval
[L, U] for q_j(p) = P(p is in the top K_j of a noisy map) (:mod:`certattr.engine.confseq`, at level delta =
alpha/(2P), alpha/P for one K), intersected over the chunks seen so far (every interval of the sequence holds
together, so their intersection does too):

* L >= tau: p is certified **important** at K_j (radius sigma Phi^-1(tau), and R_p = sigma Phi^-1(L));
* U <= 1 - tau: p is certified **unimportant** at K_j (R_p = sigma Phi^-1(1 - U));
* L > 1 - tau and U < tau: p can no longer be certified at K_j: it **abstains** (decided);
* otherwise p is *undecided*. Sampling stops when at most the fraction ``undecided`` of the (K, pixel) pairs
  is undecided (they abstain), or at ``n_max`` samples.

**Why any stopping time is fine, for all K and pixels at once.** On the event that every confidence sequence
covers its q_j(p) at every t (probability >= 1 - alpha, see below), no claim made at any t is false, whatever
rule chose when to stop. Per pixel, the counts of the nested top-K sets fall as j grows at every t, and L and U
rise with the count, so a false "important" claim at some K_j implies one at the first K whose q_j < tau (the
sequence of that K failed), and a false "unimportant" claim implies one at the last K whose q_j > 1 - tau: only
two sequences per pixel matter (one for a single K), so delta = alpha/(2P) gives a family-wise error <= alpha
over all pixels, all K and all times. Unlike the fixed-n certificate no selection samples are needed (n0 = 0):
the sign of the claim is read off the interval.

Chunks, cache and seeds are the engine's (:meth:`certattr.engine.smoothing.SmoothedAttribution.certify` with
``sequential=True``): a sequential run reads the chunks a fixed-n run cached and writes the ones it computes
for a later fixed-n run.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
from scipy.stats import norm

from .certificate import ABSTAIN, Certificate
from .certify import CertificationWarning, DegenerateMapWarning, degenerate_reason
from .confseq import anytime_bounds, anytime_level, bound_table, log_mixture
from .validation import CertattrError, check_alpha, check_ks, check_positive_int, check_sigma, check_tau

__all__ = ["AnytimeCounter", "certify_sequential", "check_undecided", "DEFAULT_UNDECIDED"]

DEFAULT_UNDECIDED = 0.05  #: stop when at most this fraction of the (K, pixel) pairs is still undecided


def check_undecided(value) -> float:
    """0 <= undecided < 1, as a float; one line otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (0.0 <= v < 1.0) or isinstance(value, bool):
        raise CertattrError(f"undecided={value!r} is not allowed: give the fraction of pixels left undecided when "
                            f"sampling stops, 0 <= undecided < 1")
    return v


class AnytimeCounter:
    """Running counts and confidence sequences of len(ks) nested top-K maps of shape ``shape`` (any leading
    axes; the last two are the image's H, W unless ``n_pixels`` is given, e.g. by simulations that stack runs).

    :meth:`add` counts a chunk of top-K maps (as :class:`certattr.engine.certify.MapCounter`), :meth:`add_counts`
    a chunk's per-pixel counts; after either, ``lower``/``upper`` are the intersected bounds, :meth:`labels` the
    certified labels (int8 {1, 0, ABSTAIN}) and :meth:`undecided` the pairs still undecided.
    """

    def __init__(self, ks, shape, *, tau: float, alpha: float, n_pixels: int | None = None):
        self.ks = check_ks(ks)
        self.tau, self.alpha = check_tau(tau), check_alpha(alpha)
        shape = tuple(int(s) for s in shape)
        self.n_pixels = int(n_pixels) if n_pixels is not None else shape[-2] * shape[-1]
        self.level = anytime_level(self.alpha, self.n_pixels, len(self.ks))
        full = (len(self.ks), *shape)
        self.ones = np.zeros(full, dtype=np.int64)  #: per K and pixel: samples whose top-K set holds the pixel
        self.lower = np.zeros(full)  #: intersected lower bounds of q (float64)
        self.upper = np.ones(full)  #: intersected upper bounds of q
        self.p_important = np.ones(full)  #: smallest anytime p-value of "q >= tau" so far
        self.p_unimportant = np.ones(full)  #: smallest anytime p-value of "q <= 1 - tau" so far
        self.seen = 0
        self.flat = 0
        self.empty = np.zeros(len(self.ks), dtype=np.int64)

    def add(self, binary, flat) -> None:
        """Count the top-K maps of the next b samples: ``binary`` bool (len(ks), b, H, W), ``flat`` bool (b,)."""
        binary, flat = np.asarray(binary, dtype=bool), np.asarray(flat, dtype=bool)
        if binary.ndim != 4 or binary.shape[0] != len(self.ks) or binary.shape[2:] != self.ones.shape[1:] \
                or flat.shape != (binary.shape[1],):
            raise CertattrError(f"top-K maps of shape {binary.shape} with {flat.shape} flags are not allowed: give "
                                f"({len(self.ks)}, b, {', '.join(map(str, self.ones.shape[1:]))}) and (b,)")
        self.flat += int(flat.sum())
        self.empty += (~binary.any(axis=(2, 3)) & ~flat[None]).sum(axis=1)
        self.add_counts(binary.sum(axis=1, dtype=np.int64), binary.shape[1])

    def add_counts(self, ones, b: int) -> None:
        """Add a chunk of b samples given as counts ``ones`` (len(ks), *shape) and update the bounds."""
        self.ones += np.asarray(ones, dtype=np.int64)
        self.seen += int(b)
        t = self.seen
        lower, upper = anytime_bounds(self.ones, t, self.level)
        np.maximum(self.lower, lower, out=self.lower)
        np.minimum(self.upper, upper, out=self.upper)
        # anytime p-values (1/M_t at the boundary of each claim, on the claim's side of the estimate)
        above, below = self.ones >= self.tau * t, self.ones <= (1 - self.tau) * t
        if above.any():
            p1 = np.exp(-log_mixture(self.ones[above], t, self.tau))
            self.p_important[above] = np.minimum(self.p_important[above], np.minimum(p1, 1.0))
        if below.any():
            p0 = np.exp(-log_mixture(self.ones[below], t, 1 - self.tau))
            self.p_unimportant[below] = np.minimum(self.p_unimportant[below], np.minimum(p0, 1.0))

    def labels(self) -> np.ndarray:
        """int8 (len(ks), *shape): 1 where L >= tau, 0 where U <= 1 - tau, ABSTAIN elsewhere (and where both
        hold, which only a failed sequence can cause)."""
        one, zero = self.lower >= self.tau, self.upper <= 1 - self.tau
        return np.where(one & ~zero, 1, np.where(zero & ~one, 0, ABSTAIN)).astype(np.int8)

    def undecided(self) -> np.ndarray:
        """bool (len(ks), *shape): not certified, and still certifiable (L <= 1 - tau or U >= tau)."""
        decided_abstain = (self.lower > 1 - self.tau) & (self.upper < self.tau)
        return (self.labels() == ABSTAIN) & ~decided_abstain

    def can_certify(self, n_max: int) -> bool:
        """Whether a pixel whose n_max samples all agree would be certified (else nothing can be)."""
        lower, _ = bound_table(n_max, self.level)
        return bool(lower[n_max] >= self.tau)


def certify_sequential(samples: Iterable, ks, shape, *, sigma: float, tau: float, alpha: float, n_max: int,
                       undecided: float = DEFAULT_UNDECIDED, metadata: dict | None = None) -> Certificate:
    """Count the chunks of ``samples`` ((binary (len(ks), b, H, W), flat (b,)) each, in sample order, at most
    n_max samples in all) until at most ``undecided`` of the (K, pixel) pairs are undecided or n_max samples are
    counted; returns the anytime :class:`certattr.engine.certificate.Certificate` (``anytime`` True, n = samples
    counted, n0 = 0, labels = band labels, metadata: n_max, undecided, why it stopped and ``history``, one
    [samples, certified fraction, undecided fraction] per chunk). Chunks after the stop are not read."""
    sigma, n_max = check_sigma(sigma), check_positive_int("n_max", n_max)
    undecided = check_undecided(undecided)
    counter = AnytimeCounter(ks, shape, tau=tau, alpha=alpha)
    if not counter.can_certify(n_max):
        warnings.warn(f"n_max={n_max} cannot certify any pixel at tau={tau}, alpha={alpha}, P={counter.n_pixels} "
                      f"pixels (anytime bounds): every pixel will abstain", CertificationWarning, stacklevel=3)
    history, stopped = [], f"n_max = {n_max} reached"
    for binary, flat in samples:
        if counter.seen + np.shape(binary)[1] > n_max:
            raise CertattrError(f"{counter.seen + np.shape(binary)[1]} maps were given, more than n_max = {n_max}")
        counter.add(binary, flat)
        left = float(counter.undecided().mean())
        history.append([counter.seen, float((counter.labels() != ABSTAIN).mean()), left])
        if left <= undecided:
            stopped = f"at most {undecided:g} of the (K, pixel) pairs undecided ({left:.4g})"
            break
    if counter.seen == 0:
        raise CertattrError("no samples were given")
    meta = {**(metadata or {}), "n_max": n_max, "undecided": undecided, "stopped": stopped, "history": history}
    return _certificate(counter, sigma, meta)


def _certificate(counter: AnytimeCounter, sigma: float, meta: dict) -> Certificate:
    t, tau = counter.seen, counter.tau
    labels = counter.labels()
    majority = np.where(counter.lower > 0.5, 1, np.where(counter.upper < 0.5, 0, 2 * counter.ones > t))
    majority = np.where(labels != ABSTAIN, labels, majority).astype(np.int8)
    counts = np.where(majority == 1, counter.ones, t - counter.ones).astype(np.int32)
    pvalues = np.where(majority == 1, counter.p_important, counter.p_unimportant)
    bound = np.where(majority == 1, counter.lower, 1 - counter.upper)  # lower bound of P(label = majority)
    radii = np.where(bound > 0.5, sigma * norm.ppf(np.clip(bound, 0.5, 1.0)), 0.0)
    mean = (counter.ones.astype(np.float64) / t).astype(np.float32)
    reason = degenerate_reason(t, counter.ks, counter.flat, counter.empty)
    if reason:
        warnings.warn(f"these maps: {reason}; its certificate is flagged degenerate", DegenerateMapWarning,
                      stacklevel=3)
    return Certificate(labels=labels, majority=majority, counts=counts, pvalues=pvalues, mean_sparsified=mean,
                       ks=counter.ks, sigma=sigma, tau=tau, alpha=counter.alpha, n=t, n0=0, correction="bonferroni",
                       metadata=meta, degenerate=reason, radii=radii, band_labels=labels.copy(), anytime=True)

