"""Time-uniform confidence bounds for a Bernoulli probability (confidence sequences), for anytime certification.

For X_1, X_2, ... i.i.d. Bernoulli(q) with S_t = X_1 + ... + X_t, Robbins' beta-binomial mixture

    M_t(q) = B(a + S_t, b + t - S_t) / B(a, b) / (q^S_t (1 - q)^(t - S_t))

is a nonnegative martingale with mean 1 under q (the likelihood ratio of a Beta(a, b) mixture of Bernoullis
against q). Ville's inequality gives P(exists t: M_t(q) >= 1/delta) <= delta, so

    C_t = {q : M_t(q) < 1/delta}

covers q at *every* t at once with probability >= 1 - delta: a bound read at a data-dependent stopping time
is as valid as one read at a fixed n. log M_t(q) is convex in q with its minimum (<= 0) at S_t/t, so C_t is an
interval [L_t, U_t]; :func:`bound_table` gives both for every S_t = 0..t by bisection, rounded outwards
(the lower bound down, the upper bound up), and non-decreasing in S_t.

This module imports nothing of certattr: the sequential certificate (:mod:`certattr.engine.sequential`), the
certificate's statement and the validity simulations build on it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import betaln

__all__ = ["PRIOR", "anytime_level", "log_mixture", "bound_table", "anytime_bounds"]

#: the Beta(a, b) mixing prior of the confidence sequences (uniform: no preference for any q)
PRIOR = (1.0, 1.0)
_BISECTIONS = 60  #: halvings of [0, 1]: the bounds are exact to about 1e-18 before the outward rounding


def anytime_level(alpha: float, n_pixels: int, n_ks: int, bound: str = "mixture") -> float:
    """delta, the level of each pixel's anytime test at each K. For the two-sided ``mixture``: alpha/P for one K,
    alpha/(2P) for a ladder (a pixel errs only if the sequence of its first falsely-important K or of its last
    falsely-unimportant K fails: two sequences; see :mod:`certattr.engine.sequential`). For the one-sided bounds
    (any other name) alpha/(2P) always: each pixel has an important and an unimportant test, and with
    1 - tau < q < tau both nulls are true."""
    return float(alpha) / n_pixels / (1 if n_ks == 1 and bound == "mixture" else 2)


def log_mixture(successes, trials: int, q, prior=PRIOR) -> np.ndarray:
    """log M_t(q) for S_t = ``successes`` out of t = ``trials`` (arrays broadcast), 0 < q < 1."""
    a, b = prior
    s = np.asarray(successes, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return betaln(a + s, b + trials - s) - betaln(a, b) - s * np.log(q) - (trials - s) * np.log1p(-q)


@lru_cache(maxsize=512)
def _table(trials: int, level: float, prior: tuple) -> tuple[np.ndarray, np.ndarray]:
    s = np.arange(trials + 1, dtype=np.float64)
    phat = s / trials
    threshold = -np.log(level)

    def outside(q):  # q is not in C_t (M_t(q) >= 1/delta)
        return log_mixture(s, trials, np.clip(q, 1e-300, 1 - 1e-16), prior) >= threshold

    lo, hi = np.zeros_like(phat), phat.copy()  # lower bound: outside at lo (or lo = 0), inside at hi = phat
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        out = outside(mid)
        lo, hi = np.where(out, mid, lo), np.where(out, hi, mid)
    lower = np.where(s > 0, lo, 0.0)
    lo2, hi2 = phat.copy(), np.ones_like(phat)  # upper bound: inside at lo2 = phat, outside at hi2 (or hi2 = 1)
    for _ in range(_BISECTIONS):
        mid = (lo2 + hi2) / 2
        out = outside(mid)
        lo2, hi2 = np.where(out, lo2, mid), np.where(out, mid, hi2)
    upper = np.where(s < trials, hi2, 1.0)
    # monotone in S_t (true of the exact bounds; this only removes bisection noise, outwards)
    lower = np.minimum.accumulate(lower[::-1])[::-1]
    upper = np.maximum.accumulate(upper)
    lower.flags.writeable = upper.flags.writeable = False
    return lower, upper


def bound_table(trials: int, level: float, prior=PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) float64 (trials + 1,): the interval C_t of the confidence sequence at level ``level``
    (miscoverage over all t together) after S_t = 0..trials successes out of t = ``trials``; read-only."""
    if trials < 1:
        raise ValueError(f"trials={trials} is not allowed: give at least 1")
    return _table(int(trials), float(level), tuple(float(x) for x in prior))


def anytime_bounds(successes, trials: int, level: float, prior=PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the confidence sequence for each count in ``successes`` (ints in 0..trials)."""
    lower, upper = bound_table(trials, level, prior)
    idx = np.asarray(successes, dtype=np.int64)
    return lower[idx], upper[idx]
