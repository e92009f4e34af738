"""Every exercise of the book, declared as data: one list per chapter (the chapter's declaration names its list).

Each exercise names the function the student writes, its points, estimated time and hint, and its check: the
inputs (literal, or built here from a fixed seed), the oracle of :mod:`certattr.course.oracles` that answers
them independently, and the rule of :mod:`certattr.course.cases` that compares. :func:`check
<certattr.course.checks.check>` runs them all with one loop.

The exercises are numbered in one sequence over the whole book (as sphinx-exercise does), in the chapters' order
(:class:`certattr.course.catalogue.Course`).
"""
from __future__ import annotations

import functools
import tempfile

import numpy as np
import torch

from ..engine.smoothing import SmoothedAttribution
from ..engine.validation import CertattrError
from ..models.testing import tiny_model
from . import oracles as o
from .cases import (Array, Case, Cases, Close, CountedMask, Equal, Exercise, Integer, Mask, ModelCalls, Pair,
                    UniformDraws)

__all__ = ["ALL", "exercise", "METHOD", "ROBUSTNESS", "LOCALIZATION", "FAITHFULNESS", "TRADEOFF", "VIT", "GALLERY",
           "CERTIFICATES", "LEVINE"]


# --- method ------------------------------------------------------------------------------------------------------
def _samples(seed: int, n: int = 60, size: int = 12) -> np.ndarray:
    """Noisy maps (n, size, size) of one smooth map: pixels near the peak agree across samples, those near the
    threshold do not."""
    gen = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    base = np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.08) + 0.3 * x
    return (base[None] + 0.12 * gen.standard_normal((n, size, size))).astype(np.float32)


def _tau_inputs():
    wide = _samples(3, n=150, size=8)
    return [(_samples(0), 50, 0.15, 0.75, 10, 0.05), (wide, 50, 0.15, 0.75, 10, 0.05),
            (wide, 50, 0.15, 0.9, 10, 0.05), (wide, 30, 0.25, 0.9, 10, 0.05), (_samples(1), 25, 0.25, 0.6, 5, 0.1)]


def _count_why(got, expected, fields) -> str:
    n_test = fields["n_test"]
    if got > n_test:
        return "which is past every count that certifies" if expected <= n_test else "which is out of range"
    return "which does not certify" if got < expected else "which certifies, but is not the smallest"


METHOD = [
    Exercise("method-tau", "Predict, then measure", "radius_and_abstain", 2, 15,
             "R = sigma * Phi^-1(tau); certattr.certify_maps(samples, [k], sigma=..., n0=..., tau=..., alpha=...) "
             "gives a Certificate with .radius and .fractions()[float(k)]['abstain'].",
             (Cases(_tau_inputs, o.radius_and_abstain,
                    Pair(Close(1e-9, "which is not sigma * Phi^-1(tau)", name="R = "),
                         Close(1e-12, "the radius is right but the share is not", name="an abstained share of "),
                         what="a pair (R, abstained share)")),)),
    Exercise("method-count", "How many agreeing samples?", "smallest_count", 1, 10,
             "the p-value of a count c is P(Bin(n_test, tau) >= c) = binom.sf(c - 1, n_test, tau), and it must be "
             "<= alpha / n_pixels (Bonferroni).",
             (Cases(lambda: [(90, 0.75, 0.001, 224 ** 2), (50, 0.6, 0.01, 100), (40, 0.9, 0.001, 1000),
                             (200, 0.75, 0.001, 224 ** 2), (30, 0.55, 0.05, 1), (12, 0.95, 0.001, 50176)],
                    o.smallest_count, Integer(_count_why)),),
             secrets=("88",)),
]


# --- robustness --------------------------------------------------------------------------------------------------
def _abstain_table(seed: int, same_size: bool):
    """Five images' abstained pixel counts (columns image_id, n_pixels, n_abstain, abstain)."""
    import pandas as pd

    gen = np.random.default_rng(seed)
    sizes = np.full(5, 224 * 224) if same_size else gen.choice([64 * 64, 128 * 96, 224 * 224, 300 * 200], 5)
    n_abstain = np.array([int(gen.integers(0, s)) for s in sizes])
    return pd.DataFrame({"image_id": [f"img{i}" for i in range(5)], "n_pixels": sizes, "n_abstain": n_abstain,
                         "abstain": n_abstain / sizes})


