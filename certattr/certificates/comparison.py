"""Comparing the three certificates on one footing: the certified ℓ2 radius each gives for a number of
samples, and the counterexample to the printed Theorem 1 of arXiv 2405.06361 (the certificates chapter).

* :func:`pixel_best_radius`: the largest radius this paper's pixel certificate can give with m samples;
* :func:`overlap_radius`: the radius up to which Levine et al.'s certificate keeps a top-k overlap;
* :func:`cosine_radius`: the radius up to which the (corrected) cosine certificate keeps cos >= T, with the
  Monte-Carlo term of m samples;
* :func:`cosine_counterexample`: an explicit bounded attribution function in 2-D whose smoothed map reaches
  the corrected bound and violates the printed one.

Radii are in the input's units ([0, 1] pixels for images), ℓ2 over all coordinates.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from .cosine import (ball_overlap_fraction, ball_symdiff_fraction, certified_eps, cosine_lower_bound,
                                 mc_error, paper_cosine_bound, uniform_ball_noise)
from .sparsified_smoothgrad import hoeffding_term, overlap_radii
from ..engine.validation import CertattrError, check_alpha, check_positive_int, check_sigma

__all__ = ["pixel_best_radius", "overlap_radius", "cosine_radius", "cosine_counterexample"]


def pixel_best_radius(sigma: float, alpha: float, n_pixels: int, m: int, n0: int) -> float:
    """The largest R = sigma * Phi^-1(tau) at which a pixel whose m - n0 test samples all agree still passes
    the Bonferroni test P(Bin(m - n0, tau) >= m - n0) = tau^(m - n0) <= alpha / P, i.e. tau up to
    (alpha / P)^(1 / (m - n0)); 0 when m <= n0 (nothing is tested)."""
    sigma, alpha = check_sigma(sigma), check_alpha(alpha)
    n_pixels, m = check_positive_int("n_pixels", n_pixels), check_positive_int("m", m)
    if m <= n0:
        return 0.0
    return max(0.0, float(sigma * norm.ppf((alpha / n_pixels) ** (1 / (m - n0)))))


def overlap_radius(s_hat, k: int, sigma: float, m: int, eta: float, *, at_least: int | None = None) -> float:
    """The largest eps at which Levine et al.'s certificate (Hoeffding term of m samples at confidence eta)
    keeps at least ``at_least`` (default ceil(k/2)) of the top k; 0 when it keeps fewer at every eps."""
    need = math.ceil(k / 2) if at_least is None else int(at_least)
    if not 1 <= need <= k:
        raise CertattrError(f"at_least={at_least!r} is not allowed: give 1 <= at_least <= k={k}")
    radii = np.sort(overlap_radii(s_hat, k, sigma, hoeffding_term(m, np.asarray(s_hat).size, eta)))[::-1]
    return max(0.0, float(radii[need - 1]))


def cosine_radius(m: int, norm_ratio: float, M: float, T: float, r: float, d: int, alpha: float,
                  bound: str = "corrected") -> float:
    """The largest eps with cos >= T, from the estimated ||h_hat|| / M = ``norm_ratio`` less the Monte-Carlo
    term of m samples at level alpha (so that the bound holds with probability >= 1 - alpha)."""
    low = max(0.0, norm_ratio * M - mc_error(m, M, alpha))
    return certified_eps(low, M, T, r, d, bound=bound)


def cosine_counterexample(d: int = 2, r: float = 1.0, eps: float = 0.1, M: float = 1.0, c: float = 0.3,
                          n_mc: int = 40_000, seed: int = 0) -> dict:
    """A bounded g in d = 2 (constant on the two crescents and on the lens of the balls around x and
    x + delta) with ||h(x)|| = c whose smoothed maps have exactly the corrected bound's cosine, which is below
    the printed Theorem 1. Returns both bounds, the exact cosine and a Monte-Carlo estimate from g itself."""
    if d != 2:
        raise CertattrError(f"d={d!r} is not allowed: the construction is in d = 2")
    q = ball_overlap_fraction(eps, r, d)  # lens fraction; each crescent has 1 - q
    A = M * ball_symdiff_fraction(eps, r, d)
    if not 0 < A < c:
        raise CertattrError(f"the construction needs 0 < A = M*V_U/V_S = {A:.3g} < c = {c}")
    h = np.array([c, 0.0])
    u = np.array([-A / c, math.sqrt(1 - (A / c) ** 2)])  # cos(h, u) = -A/c: h + A u is perpendicular to u
    g1, g3 = -M * u, M * u  # the crescent of x only, of x + delta only
    g2 = (h - (1 - q) * g1) / q  # the lens
    h_x, h_xp = (1 - q) * g1 + q * g2, q * g2 + (1 - q) * g3
    exact = float(h_x @ h_xp / (np.linalg.norm(h_x) * np.linalg.norm(h_xp)))
    x0, x1 = np.zeros(2), np.array([eps, 0.0])

    def g_fn(z):
        in0, in1 = np.linalg.norm(z - x0, axis=1) <= r, np.linalg.norm(z - x1, axis=1) <= r
        return np.where((in0 & in1)[:, None], g2, np.where(in0[:, None], g1, g3))

    noise = uniform_ball_noise((2,), r, seed=seed, image_id="counterexample", indices=range(n_mc)).double().numpy()
    a, b = g_fn(x0 + noise).mean(axis=0), g_fn(x1 + noise).mean(axis=0)
    mc = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return {"d": d, "r": r, "ε": eps, "M": M, "‖h(x)‖": c, "max ‖g‖": float(max(np.linalg.norm(g2), M)),
            "A = M·V_U/V_S": float(A), "printed Theorem 1": float(paper_cosine_bound(c, M, eps, r, d)),
            "corrected bound": float(cosine_lower_bound(c, M, eps, r, d)),
            "cos(h(x), h(x+δ)) exact": exact, "same, Monte Carlo": mc}
