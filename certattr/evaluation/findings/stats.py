"""The statistics every verdict uses: seeded percentile bootstrap intervals that resample independent clusters
(an image with all its measurements, or a grid target), the sign test over clusters, Spearman's rank correlation
with an exact permutation p-value, and an interval for a proportion.

Verdicts rest on effect sizes with intervals: a paired comparison agrees when the 95% interval of its mean
lies on the paper's side of 0; the sign test is reported beside it, not used as a gate. Below
:data:`MIN_CLUSTERS` independent clusters no interval is computed and the verdict is "inconclusive".
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["CONFIDENCE", "TEST_LEVEL", "N_BOOT", "MIN_CLUSTERS", "bootstrap_interval", "cluster_bootstrap",
           "sign_test", "direction_verdict", "spearman_permutation", "proportion_interval", "fmt_p"]

CONFIDENCE = 0.95  #: level of every interval
TEST_LEVEL = 0.05  #: significance level of every sign / permutation test
N_BOOT = 2000
MIN_CLUSTERS = 8  #: fewer independent images (or grid targets) than this: no interval, the verdict is inconclusive


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


def cluster_bootstrap(clusters: Sequence[np.ndarray] | np.ndarray, statistic: Callable, *, n_boot: int = N_BOOT,
                      level: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): the percentile bootstrap of ``statistic(*unit_indices)`` that resamples whole
    clusters with replacement.

    ``clusters`` is one array of cluster labels, one per unit (e.g. the image id of every (model, image, method,
    layer) measurement), or a list of such arrays resampled independently (images and grid targets). Each
    bootstrap draw takes as many clusters as there are (sorted labels, drawn with a seeded PCG64 generator) and
    passes the indices of all their units, in the order drawn, to ``statistic``. With one unit per cluster this
    is the ordinary bootstrap of :func:`bootstrap_interval` with the same draws."""
    single = isinstance(clusters, np.ndarray)
    groups = [np.asarray(clusters)] if single else [np.asarray(c) for c in clusters]
    members = []
    for labels in groups:
        keys, inverse = np.unique(labels.astype(str), return_inverse=True)
        members.append([np.flatnonzero(inverse == j) for j in range(len(keys))])
    estimate = float(statistic(*[np.arange(len(labels)) for labels in groups]))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    values = np.empty(n_boot)
    for b in range(n_boot):
        drawn = []
        for m in members:
            pick = rng.integers(0, len(m), len(m))
            drawn.append(np.concatenate([m[j] for j in pick]))
        values[b] = statistic(*drawn)
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


def direction_verdict(differences: np.ndarray, clusters: np.ndarray | None = None, *,
                      seed: int = 0) -> tuple[str, dict]:
    """The verdict of a paired comparison whose expected direction is positive, from the effect size: agrees
    if the bootstrap interval of the mean difference lies above 0, disagrees if it lies below 0, inconclusive
    if it contains 0 or if there are fewer than :data:`MIN_CLUSTERS` clusters (then no interval: ``ci_low`` and
    ``ci_high`` are None).

    ``differences``: one per unit; ``clusters``: the unit's independent cluster (its image), one per unit (None:
    every unit is its own cluster). The mean is over units; the interval resamples clusters; the sign test, which
    needs independent observations, is over the clusters' mean differences. Counts of units that rise and fall
    are returned as ``positive`` and ``negative`` (descriptive), the sign test's as ``clusters_positive`` and
    ``clusters_negative``."""
    d = np.asarray(differences, dtype=float)
    labels = np.arange(len(d)).astype(str) if clusters is None else np.asarray(clusters).astype(str)
    keys, inverse = np.unique(labels, return_inverse=True)
    cluster_means = np.array([d[inverse == j].mean() for j in range(len(keys))])
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    c_pos, c_neg, p = sign_test(cluster_means)
    stats = {"units": int(len(d)), "clusters": int(len(keys)), "positive": pos, "negative": neg,
             "clusters_positive": c_pos, "clusters_negative": c_neg, "sign_test_p": p,
             "mean": float(d.mean()) if len(d) else float("nan"), "ci_low": None, "ci_high": None,
             "confidence": CONFIDENCE}
    if len(keys) < MIN_CLUSTERS:
        return "inconclusive", stats
    mean, low, high = cluster_bootstrap(labels, lambda i: d[i].mean(), seed=seed)
    stats.update(mean=mean, ci_low=low, ci_high=high)
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