def _pooled_inputs():
    for seed, same in [(0, False), (1, False), (2, True)]:
        kind = "the same size" if same else "different sizes"
        yield Case((_abstain_table(seed, same),), about=f"pooled_and_mean_abstain(5 images of {kind})")


#: the re-certify check's engine: n samples of which the first n0 select each pixel's label
_RECERTIFY_N, _RECERTIFY_N0 = 60, 10


def _recertify_inputs():
    """An engine whose sample cache (a temporary folder, open while the cases run) holds one image's samples."""
    model = tiny_model(seed=3)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(11))
    with tempfile.TemporaryDirectory(prefix="certattr-check-") as cache:
        engine = SmoothedAttribution(model, "grad", "input", 0.25, n=_RECERTIFY_N, n0=_RECERTIFY_N0, seed=0,
                                     chunk_size=20, cache=cache, progress=False)
        engine.sample(image, "check-image", 2)  # fills the cache
        model.gradient_memo().clear()  # so that an answer that resamples calls the model (the memo would answer it)
        for k, tau, alpha in [(50, 0.75, 0.05), (50, 0.6, 0.05), (20, 0.6, 0.1)]:
            yield Case((engine, image, "check-image", 2, k, tau, alpha), watch=(ModelCalls(model),),
                       about=f"abstain_at_tau(engine, image, 'check-image', 2, k={k}, tau={tau}, alpha={alpha})")


ROBUSTNESS = [
    Exercise("robustness-pooled", "Pooled or averaged?", "pooled_and_mean_abstain", 1, 10,
             "pooled: sum the counts first, then divide; mean: divide per image, then average.",
             (Cases(_pooled_inputs, o.pooled_and_mean_abstain,
                    Pair(Close(why="which is not sum(n_abstain) / sum(n_pixels)", name="a pooled share of "),
                         Close(why="which is not the mean of the per-image shares", name="a mean of "),
                         what="a pair (pooled, mean)")),)),
    Exercise("robustness-radii", "Radii by hand", "sigma_for_radius", 1, 10,
             "R = sigma * Phi^-1(tau), so sigma = R / Phi^-1(tau) (scipy.stats.norm.ppf is Phi^-1).",
             (Cases(lambda: [(0.25, 0.75), (0.1, 0.75), (0.5, 0.9), (0.2, 0.6), (1.0, 0.99)], o.sigma_for_radius,
                    Close(1e-7, "which does not give R = {radius} at tau = {tau}")),),
             secrets=("0.371",)),
    Exercise("robustness-recertify", "Re-certify without resampling", "abstain_at_tau", 2, 15,
             "engine.certify(image, image_id, target, ks=[k], tau=tau, alpha=alpha) reads the samples from the "
             "cache; take .fractions()[float(k)]['abstain'].",
             (Cases(_recertify_inputs, functools.partial(o.abstain_at_tau, n0=_RECERTIFY_N0),
                    Close(1e-12, "which is not the abstained share at K = {k}")),)),
]


# --- localization ------------------------------------------------------------------------------------------------
def _gridpg_inputs():
    """Label maps (H, W) of 1 / 0 / -1 (certified '1', certified '0', abstained), each with every target cell."""
    gen = np.random.default_rng(5)
    only = np.zeros((8, 12), dtype=np.int8)
    only[:4, 6:] = 1
    maps = [np.ones((8, 8), dtype=np.int8), np.zeros((8, 8), dtype=np.int8), np.full((6, 10), -1, dtype=np.int8),
            only]
    maps += [gen.choice(np.array([1, 0, -1], dtype=np.int8), size=shape, p=[0.3, 0.4, 0.3])
             for shape in [(8, 8), (6, 10), (10, 4)]]
    for labels in maps:
        kind = ("every pixel certified '1'" if (labels == 1).all() else
                "no pixel certified '1'" if not (labels == 1).any() else f"a {labels.shape[0]}x{labels.shape[1]} "
                                                                          f"label map")
        for cell in range(4):
            yield Case((labels, cell), about=f"my_certified_gridpg({kind}, cell={cell})")


def _gridpg_table(seed: int):
    """Certified GridPG rows of 3 grids x 4 target cells at two sigmas and two K, some targets empty."""
    import pandas as pd

    gen = np.random.default_rng(seed)
    rows = []
    for sigma in (0.15, 0.25):
        for k in (50.0, 10.0):
            for grid in range(3):
                for cell in range(4):
                    empty = bool(gen.random() < 0.3)
                    value = 0.0 if empty else float(gen.uniform(0.1, 1.0)) * (0.5 + 0.15 * cell) % 1.0
                    rows.append({"sigma": sigma, "k": k, "grid_id": f"g{grid}", "target_cell": cell,
                                 "certified_gridpg": value, "no_certified": empty})
    return pd.DataFrame(rows)


