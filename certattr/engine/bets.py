"""One-sided tests of a Bernoulli probability by betting: the pieces of the anytime bounds.

For a claim "q >= m" about X_1, X_2, ... i.i.d. Bernoulli(q) (e.g. m = tau: "the pixel is in the top K"), a
gambler who stakes the fraction lambda_i m of her wealth on X_i = 1 at fair odds for q = m has, after t samples,

    W_t(m) = prod_{i <= t} (1 + lambda_i (X_i - m)),        0 <= lambda_i <= 1/m,

with lambda_i chosen from X_1..X_{i-1} only (a *predictable* bet). If q < m, E[1 + lambda_i (X_i - m) | past] =
1 + lambda_i (q - m) <= 1, so W_t is a nonnegative supermartingale with W_0 = 1 and Ville's inequality gives
P(exists t: W_t(m) >= 1/delta) <= delta: a claim made when W_t(m) first reaches 1/delta is false with probability
at most delta, whatever the stopping time. The bet lambda = (p - m)/(m(1 - m)) for a fixed p > m gives the
likelihood ratio of Bernoulli(p) against Bernoulli(m),

    LR_t(p; m) = (p/m)^S_t ((1 - p)/(1 - m))^(t - S_t),

and any average of such ratios with weights fixed before the samples (a prior over the alternatives p > m) is
again such a wealth. The claim "q <= 1 - m" is the same test on 1 - X.

This module holds the shared pieces (the grid of alternatives, log-likelihood-ratio tables, prior weights, the
predictive bet, the look schedule of the spending bound); :mod:`certattr.engine.anytime_bounds` keeps the per-pixel
state. Arrays of pixels have any shape; grid axes come first.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

__all__ = ["GRID_SIZE", "alternatives", "log_lr_table", "prior_log_weights", "predictive_table", "kelly_bet",
           "radius_levels", "look_schedule", "prior_from_map", "PRIOR_WIDTH", "PRIOR_FLOOR"]

GRID_SIZE = 24  #: alternatives p_g > tau in the mixtures and predictive bets
PRIOR_WIDTH = 0.05  #: spread (in q) of an informative prior's weights around its centre
PRIOR_FLOOR = 0.2  #: share of an informative prior spread evenly over the grid (caps the cost of a wrong prior)
RADIUS_STEP = 0.25  #: spacing of the radius levels in units of sigma (R / sigma = Phi^-1(m))
LOOK_SERIES = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)  #: look times of the spending bound: these x 10^k samples


@lru_cache(maxsize=64)
def alternatives(m: float, size: int = GRID_SIZE) -> np.ndarray:
    """float64 (size,): the midpoints of ``size`` equal cells of (m, 1): the alternatives p > m of the mixtures."""
    p = m + (1.0 - m) * (np.arange(size) + 0.5) / size
    p.flags.writeable = False
    return p


def log_lr_table(trials: int, p: np.ndarray, m: float) -> np.ndarray:
    """float64 (trials + 1, len(p)): log LR_t(p_g; m) for S_t = 0..trials successes out of t = ``trials``."""
    s = np.arange(trials + 1, dtype=np.float64)[:, None]
    p = np.asarray(p, dtype=np.float64)[None]
    return s * np.log(p / m) + (trials - s) * (np.log1p(-p) - np.log1p(-m))


def prior_log_weights(centre, m: float, *, width: float = PRIOR_WIDTH, floor: float = PRIOR_FLOOR,
                      size: int = GRID_SIZE) -> np.ndarray:
    """log prior weights (size, *centre.shape) over :func:`alternatives` (m): a Gaussian bump of sd ``width``
    around ``centre`` (clipped into the grid) mixed with the share ``floor`` spread evenly; each pixel's weights
    sum to 1. Every weight is at least floor/size, so a wrong centre costs at most log(1/floor) in log wealth
    against the even weights."""
    p = alternatives(m, size)
    c = np.clip(np.asarray(centre, dtype=np.float64), p[0], p[-1])
    z = -((p.reshape((-1,) + (1,) * c.ndim) - c[None]) ** 2) / (2.0 * width ** 2)
    z -= logsumexp(z, axis=0, keepdims=True)
    return np.logaddexp(np.log1p(-floor) + z, np.log(floor / size))


def predictive_table(trials: int, m: float, size: int = GRID_SIZE) -> np.ndarray:
    """float64 (trials + 1,): the posterior mean of q over :func:`alternatives` (m) with even prior weights after
    S = 0..trials successes out of ``trials`` (the predictive probability of the next X = 1, always in (m, 1))."""
    p = alternatives(m, size)
    log_post = log_lr_table(trials, p, m)
    log_post -= logsumexp(log_post, axis=1, keepdims=True)
    return np.exp(log_post) @ p


def kelly_bet(q, m: float) -> np.ndarray:
    """The growth-optimal bet on "q >= m" when the next X is 1 with probability ``q``: (q - m)/(m(1 - m)),
    0 where q <= m, at most (1 - 1e-9)/m (the wealth stays positive)."""
    lam = (np.asarray(q, dtype=np.float64) - m) / (m * (1.0 - m))
    return np.clip(lam, 0.0, (1.0 - 1e-9) / m)


def radius_levels(tau: float) -> np.ndarray:
    """float64 (J,): the levels m_1 = tau < m_2 < ... at which the one-sided bounds test "q >= m_j" for the
    per-pixel radii, Phi^-1(m_j) = Phi^-1(tau) + RADIUS_STEP (j - 1) up to 3 (R_p / sigma in steps of 0.25)."""
    z0 = norm.ppf(tau)
    z = z0 + RADIUS_STEP * np.arange(np.floor((3.0 - z0) / RADIUS_STEP) + 1)
    return norm.cdf(z)


def look_schedule(n_max: int, tau: float, level: float) -> tuple[int, ...]:
    """The looks of the spending bound for a horizon of ``n_max`` samples: the sample counts
    {1, 1.5, 2, 3, 4, 5, 6, 8} x 10^k up to n_max, and n_max, less those at which no count could be certified
    at the look's share level/L (tau^t > level/L); L = the number of looks kept. Fixed before sampling."""
    series = sorted({int(round(a * 10 ** k)) for k in range(1, 8) for a in LOOK_SERIES})
    looks = [t for t in series if t < n_max] + [int(n_max)]
    while looks:
        keep = [t for t in looks if t * np.log(tau) <= np.log(level / len(looks))]
        if len(keep) == len(looks):
            break
        looks = keep
    return tuple(looks)


def prior_from_map(attribution, ks, spread: float = 0.1) -> np.ndarray:
    """A prior centre of q_j(p) = P(p in the top K_j of a noisy map) from one map (e.g. the clean image's):
    Phi((K_j/100 - r_p)/spread), r_p the share of pixels whose |a| is larger than pixel p's (its rank, 0 = top).
    float64 (len(ks), *attribution.shape); use it only with samples it was not computed from."""
    a = np.abs(np.asarray(attribution, dtype=np.float64))
    flat = a.ravel()
    order = np.argsort(-flat, kind="stable")
    rank = np.empty(flat.size)
    rank[order] = (np.arange(flat.size) + 0.5) / flat.size
    rank = rank.reshape(a.shape)
    return np.stack([norm.cdf((float(k) / 100.0 - rank) / spread) for k in ks])
