"""The answers the course's checks compare with, computed independently of the chapters' solutions.

One function per exercise, named after it and taking the student function's arguments (their names name the
arguments in a check's messages). They compute with no certattr code (the re-certify check only reads its input
maps from the engine's sample cache) and none of the shortcuts a solution would take (``numpy.percentile``,
``scipy.stats``, ``pandas.groupby``): brute force over pixels and rows, exact
binomial tails with ``math.comb``, exact rationals with ``fractions.Fraction``, closed forms with
``statistics.NormalDist``, plain loops with ``math.fsum``. Speed does not matter here: the inputs are small.
"""
from __future__ import annotations

import math
import statistics
from fractions import Fraction

import numpy as np

from .cases import Raises


# --- shared brute-force references -----------------------------------------------------------------------------
def binomial_tail(n: int, p: float, c: int) -> float:
    """P(Bin(n, p) >= c), summed term by term with exact binomial coefficients."""
    if c <= 0:
        return 1.0
    return math.fsum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(c, n + 1))


def exact_topk(values, k: float) -> list[bool]:
    """For each value, is |value| > t_K, the (100 - K)-th linear-interpolation percentile of the |values|, in
    exact rational arithmetic (what ``numpy.percentile`` computes up to rounding)."""
    a = [abs(Fraction(float(v))) for v in values]
    s = sorted(a)
    q = (100 - Fraction(repr(float(k)))) * (len(s) - 1) / 100
    lo = math.floor(q)
    hi = min(lo + 1, len(s) - 1)
    t = s[lo] + (q - lo) * (s[hi] - s[lo])
    return [x > t for x in a]


def brute_abstain(samples: np.ndarray, k: float, tau: float, n0: int, alpha: float) -> float:
    """Abstained share of the Bonferroni certificate of the maps ``samples`` (n, H, W), pixel by pixel: the
    first ``n0`` maps vote each pixel's label, the other ``n - n0`` test it."""
    n, h, w = samples.shape
    member = [exact_topk(samples[i].ravel().tolist(), k) for i in range(n)]
    n_test, n_pix = n - n0, h * w
    tails = [binomial_tail(n_test, tau, c) for c in range(n_test + 1)]
    abstain = 0
    for p in range(n_pix):
        ones_select = sum(member[i][p] for i in range(n0))
        label = 1 if 2 * ones_select > n0 else 0
        agree = sum(member[i][p] == bool(label) for i in range(n0, n))
        abstain += not tails[agree] <= alpha / n_pix
    return abstain / n_pix


# --- method --------------------------------------------------------------------------------------------------
def radius_and_abstain(samples, k, sigma, tau, n0, alpha) -> tuple[float, float]:
    return sigma * statistics.NormalDist().inv_cdf(tau), brute_abstain(samples, k, tau, n0, alpha)


def smallest_count(n_test, tau, alpha, n_pixels) -> int:
    threshold = alpha / n_pixels
    return next((c for c in range(n_test + 1) if binomial_tail(n_test, tau, c) <= threshold), n_test + 1)


# --- robustness ----------------------------------------------------------------------------------------------
def pooled_and_mean_abstain(rows) -> tuple[float, float]:
    pooled = math.fsum(rows.n_abstain) / math.fsum(rows.n_pixels)
    mean = math.fsum(a / p for a, p in zip(rows.n_abstain, rows.n_pixels)) / len(rows)
    return pooled, mean


def sigma_for_radius(radius, tau) -> float:
    return radius / statistics.NormalDist().inv_cdf(tau)


def abstain_at_tau(engine, image, image_id, target, k, tau, alpha, *, n0: int) -> float:
    """The brute-force certificate of the engine's samples (read from its cache: the inputs filled it), whose
    first ``n0`` samples select each pixel's label."""
    return brute_abstain(engine.sample(image, image_id, target), k, tau, n0, alpha)