def _empty_inputs():
    every_empty = _gridpg_table(2).head(4).assign(no_certified=True, certified_gridpg=0.0)
    for rows in [_gridpg_table(0), _gridpg_table(1), every_empty]:
        n_empty = int(rows.no_certified.sum())
        what = "every target empty" if n_empty == len(rows) else f"{n_empty} empty targets"
        for drop in (False, True):
            yield Case((rows, drop), about=f"mean_gridpg(a table of {len(rows)} rows with {what}, drop_empty={drop})")


LOCALIZATION = [
    Exercise("localization-gridpg", "The random baseline", "my_certified_gridpg", 1, 10,
             "only pixels labelled 1 count; cell c of a 2x2 grid is row c // 2, column c % 2, each half of the "
             "map's height and width; 0.0 when nothing is certified '1'.",
             (Cases(_gridpg_inputs, o.my_certified_gridpg, Close()),)),
    Exercise("localization-empty", "Empty certificates", "mean_gridpg", 1, 10,
             "the rows with no_certified True count as 0, or are left out with drop_empty=True; NaN if none is left.",
             (Cases(_empty_inputs, o.mean_gridpg, Close()),)),
    Exercise("localization-hardest", "Which cell is hardest?", "hardest_cell", 1, 10,
             "select the rows at that sigma and K, group by target_cell, take the mean of certified_gridpg and the "
             "cell with the smallest mean.",
             (Cases(lambda: [(_gridpg_table(seed), sigma, k) for seed in (0, 1, 3)
                             for sigma, k in [(0.15, 50.0), (0.25, 10.0)]],
                    o.hardest_cell,
                    Integer("which is not the cell with the lowest mean Certified GridPG at that sigma and K")),)),
]


# --- faithfulness ------------------------------------------------------------------------------------------------
def _fill_inputs():
    gen = torch.Generator().manual_seed(2)
    for h, w, fill in [(5, 6, 0.0), (4, 4, 1.0), (6, 3, (0.485, 0.456, 0.406)), (3, 7, 0.5)]:
        image = torch.rand(3, h, w, generator=gen)
        mask = torch.rand(h, w, generator=gen) < 0.4
        yield Case((image, mask, fill),
                   about=f"delete_pixels(an image (3, {h}, {w}), a mask of {int(mask.sum())} pixels, fill={fill})")


def _auc_inputs():
    gen = np.random.default_rng(8)
    cases = [[0.9, 0.5], [1.0, 0.5, 0.25, 0.0], [0.2, 0.2, 0.2]] + [gen.uniform(0, 1, m).tolist() for m in (4, 5, 7)]
    for probs in cases:
        yield Case((np.array(probs),), about=f"trapezoid_auc of the {len(probs)} probabilities "
                                             f"{[round(p, 3) for p in probs]}")


def _twice(fn, *args) -> bool:
    """Whether two calls with the same arguments (the same seed) give the same array."""
    return bool(np.array_equal(np.asarray(fn(*args)), np.asarray(fn(*args))))


def _over_seeds(fn, height, width, n_removed, seeds) -> np.ndarray:
    """The masks (len(seeds), height, width) drawn with each seed, as floats."""
    return np.stack([np.asarray(fn(height, width, n_removed, seed), dtype=float) for seed in seeds])


FAITHFULNESS = [
    Exercise("faithfulness-fill", "Does the fill matter?", "delete_pixels", 1, 10,
             "copy the image (image.clone()), then set all three channels of the masked pixels to the fill colour "
             "(one value, or three).",
             (Cases(_fill_inputs, o.delete_pixels, Array(atol=1e-6, tensor=True), unchanged=(0,)),)),
    Exercise("faithfulness-auc", "AUC by hand", "trapezoid_auc", 1, 10,
             "the steps 0..J become t_j = j / J; the area is the sum of (t_{j+1} - t_j) (p_j + p_{j+1}) / 2.",
             (Cases(_auc_inputs, o.trapezoid_auc, Close()),)),
    Exercise("faithfulness-random", "Random pixels", "random_pixel_mask", 1, 10,
             "np.random.default_rng(seed).choice(height * width, n_removed, replace=False) picks distinct pixels.",
             (Cases(lambda: [(6, 8, 10, 0), (10, 10, 0, 0), (4, 5, 20, 0), (224, 224, 5000, 0)],
                    o.random_pixel_mask, CountedMask()),
              Cases(lambda: [(6, 8, 10, 7)], o.random_pixel_mask_repeats,
                    Equal(message="gives different masks for the same seed: draw from a generator seeded with "
                                  "`seed`"), probe=_twice),
              Cases(lambda: [Case((4, 5, 5, range(400)), about="random_pixel_mask(4, 5, 5, seed=0..399)")],
                    o.random_pixel_mask_frequencies, UniformDraws(), probe=_over_seeds))),
]


