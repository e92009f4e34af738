"""The statistics every verdict uses: seeded percentile bootstrap intervals, the sign test, Spearman's rank
correlation with an exact permutation p-value, and an interval for a proportion.

Verdicts rest on effect sizes with intervals: a paired comparison agrees when the 95% interval of its mean
lies on the paper's side of 0; the sign test is reported beside it, not used as a gate.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["CONFIDENCE", "TEST_LEVEL", "N_BOOT", "bootstrap_interval", "sign_test", "direction_verdict",
           "spearman_permutation", "proportion_interval", "fmt_p"]

CONFIDENCE = 0.95  #: level of every interval
TEST_LEVEL = 0.05  #: significance level of every sign / permutation test
N_BOOT = 2000


def bootstrap_interval(groups: Sequence[np.ndarray] | np.ndarray, statistic: Callable, *, n_boot: int = N_BOOT,
                       level: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): the percentile bootstrap interval of ``statistic(*resampled)``.

    ``groups`` is one array (resampled along axis 0) or a list of arrays resampled *independently* (e.g.
    images and grid targets); ``statistic`` takes as many arrays as there are groups.
    """
    single = isinstance(groups, np.ndarray)
    arrays = [np.asarray(groups)] if single else [np.asarray(g) for g in groups]
    estimate = float(statistic(*arrays))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    values = np.empty(n_boot)
    for b in range(n_boot):
        resampled = [a[rng.integers(0, len(a), len(a))] for a in arrays]
        values[b] = statistic(*resampled)
    tail = (1 - level) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail])
    return estimate, float(low), float(high)


def sign_test(differences: np.ndarray) -> tuple[int, int, float]:
    """(positives, negatives, two-sided p) of the sign test of ``differences`` (zeros dropped)."""
    from scipy.stats import binomtest

    d = np.asarray(differences, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    p = 1.0 if pos + neg == 0 else float(binomtest(pos, pos + neg, 0.5).pvalue)
    return pos, neg, p


def direction_verdict(differences: np.ndarray, *, seed: int = 0) -> tuple[str, dict]:
    """The verdict of a paired comparison whose expected direction is positive, from the effect size: agrees
    if the bootstrap interval of the mean difference lies above 0, disagrees if it lies below 0, inconclusive
    if it contains 0. The sign test is computed and returned for the text, not used to decide."""
    d = np.asarray(differences, dtype=float)
    pos, neg, p = sign_test(d)
    mean, low, high = bootstrap_interval(d, np.mean, seed=seed)
    stats = {"units": int(len(d)), "positive": pos, "negative": neg, "sign_test_p": p, "mean": mean,
             "ci_low": low, "ci_high": high, "confidence": CONFIDENCE}
    if low > 0:
        return "agrees", stats
    if high < 0:
        return "disagrees", stats
    return "inconclusive", stats


def spearman_permutation(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Spearman's rho and its one-sided permutation p-values (rho >= observed, rho <= observed): exact over
    all permutations up to 8 values, else 20,000 seeded random permutations."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)

    def rho_of(a, b):
        a, b = a - a.mean(), b - b.mean()
        denom = math.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / denom) if denom > 0 else 0.0

    observed = rho_of(rx, ry)
    if len(x) <= 8:
        perms = [rho_of(rx, ry[list(p)]) for p in itertools.permutations(range(len(x)))]
    else:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0)))
        perms = [rho_of(rx, rng.permutation(ry)) for _ in range(20000)]
    perms = np.asarray(perms)
    return observed, float((perms >= observed - 1e-12).mean()), float((perms <= observed + 1e-12).mean())


def proportion_interval(successes: int, n: int, level: float = CONFIDENCE) -> tuple[float, float, float]:
    """(share, low, high): the Clopper-Pearson (exact binomial) interval of a proportion; (nan, 0, 1) for n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), 0.0, 1.0
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="exact")
    return successes / n, float(ci.low), float(ci.high)


def fmt_p(p: float) -> str:
    """A p-value for the text: two significant digits, scientific below 0.001."""
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"
