"""The statistics of a certificate (segmentation smoothing, Fischer et al. 2021; Cohen et al. 2019's radius).

Steps 3-5 of the algorithm for one pixel p of a top-K map, from counts of binary samples:

* **select**: m_p = the majority label over the first n0 samples (:func:`majority_labels`; a tie goes to 0,
  "not important");
* **test**: c_p = how many of the n - n0 test samples equal m_p, and its one-sided p-value
  P(Bin(n - n0, tau) >= c_p) (:func:`binomial_pvalues`);
* **abstain**: p is certified when its p-value passes the multiple-testing correction over the P pixels at
  family-wise level alpha (:func:`passes_correction`: Bonferroni p <= alpha/P, or Holm's step-down), otherwise
  it abstains.

Radii, in [0,1] pixel units (l2 over all 3*H*W values): R = sigma * Phi^-1(tau) for the fixed-tau certificate
(:func:`certified_radius`), and per pixel R_p = sigma * Phi^-1(p_lower) from the one-sided Clopper-Pearson lower
bound of c_p out of n - n0 at level alpha/P (:func:`pixel_radius_table`), 0 where p_lower <= 1/2.

This module imports nothing of certattr but the parameter checks: the certificate, the streaming counter and
the related certificates all build on it.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, binom, norm

from .validation import CertattrError, check_sigma, check_tau

__all__ = ["certified_radius", "clopper_pearson_lower", "pixel_radius_table", "binomial_pvalues",
           "min_samples_to_certify", "holm_rejections", "majority_labels", "agreeing_counts", "passes_correction", "certifying_count",
           "CORRECTION_RULES"]


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
    """R(c) = sigma * Phi^-1(p_lower(c)) for c = 0..n_test agreeing samples, 0 where p_lower <= 1/2:
    float64 (n_test + 1,), indexed by the count."""
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


def holm_rejections(pvalues: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down rejections (bool, same length) of a flat array of p-values at family-wise level alpha."""
    P = pvalues.size
    order = np.argsort(pvalues, kind="stable")
    thresholds = alpha / (P - np.arange(P))
    passing = pvalues[order] <= thresholds
    n_reject = P if passing.all() else int(np.argmin(passing))
    out = np.zeros(P, dtype=bool)
    out[order[:n_reject]] = True
    return out


def majority_labels(ones_select: np.ndarray, n0: int) -> np.ndarray:
    """int8 m_p in {0, 1}: 1 where more than half of the n0 selection samples selected the pixel (ties: 0)."""
    return (2 * np.asarray(ones_select) > n0).astype(np.int8)


def agreeing_counts(majority: np.ndarray, ones_test: np.ndarray, n_test: int) -> np.ndarray:
    """int32 c_p: the test samples whose label equals the majority m_p (``ones_test`` of them selected p)."""
    return np.where(majority == 1, ones_test, n_test - ones_test).astype(np.int32)


#: the multiple-testing corrections over a map's P pixels, by name: p-values (any shape), alpha -> bool, same shape
CORRECTION_RULES = {
    "bonferroni": lambda pvalues, alpha: pvalues <= alpha / pvalues.size,  # p <= alpha / P
    "holm": lambda pvalues, alpha: holm_rejections(pvalues.ravel(), alpha).reshape(pvalues.shape),  # a superset
}


def passes_correction(pvalues: np.ndarray, alpha: float, correction: str) -> np.ndarray:
    """bool, the shape of ``pvalues``: the pixels certified at family-wise level alpha over all of them, by the
    rule :data:`CORRECTION_RULES` names ("bonferroni": p <= alpha/P; "holm": Holm's step-down, a superset); any
    other name is a one-line error, never a silent choice."""
    try:
        rule = CORRECTION_RULES[correction]
    except (KeyError, TypeError):
        raise CertattrError(f"correction={correction!r} is unknown: allowed are {', '.join(CORRECTION_RULES)}") from None
    return rule(pvalues, alpha)


def certifying_count(n_test: int, tau: float, alpha: float, n_pixels: int) -> int:
    """The smallest count c of agreeing test samples that certifies a pixel: P(Bin(n_test, tau) >= c) <=
    alpha / n_pixels (Bonferroni over the pixels); n_test + 1 when even c = n_test does not."""

    passing = np.flatnonzero(binomial_pvalues(n_test, tau) <= alpha / n_pixels)
    return int(passing[0]) if passing.size else n_test + 1