# --- tradeoff ----------------------------------------------------------------------------------------------------
def _strict_inputs():
    gen = np.random.default_rng(9)
    relu = np.maximum(gen.standard_normal((8, 8)), 0)  # many zeros, like a CAM after its ReLU
    ints = gen.integers(0, 4, size=(6, 6)).astype(float)  # many ties
    cases = [(np.full((8, 8), 0.7), 50), (np.zeros((5, 7)), 10), (gen.standard_normal((8, 8)), 50),
             (gen.standard_normal((7, 9)), 25), (relu, 50), (relu, 20), (ints, 50), (ints, 30),
             (-np.abs(gen.standard_normal((6, 6))), 10)]
    for attribution, k in cases:
        kind = ("a constant map" if np.ptp(attribution) == 0 else
                "a map with ties" if len(np.unique(attribution)) < attribution.size else "a map")
        yield Case((attribution, k), about=f"strict_topk({kind} of shape {attribution.shape}, k={k})")


def _tradeoff_points(seed: int):
    """Robustness and Certified GridPG of 4 methods x 2 models at two layers, with a lopsided method: at the final
    layer Grad has the best geometric mean, not the best harmonic one."""
    import pandas as pd

    gen = np.random.default_rng(seed)
    rows = [{"layer": layer, "method_title": m, "model": model, "robustness": float(gen.uniform(0, 1)),
             "certified_gridpg": float(gen.uniform(0, 1))}
            for layer in ("input", "final") for m in ("Grad", "GradCam", "RISE", "LRP") for model in ("a", "b")]
    frame = pd.DataFrame(rows)
    final, axes = frame.layer == "final", ["robustness", "certified_gridpg"]
    frame.loc[final & (frame.method_title == "Grad"), axes] = [0.99, 0.36]
    frame.loc[final & (frame.method_title == "RISE"), axes] = [0.58, 0.58]
    frame.loc[final & (frame.method_title.isin(["GradCam", "LRP"])), "certified_gridpg"] = 0.1
    frame.loc[0, ["robustness", "certified_gridpg"]] = [0.0, 0.0]
    return frame


def _string_keys(result) -> dict:
    if not isinstance(result, dict):
        raise TypeError("not a dict")
    return {str(key): value for key, value in result.items()}


def _pearson_inputs():
    gen = np.random.default_rng(4)
    x = gen.uniform(0, 1, 12)
    cases = [(x, 0.5 * x + 0.3 * gen.standard_normal(12)), (x, 2 * x + 1), (x, -x), (x, np.exp(3 * x)),
             (x[:2], x[:2] ** 2 + 1), (x, np.full(12, 0.8)), (x[:1], x[:1])]
    for a, b in cases:
        kind = ("a constant y" if np.ptp(b) == 0 else "a single point" if len(a) < 2 else
                "y = exp(3x) (monotone but not linear)" if np.allclose(b, np.exp(3 * a)) else f"{len(a)} points")
        yield Case((a, b), about=f"pearson(x, y) with {kind}")


TRADEOFF = [
    Exercise("tradeoff-constant", "A constant map", "strict_topk", 2, 15,
             "t_K = np.percentile(np.abs(a), 100 - k); a pixel is selected only if |a| > t_K (strictly), so tied "
             "pixels at the threshold are not.",
             (Cases(_strict_inputs, o.strict_topk, Mask()),)),
    Exercise("tradeoff-harmonic", "Another balance score", "best_by_harmonic", 1, 10,
             "harmonic mean 2rg/(r+g), 0 when r + g = 0; per layer, average it per method_title and take the largest.",
             (Cases(lambda: [Case((_tradeoff_points(seed),), about="best_by_harmonic(points of 16 rows)")
                             for seed in (0, 1, 2)],
                    o.best_by_harmonic, Equal(_string_keys, what="a dict {layer: method_title}")),)),
    Exercise("tradeoff-correlation", "The grid's own robustness", "pearson", 1, 10,
             "cov(x, y) / (std(x) std(y)); NaN for fewer than two values or a constant sequence.",
             (Cases(_pearson_inputs, o.pearson, Close()),)),
]


