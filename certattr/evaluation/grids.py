"""Localization grids: rows x cols images of distinct classes, placed row-major.

The paper's grids are 2x2: four images of four distinct classes, each classified with softmax confidence
>= 0.99 by both VGG-11 and ResNet-18 (and with the same class by both), placed row-major into one image
(cell 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right). Any cell can be the target: the
target class is that cell's class, and Certified GridPG (:mod:`certattr.evaluation.metrics`) measures how much of
the certified top-K lies inside the target cell.

Building is deterministic: qualification does not depend on batching, and the selection uses a numpy
``Generator`` seeded with ``seed`` over the qualifying images in their given order.

Shapes: source images (3, H, W) or, all of them, (1, H, W) in [0, 1]; a grid tensor (C, rows*h, cols*w) of
their channels C, where (h, w) is the cell size (the source size unless ``cell_size``/``grid_size`` asks for a
resize); cell masks (rows*h, cols*w) bool.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.validation import CertattrError, check_finite_number, check_image, check_positive_int
from ..models.registry import model_device

__all__ = ["Grid", "QualifiedImage", "Qualification", "cell_mask", "cell_slices", "qualify_images", "build_grids",
           "make_grid"]


# --- geometry -----------------------------------------------------------------------------------------------
def _check_layout(layout) -> tuple[int, int]:
    try:
        rows, cols = layout
    except (TypeError, ValueError):
        raise CertattrError(f"grid layout {layout!r} is not allowed: give (rows, cols), e.g. (2, 2)") from None
    return check_positive_int("rows", rows), check_positive_int("cols", cols)


def cell_slices(height: int, width: int, cell: int, layout=(2, 2)) -> tuple[slice, slice]:
    """The (row slice, column slice) of ``cell`` (row-major, 0 = top-left) in a (height, width) grid.

    ``height`` must be divisible by rows and ``width`` by cols (cells of equal size), else CertattrError.
    """
    rows, cols = _check_layout(layout)
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or not 0 <= cell < rows * cols:
        raise CertattrError(f"cell={cell!r} is not allowed: a {rows}x{cols} grid has cells 0..{rows * cols - 1} "
                            f"(row-major, 0 = top-left)")
    if height % rows or width % cols:
        raise CertattrError(f"a map of size {height}x{width} cannot be split into a {rows}x{cols} grid of equal cells: "
                            f"the height must be divisible by {rows} and the width by {cols}")
    h, w = height // rows, width // cols
    r, c = divmod(int(cell), cols)
    return slice(r * h, (r + 1) * h), slice(c * w, (c + 1) * w)


def cell_mask(height: int, width: int, cell: int, layout=(2, 2)) -> np.ndarray:
    """Boolean mask (height, width): True on ``cell`` of a rows x cols grid (row-major, 0 = top-left)."""
    rs, cs = cell_slices(height, width, cell, layout)
    mask = np.zeros((int(height), int(width)), dtype=bool)
    mask[rs, cs] = True
    return mask


# --- grid objects ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Grid:
    """One grid: ``tensor`` (C, rows*h, cols*w) float32 in [0, 1], C = 3 (or 1 for greyscale images); cell i holds
    ``image_ids[i]`` of class ``classes[i]``.

    ``grid_id`` is unique and stable: it contains the grid's index and a hash of its image ids, layout and
    size, so it can serve as the image id of a certification run (noise streams and caches are keyed on it).
    """

    grid_id: str
    image_ids: tuple
    classes: tuple
    tensor: torch.Tensor
    layout: tuple = (2, 2)
    confidences: tuple = field(default=())  #: per cell, the smallest top-1 confidence over the models

    @property
    def n_cells(self) -> int:
        return self.layout[0] * self.layout[1]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the whole grid."""
        return int(self.tensor.shape[1]), int(self.tensor.shape[2])

    @property
    def cell_size(self) -> tuple[int, int]:
        return self.size[0] // self.layout[0], self.size[1] // self.layout[1]

    def cell_mask(self, cell: int) -> np.ndarray:
        """Boolean (H2, W2) mask of ``cell`` (row-major, 0 = top-left)."""
        return cell_mask(*self.size, cell, self.layout)

    def cell_slices(self, cell: int) -> tuple[slice, slice]:
        return cell_slices(*self.size, cell, self.layout)

    def cell_image(self, cell: int) -> torch.Tensor:
        """The (C, h, w) content of ``cell``."""
        rs, cs = self.cell_slices(cell)
        return self.tensor[:, rs, cs]

    def target_class(self, cell: int) -> int:
        """The class to explain when ``cell`` is the target (the class all models agreed on)."""
        self.cell_slices(cell)  # validates the cell index
        return int(self.classes[cell])

    def target_id(self, cell: int) -> str:
        """An id for the (grid, target cell) pair, e.g. for result rows: ``<grid_id>-c<cell>``."""
        self.cell_slices(cell)
        return f"{self.grid_id}-c{int(cell)}"

    def describe(self) -> dict:
        """JSON-ready description (no tensor)."""
        return {"grid_id": self.grid_id, "image_ids": list(self.image_ids), "classes": [int(c) for c in self.classes],
                "layout": list(self.layout), "size": list(self.size), "cell_size": list(self.cell_size),
                "confidences": [float(c) for c in self.confidences]}