# --- localization --------------------------------------------------------------------------------------------
def my_certified_gridpg(labels, cell) -> float:
    h, w = labels.shape
    inside = total = 0
    for i in range(h):
        for j in range(w):
            if labels[i, j] == 1:
                total += 1
                inside += (2 * (i // (h // 2)) + j // (w // 2)) == cell
    return inside / total if total else 0.0


def mean_gridpg(rows, drop_empty) -> float:
    if drop_empty:
        values = [v for v, e in zip(rows.certified_gridpg, rows.no_certified) if not e]
    else:
        values = [0.0 if e else v for v, e in zip(rows.certified_gridpg, rows.no_certified)]
    return math.fsum(values) / len(values) if values else math.nan


def hardest_cell(rows, sigma, k) -> int:
    sums, counts = [0.0] * 4, [0] * 4
    for s, kk, cell, v in zip(rows.sigma, rows.k, rows.target_cell, rows.certified_gridpg):
        if s == sigma and kk == k:
            sums[cell] += v
            counts[cell] += 1
    means = [sums[c] / counts[c] for c in range(4)]
    return min(range(4), key=lambda c: (means[c], c))


# --- faithfulness --------------------------------------------------------------------------------------------
def delete_pixels(image, mask, fill) -> np.ndarray:
    colour = [float(fill)] * 3 if isinstance(fill, (int, float)) else [float(v) for v in fill]
    _, h, w = image.shape
    return np.array([[[colour[c] if bool(mask[i, j]) else float(image[c, i, j]) for j in range(w)]
                      for i in range(h)] for c in range(3)])


def trapezoid_auc(probabilities) -> float:
    p = [Fraction(float(v)) for v in probabilities]
    steps = len(p) - 1
    return float(sum((Fraction(1, steps) * p[j] + Fraction(1, steps) * p[j + 1]) / 2 for j in range(steps)))


def random_pixel_mask(height, width, n_removed, seed) -> tuple[tuple[int, int], int]:
    """What every draw must be: the mask's shape and its number of removed pixels."""
    return (height, width), n_removed


def random_pixel_mask_repeats(height, width, n_removed, seed) -> bool:
    """Two draws from the same seed are the same mask."""
    return True


def random_pixel_mask_frequencies(height, width, n_removed, seeds) -> np.ndarray:
    """How often each pixel is removed, over many seeds, when n_removed of the height * width pixels are drawn
    uniformly without replacement: n_removed / (height * width) everywhere."""
    return np.full((height, width), n_removed / (height * width))


# --- tradeoff ------------------------------------------------------------------------------------------------
def strict_topk(attribution, k) -> np.ndarray:
    return np.array(exact_topk(attribution.ravel().tolist(), k)).reshape(attribution.shape)


def best_by_harmonic(points) -> dict:
    best = {}
    for layer in sorted(set(points.layer)):
        scores = {}
        for m, r, g, lay in zip(points.method_title, points.robustness, points.certified_gridpg, points.layer):
            if lay == layer:
                scores.setdefault(m, []).append(0.0 if r + g == 0 else 2 * r * g / (r + g))
        best[layer] = max(scores, key=lambda m: math.fsum(scores[m]) / len(scores[m]))
    return best


def pearson(x, y) -> float:
    x, y = list(map(float, x)), list(map(float, y))
    n = len(x)
    if n < 2:
        return math.nan
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return math.nan
    return math.fsum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


# --- vit -----------------------------------------------------------------------------------------------------
def vit_grid(size, patch):
    """(number of patches, patches per side), or :class:`Raises` ValueError when patch does not divide size."""
    if size % patch:
        return Raises(ValueError, "{size} is not divisible by {patch}, raise ValueError")
    side = size // patch
    return side * side, side


def softmax_probability(logits, index) -> float:
    z = [float(v) for v in logits]
    m = max(z)
    return math.exp(z[index] - m) / math.fsum(math.exp(v - m) for v in z)


def token_map(patches, reduce) -> list[list[float]]:
    d, h, w = patches.shape
    one = abs if reduce == "l1" else float
    return [[math.fsum(one(float(patches[c, i, j])) for c in range(d)) for j in range(w)] for i in range(h)]


# --- gallery -------------------------------------------------------------------------------------------------
def lowest_certified_ss(ss, labels) -> float:
    h, w = ss.shape
    ones = [float(ss[i, j]) for i in range(h) for j in range(w) if labels[i, j] == 1]
    return min(ones) if ones else math.nan


def overlay_confidence(alpha, m) -> float:
    return min(1.0, max(0.0, 1 - m * alpha))


# --- certificates --------------------------------------------------------------------------------------------
def n_needed(d, tau, eta) -> int:
    """The smallest n with sqrt(ln(2d / (1 - eta)) / (2n)) <= 1 - tau, by counting up."""
    n = 1
    while math.sqrt(math.log(2 * d / (1 - eta)) / (2 * n)) > 1 - tau:
        n += 1
    return n


def tangent_cosine(h, a) -> float:
    """The smallest cos(h, h + w) over |w| = a (|h| = h), by a dense scan of the circle refined by golden-section
    search (h along the x axis; the smallest cosine over the ball is reached on its boundary)."""
    theta = np.linspace(0, np.pi, 200_001)
    w = np.stack([a * np.cos(theta), a * np.sin(theta)])
    hw = np.array([[h], [0.0]]) + w
    cos = hw[0] / np.linalg.norm(hw, axis=0)
    i = int(np.argmin(cos))
    lo, hi = theta[max(i - 1, 0)], theta[min(i + 1, theta.size - 1)]

    def cosine(t):
        return (h + a * math.cos(t)) / math.hypot(h + a * math.cos(t), a * math.sin(t))

    for _ in range(100):
        m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        lo, hi = (lo, m2) if cosine(m1) < cosine(m2) else (m1, hi)
    return cosine((lo + hi) / 2)


def n_for_mc(alpha, ratio) -> int:
    """The smallest N with (1 + sqrt(2 ln(1/alpha))) / sqrt(N) <= ratio, by counting up."""
    const = 1 + math.sqrt(2 * math.log(1 / alpha))
    n = 1
    while const / math.sqrt(n) > ratio:
        n += 1
    return n


# --- levine ------------------------------------------------------------------------------------------------------
def topk_overlap_share(clean, perturbed, k) -> float:
    """By sorting (value, index) pairs in plain Python: the k largest, equal values by the lower flat index."""
    def top(a):
        flat = [float(v) for v in np.asarray(a).ravel()]
        return {i for _, i in sorted(((-v, i) for i, v in enumerate(flat)))[:k]}

    return len(top(clean) & top(perturbed)) / k


def same_norm_step(x, u, r) -> float:
    """The exact s: pixel i moves s·|u_i| until it reaches its bound at s_i = room_i / |u_i| (room: 1 - x_i upwards,
    x_i downwards), so ||clip(x + s u) - x||^2 = sum over reached pixels of room_i^2 + s^2 · sum over the others of
    u_i^2; walk the s_i in increasing order and solve the quadratic inside the segment that holds r."""
    pixels = []
    for xi, ui in zip(np.asarray(x, dtype=float).ravel(), np.asarray(u, dtype=float).ravel()):
        if ui != 0:
            room = (1.0 - xi) if ui > 0 else xi
            pixels.append((room / abs(ui), room, ui * ui))
    pixels.sort()
    reached, moving = 0.0, math.fsum(p[2] for p in pixels)
    for cap, room, u2 in pixels:
        if moving > 0 and reached + cap * cap * moving >= r * r:
            return math.sqrt((r * r - reached) / moving)
        reached += room * room
        moving -= u2
    return math.nan  # r cannot be reached