# --- vit ---------------------------------------------------------------------------------------------------------
def _pair_of_ints(result) -> tuple:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError("not a pair")
    return tuple(int(v) for v in result)


def _softmax_inputs():
    gen = np.random.default_rng(6)
    cases = [([2.0, 1.0, 0.1], 0), ([2.0, 1.0, 0.1], 2), (gen.standard_normal(1000).tolist(), 17),
             ([1000.0, 999.0, 0.0], 1), ([-800.0, -801.0, -900.0], 0), ([0.0] * 10, 4)]
    for logits, index in cases:
        big = max(abs(v) for v in logits) > 100
        arg = torch.tensor(logits, dtype=torch.float64) if len(logits) == 1000 else np.array(logits)
        shown = [round(v, 2) for v in logits[:3]]
        yield Case((arg, index), about=f"softmax_probability({'large logits ' if big else ''}{shown}"
                                       f"{'...' if len(logits) > 3 else ''}, {index})")


def _overflow_why(got, expected, fields) -> str:
    if max(abs(float(v)) for v in fields["logits"]) > 100:
        return "exp() of a large logit overflows: subtract the largest logit first"
    return ""


def _token_inputs():
    gen = torch.Generator().manual_seed(4)
    cancel = torch.zeros(4, 2, 2)
    cancel[0, 0, 0], cancel[1, 0, 0] = 5.0, -5.0  # a large token whose coordinates cancel
    for patches in [torch.randn(8, 3, 3, generator=gen), torch.randn(768, 2, 5, generator=gen), cancel]:
        for reduce in ("l1", "sum"):
            yield Case((patches, reduce), about=f"token_map(tokens of shape {tuple(patches.shape)}, reduce={reduce!r})")


VIT = [
    Exercise("vit-patches", "Patch size", "vit_grid", 1, 5,
             "a side of s pixels holds s // p patches; the map is side x side.",
             (Cases(lambda: [(224, 16), (384, 16), (32, 8), (512, 32), (64, 16), (100, 16)], o.vit_grid,
                    Equal(_pair_of_ints, what="a pair (number of patches, patches per side)")),),
             secrets=("576",)),
    Exercise("vit-softmax", "Why the LayerNorm matters", "softmax_probability", 1, 10,
             "softmax(z)_i = exp(z_i - max z) / sum_j exp(z_j - max z).",
             (Cases(_softmax_inputs, o.softmax_probability, Close(1e-9, _overflow_why)),)),
    Exercise("vit-tokens", "Channel reduction", "token_map", 1, 10,
             "reduce over the first (hidden) dimension: |x| summed for 'l1', x summed for 'sum'.",
             (Cases(_token_inputs, o.token_map, Array(rtol=1e-5, atol=1e-5)),)),
]


# --- gallery -----------------------------------------------------------------------------------------------------
def _ss_inputs():
    gen = np.random.default_rng(12)
    for shape, p_one in [((8, 8), 0.3), ((5, 9), 0.1), ((6, 6), 0.0), ((4, 4), 1.0)]:
        ss = gen.uniform(0, 1, shape).astype(np.float32)
        labels = np.where(gen.random(shape) < p_one, 1, gen.choice([0, -1], size=shape)).astype(np.int8)
        yield Case((ss, labels), about=f"lowest_certified_ss(SS {shape}, labels with {int((labels == 1).sum())} "
                                       f"certified-'1' pixels)")


GALLERY = [
    Exercise("gallery-ss", "SS versus certificate", "lowest_certified_ss", 1, 10,
             "select mean_sparsified where labels == 1 and take the minimum; NaN when no pixel is certified '1'.",
             (Cases(_ss_inputs, o.lowest_certified_ss, Close(1e-7)),)),
    Exercise("gallery-union", "Union bound", "overlay_confidence", 1, 5,
             "the failure probabilities of the m claims add up: 1 - m * alpha, never below 0.",
             (Cases(lambda: [(0.001, 3), (0.001, 5), (0.01, 1), (0.05, 10), (0.2, 6), (0.001, 0)],
                    o.overlay_confidence, Close()),),
             secrets=("0.997", "0.995")),
]