def _grid_id(index: int, image_ids: Sequence[str], layout, size) -> str:
    key = "|".join([*map(str, image_ids), f"{layout[0]}x{layout[1]}", f"{size[0]}x{size[1]}"]).encode()
    return f"grid{index:04d}-{hashlib.blake2b(key, digest_size=4).hexdigest()}"


def _pair(name: str, value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise CertattrError(f"{name}={value!r} is not allowed: give an int or (height, width)") from None
    return check_positive_int(f"{name} height", a), check_positive_int(f"{name} width", b)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[1:]) == tuple(size):
        return image
    out = F.interpolate(image.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def make_grid(images: Sequence[torch.Tensor], layout=(2, 2), cell_size=None) -> torch.Tensor:
    """Place rows*cols images (C, h, w) row-major into one tensor (C, rows*h, cols*w); C = 1 when every image is
    greyscale (1, h, w), else 3 (a greyscale image among colour ones is repeated to RGB).

    With ``cell_size`` (int or (h, w)) every image is first resized to it (bilinear, antialiased,
    align_corners=False, clamped to [0, 1]); without it all images must have the same size.
    """
    rows, cols = _check_layout(layout)
    images = list(images)
    channels = _channels_of(images)
    images = [check_image(im, f"image {i}", channels=channels) for i, im in enumerate(images)]
    if len(images) != rows * cols:
        raise CertattrError(f"a {rows}x{cols} grid needs {rows * cols} images, got {len(images)}")
    size = _pair("cell_size", cell_size)
    if size is not None:
        images = [_resize(im, size) for im in images]
    sizes = {tuple(im.shape[1:]) for im in images}
    if len(sizes) != 1:
        raise CertattrError(f"the images of a grid have different sizes {sorted(sizes)}: pass cell_size to resize them")
    return torch.cat([torch.cat(images[r * cols:(r + 1) * cols], dim=2) for r in range(rows)], dim=1).contiguous()


# --- qualification ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QualifiedImage:
    """An image that every model classifies as ``label`` with top-1 softmax confidence >= the threshold."""

    image_id: str
    label: int
    confidence: float  #: the smallest top-1 confidence over the models
    position: int  #: index in the given image sequence


@dataclass
class Qualification:
    """The outcome of :func:`qualify_images`: the qualifying images and why the others were dropped."""

    qualified: list
    threshold: float
    n_images: int
    n_models: int
    rejected: dict  #: reason -> list of image ids ("low_confidence", "disagree", "wrong_label")

    def by_class(self) -> dict:
        """class -> list of QualifiedImage, classes in ascending order, images in their given order."""
        out: dict = {}
        for q in self.qualified:
            out.setdefault(q.label, []).append(q)
        return dict(sorted(out.items()))

    def explain(self) -> str:
        reasons = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in self.rejected.items() if v) or "none rejected"
        return (f"{len(self.qualified)} of {self.n_images} images qualified (top-1 softmax confidence >= "
                f"{self.threshold:g} for " + ("the model" if self.n_models == 1 else f"all {self.n_models} models, the "
                                                 f"same top-1 class for all") + ", and the given "
                f"label where one was given; rejected: {reasons}), covering {len(self.by_class())} distinct classes")


def _channels_of(tensors) -> int:
    """1 when every image is a 1-channel (greyscale) tensor, else 3: a grid keeps greyscale images grey."""
    shapes = [getattr(t, "shape", ()) for t in tensors]
    return 1 if shapes and all(len(s) == 3 and s[0] == 1 for s in shapes) else 3


