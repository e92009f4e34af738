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

from .result import ABSTAIN, Certificate
from .sparsify import sparsify
from .validation import CertattrError, check_alpha, check_correction, check_ks, check_n, check_sigma, check_tau

__all__ = ["certified_radius", "clopper_pearson_lower", "pixel_radius_table", "binomial_pvalues", "min_samples_to_certify", "certify_binary", "certify_maps",
           "CertificationWarning"]


class CertificationWarning(UserWarning):
    """The parameters cannot certify any pixel (n too small for tau, alpha and P)."""


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


def certify_binary(binary: np.ndarray, n0: int, tau: float, alpha: float, correction: str = "bonferroni"):
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
    n_test = n - n0
    ones_select = binary[:n0].sum(axis=0, dtype=np.int32)
    majority = (2 * ones_select > n0).astype(np.int8)
    ones_test = binary[n0:].sum(axis=0, dtype=np.int32)
    counts = np.where(majority == 1, ones_test, n_test - ones_test).astype(np.int32)
    pvalues = binomial_pvalues(n_test, tau)[counts]
    if correction == "bonferroni":
        certified = pvalues <= alpha / pvalues.size
    else:
        certified = _holm(pvalues.ravel(), alpha).reshape(pvalues.shape)
    labels = np.where(certified, majority, ABSTAIN).astype(np.int8)
    return labels, majority, counts, pvalues


def certify_maps(maps, ks: Sequence[float], *, sigma: float, n0: int = 10, tau: float = 0.75, alpha: float = 0.001,
                 correction: str = "bonferroni", metadata: dict | None = None) -> Certificate:
    """Sparsify n attribution maps (n, H, W) at each K and certify every pixel (SPEC §1.3-§1.6).

    ``maps`` are the attribution maps of the n noisy copies, already at input resolution, in the order
    of their sample indices (the first n0 select, the rest test).
    """
    ks = check_ks(ks)
    sigma, tau, alpha = check_sigma(sigma), check_tau(tau), check_alpha(alpha)
    correction = check_correction(correction)
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise CertattrError(f"maps of shape {maps.shape} are not allowed: give (n, H, W)")
    n = maps.shape[0]
    n, n0 = check_n(n, n0)
    n_pixels = maps.shape[1] * maps.shape[2]
    needed = min_samples_to_certify(n0, tau, alpha, n_pixels)
    if n < needed:
        warnings.warn(f"n={n} cannot certify any pixel at tau={tau}, alpha={alpha}, P={n_pixels} pixels "
                      f"(n0={n0}): every pixel will abstain; the smallest n that could certify is {needed}",
                      CertificationWarning, stacklevel=2)
    binary = sparsify(maps, ks)
    parts = [certify_binary(binary[i], n0, tau, alpha, correction) for i in range(len(ks))]
    labels, majority, counts, pvalues = (np.stack(p) for p in zip(*parts))
    return Certificate(labels=labels, majority=majority, counts=counts, pvalues=pvalues,
                       mean_sparsified=binary.mean(axis=1, dtype=np.float32), ks=ks, sigma=sigma, tau=tau,
                       alpha=alpha, n=n, n0=n0, correction=correction, metadata=dict(metadata or {}))
