"""The course edition: one check per chapter exercise, and the student / instructor notebooks.

**Checks.** Every exercise of the book asks for one function, written in a stub cell. ``check(label, answer)``
calls the student's function on inputs of its own and compares the results with answers that this module
computes independently (brute force over pixels, exact binomial tails with ``math.comb``, closed forms with
``statistics.NormalDist``, plain loops), never with the chapter's solution. A check never raises: it prints
what is still wrong (the stub is untouched, a case gives a wrong value, the function raised) and returns a
:class:`Score`, the points earned. The score is a float, so nbgrader reads the check cell's output as partial
credit (0 when not yet right, the exercise's points when right).

**Notebooks.** :func:`build_assignments` turns each chapter (``notebooks/<chapter>.md``) into

* ``<chapter>-student.ipynb``: the chapter on small settings (a profile's parameters written into the
  parameters cell, ``smoke`` by default), each exercise's stub and check kept, solutions removed;
* ``<chapter>-instructor.ipynb``: the same with every solution inside its stub, between nbgrader's
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers, and nbgrader cell metadata (solution, grade and
  locked cells with ``grade_id`` and ``points``). nbgrader's ``ClearSolutions`` turns it into the student
  notebook, cell for cell;
* with ``course=True``, an nbgrader course folder ``nbgrader/`` (``nbgrader_config.py`` and
  ``source/<chapter>/<chapter>-student.ipynb``, the instructor version under the student file's name, so
  that submissions of the downloaded student notebook match it).

In the book (the chapter source), an exercise is a ``{exercise}`` directive with a label, the stub cell,
the solution cell between ``{solution-start}`` and ``{solution-end}`` (sphinx-exercise's gated directives)
and the check cell ``check("<label>", <name>)``; :func:`chapter_exercises` reads and validates that layout.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import io
import math
import re
import statistics
import tempfile
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from ..engine.validation import CertattrError

__all__ = ["Exercise", "EXERCISES", "Score", "check", "exercise", "exercise_number", "chapter_exercises",
           "student_notebook", "instructor_notebook", "build_assignments", "clear_solutions", "STUDENT_MINUTES"]

#: measured wall time (minutes, rounded up) of each student notebook run top to bottom on the smoke settings, in book
#: order with one shared cold sample cache, on a 2-core CPU with other builds running beside it (an idle laptop
#: is faster). See the README, "For instructors".
STUDENT_MINUTES = {"method": 2, "robustness": 1, "localization": 1, "faithfulness": 1, "tradeoff": 1, "vit": 4,
                   "gallery": 1, "certificates": 15}

STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


# --- scores and the check runner ------------------------------------------------------------------------------------
class Score(float):
    """The points a check gave (a float: nbgrader reads a check cell's ``text/plain`` output as partial credit)."""

    def __new__(cls, points: float, max_points: float, label: str, message: str):
        self = super().__new__(cls, points)
        self.max_points, self.label, self.message = float(max_points), label, message
        return self

    @property
    def passed(self) -> bool:
        return float(self) == self.max_points

    def __repr__(self) -> str:  # what nbgrader parses: a bare number
        return repr(float(self))

    def _repr_html_(self) -> str:
        state = "passed" if self.passed else "not yet"
        return (f'<p class="certattr-score certattr-score-{"pass" if self.passed else "fail"}">'
                f"Exercise <code>{self.label}</code>: {state}, {float(self):g} of {self.max_points:g} "
                f"point{'s' if self.max_points != 1 else ''}</p>")


class NotYet(Exception):
    """Raised inside a check when the student's answer is not (yet) right; the runner prints it."""


@dataclass(frozen=True)
class Exercise:
    chapter: str
    label: str  #: sphinx-exercise label, nbgrader grade_id prefix, and the first argument of :func:`check`
    title: str
    answer: str  #: the name of the function the student writes
    points: int
    minutes: int  #: the estimated time stated in the exercise
    run: Callable  #: the check proper: raises NotYet with the reason when the answer is wrong
    hint: str
    secrets: tuple = ()  #: answer values that must not appear in the student notebook's exercise section


def _call(fn, name: str, *args, **kwargs):
    """Call the student's function; its own prints and warnings are kept out of the check's output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def check(label: str, answer) -> Score:
    """Check the answer to the exercise ``label`` (e.g. ``check("method-count", smallest_count)``).

    Prints "correct" or what is still wrong, never raises, and returns the :class:`Score`.
    """
    ex = exercise(label)
    if answer is Ellipsis:
        message = f"not yet: `{ex.answer}` is still `...`; write it in the cell above."
    elif not callable(answer):
        message = f"not yet: `{ex.answer}` should be a function, but it is a {type(answer).__name__}."
    else:
        try:
            ex.run(answer)
        except NotImplementedError:
            message = (f"not yet: `{ex.answer}` is still the stub (it raises NotImplementedError): replace "
                       f"`{STUB[0]}` and `{STUB[1]}` in the cell above with your code.")
        except NotYet as wrong:
            message = f"not yet: {wrong} Hint: {ex.hint}"
        except RecursionError:
            message = f"not yet: `{ex.answer}` recursed without end."
        except Exception as err:  # the student's function failed in a way the check did not foresee
            message = f"not yet: calling `{ex.answer}` raised {type(err).__name__}: {err}. Hint: {ex.hint}"
        else:
            message = None
    if message is None:
        score = Score(ex.points, ex.points, label, f"correct: `{ex.answer}` passes every case of the check.")
    else:
        score = Score(0.0, ex.points, label, message)
    print(score.message)
    return score


# --- independent references ---------------------------------------------------------------------------------------
def _binomial_tail(n: int, p: float, c: int) -> float:
    """P(Bin(n, p) >= c), summed term by term with exact binomial coefficients."""
    if c <= 0:
        return 1.0
    return math.fsum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(c, n + 1))


def _exact_topk(values, k: float) -> list:
    """Brute force: for each value, is |value| > t_K, the (100-K)-th linear-interpolation percentile, in exact
    rational arithmetic (what ``numpy.percentile`` computes up to rounding)."""
    a = [abs(Fraction(float(v))) for v in values]
    s = sorted(a)
    q = (100 - Fraction(repr(float(k)))) * (len(s) - 1) / 100
    lo = math.floor(q)
    hi = min(lo + 1, len(s) - 1)
    t = s[lo] + (q - lo) * (s[hi] - s[lo])
    return [x > t for x in a]


def _brute_abstain(samples: np.ndarray, k: float, tau: float, n0: int, alpha: float) -> float:
    """Abstained share of the Bonferroni certificate of the maps (n, H, W), pixel by pixel."""
    n, h, w = samples.shape
    member = [_exact_topk(samples[i].ravel().tolist(), k) for i in range(n)]
    n_test, n_pix = n - n0, h * w
    tails = [_binomial_tail(n_test, tau, c) for c in range(n_test + 1)]
    abstain = 0
    for p in range(n_pix):
        ones_select = sum(member[i][p] for i in range(n0))
        label = 1 if 2 * ones_select > n0 else 0
        agree = sum(member[i][p] == bool(label) for i in range(n0, n))
        abstain += not tails[agree] <= alpha / n_pix
    return abstain / n_pix


def _close(a, b, tol=1e-9) -> bool:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return False
    if math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= tol * max(1.0, abs(b))


def _samples(seed: int, n: int = 60, size: int = 12) -> np.ndarray:
    """Noisy maps of one smooth map: pixels near the peak agree across samples, those near the threshold do not."""
    gen = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    base = np.exp(-((x - 0.3) ** 2 + (y - 0.6) ** 2) / 0.08) + 0.3 * x
    return (base[None] + 0.12 * gen.standard_normal((n, size, size))).astype(np.float32)


# --- method ------------------------------------------------------------------------------------------------------
def _method_tau(fn):
    name = "radius_and_abstain"
    wide = _samples(3, n=150, size=8)
    cases = [(_samples(0), 50, 0.15, 0.75, 10, 0.05), (wide, 50, 0.15, 0.75, 10, 0.05), (wide, 50, 0.15, 0.9, 10, 0.05),
             (wide, 30, 0.25, 0.9, 10, 0.05), (_samples(1), 25, 0.25, 0.6, 5, 0.1)]
    for samples, k, sigma, tau, n0, alpha in cases:
        got = _call(fn, name, samples.copy(), k, sigma, tau, n0, alpha)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise NotYet(f"{name} should return a pair (R, abstained share), it returned {_short(got)}.")
        radius = sigma * statistics.NormalDist().inv_cdf(tau)
        abstain = _brute_abstain(samples, k, tau, n0, alpha)
        desc = f"{name}(samples {samples.shape}, k={k}, sigma={sigma}, tau={tau}, n0={n0}, alpha={alpha})"
        if not _close(got[0], radius):
            raise NotYet(f"{desc} returned R = {_short(got[0])}, which is not sigma * Phi^-1(tau).")
        if not _close(got[1], abstain, 1e-12):
            raise NotYet(f"{desc} returned an abstained share of {_short(got[1])}; the radius is right but the "
                         f"share is not.")


def _method_count(fn):
    name = "smallest_count"
    for n_test, tau, alpha, n_pixels in [(90, 0.75, 0.001, 224 ** 2), (50, 0.6, 0.01, 100), (40, 0.9, 0.001, 1000),
                                         (200, 0.75, 0.001, 224 ** 2), (30, 0.55, 0.05, 1), (12, 0.95, 0.001, 50176)]:
        threshold = alpha / n_pixels
        expected = next((c for c in range(n_test + 1) if _binomial_tail(n_test, tau, c) <= threshold), n_test + 1)
        got = _call(fn, name, n_test, tau, alpha, n_pixels)
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)):
            raise NotYet(f"{name}({n_test}, {tau}, {alpha}, {n_pixels}) returned {_short(got)}: give an integer.")
        if got != expected:
            too = "does not certify" if got < expected else "certifies, but is not the smallest"
            if got == n_test + 1 or got > n_test:
                too = "is past every count that certifies" if expected <= n_test else "is out of range"
            raise NotYet(f"{name}({n_test}, {tau}, {alpha}, {n_pixels}) returned {got}, which {too}.")


# --- robustness --------------------------------------------------------------------------------------------------
def _rob_frame(seed: int, same_size: bool):
    import pandas as pd

    gen = np.random.default_rng(seed)
    sizes = np.full(5, 224 * 224) if same_size else gen.choice([64 * 64, 128 * 96, 224 * 224, 300 * 200], 5)
    n_abstain = np.array([int(gen.integers(0, s)) for s in sizes])
    return pd.DataFrame({"image_id": [f"img{i}" for i in range(5)], "n_pixels": sizes, "n_abstain": n_abstain,
                         "abstain": n_abstain / sizes})


def _robustness_pooled(fn):
    name = "pooled_and_mean_abstain"
    for seed, same in [(0, False), (1, False), (2, True)]:
        frame = _rob_frame(seed, same)
        pooled = math.fsum(frame.n_abstain) / math.fsum(frame.n_pixels)
        mean = math.fsum(a / p for a, p in zip(frame.n_abstain, frame.n_pixels)) / len(frame)
        got = _call(fn, name, frame.copy())
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise NotYet(f"{name} should return a pair (pooled, mean), it returned {_short(got)}.")
        kind = "images of different sizes" if not same else "images of the same size"
        if not _close(got[0], pooled):
            raise NotYet(f"on {len(frame)} {kind}, the pooled share {_short(got[0])} is not "
                         f"sum(n_abstain) / sum(n_pixels).")
        if not _close(got[1], mean):
            raise NotYet(f"on {len(frame)} {kind}, the mean {_short(got[1])} is not the mean of the per-image shares.")


def _robustness_radii(fn):
    name = "sigma_for_radius"
    for radius, tau in [(0.25, 0.75), (0.1, 0.75), (0.5, 0.9), (0.2, 0.6), (1.0, 0.99)]:
        expected = radius / statistics.NormalDist().inv_cdf(tau)
        got = _call(fn, name, radius, tau)
        if not _close(got, expected, 1e-7):
            raise NotYet(f"{name}({radius}, {tau}) returned {_short(got)}, which does not give R = {radius} at "
                         f"tau = {tau}.")


def _robustness_recertify(fn):
    import torch

    from ..engine.smoothing import SmoothedAttribution
    from ..models.testing import tiny_model

    name = "abstain_at_tau"
    model = tiny_model(seed=3)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(11))
    with tempfile.TemporaryDirectory(prefix="certattr-check-") as cache:
        engine = SmoothedAttribution(model, "grad", "input", 0.25, n=60, n0=10, seed=0, chunk_size=20, cache=cache,
                                     progress=False)
        target = 2
        samples = engine.sample(image, "check-image", target)  # fills the cache
        calls = []
        hooks = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in model.modules()
                 if isinstance(m, torch.nn.Conv2d)]
        try:
            for k, tau, alpha in [(50, 0.75, 0.05), (50, 0.6, 0.05), (20, 0.6, 0.1)]:
                calls.clear()
                got = _call(fn, name, engine, image.clone(), "check-image", target, k, tau, alpha)
                desc = f"{name}(engine, image, 'check-image', {target}, k={k}, tau={tau}, alpha={alpha})"
                if calls:
                    raise NotYet(f"{desc} ran the model ({len(calls)} convolution calls), although the engine's "
                                 f"cache holds the samples: certify with the engine, do not resample.")
                expected = _brute_abstain(samples, k, tau, 10, alpha)
                if not _close(got, expected, 1e-12):
                    raise NotYet(f"{desc} returned {_short(got)}, which is not the abstained share at K = {k}.")
        finally:
            for h in hooks:
                h.remove()


# --- localization ------------------------------------------------------------------------------------------------
def _label_maps():
    gen = np.random.default_rng(5)
    maps = [np.ones((8, 8), dtype=np.int8), np.zeros((8, 8), dtype=np.int8),
            np.full((6, 10), -1, dtype=np.int8)]
    only = np.zeros((8, 12), dtype=np.int8)
    only[:4, 6:] = 1
    maps.append(only)
    for shape in [(8, 8), (6, 10), (10, 4)]:
        maps.append(gen.choice(np.array([1, 0, -1], dtype=np.int8), size=shape, p=[0.3, 0.4, 0.3]))
    return maps


def _localization_gridpg(fn):
    name = "my_certified_gridpg"
    for labels in _label_maps():
        h, w = labels.shape
        for cell in range(4):
            inside = total = 0
            for i in range(h):
                for j in range(w):
                    if labels[i, j] == 1:
                        total += 1
                        inside += (2 * (i // (h // 2)) + j // (w // 2)) == cell
            expected = inside / total if total else 0.0
            got = _call(fn, name, labels.copy(), cell)
            if not _close(got, expected):
                kind = ("every pixel certified '1'" if (labels == 1).all() else
                        "no pixel certified '1'" if not (labels == 1).any() else f"a {h}x{w} label map")
                raise NotYet(f"{name}({kind}, cell={cell}) returned {_short(got)}.")


def _loc_frame(seed: int):
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


def _localization_empty(fn):
    name = "mean_gridpg"
    frames = [_loc_frame(0), _loc_frame(1)]
    allempty = _loc_frame(2).head(4).assign(no_certified=True, certified_gridpg=0.0)
    for frame in frames + [allempty]:
        for drop in (False, True):
            values = [0.0 if e else v for v, e in zip(frame.certified_gridpg, frame.no_certified)]
            if drop:
                values = [v for v, e in zip(frame.certified_gridpg, frame.no_certified) if not e]
            expected = math.fsum(values) / len(values) if values else math.nan
            got = _call(fn, name, frame.copy(), drop)
            if not _close(got, expected):
                n_empty = int(frame.no_certified.sum())
                what = "every target empty" if n_empty == len(frame) else f"{n_empty} empty targets"
                raise NotYet(f"{name}(a table of {len(frame)} rows with {what}, drop_empty={drop}) returned "
                             f"{_short(got)}.")


def _localization_hardest(fn):
    name = "hardest_cell"
    for seed in (0, 1, 3):
        frame = _loc_frame(seed)
        for sigma, k in [(0.15, 50.0), (0.25, 10.0)]:
            sums, counts = [0.0] * 4, [0] * 4
            for s, kk, cell, v in zip(frame.sigma, frame.k, frame.target_cell, frame.certified_gridpg):
                if s == sigma and kk == k:
                    sums[cell] += v
                    counts[cell] += 1
            means = [sums[c] / counts[c] for c in range(4)]
            expected = min(range(4), key=lambda c: (means[c], c))
            got = _call(fn, name, frame.copy(), sigma, k)
            if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or int(got) != expected:
                raise NotYet(f"{name}(a table of {len(frame)} rows, sigma={sigma}, k={k:g}) returned {_short(got)}, "
                             f"which is not the cell with the lowest mean Certified GridPG at that sigma and K.")


# --- tradeoff ----------------------------------------------------------------------------------------------------
def _tradeoff_constant(fn):
    name = "strict_topk"
    gen = np.random.default_rng(9)
    relu = np.maximum(gen.standard_normal((8, 8)), 0)  # many zeros, like a CAM after its ReLU
    ints = gen.integers(0, 4, size=(6, 6)).astype(float)  # many ties
    cases = [(np.full((8, 8), 0.7), 50), (np.zeros((5, 7)), 10), (gen.standard_normal((8, 8)), 50),
             (gen.standard_normal((7, 9)), 25), (relu, 50), (relu, 20), (ints, 50), (ints, 30),
             (-np.abs(gen.standard_normal((6, 6))), 10)]
    for attribution, k in cases:
        expected = np.array(_exact_topk(attribution.ravel().tolist(), k)).reshape(attribution.shape)
        got = _call(fn, name, attribution.copy(), k)
        got_arr = np.asarray(got)
        kind = ("a constant map" if np.ptp(attribution) == 0 else
                "a map with ties" if len(np.unique(attribution)) < attribution.size else "a map")
        if got_arr.shape != attribution.shape:
            raise NotYet(f"{name}({kind} of shape {attribution.shape}, k={k}) returned shape {got_arr.shape}.")
        if got_arr.dtype != bool:
            raise NotYet(f"{name}({kind}, k={k}) returned dtype {got_arr.dtype}: give a boolean mask.")
        if not np.array_equal(got_arr, expected):
            raise NotYet(f"{name}({kind} of shape {attribution.shape}, k={k}) selects {int(got_arr.sum())} "
                         f"pixel(s), and not the right ones.")


def _points(seed: int):
    import pandas as pd

    gen = np.random.default_rng(seed)
    rows = []
    for layer in ("input", "final"):
        for m in ("Grad", "GradCam", "RISE", "LRP"):
            for model in ("a", "b"):
                rows.append({"layer": layer, "method_title": m, "model": model,
                             "robustness": float(gen.uniform(0, 1)), "certified_gridpg": float(gen.uniform(0, 1))})
    frame = pd.DataFrame(rows)
    # a lopsided method: the best geometric mean at the final layer, not the best harmonic one
    final, axes = frame.layer == "final", ["robustness", "certified_gridpg"]
    frame.loc[final & (frame.method_title == "Grad"), axes] = [0.99, 0.36]
    frame.loc[final & (frame.method_title == "RISE"), axes] = [0.58, 0.58]
    frame.loc[final & (frame.method_title.isin(["GradCam", "LRP"])), "certified_gridpg"] = 0.1
    frame.loc[0, ["robustness", "certified_gridpg"]] = [0.0, 0.0]
    return frame


def _tradeoff_harmonic(fn):
    name = "best_by_harmonic"
    for seed in (0, 1, 2):
        points = _points(seed)
        expected = {}
        for layer in sorted(set(points.layer)):
            scores = {}
            for m, r, g, lay in zip(points.method_title, points.robustness, points.certified_gridpg, points.layer):
                if lay == layer:
                    scores.setdefault(m, []).append(0.0 if r + g == 0 else 2 * r * g / (r + g))
            expected[layer] = max(scores, key=lambda m: math.fsum(scores[m]) / len(scores[m]))
        got = _call(fn, name, points.copy())
        if not isinstance(got, dict):
            raise NotYet(f"{name} should return a dict {{layer: method_title}}, it returned {_short(got)}.")
        if {str(k): v for k, v in got.items()} != expected:
            raise NotYet(f"{name}(points of {len(points)} rows) returned {_short(got)}.")


def _pearson_ref(x, y) -> float:
    n = len(x)
    if n < 2:
        return math.nan
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return math.nan
    return math.fsum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(sxx * syy)


def _tradeoff_correlation(fn):
    name = "pearson"
    gen = np.random.default_rng(4)
    x = gen.uniform(0, 1, 12)
    cases = [(x, 0.5 * x + 0.3 * gen.standard_normal(12)), (x, 2 * x + 1), (x, -x), (x, np.exp(3 * x)),
             (x[:2], x[:2] ** 2 + 1), (x, np.full(12, 0.8)), (x[:1], x[:1])]
    for a, b in cases:
        expected = _pearson_ref(a.tolist(), b.tolist())
        got = _call(fn, name, a.copy(), b.copy())
        if not _close(got, expected, 1e-9):
            kind = ("a constant y" if np.ptp(b) == 0 else "a single point" if len(a) < 2 else
                    "y = exp(3x) (monotone but not linear)" if np.allclose(b, np.exp(3 * a)) else f"{len(a)} points")
            raise NotYet(f"{name}(x, y) with {kind} returned {_short(got)}.")


# --- faithfulness ------------------------------------------------------------------------------------------------
def _faithfulness_fill(fn):
    import torch

    name = "delete_pixels"
    gen = torch.Generator().manual_seed(2)
    for h, w, fill in [(5, 6, 0.0), (4, 4, 1.0), (6, 3, (0.485, 0.456, 0.406)), (3, 7, 0.5)]:
        image = torch.rand(3, h, w, generator=gen)
        mask = torch.rand(h, w, generator=gen) < 0.4
        before = image.clone()
        got = _call(fn, name, image, mask.clone(), fill)
        colour = [float(fill)] * 3 if isinstance(fill, float) else list(fill)
        desc = f"{name}(an image (3, {h}, {w}), a mask of {int(mask.sum())} pixels, fill={fill})"
        if not torch.equal(image, before):
            raise NotYet(f"{desc} changed the image it was given: return a modified copy.")
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (3, h, w):
            raise NotYet(f"{desc} returned {_short(getattr(got, 'shape', got))}: give a tensor of shape (3, {h}, {w}).")
        for c in range(3):
            for i in range(h):
                for j in range(w):
                    want = colour[c] if bool(mask[i, j]) else float(before[c, i, j])
                    if abs(float(got[c, i, j]) - want) > 1e-6:
                        where = "a removed" if bool(mask[i, j]) else "a kept"
                        raise NotYet(f"{desc}: channel {c} of {where} pixel ({i}, {j}) is {float(got[c, i, j]):.4f}.")


def _faithfulness_auc(fn):
    name = "trapezoid_auc"
    gen = np.random.default_rng(8)
    cases = [[0.9, 0.5], [1.0, 0.5, 0.25, 0.0], [0.2, 0.2, 0.2]] + [gen.uniform(0, 1, m).tolist() for m in (4, 5, 7)]
    for probs in cases:
        steps = len(probs) - 1
        expected = math.fsum((Fraction(1, steps) * Fraction(probs[j]) + Fraction(1, steps) * Fraction(probs[j + 1])) / 2
                             for j in range(steps))
        got = _call(fn, name, np.array(probs))
        if not _close(got, float(expected), 1e-9):
            raise NotYet(f"{name} of the {len(probs)} probabilities {[round(p, 3) for p in probs]} returned "
                         f"{_short(got)}.")


def _faithfulness_random(fn):
    name = "random_pixel_mask"
    for h, w, m in [(6, 8, 10), (10, 10, 0), (4, 5, 20), (224, 224, 5000)]:
        got = np.asarray(_call(fn, name, h, w, m, 0))
        if got.shape != (h, w) or got.dtype != bool:
            raise NotYet(f"{name}({h}, {w}, {m}, seed=0) returned shape {got.shape}, dtype {got.dtype}: give a "
                         f"boolean ({h}, {w}) mask.")
        if int(got.sum()) != m:
            raise NotYet(f"{name}({h}, {w}, {m}, seed=0) selects {int(got.sum())} pixels instead of {m}.")
    a, b = np.asarray(_call(fn, name, 6, 8, 10, 7)), np.asarray(_call(fn, name, 6, 8, 10, 7))
    if not np.array_equal(a, b):
        raise NotYet(f"{name} gives different masks for the same seed: draw from a generator seeded with `seed`.")
    masks = np.stack([np.asarray(_call(fn, name, 4, 5, 5, s), dtype=float) for s in range(400)])
    if len({m.tobytes() for m in masks}) < 300:
        raise NotYet(f"{name} gives the same few masks for 400 different seeds.")
    freq = masks.mean(axis=0)  # each of the 20 pixels should be removed in about 5/20 of the draws
    if np.abs(freq - 0.25).max() > 0.12:
        raise NotYet(f"{name} does not pick pixels uniformly: over 400 seeds some pixels of a 4x5 image were "
                     f"removed {freq.max():.2f} of the time and others {freq.min():.2f} (expected about 0.25 each).")


# --- vit ---------------------------------------------------------------------------------------------------------
def _vit_patches(fn):
    name = "vit_grid"
    for size, patch in [(224, 16), (384, 16), (32, 8), (512, 32), (64, 16)]:
        side = size // patch
        got = _call(fn, name, size, patch)
        if not (isinstance(got, (tuple, list)) and len(got) == 2) or tuple(int(v) for v in got) != (side * side, side):
            raise NotYet(f"{name}({size}, {patch}) returned {_short(got)}.")
    try:
        got = _call(fn, name, 100, 16)
    except ValueError:
        return
    raise NotYet(f"{name}(100, 16) returned {_short(got)}: 100 is not divisible by 16, raise ValueError.")


def _logsumexp_softmax(logits, index) -> float:
    m = max(logits)
    return math.exp(logits[index] - m) / math.fsum(math.exp(v - m) for v in logits)


def _vit_softmax(fn):
    import torch

    name = "softmax_probability"
    gen = np.random.default_rng(6)
    cases = [([2.0, 1.0, 0.1], 0), ([2.0, 1.0, 0.1], 2), (gen.standard_normal(1000).tolist(), 17),
             ([1000.0, 999.0, 0.0], 1), ([-800.0, -801.0, -900.0], 0), ([0.0] * 10, 4)]
    for logits, index in cases:
        expected = _logsumexp_softmax(logits, index)
        arg = torch.tensor(logits, dtype=torch.float64) if len(logits) == 1000 else np.array(logits)
        got = _call(fn, name, arg, index)
        if not _close(got, expected, 1e-9):
            big = max(abs(v) for v in logits) > 100
            raise NotYet(f"{name}({'large logits ' if big else ''}{_short([round(v, 2) for v in logits[:3]])}"
                         f"{'...' if len(logits) > 3 else ''}, {index}) returned {_short(got)}."
                         + (" exp() of a large logit overflows: subtract the largest logit first." if big else ""))


def _vit_tokens(fn):
    import torch

    name = "token_map"
    gen = torch.Generator().manual_seed(4)
    cancel = torch.zeros(4, 2, 2)
    cancel[0, 0, 0], cancel[1, 0, 0] = 5.0, -5.0  # a large token whose coordinates cancel
    for patches in [torch.randn(8, 3, 3, generator=gen), torch.randn(768, 2, 5, generator=gen), cancel]:
        d, h, w = patches.shape
        for reduce in ("l1", "sum"):
            expected = [[math.fsum((abs if reduce == "l1" else float)(float(patches[c, i, j])) for c in range(d))
                         for j in range(w)] for i in range(h)]
            got = _call(fn, name, patches.clone(), reduce)
            got_arr = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
            if got_arr.shape != (h, w) or not np.allclose(got_arr, expected, rtol=1e-5, atol=1e-5):
                raise NotYet(f"{name}(tokens of shape ({d}, {h}, {w}), reduce={reduce!r}) returned "
                             f"{'shape ' + str(got_arr.shape) if got_arr.shape != (h, w) else 'wrong values'}.")


# --- gallery -----------------------------------------------------------------------------------------------------
def _gallery_ss(fn):
    name = "lowest_certified_ss"
    gen = np.random.default_rng(12)
    for shape, p_one in [((8, 8), 0.3), ((5, 9), 0.1), ((6, 6), 0.0), ((4, 4), 1.0)]:
        ss = gen.uniform(0, 1, shape).astype(np.float32)
        labels = np.where(gen.random(shape) < p_one, 1, gen.choice([0, -1], size=shape)).astype(np.int8)
        ones = [float(ss[i, j]) for i in range(shape[0]) for j in range(shape[1]) if labels[i, j] == 1]
        expected = min(ones) if ones else math.nan
        got = _call(fn, name, ss.copy(), labels.copy())
        if not _close(got, expected, 1e-7):
            raise NotYet(f"{name}(SS {shape}, labels with {len(ones)} certified-'1' pixels) returned {_short(got)}.")


def _gallery_union(fn):
    name = "overlay_confidence"
    for alpha, m in [(0.001, 3), (0.001, 5), (0.01, 1), (0.05, 10), (0.2, 6), (0.001, 0)]:
        expected = min(1.0, max(0.0, 1 - m * alpha))
        got = _call(fn, name, alpha, m)
        if not _close(got, expected):
            raise NotYet(f"{name}(alpha={alpha}, m={m}) returned {_short(got)}.")


# --- certificates ------------------------------------------------------------------------------------------------
def _certificates_topk_n(fn):
    name = "n_needed"
    for d, tau, eta in [(49, 0.75, 0.999), (224 * 224, 0.75, 0.999), (1000, 0.9, 0.95), (10, 0.6, 0.99),
                        (1280 * 49, 0.8, 0.999)]:
        n = 1
        while math.sqrt(math.log(2 * d / (1 - eta)) / (2 * n)) > 1 - tau:
            n += 1
        got = _call(fn, name, d, tau, eta)
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or int(got) != n:
            raise NotYet(f"{name}(d={d}, tau={tau}, eta={eta}) returned {_short(got)}.")


def _certificates_tangent(fn):
    name = "tangent_cosine"
    theta = np.linspace(0, np.pi, 200_001)
    for h, a in [(0.5, 0.3), (1.0, 0.1), (2.0, 1.9), (3.0, 1.5)]:
        w = np.stack([a * np.cos(theta), a * np.sin(theta)])  # every w on the circle |w| = a (h along the x axis)
        hw = np.array([[h], [0.0]]) + w
        cos = hw[0] / np.linalg.norm(hw, axis=0)  # cos(h, h + w) = (h . (h + w)) / (|h| |h + w|)
        i = int(np.argmin(cos))
        lo, hi = theta[max(i - 1, 0)], theta[min(i + 1, theta.size - 1)]
        for _ in range(100):  # golden-section refinement of the minimum
            m1, m2 = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
            c1 = (h + a * math.cos(m1)) / math.hypot(h + a * math.cos(m1), a * math.sin(m1))
            c2 = (h + a * math.cos(m2)) / math.hypot(h + a * math.cos(m2), a * math.sin(m2))
            lo, hi = (lo, m2) if c1 < c2 else (m1, hi)
        t = (lo + hi) / 2
        expected = (h + a * math.cos(t)) / math.hypot(h + a * math.cos(t), a * math.sin(t))
        got = _call(fn, name, h, a)
        if not _close(got, expected, 1e-8):
            raise NotYet(f"{name}({h}, {a}) returned {_short(got)}, which is not the smallest cosine between h and "
                         f"h + w over |w| <= {a}.")


def _certificates_mc(fn):
    name = "n_for_mc"
    for alpha, ratio in [(0.001, 0.1), (0.001, 0.05), (0.01, 0.2), (0.05, 0.5), (1e-6, 0.1)]:
        const = 1 + math.sqrt(2 * math.log(1 / alpha))
        n = 1
        while const / math.sqrt(n) > ratio:
            n += 1
        got = _call(fn, name, alpha, ratio)
        if isinstance(got, bool) or not isinstance(got, (int, np.integer)) or int(got) != n:
            raise NotYet(f"{name}(alpha={alpha}, ratio={ratio}) returned {_short(got)}.")


# --- the registry ------------------------------------------------------------------------------------------------
def _ex(chapter, label, title, answer, points, minutes, run, hint, secrets=()):
    return Exercise(chapter, label, title, answer, points, minutes, run, hint, tuple(secrets))


EXERCISES: dict[str, list[Exercise]] = {
    "method": [
        _ex("method", "method-tau", "Predict, then measure", "radius_and_abstain", 2, 15, _method_tau,
            "R = sigma * Phi^-1(tau); certattr.certify_maps(samples, [k], sigma=..., n0=..., tau=..., alpha=...) "
            "gives a Certificate with .radius and .fractions()[float(k)]['abstain']."),
        _ex("method", "method-count", "How many agreeing samples?", "smallest_count", 1, 10, _method_count,
            "the p-value of a count c is P(Bin(n_test, tau) >= c) = binom.sf(c - 1, n_test, tau), and it must be "
            "<= alpha / n_pixels (Bonferroni).", secrets=("88",)),
    ],
    "robustness": [
        _ex("robustness", "robustness-pooled", "Pooled or averaged?", "pooled_and_mean_abstain", 1, 10,
            _robustness_pooled, "pooled: sum the counts first, then divide; mean: divide per image, then average."),
        _ex("robustness", "robustness-radii", "Radii by hand", "sigma_for_radius", 1, 10, _robustness_radii,
            "R = sigma * Phi^-1(tau), so sigma = R / Phi^-1(tau) (scipy.stats.norm.ppf is Phi^-1).",
            secrets=("0.371",)),
        _ex("robustness", "robustness-recertify", "Re-certify without resampling", "abstain_at_tau", 2, 15,
            _robustness_recertify, "engine.certify(image, image_id, target, ks=[k], tau=tau, alpha=alpha) reads the "
            "samples from the cache; take .fractions()[float(k)]['abstain']."),
    ],
    "localization": [
        _ex("localization", "localization-gridpg", "The random baseline", "my_certified_gridpg", 1, 10,
            _localization_gridpg, "only pixels labelled 1 count; cell c of a 2x2 grid is row c // 2, column c % 2, "
            "each half of the map's height and width; 0.0 when nothing is certified '1'."),
        _ex("localization", "localization-empty", "Empty certificates", "mean_gridpg", 1, 10, _localization_empty,
            "the rows with no_certified True count as 0, or are left out with drop_empty=True; NaN if none is left."),
        _ex("localization", "localization-hardest", "Which cell is hardest?", "hardest_cell", 1, 10,
            _localization_hardest, "select the rows at that sigma and K, group by target_cell, take the mean of "
            "certified_gridpg and the cell with the smallest mean."),
    ],
    "tradeoff": [
        _ex("tradeoff", "tradeoff-constant", "A constant map", "strict_topk", 2, 15, _tradeoff_constant,
            "t_K = np.percentile(np.abs(a), 100 - k); a pixel is selected only if |a| > t_K (strictly), so tied "
            "pixels at the threshold are not."),
        _ex("tradeoff", "tradeoff-harmonic", "Another balance score", "best_by_harmonic", 1, 10, _tradeoff_harmonic,
            "harmonic mean 2rg/(r+g), 0 when r + g = 0; per layer, average it per method_title and take the largest."),
        _ex("tradeoff", "tradeoff-correlation", "The grid's own robustness", "pearson", 1, 10, _tradeoff_correlation,
            "cov(x, y) / (std(x) std(y)); NaN for fewer than two values or a constant sequence."),
    ],
    "faithfulness": [
        _ex("faithfulness", "faithfulness-fill", "Does the fill matter?", "delete_pixels", 1, 10, _faithfulness_fill,
            "copy the image (image.clone()), then set all three channels of the masked pixels to the fill colour "
            "(one value, or three)."),
        _ex("faithfulness", "faithfulness-auc", "AUC by hand", "trapezoid_auc", 1, 10, _faithfulness_auc,
            "the steps 0..J become t_j = j / J; the area is the sum of (t_{j+1} - t_j) (p_j + p_{j+1}) / 2."),
        _ex("faithfulness", "faithfulness-random", "Random pixels", "random_pixel_mask", 1, 10, _faithfulness_random,
            "np.random.default_rng(seed).choice(height * width, n_removed, replace=False) picks distinct pixels."),
    ],
    "vit": [
        _ex("vit", "vit-patches", "Patch size", "vit_grid", 1, 5, _vit_patches,
            "a side of s pixels holds s // p patches; the map is side x side.", secrets=("576",)),
        _ex("vit", "vit-softmax", "Why the LayerNorm matters", "softmax_probability", 1, 10, _vit_softmax,
            "softmax(z)_i = exp(z_i - max z) / sum_j exp(z_j - max z)."),
        _ex("vit", "vit-tokens", "Channel reduction", "token_map", 1, 10, _vit_tokens,
            "reduce over the first (hidden) dimension: |x| summed for 'l1', x summed for 'sum'."),
    ],
    "gallery": [
        _ex("gallery", "gallery-ss", "SS versus certificate", "lowest_certified_ss", 1, 10, _gallery_ss,
            "select mean_sparsified where labels == 1 and take the minimum; NaN when no pixel is certified '1'."),
        _ex("gallery", "gallery-union", "Union bound", "overlay_confidence", 1, 5, _gallery_union,
            "the failure probabilities of the m claims add up: 1 - m * alpha, never below 0.",
            secrets=("0.997", "0.995")),
    ],
    "certificates": [
        _ex("certificates", "certificates-topk-n", "Samples for the top-k certificate", "n_needed", 1, 15,
            _certificates_topk_n, "the best pair reaches R when c = sqrt(ln(2d/(1-eta)) / (2n)) <= 1 - tau; "
            "solve for n and round up."),
        _ex("certificates", "certificates-tangent", "The tangent, not the perpendicular", "tangent_cosine", 1, 10,
            _certificates_tangent, "the smallest angle is reached where h + w is tangent to the ball: "
            "|h + w|^2 = |h|^2 - A^2."),
        _ex("certificates", "certificates-mc", "The Monte-Carlo term", "n_for_mc", 1, 10, _certificates_mc,
            "t = M (1 + sqrt(2 ln(1/alpha))) / sqrt(N) <= ratio * M; solve for N and round up."),
    ],
}

_BY_LABEL = {ex.label: ex for exs in EXERCISES.values() for ex in exs}


def exercise_number(label: str) -> int:
    """The exercise's number in the book: sphinx-exercise numbers the exercises of the whole book in one sequence
    (the toctree is not numbered), chapter after chapter in the book's order."""
    from ..book.build import CHAPTERS

    labels = [ex.label for chapter in CHAPTERS for ex in EXERCISES.get(chapter, [])]
    return labels.index(exercise(label).label) + 1


def exercise(label: str) -> Exercise:
    try:
        return _BY_LABEL[label]
    except KeyError:
        raise CertattrError(f"exercise {label!r} is unknown: the exercises are {sorted(_BY_LABEL)}") from None


# --- reading a chapter's exercises --------------------------------------------------------------------------------
_EXERCISE_RE = re.compile(r"^:::\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<opts>(?::[\w-]+:[^\n]*\n)*)"
                          r"(?P<body>.*?)^:::[ \t]*$",
                          re.S | re.M)
_SOLUTION_START_RE = re.compile(r"^```\{solution-start\}[ \t]*(?P<label>[\w-]+)[ \t]*\n(?::[\w-]+:[^\n]*\n)*"
                                r"```[ \t]*$", re.M)
_SOLUTION_END_RE = re.compile(r"^```\{solution-end\}\s*\n```\s*$", re.M)
_CHECK_RE = re.compile(r"^check\(\"(?P<label>[\w-]+)\", (?P<name>\w+)\)$")


@dataclass
class ExerciseCells:
    """The cells of one exercise in a chapter notebook (indices into ``notebook.cells``)."""

    exercise: Exercise
    number: int
    title: str
    body: str
    text: int
    stub: int
    solution_start: int
    solution: int
    solution_end: int
    check: int


def _exercises_start(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and re.search(r"^## Exercises\s*$", cell.source, re.M):
            return i
    raise CertattrError("the chapter has no '## Exercises' heading")


def chapter_exercises(nb, chapter: str) -> list[ExerciseCells]:
    """Find and validate the exercises of a chapter notebook (read by jupytext from ``notebooks/<chapter>.md``).

    Each exercise is six cells: the ``{exercise}`` markdown, the stub, ``{solution-start}``, the solution,
    ``{solution-end}`` and the check ``check("<label>", <name>)``; they must match :data:`EXERCISES` in order.
    """
    expected = EXERCISES.get(chapter)
    if expected is None:
        raise CertattrError(f"chapter {chapter!r} has no exercises registered in certattr.course.assignments.EXERCISES")
    start = _exercises_start(nb)
    found = []
    cells = nb.cells
    for i in range(start, len(cells)):
        if cells[i].cell_type != "markdown":
            continue
        match = _EXERCISE_RE.search(cells[i].source)
        if not match:
            continue
        opts = dict(re.findall(r"^:([\w-]+):\s*(.*)$", match.group("opts"), re.M))
        label = opts.get("label", "")
        where = f"{chapter}: exercise {label or match.group('title')!r}"
        kinds = [c.cell_type for c in cells[i + 1:i + 6]]
        if kinds != ["code", "markdown", "code", "markdown", "code"]:
            raise CertattrError(f"{where}: expected the stub, solution-start, solution, solution-end and check cells "
                                f"after the exercise text, found {kinds}")
        ss = _SOLUTION_START_RE.search(cells[i + 2].source)
        if not ss or ss.group("label") != label or not _SOLUTION_END_RE.search(cells[i + 4].source):
            raise CertattrError(f"{where}: the solution must sit between ```{{solution-start}} {label}``` and "
                                f"```{{solution-end}}```")
        if ":class: dropdown" not in cells[i + 2].source:
            raise CertattrError(f"{where}: the solution-start directive needs ':class: dropdown'")
        index = len(found)
        if index >= len(expected) or expected[index].label != label:
            wanted = expected[index].label if index < len(expected) else None
            raise CertattrError(f"{where}: expected exercise {wanted!r} here (certattr.course.assignments.EXERCISES[{chapter!r}])")
        ex = expected[index]
        check_match = _CHECK_RE.match(cells[i + 5].source.strip())
        if not check_match or check_match.group("label") != label or check_match.group("name") != ex.answer:
            raise CertattrError(f"{where}: the check cell must be exactly check({label!r}, {ex.answer})")
        stub = cells[i + 1].source
        if not re.search(rf"^def {ex.answer}\(", stub, re.M):
            raise CertattrError(f"{where}: the stub cell must define {ex.answer}()")
        _merge(stub, cells[i + 3].source, where)  # validates the stub against the solution
        for needle in ("**Learning objective:**", "**Estimated time:**"):
            if needle not in match.group("body"):
                raise CertattrError(f"{where}: the exercise text needs {needle}")
        if f"{ex.minutes} minutes" not in match.group("body"):
            raise CertattrError(f"{where}: the text must state the estimated time '{ex.minutes} minutes'")
        found.append(ExerciseCells(ex, exercise_number(label), match.group("title").strip(),
                                   match.group("body").strip(), i, i + 1, i + 2, i + 3, i + 4, i + 5))
    if [f.exercise.label for f in found] != [ex.label for ex in expected]:
        raise CertattrError(f"{chapter}: found exercises {[f.exercise.label for f in found]}, expected "
                            f"{[ex.label for ex in expected]}")
    return found


def _merge(stub: str, solution: str, where: str = "") -> str:
    """The nbgrader solution cell: the stub with its two stub lines replaced by the solution's body between
    ``### BEGIN SOLUTION`` / ``### END SOLUTION``. The stub's other lines (the ``def`` line and docstring)
    must open the solution unchanged."""
    lines, sol = stub.rstrip("\n").split("\n"), solution.rstrip("\n").split("\n")
    at = next((i for i in range(len(lines) - 1)
               if lines[i].strip() == STUB[0] and lines[i + 1].strip() == STUB[1]), None)
    if at is None:
        raise CertattrError(f"{where}: the stub cell must contain the lines '{STUB[0]}' and '{STUB[1]}'")
    prefix, suffix = lines[:at], lines[at + 2:]
    indent = re.match(r"\s*", lines[at]).group(0)
    if sol[:len(prefix)] != prefix or (suffix and sol[len(sol) - len(suffix):] != suffix):
        raise CertattrError(f"{where}: the solution cell must start with the stub's lines before '{STUB[0]}' "
                            f"(the def line and the docstring), unchanged")
    body = sol[len(prefix):len(sol) - len(suffix)]
    if not body or not all(not b.strip() or b.startswith(indent) for b in body):
        raise CertattrError(f"{where}: the solution's body must be indented like the stub's '{STUB[0]}'")
    return "\n".join(prefix + [indent + BEGIN] + body + [indent + END] + suffix)


def clear_solutions(source: str) -> str:
    """What nbgrader's ClearSolutions does to a code cell: each BEGIN/END SOLUTION region becomes the stub."""
    out, inside = [], False
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in STUB]
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


# --- student and instructor notebooks -----------------------------------------------------------------------------
def _parameters_source(source: str, values: dict) -> str:
    """The parameters cell with each assigned name's value replaced by ``values[name]`` (comments kept)."""
    out, seen = [], set()
    for line in source.split("\n"):
        try:
            tree = ast.parse(line)
        except SyntaxError:
            out.append(line)
            continue
        node = tree.body[0] if tree.body else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in values:
            name = node.targets[0].id
            new = line[:node.value.col_offset] + repr(values[name]) + line[node.value.end_col_offset:]
            out.append(new)
            seen.add(name)
        else:
            out.append(line)
    out += [f"{name} = {value!r}" for name, value in values.items() if name not in seen]
    return "\n".join(out)


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _strip_links(text: str) -> str:
    """Plain Markdown for Jupyter: drop the paragraphs with a download link (it only works in the built book) and
    write a cross-reference to an exercise as "Exercise N (title)"."""
    def ref(match):
        label = match.group(2)
        return f"Exercise {exercise_number(label)} ({exercise(label).title})" if label in _BY_LABEL else f"`{label}`"

    paragraphs = [p for p in re.split(r"\n\s*\n", text) if "{download}" not in p]
    return re.sub(r"\{(ref|numref)\}`([\w-]+)`", ref, "\n\n".join(paragraphs))


def _header(chapter: str, profile: str) -> str:
    """The note at the top of both versions (the same text, so that nbgrader's release of the instructor
    notebook is the student notebook; it must not name nbgrader's solution delimiters, which its
    ClearSolutions looks for in every cell)."""
    exs = EXERCISES[chapter]
    total, minutes = sum(e.points for e in exs), STUDENT_MINUTES.get(chapter)
    if profile == "smoke" and minutes:
        cost = (f"about {minutes} minute{'s' if minutes != 1 else ''} from top to bottom on a laptop CPU with the "
                f"offline default model (EfficientNet-Lite0) and bundled photos")
    else:
        cost = "longer than on the `smoke` settings (see the README's \"For instructors\")"
    return "\n".join([
        f"**Course edition** of the chapter `{chapter}`, made by `certattr assignments` from `notebooks/{chapter}.md`. "
        f"It runs on the `{profile}` settings (written into the parameters cell below): {cost}; the other chapters "
        f"reuse the noisy samples in `cache_dir`.",
        "",
        f"{len(exs)} exercises at the end ({total} points): "
        + "; ".join(f"{exercise_number(e.label)}. {e.title} ({e.minutes} min, {e.points} point"
                    f"{'s' if e.points > 1 else ''})" for e in exs)
        + ". Write each function where it says `# YOUR CODE HERE`; the cell after it checks your function on "
          "inputs of its own and prints what is still wrong (it never raises, so the notebook always runs to the "
          "end). Numbers in the text appear as `{glue:text}` placeholders here; the book shows them. (In the "
          "instructor version each solution sits inside its stub, between nbgrader's two `###` marker lines.)"])


def _chapter_notebook(chapter: str, root: Path):
    import jupytext

    path = Path(root) / "notebooks" / f"{chapter}.md"
    if not path.exists():
        raise CertattrError(f"no notebook for chapter {chapter!r}: {path} does not exist")
    return jupytext.read(path)


def _assignment(chapter: str, *, instructor: bool, profile: str = "smoke", root: Path | None = None,
                cache_dir: str = "certattr-cache", results_dir: str = "results"):
    import nbformat

    from ..book.build import ROOT, chapter_parameters

    root = Path(root) if root is not None else ROOT
    nb = _chapter_notebook(chapter, root)
    exercises = chapter_exercises(nb, chapter)
    start = _exercises_start(nb)
    params = chapter_parameters(profile, chapter, root=root)
    params.update(cache_dir=cache_dir, results_dir=results_dir)
    by_text = {e.text: e for e in exercises}
    skip = {i for e in exercises for i in (e.solution_start, e.solution, e.solution_end)}
    cells, setup = [], 0
    for i, cell in enumerate(nb.cells):
        if i in skip:
            continue
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = _parameters_source(cell.source, params)
        if i < start:
            cells.append(cell)
            continue
        if i == start:
            cell.source = _strip_links(cell.source)
            cells.append(cell)
            continue
        if i in by_text:
            e = by_text[i]
            before = cell.source[:_EXERCISE_RE.search(cell.source).start()].strip()
            after = cell.source[_EXERCISE_RE.search(cell.source).end():].strip()
            if before or after:
                raise CertattrError(f"{chapter}: the cell of exercise {e.exercise.label!r} must hold only the "
                                    f"exercise directive (separate cells with +++)")
            cell.source = f"### Exercise {e.number}: {e.title}\n\n{_strip_links(e.body)}"
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-text", locked=True)
        elif any(i == e.stub for e in exercises):
            e = next(e for e in exercises if e.stub == i)
            if instructor:
                cell.source = _merge(cell.source, nb.cells[e.solution].source, f"{chapter}: {e.exercise.label}")
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-answer", solution=True)
        elif any(i == e.check for e in exercises):
            e = next(e for e in exercises if e.check == i)
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-check", grade=True, locked=True,
                                                  points=e.exercise.points)
        elif cell.cell_type == "code":
            setup += 1
            cell.metadata["nbgrader"] = _nbgrader(f"{chapter}-setup{setup if setup > 1 else ''}", locked=True)
        if cell.cell_type == "markdown" and not cell.source.strip():
            continue
        cells.append(cell)
    header = nbformat.v4.new_markdown_cell(_header(chapter, profile))
    cells.insert(1, header)
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                    "language_info": {"name": "python"}}
    for cell in out.cells:
        cell.metadata.pop("jupytext", None)
        grader = cell.metadata.get("nbgrader")
        if grader:  # what nbgrader's LockCells does: nothing graded can be deleted, nothing locked edited
            cell.metadata["deletable"] = False
            if grader["locked"]:
                cell.metadata["editable"] = False
    nbformat.validate(out)
    return out


