"""One certificate for the whole top-K ladder: each pixel's certified band, jointly for every K at one alpha.

For a ladder K_1 > ... > K_m the top-K sets of one sample are nested (:mod:`certattr.engine.sparsify`), so for
pixel p the smoothed probabilities q_j = P(p in the top K_j of a noisy map) fall as j grows, and the counts of
every sample set (the n0 selection samples, the n - n0 test samples) fall with j too. Hence:

* the majority labels chosen on the n0 samples are 1 for j <= s_p and 0 after (s_p: how many K select p on
  the majority of them);
* the label-1 p-values pi_j = P(Bin(N, tau) >= c_j) *rise* with j for j <= s_p (fewer agreeing samples), and
  the label-0 p-values rise as j falls for j > s_p.

**Fixed-sequence argument.** Condition on the n0 samples (s_p is then fixed). Claim label 1 at every j <= s_p
with pi_j <= lambda_p. The false claims are j in {j <= s_p : q_j < tau}, an upper set; let j* be its smallest
element. Any false claim at j >= j* has pi_{j*} <= pi_j <= lambda_p, and P(pi_{j*} <= lambda_p) <= lambda_p
because q_{j*} < tau. So the whole label-1 chain errs with probability <= lambda_p, *whatever m*; likewise
the label-0 chain. With lambda_p = alpha/P when p has one chain (s_p = 0 or m) and alpha/(2P) when it has both,
each pixel errs with probability <= alpha/P and the map, all K together, with probability <= alpha.

**Dominance.** The paper's per-K certificates made jointly valid (Bonferroni over the m K: alpha/m each)
certify pixel p at K_j iff pi_j <= alpha/(mP); since alpha/(mP) <= alpha/(2P) <= lambda_p for m >= 2 (and
they are equal for m = 1), the band certifies a superset at every K, from the same counts.

The band needs only what a :class:`certattr.engine.certificate.Certificate` stores (majority labels and
p-values per K), so it is computed from them; it is Bonferroni over pixels whatever the certificate's
correction.
"""
from __future__ import annotations

import numpy as np

__all__ = ["band_levels", "band_labels", "band_extent", "BAND_ABSTAIN"]

BAND_ABSTAIN = -1  #: same value as certattr.engine.certificate.ABSTAIN (kept here to avoid a cycle)


def band_levels(majority: np.ndarray, alpha: float, n_pixels: int | None = None) -> np.ndarray:
    """lambda_p, float64 (H, W): alpha/P where the n0 majority labels of the m K are all 1 or all 0 (one chain),
    alpha/(2P) where they change along the ladder (two chains). ``majority`` int (m, H, W), K largest first
    (any axes after the first; P = ``n_pixels``, default H*W of the last two axes)."""
    majority = np.asarray(majority)
    n_pixels = majority.shape[-2] * majority.shape[-1] if n_pixels is None else int(n_pixels)
    ones = (majority == 1).sum(axis=0)
    one_chain = (ones == 0) | (ones == majority.shape[0])
    return np.where(one_chain, alpha / n_pixels, alpha / (2 * n_pixels))


def band_labels(majority: np.ndarray, pvalues: np.ndarray, alpha: float, n_pixels: int | None = None) -> np.ndarray:
    """int8 (m, H, W) in {1, 0, -1}: the band certificate's label of each pixel at each K of the ladder (K
    largest first): the n0 majority label where its p-value is <= lambda_p (:func:`band_levels`), else abstain.
    Jointly valid for all pixels and all K with probability >= 1 - alpha (see the module docstring)."""
    majority, pvalues = np.asarray(majority), np.asarray(pvalues)
    certified = pvalues <= band_levels(majority, alpha, n_pixels)[None]
    return np.where(certified, majority, BAND_ABSTAIN).astype(np.int8)


def band_extent(labels: np.ndarray, ks) -> tuple[np.ndarray, np.ndarray]:
    """The band of each pixel from band labels (m, H, W): ``inside`` float (H, W) = the smallest K at which it is
    certified important (NaN if none: then it is in no certified top-K set) and ``outside`` = the largest K at
    which it is certified unimportant (NaN if none). A pixel's top-K rank is certified to lie in the top
    ``inside``% and outside the top ``outside``%."""
    labels = np.asarray(labels)
    ks = np.asarray([float(k) for k in ks])
    inside = np.full(labels.shape[1:], np.nan)
    outside = np.full(labels.shape[1:], np.nan)
    for i in np.argsort(-ks):  # largest K first: a smaller K certified important overwrites
        inside[labels[i] == 1] = ks[i]
    for i in np.argsort(ks):  # smallest K first: a larger K certified unimportant overwrites
        outside[labels[i] == 0] = ks[i]
    return inside, outside