# --- certificates ------------------------------------------------------------------------------------------------
CERTIFICATES = [
    Exercise("certificates-topk-n", "Samples for the top-k certificate", "n_needed", 1, 15,
             "the best pair reaches R when c = sqrt(ln(2d/(1-eta)) / (2n)) <= 1 - tau; solve for n and round up.",
             (Cases(lambda: [(49, 0.75, 0.999), (224 * 224, 0.75, 0.999), (1000, 0.9, 0.95), (10, 0.6, 0.99),
                             (1280 * 49, 0.8, 0.999)], o.n_needed, Integer()),)),
    Exercise("certificates-tangent", "The tangent, not the perpendicular", "tangent_cosine", 1, 10,
             "the smallest angle is reached where h + w is tangent to the ball: |h + w|^2 = |h|^2 - A^2.",
             (Cases(lambda: [(0.5, 0.3), (1.0, 0.1), (2.0, 1.9), (3.0, 1.5)], o.tangent_cosine,
                    Close(1e-8, "which is not the smallest cosine between h and h + w over |w| <= {a}")),)),
    Exercise("certificates-mc", "The Monte-Carlo term", "n_for_mc", 1, 10,
             "t = M (1 + sqrt(2 ln(1/alpha))) / sqrt(N) <= ratio * M; solve for N and round up.",
             (Cases(lambda: [(0.001, 0.1), (0.001, 0.05), (0.01, 0.2), (0.05, 0.5), (1e-6, 0.1)], o.n_for_mc,
                    Integer()),)),
]


# --- levine ------------------------------------------------------------------------------------------------------
def _overlap_inputs():
    gen = np.random.default_rng(24)
    for shape, k in [((6, 6), 5), ((4, 7), 3), ((8, 8), 12), ((5, 5), 25)]:
        # coarse values (few levels) make ties, which rank by the lower flat index
        clean = gen.integers(0, 4, shape).astype(np.float32)
        perturbed = np.where(gen.random(shape) < 0.5, clean, gen.integers(0, 4, shape)).astype(np.float32)
        yield Case((clean, perturbed, k), about=f"topk_overlap_share(maps {shape} with ties, k={k})")
    flat = np.zeros((3, 3), dtype=np.float32)  # every value tied: the top-3 are the flat indices 0, 1, 2
    yield Case((flat, np.arange(9, 0, -1, dtype=np.float32).reshape(3, 3), 3),
               about="topk_overlap_share(a constant 3x3 map, a map falling with the flat index, k=3)")


def _control_inputs():
    gen = np.random.default_rng(25)
    for size, background, r in [(64, 0.6, 1.0), (49, 0.8, 0.5), (30, 0.0, 2.0), (100, 0.5, 3.0)]:
        x = np.where(gen.random(size) < background, 0.0, gen.uniform(0, 1, size))  # digits: mostly background at 0
        u = gen.standard_normal(size)
        u /= np.linalg.norm(u)
        yield Case((x, u, r), about=f"same_norm_step(x of {size} pixels, {background:.0%} at 0, r={r})")


LEVINE = [
    Exercise("levine-overlap", "Top-k overlap with ties", "topk_overlap_share", 1, 10,
             "rank the flat values with a stable sort of the negated values (np.argsort(-a.ravel(), kind='stable')), "
             "take the first k of each map and count the common indices.",
             (Cases(_overlap_inputs, o.topk_overlap_share, Close(1e-12)),)),
    Exercise("levine-control", "A random control of the same norm", "same_norm_step", 1, 15,
             "the clipped norm grows with s: bracket r (double s until it is reached) and bisect; s = r / ||u|| "
             "ignores the pixels that clipping stops.",
             (Cases(_control_inputs, o.same_norm_step, Close(1e-7)),)),
]


#: every exercise of the book (a chapter's declaration lists its own, :mod:`certattr.book.chapters`)
ALL = [*METHOD, *ROBUSTNESS, *LOCALIZATION, *FAITHFULNESS, *TRADEOFF, *VIT, *GALLERY, *CERTIFICATES, *LEVINE]

_BY_LABEL = {ex.label: ex for ex in ALL}


def exercise(label: str) -> Exercise:
    """The exercise labelled ``label``; :class:`CertattrError` for an unknown label."""
    try:
        return _BY_LABEL[label]
    except KeyError:
        raise CertattrError(f"exercise {label!r} is unknown: the exercises are {sorted(_BY_LABEL)}") from None