def student_notebook(chapter: str, **kwargs):
    """The student notebook of ``chapter``: stubs and checks, no solution (``nbformat`` notebook)."""
    return _assignment(chapter, instructor=False, **kwargs)


def instructor_notebook(chapter: str, **kwargs):
    """The instructor (nbgrader source) notebook of ``chapter``: every solution between BEGIN/END SOLUTION."""
    return _assignment(chapter, instructor=True, **kwargs)


NBGRADER_CONFIG = '''# nbgrader course configuration written by `certattr assignments` (README: "For instructors").
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
# the chapters compute noisy attribution maps: give each cell time (the default is 30 s)
c.Execute.timeout = 1800
c.Execute.kernel_name = "python3"
'''


def build_assignments(out, *, chapters=None, profile: str = "smoke", root: Path | None = None,
                      cache_dir: str = "certattr-cache", course: bool = True) -> list[Path]:
    """Write ``<chapter>-student.ipynb`` and ``<chapter>-instructor.ipynb`` for every chapter into ``out``.

    ``profile`` gives the parameters written into each parameters cell (``smoke``: minutes on a laptop CPU);
    ``cache_dir`` is the sample cache the notebooks use (relative to the folder they run in, or absolute).
    With ``course=True`` also an nbgrader course folder ``out/nbgrader`` (see the module docstring).
    """
    import nbformat

    from ..book.build import CHAPTERS, PROFILES
    from ..engine.validation import check_choice

    check_choice("profile", profile, PROFILES)
    chapters = list(CHAPTERS) if not chapters else [check_choice("chapter", c, CHAPTERS) for c in chapters]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters:
        kw = dict(profile=profile, root=root, cache_dir=cache_dir)
        student, instructor = student_notebook(chapter, **kw), instructor_notebook(chapter, **kw)
        for nb, name in [(student, f"{chapter}-student.ipynb"), (instructor, f"{chapter}-instructor.ipynb")]:
            path = out / name
            nbformat.write(nb, path)
            written.append(path)
        if course:
            source = out / "nbgrader" / "source" / chapter
            source.mkdir(parents=True, exist_ok=True)
            nbformat.write(instructor, source / f"{chapter}-student.ipynb")
            written.append(source / f"{chapter}-student.ipynb")
    if course:
        config = out / "nbgrader" / "nbgrader_config.py"
        config.write_text(NBGRADER_CONFIG)
        written.append(config)
    return written