def _parse_items(images) -> list[tuple[str, torch.Tensor, int | None]]:
    out, seen = [], set()
    images = list(images)
    for i, item in enumerate(images):
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise CertattrError(f"image set entry {i} is not allowed: give (image_id, tensor (3, H, W)) or "
                                f"(image_id, tensor, label)")
    channels = _channels_of([item[1] for item in images])
    for item in images:
        image_id, tensor = str(item[0]), check_image(item[1], f"image {item[0]!r}", channels=channels)
        label = None if len(item) == 2 or item[2] is None else int(item[2])
        if image_id in seen:
            raise CertattrError(f"image id {image_id!r} appears twice in the image set: ids must be unique")
        seen.add(image_id)
        out.append((image_id, tensor, label))
    return out


def _model_list(models) -> list[Callable]:
    if callable(models) and not isinstance(models, (list, tuple)):
        models = [models]
    models = list(models)
    if not models or not all(callable(m) for m in models):
        raise CertattrError("models: give one or more callables mapping [0,1] images (B, 3, H, W) to logits (B, classes)")
    return models


def _top1(model, images: list[torch.Tensor], chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 class and its softmax probability for each image, batched by equal size, float64 softmax."""
    labels = np.empty(len(images), dtype=np.int64)
    conf = np.empty(len(images), dtype=np.float64)
    by_size: dict = {}
    for i, im in enumerate(images):
        by_size.setdefault(tuple(im.shape), []).append(i)
    device = model_device(model)
    with torch.no_grad():
        for idx in by_size.values():
            for start in range(0, len(idx), chunk_size):
                part = idx[start:start + chunk_size]
                logits = model(torch.stack([images[i] for i in part]).to(device))
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(part):
                    raise CertattrError(f"a model returned {type(logits).__name__} of shape "
                                        f"{tuple(getattr(logits, 'shape', ()))}: expected logits (B, classes)")
                probs = torch.softmax(logits.detach().to("cpu", torch.float64), dim=1)
                p, c = probs.max(dim=1)
                labels[part], conf[part] = c.numpy(), p.numpy()
    return labels, conf


def qualify_images(images, models, threshold: float = 0.99, chunk_size: int = 32) -> Qualification:
    """Which images qualify for grids.

    ``images``: a sequence of (image_id, tensor (3, H, W) in [0, 1]) or (image_id, tensor, label);
    ``models``: one callable or a sequence of callables (e.g. :class:`certattr.models.registry.LoadedModel`)
    mapping [0, 1] images (B, 3, H, W) to logits (B, classes). An image qualifies when every model's
    top-1 softmax probability is >= ``threshold``, all models agree on the top-1 class, and that class
    equals the label where a label is given ("classified correctly"). The images are classified as
    given (before any grid resize).
    """
    threshold = check_finite_number("threshold", threshold)
    if not 0 <= threshold <= 1:
        raise CertattrError(f"threshold={threshold!r} is not allowed: a softmax confidence threshold lies in [0, 1]")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    items = _parse_items(images)
    models = _model_list(models)
    tensors = [t for _, t, _ in items]
    preds = [_top1(m, tensors, chunk_size) for m in models] if items else []
    rejected = {"low_confidence": [], "disagree": [], "wrong_label": []}
    qualified = []
    for i, (image_id, _, label) in enumerate(items):
        classes = {int(p[0][i]) for p in preds}
        conf = min(float(p[1][i]) for p in preds)
        if conf < threshold:
            rejected["low_confidence"].append(image_id)
        elif len(classes) != 1:
            rejected["disagree"].append(image_id)
        elif label is not None and label not in classes:
            rejected["wrong_label"].append(image_id)
        else:
            qualified.append(QualifiedImage(image_id, classes.pop(), conf, i))
    return Qualification(qualified, threshold, len(items), len(models), rejected)


# --- building -----------------------------------------------------------------------------------------------------
def _count_arrangements(counts: Sequence[int], k: int) -> int:
    """Number of ordered choices of k images of k distinct classes: k! * e_k(counts)."""
    e = [1] + [0] * k  # elementary symmetric polynomials by dynamic programming
    for c in counts:
        for j in range(k, 0, -1):
            e[j] += e[j - 1] * c
    return math.factorial(k) * e[k]


def build_grids(images, models, n_grids: int, *, seed: int = 0, threshold: float = 0.99, layout=(2, 2),
                cell_size=None, grid_size=None, distinct: bool = True, chunk_size: int = 32,
                qualification: Qualification | None = None) -> list[Grid]:
    """Build ``n_grids`` grids of rows*cols images of distinct classes, deterministically.

    Selection (numpy ``default_rng(seed)``): for each grid, draw rows*cols distinct classes uniformly
    among the qualifying classes (in random order: that order is the row-major cell order), then one
    qualifying image of each class uniformly. Images may appear in several grids; with ``distinct=True``
    (default) no two grids have the same images in the same cells (redrawn), and asking for more grids
    than distinct arrangements exist is an error.

    Size: by default cells keep the source size (all qualifying images must then have the same size);
    ``cell_size`` (int or (h, w)) or ``grid_size`` (int or (H, W), divisible by the layout; e.g. 224 gives
    112x112 cells in a 2x2 grid) resizes every cell (bilinear, antialiased). The paper: 224 cells, 448 grid.

    ``qualification``: the :func:`qualify_images` of these images, models and threshold when the caller has it
    already (the models are then not run again).

    Raises CertattrError when fewer than rows*cols distinct classes qualify, saying how many images
    qualified, for which threshold, and why the others were rejected.
    """
    rows, cols = _check_layout(layout)
    n_grids = check_positive_int("n_grids", n_grids)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise CertattrError(f"seed={seed!r} is not allowed: give an integer")
    if cell_size is not None and grid_size is not None:
        raise CertattrError("give cell_size or grid_size, not both")
    gsize = _pair("grid_size", grid_size)
    if gsize is not None:
        if gsize[0] % rows or gsize[1] % cols:
            raise CertattrError(f"grid_size={grid_size!r} is not allowed: it must be divisible by the {rows}x{cols} layout")
        cell_size = (gsize[0] // rows, gsize[1] // cols)
    csize = _pair("cell_size", cell_size)

    items = _parse_items(images)
    tensors = {image_id: t for image_id, t, _ in items}
    if qualification is not None and (qualification.threshold != check_finite_number("threshold", threshold)
                                      or qualification.n_images != len(items)):
        raise CertattrError("qualification is of other images or another threshold: pass the qualify_images() of "
                            "these images at this threshold, or None")
    qual = qualification if qualification is not None else qualify_images(items, models, threshold, chunk_size)
    by_class = qual.by_class()
    n_cells = rows * cols
    if len(by_class) < n_cells:
        labels = {label for _, _, label in items}
        hint = (f"the images' labels name only {len(labels)} classes, so no set of these images makes a grid"
                if None not in labels and len(labels) < n_cells else "lower the threshold or give more images")
        raise CertattrError(f"cannot build a {rows}x{cols} grid: it needs {n_cells} distinct classes, but {qual.explain()}; "
                            f"{hint}")
    if csize is None:
        sizes = {tuple(tensors[q.image_id].shape[1:]) for q in qual.qualified}
        if len(sizes) != 1:
            raise CertattrError(f"the qualifying images have different sizes {sorted(sizes)}: pass cell_size or grid_size")
        csize = sizes.pop()
    if distinct:
        available = _count_arrangements([len(v) for v in by_class.values()], n_cells)
        if n_grids > available:
            raise CertattrError(f"n_grids={n_grids} distinct grids are not possible: {qual.explain()}, which allows "
                                f"only {available} distinct arrangements; ask for fewer or pass distinct=False")

    rng = np.random.default_rng(int(seed))
    classes = list(by_class)
    seen, grids = set(), []
    attempts, max_attempts = 0, 1000 * n_grids + 10_000
    while len(grids) < n_grids:
        attempts += 1
        if attempts > max_attempts:
            raise CertattrError(f"could not draw {n_grids} distinct grids in {max_attempts} attempts "
                                f"({len(grids)} found): pass distinct=False or give more images")
        chosen = [classes[i] for i in rng.choice(len(classes), size=n_cells, replace=False)]
        picks = [by_class[c][int(rng.integers(len(by_class[c])))] for c in chosen]
        key = tuple(q.image_id for q in picks)
        if distinct and key in seen:
            continue
        seen.add(key)
        tensor = make_grid([tensors[q.image_id] for q in picks], (rows, cols), csize)
        size = (int(tensor.shape[1]), int(tensor.shape[2]))
        grids.append(Grid(_grid_id(len(grids), key, (rows, cols), size), key, tuple(int(c) for c in chosen), tensor,
                          (rows, cols), tuple(q.confidence for q in picks)))
    return grids
