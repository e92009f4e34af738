"""Anytime certification: sample chunk by chunk and stop as soon as the map is decided.

After every block of samples (a look), each pixel p and each K_j of the ladder has two anytime tests of
q_j(p) = P(p is in the top K_j of a noisy map), each at level delta = alpha/(2P) (alpha/P for the two-sided
mixture with one K) and valid at every stopping time: "q_j >= tau" (**important**) and "q_j <= 1 - tau"
(**unimportant**). Which tests is a choice, ``bound`` (:mod:`certattr.engine.anytime_bounds`): ``mixture`` (a
beta-binomial confidence sequence), ``prior`` (mixtures with per-pixel prior weights fixed before the samples they
weigh), ``betting`` (predictable Kelly bets) or ``looks`` (binomial tests at a fixed schedule of looks, delta split
over them).

* p is certified **important** at K_j once the important test has rejected at K_j and at every larger K;
* p is certified **unimportant** at K_j once the unimportant test has rejected at K_j and at every smaller K;
* p **abstains** (decided) when it can no longer be certified at K_j (read off a screening interval);
* otherwise p is *undecided*. Sampling stops when at most the fraction ``undecided`` of the (K, pixel) pairs
  is undecided (they abstain), or at ``n_max`` samples.

**Why any stopping time is fine, for all K and pixels at once.** A claim is made only when its test has
rejected, and each test rejects a true null at any time with probability at most delta (Ville's inequality for
the wealth of a bet; the union over the looks for ``looks``). Per pixel, q_1 >= q_2 >= ... along the ladder
(the top-K sets are nested), and a claim at K_j needs the same test to reject at every K before it in the
ladder's order (larger K for important, smaller K for unimportant): a false important claim therefore needs a
rejection at the first K whose q_j < tau, a false unimportant one at the last K whose q_j > 1 - tau. Only two
tests per pixel can err, so delta = alpha/(2P) gives a family-wise error <= alpha over all pixels, all K and all
times, whatever rule chose when to stop. Unlike the fixed-n certificate no selection samples are needed (n0 = 0):
the sign of the claim is that of the test that rejected.

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
from .anytime_bounds import can_certify, make_bound
from .confseq import anytime_level
from .validation import (CertattrError, check_alpha, check_bound, check_ks, check_positive_int, check_sigma,
                         check_tau)

__all__ = ["AnytimeCounter", "certify_sequential", "check_undecided", "DEFAULT_UNDECIDED", "DEFAULT_BOUND", "BLOCK"]

DEFAULT_UNDECIDED = 0.05  #: stop when at most this fraction of the (K, pixel) pairs is still undecided
DEFAULT_BOUND = "looks"  #: the anytime bound unless one is named (the one benchmarks/bench_sequential.py found best)
BLOCK = 10  #: a look every BLOCK samples (bets are fixed over a block)


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
    """Running counts and anytime bounds of len(ks) nested top-K maps of shape ``shape`` (any leading axes; the
    last two are the image's H, W unless ``n_pixels`` is given, e.g. by simulations that stack runs).

    ``bound``: the name of the anytime bound (:data:`certattr.engine.anytime_bounds.BOUNDS`; default
    :data:`DEFAULT_BOUND`); ``n_max`` the horizon (needed by ``looks``); ``prior`` and ``prior_n0`` settings of the
    ``prior`` bound (:class:`certattr.engine.anytime_bounds.PriorBound`).

    Looks fall at every multiple of ``block`` samples and wherever the bound needs one (its n0, its look schedule):
    :meth:`add` cuts its chunk there, so the certificate depends on the samples, not on how they are chunked.
    :meth:`add_counts` counts a chunk given as per-pixel counts: a look falls at its end when it reaches or passes
    such a point (the chunk's samples then share one bet); counts short of one wait for the next chunk, and
    :meth:`flush` looks at whatever waits. After a look, ``lower``/``upper`` are the bounds of q behind the radii,
    :meth:`labels` the certified labels (int8 {1, 0, ABSTAIN}) and :meth:`undecided` the pairs still undecided.
    """

    def __init__(self, ks, shape, *, tau: float, alpha: float, n_pixels: int | None = None, bound: str | None = None,
                 n_max: int | None = None, prior=None, prior_n0: int | None = None, block: int = BLOCK):
        self.ks = check_ks(ks)
        self.tau, self.alpha = check_tau(tau), check_alpha(alpha)
        self.bound_name = check_bound(DEFAULT_BOUND if bound is None else bound)
        shape = tuple(int(s) for s in shape)
        self.n_pixels = int(n_pixels) if n_pixels is not None else shape[-2] * shape[-1]
        self.level = anytime_level(self.alpha, self.n_pixels, len(self.ks), self.bound_name)
        self.block = check_positive_int("block", block)
        self.n_max = None if n_max is None else check_positive_int("n_max", n_max)  #: the horizon, if given
        full = (len(self.ks), *shape)
        self.bound = make_bound(self.bound_name, full, tau=self.tau, level=self.level, n_max=n_max, prior=prior,
                                n0=prior_n0)
        self.cuts = frozenset(int(c) for c in self.bound.cuts())
        self.ones = np.zeros(full, dtype=np.int64)  #: per K and pixel: samples whose top-K set holds the pixel
        self.seen = 0  #: samples counted
        self.looked = 0  #: samples up to the last look
        self._pending = np.zeros(full, dtype=np.int64)  # counts since the last look
        self.flat = 0
        self.empty = np.zeros(len(self.ks), dtype=np.int64)

    # --- counting ----------------------------------------------------------------------------------------
    def _is_look(self, t: int) -> bool:
        return t % self.block == 0 or t in self.cuts

    def add(self, binary, flat) -> None:
        """Count the top-K maps of the next b samples: ``binary`` bool (len(ks), b, H, W), ``flat`` bool (b,)."""
        binary, flat = np.asarray(binary, dtype=bool), np.asarray(flat, dtype=bool)
        if binary.ndim != 4 or binary.shape[0] != len(self.ks) or binary.shape[2:] != self.ones.shape[1:] \
                or flat.shape != (binary.shape[1],):
            raise CertattrError(f"top-K maps of shape {binary.shape} with {flat.shape} flags are not allowed: give "
                                f"({len(self.ks)}, b, {', '.join(map(str, self.ones.shape[1:]))}) and (b,)")
        self.flat += int(flat.sum())
        self.empty += (~binary.any(axis=(2, 3)) & ~flat[None]).sum(axis=1)
        b = binary.shape[1]
        edges = [i for i in range(1, b) if self._is_look(self.seen + i)] + [b]
        start = 0
        for stop in edges:  # a look at every block boundary inside the chunk
            self.add_counts(binary[:, start:stop].sum(axis=1, dtype=np.int64), stop - start)
            start = stop

    def add_counts(self, ones, b: int) -> None:
        """Add b samples given as counts ``ones`` (len(ks), *shape); look if a block boundary is reached."""
        b = int(b)
        before = self.seen
        self._pending += np.asarray(ones, dtype=np.int64)
        self.ones += np.asarray(ones, dtype=np.int64)
        self.seen += b
        if self.seen // self.block > before // self.block or any(before < c <= self.seen for c in self.cuts):
            self._look()

    def flush(self) -> None:
        """Look at the samples counted since the last look, if any (the end of sampling)."""
        if self.seen > self.looked:
            self._look()

    def _look(self) -> None:
        self.bound.update(self.ones, self.seen, self._pending, self.seen - self.looked)
        self._pending[...] = 0
        self.looked = self.seen

    # --- reading -----------------------------------------------------------------------------------------
    @property
    def lower(self) -> np.ndarray:
        """float64 (len(ks), *shape): lower bounds of q behind the radii (>= tau where certified important)."""
        return self.bound.bounds()[0]

    @property
    def upper(self) -> np.ndarray:
        """float64 (len(ks), *shape): upper bounds of q (<= 1 - tau where certified unimportant)."""
        return self.bound.bounds()[1]

    @property
    def p_important(self) -> np.ndarray:
        """Smallest anytime p-value of "q >= tau" so far (float64 (len(ks), *shape))."""
        return self.bound.p_one

    @property
    def p_unimportant(self) -> np.ndarray:
        """Smallest anytime p-value of "q <= 1 - tau" so far."""
        return self.bound.p_zero

    def labels(self) -> np.ndarray:
        """int8 (len(ks), *shape): 1 where "important" is certified at this K and at every larger K, 0 where
        "unimportant" is certified at this K and at every smaller K (fixed-sequence along the ladder), ABSTAIN
        elsewhere (and where both hold, which only a failed test can cause)."""
        one = np.logical_and.accumulate(self.bound.crossed_one, axis=0)  # ks are sorted largest first
        zero = np.logical_and.accumulate(self.bound.crossed_zero[::-1], axis=0)[::-1]
        return np.where(one & ~zero, 1, np.where(zero & ~one, 0, ABSTAIN)).astype(np.int8)

    def undecided(self) -> np.ndarray:
        """bool (len(ks), *shape): not certified, and still certifiable by the bound's screening interval
        (L <= 1 - tau or U >= tau; a stopping heuristic, not a claim)."""
        lower, upper = self.bound.screen(self.ones - self._pending, self.looked)
        decided_abstain = (lower > 1 - self.tau) & (upper < self.tau)
        return (self.labels() == ABSTAIN) & ~decided_abstain

    def can_certify(self, n_max: int) -> bool:
        """Whether a pixel whose n_max samples all agree would be certified (else nothing can be)."""
        return can_certify(self.bound_name, n_max, tau=self.tau, level=self.level)


def certify_sequential(samples: Iterable, counter: AnytimeCounter, *, sigma: float,
                       undecided: float = DEFAULT_UNDECIDED, metadata: dict | None = None) -> Certificate:
    """Count the chunks of ``samples`` ((binary (len(ks), b, H, W), flat (b,)) each, in sample order, at most
    ``counter.n_max`` samples in all) into ``counter`` (a fresh :class:`AnytimeCounter`: it holds the K, τ, α, the
    anytime bound and its settings, and the horizon n_max) until at most ``undecided`` of the (K, pixel) pairs are
    undecided or n_max samples are counted; returns the anytime :class:`certattr.engine.certificate.Certificate`
    (``anytime`` True, n = samples counted, n0 = 0, labels = band labels, metadata: n_max, undecided, why it stopped
    and ``history``, one [samples, certified fraction, undecided fraction] per chunk, and ``bound``) at noise
    ``sigma``. Chunks after the stop are not read."""
    sigma, undecided = check_sigma(sigma), check_undecided(undecided)
    if counter.n_max is None or counter.seen:
        raise CertattrError("certify_sequential needs a fresh AnytimeCounter with its horizon: "
                            "AnytimeCounter(ks, shape, tau=..., alpha=..., n_max=...)")
    n_max, bound = counter.n_max, counter.bound_name
    if not counter.can_certify(n_max):
        warnings.warn(f"n_max={n_max} cannot certify any pixel at tau={counter.tau}, alpha={counter.alpha}, "
                      f"P={counter.n_pixels} pixels (anytime bound {bound!r}): every pixel will abstain",
                      CertificationWarning, stacklevel=3)
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
    counter.flush()
    if history and history[-1][0] == counter.seen:  # the last look may have come with the flush
        history[-1][1] = float((counter.labels() != ABSTAIN).mean())
    meta = {**(metadata or {}), "n_max": n_max, "undecided": undecided, "stopped": stopped, "history": history,
            "bound": bound}
    return _certificate(counter, sigma, meta)


def _certificate(counter: AnytimeCounter, sigma: float, meta: dict) -> Certificate:
    t, tau = counter.seen, counter.tau
    labels = counter.labels()
    lower, upper = counter.bound.bounds()
    majority = np.where(lower > 0.5, 1, np.where(upper < 0.5, 0, 2 * counter.ones > t))
    majority = np.where(labels != ABSTAIN, labels, majority).astype(np.int8)
    counts = np.where(majority == 1, counter.ones, t - counter.ones).astype(np.int32)
    pvalues = np.where(majority == 1, counter.p_important, counter.p_unimportant)
    bound = np.where(majority == 1, lower, 1 - upper)  # lower bound of P(label = majority)
    radii = np.where(bound > 0.5, sigma * norm.ppf(np.clip(bound, 0.5, 1.0)), 0.0)
    mean = (counter.ones.astype(np.float64) / t).astype(np.float32)
    reason = degenerate_reason(t, counter.ks, counter.flat, counter.empty)
    if reason:
        warnings.warn(f"these maps: {reason}; its certificate is flagged degenerate", DegenerateMapWarning,
                      stacklevel=3)
    return Certificate(labels=labels, majority=majority, counts=counts, pvalues=pvalues, mean_sparsified=mean,
                       ks=counter.ks, sigma=sigma, tau=tau, alpha=counter.alpha, n=t, n0=0, correction="bonferroni",
                       metadata=meta, degenerate=reason, radii=radii, band_labels=labels.copy(), anytime=True)

