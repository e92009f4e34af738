"""Metrics on certificates: %certified, Certified GridPG, deletion faithfulness (the tidy rows that carry them to
the chapters' tables are :mod:`certattr.evaluation.rows`).

All functions are pure: they read label maps, attribution maps or :class:`~certattr.engine.certificate.Certificate`
objects and return numbers, small named tuples or dataclasses; only :func:`deletion_curve` runs a model.

Label maps are integer arrays in {1 (certified important), 0 (certified not important), ABSTAIN = -1};
a Certificate holds them as ``labels`` of shape (len(ks), H, W), K largest first.

**Pooling.** "%certified pooled over images" means pixel counts are summed over all images and then
divided by the total number of pixels, so an image weighs by its number of pixels. The mean over
images of per-image fractions (every image weighs the same) is reported beside it (``image_mean_*``);
the two agree when all images have the same size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from .grids import cell_mask
from ..engine.certificate import ABSTAIN, Certificate
from ..engine.validation import LUMA, CertattrError, check_image, check_ks
from ..models.registry import model_device

__all__ = ["label_counts", "pooled_fractions", "certified_fractions", "GridPG", "certified_gridpg", "gridpg", "certificate_gridpg", "summarize_gridpg", "fill_value", "deletion_masks", "DeletionCurve", "deletion_curve", "certified_components", "faithfulness_scores", "FRACTION_COLUMNS"]

FRACTION_COLUMNS = ("certified_1", "certified_0", "abstain")


# --- validation -------------------------------------------------------------------------------------------------
def _labels(labels, name: str = "labels", ndim: Sequence[int] = (2,)) -> np.ndarray:
    arr = labels.labels if isinstance(labels, Certificate) else labels
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.ndim not in ndim:
        raise CertattrError(f"{name} of shape {arr.shape} is not allowed: expected {' or '.join(f'{d}-D' for d in ndim)} "
                            f"label maps")
    if not np.issubdtype(arr.dtype, np.integer):
        raise CertattrError(f"{name} has dtype {arr.dtype}, which is not allowed: labels are integers in {{1, 0, -1}}")
    bad = ~np.isin(arr, (1, 0, ABSTAIN))
    if bad.any():
        raise CertattrError(f"{name} contains {np.unique(arr[bad])[:5].tolist()}, which is not allowed: labels are "
                            f"1 (certified '1'), 0 (certified '0') or {ABSTAIN} (abstain)")
    return arr


def _map2d(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise CertattrError(f"{name} of shape {arr.shape} is not allowed: give one (H, W) map")
    if not np.isfinite(arr).all():
        raise CertattrError(f"{name} contains NaN or inf, which is not allowed")
    return arr


# --- %certified --------------------------------------------------------------------------------------------------
def label_counts(labels) -> dict:
    """Pixel counts of a label map (any shape): ``{"n_pixels", "n_certified_1", "n_certified_0", "n_abstain"}``."""
    lab = _labels(labels, ndim=range(1, 8))
    return {"n_pixels": int(lab.size), "n_certified_1": int((lab == 1).sum()),
            "n_certified_0": int((lab == 0).sum()), "n_abstain": int((lab == ABSTAIN).sum())}


def pooled_fractions(label_maps: Iterable) -> dict:
    """%certified of several (H_i, W_i) label maps (one K), pooled over images.

    Returns a dict with
    - ``certified_1``, ``certified_0``, ``abstain``: pooled fractions (summed counts / summed pixels; they sum to 1);
    - ``robustness`` = 1 - abstain (the paper's "certified robustness");
    - ``image_mean_certified_1``, ``image_mean_certified_0``, ``image_mean_abstain``, ``image_mean_robustness``:
      means over images of the per-image fractions;
    - ``n_images``, ``n_pixels``, ``n_certified_1``, ``n_certified_0``, ``n_abstain``: the counts.
    """
    counts = {"n_pixels": 0, "n_certified_1": 0, "n_certified_0": 0, "n_abstain": 0}
    per_image = []
    for i, lm in enumerate(label_maps):
        c = label_counts(_labels(lm, f"label map {i}"))
        if c["n_pixels"] == 0:
            raise CertattrError(f"label map {i} has no pixels")
        for key in counts:
            counts[key] += c[key]
        per_image.append([c["n_certified_1"] / c["n_pixels"], c["n_certified_0"] / c["n_pixels"],
                          c["n_abstain"] / c["n_pixels"]])
    if not per_image:
        raise CertattrError("no label maps given: %certified needs at least one image")
    total = counts["n_pixels"]
    out = {"certified_1": counts["n_certified_1"] / total, "certified_0": counts["n_certified_0"] / total,
           "abstain": counts["n_abstain"] / total}
    out["robustness"] = 1.0 - out["abstain"]
    means = np.mean(np.asarray(per_image), axis=0)
    for name, value in zip(FRACTION_COLUMNS, means):
        out[f"image_mean_{name}"] = float(value)
    out["image_mean_robustness"] = 1.0 - out["image_mean_abstain"]
    out["n_images"] = len(per_image)
    out.update(counts)
    return out


def _as_certificates(certificates) -> list[Certificate]:
    if isinstance(certificates, Certificate):
        certificates = [certificates]
    certificates = list(certificates)
    if not certificates or not all(isinstance(c, Certificate) for c in certificates):
        raise CertattrError("give one Certificate or a non-empty sequence of Certificates")
    return certificates


def _resolve_ks(certificates: Sequence[Certificate], ks) -> tuple[float, ...]:
    ks = tuple(float(k) for k in certificates[0].ks) if ks is None else check_ks(ks)
    for i, cert in enumerate(certificates):
        have = {float(k) for k in cert.ks}
        missing = [k for k in ks if k not in have]
        if missing:
            raise CertattrError(f"certificate {i} has no K={missing}: it was certified at K={sorted(have, reverse=True)}")
    return ks


def certified_fractions(certificates, ks=None) -> dict:
    """Per K, :func:`pooled_fractions` over one Certificate or a sequence of Certificates.

    ``ks`` defaults to the first certificate's K values; every certificate must have every requested K.
    Returns ``{K (float): dict}``, K largest first. Images may have different sizes (counts are pooled).
    """
    certs = _as_certificates(certificates)
    ks = _resolve_ks(certs, ks)
    return {k: pooled_fractions(c.label_map(k) for c in certs) for k in ks}


# --- GridPG -------------------------------------------------------------------------------------------------------
class GridPG(NamedTuple):
    """A GridPG value with what it was computed from.

    ``value`` = ``inside`` / ``total`` (0.0 when ``empty``); for Certified GridPG ``inside``/``total`` are
    counts of certified-'1' pixels, for the uncertified GridPG sums of positive attribution.
    ``empty``: nothing to localize (no certified-'1' pixel, or no positive attribution).
    """

    value: float
    inside: float
    total: float
    empty: bool


def _grid_ratio(weights: np.ndarray, cell: int, layout) -> GridPG:
    mask = cell_mask(weights.shape[0], weights.shape[1], cell, layout)
    total = float(weights.sum())
    inside = float(weights[mask].sum())
    if total <= 0:
        return GridPG(0.0, inside, total, True)
    return GridPG(inside / total, inside, total, False)


def certified_gridpg(labels, cell: int, layout=(2, 2)) -> GridPG:
    """Certified GridPG of one label map (H, W) for target ``cell`` (row-major, 0 = top-left) of a rows x cols grid.

    value = #(certified-'1' pixels inside the cell) / #(certified-'1' pixels in the grid); 0.0 with
    ``empty=True`` when no pixel is certified '1'. Abstained and certified-'0' pixels do not count.
    A uniform map scores 1/(rows*cols) (0.25 for 2x2). H and W must be divisible by rows and cols.
    """
    lab = _labels(labels)
    return _grid_ratio((lab == 1).astype(np.float64), cell, layout)


def gridpg(attribution, cell: int, layout=(2, 2)) -> GridPG:
    """Uncertified GridPG of a raw attribution map (H, W): positive mass inside ``cell`` / total positive mass.

    Only positive values count (negative values are set to 0, as in the GridPG of Böhle et al.). A map
    with no positive value (all <= 0) gives 0.0 with ``empty=True``, like a certificate with no certified
    '1' pixel; report how often that happens (:func:`summarize_gridpg`) rather than dropping such maps.
    For unsigned methods (|gradient|, CAMs) the map is non-negative and this is the plain mass ratio.
    """
    arr = _map2d(attribution, "attribution")
    return _grid_ratio(np.clip(arr, 0.0, None), cell, layout)


def certificate_gridpg(certificate: Certificate, cell: int, layout=(2, 2), ks=None) -> dict:
    """Certified GridPG of a grid's Certificate at each K: ``{K: GridPG}``, K largest first."""
    ks = _resolve_ks([certificate], ks)
    return {k: certified_gridpg(certificate.label_map(k), cell, layout) for k in ks}


def summarize_gridpg(results: Iterable[GridPG]) -> dict:
    """Mean GridPG over grids, counting empty ones as 0, and how often they were empty.

    Returns ``{"mean", "n", "n_empty", "frac_empty", "mean_nonempty"}`` (``mean_nonempty`` is NaN when all
    are empty).
    """
    res = list(results)
    if not res:
        raise CertattrError("no GridPG results to summarize")
    values = np.array([r.value for r in res], dtype=np.float64)
    empty = np.array([r.empty for r in res], dtype=bool)
    return {"mean": float(values.mean()), "n": len(res), "n_empty": int(empty.sum()),
            "frac_empty": float(empty.mean()),
            "mean_nonempty": float(values[~empty].mean()) if (~empty).any() else math.nan}


# --- deletion -------------------------------------------------------------------------------------------------------
def fill_value(model, fill="mean") -> torch.Tensor:
    """The fill colour in [0,1] pixel units, (3,) float32.

    ``"mean"``: the pixel value that the model's ``normalize`` maps to 0, i.e. the dataset mean colour
    (found from ``normalize`` itself, assumed affine per channel: x0 = -normalize(0) / (normalize(1) - normalize(0))).
    A float in [0, 1]: that grey level in every channel. A sequence of 3 floats in [0, 1]: an RGB colour.
    """
    if isinstance(fill, str):
        if fill != "mean":
            raise CertattrError(f"fill={fill!r} is unknown: give 'mean', a float in [0, 1] or 3 floats in [0, 1]")
        if not hasattr(model, "normalize"):
            raise CertattrError("fill='mean' needs a model with a normalize method; give a float fill instead")
        with torch.no_grad():
            zero = model.normalize(torch.zeros(1, 3, 1, 1, device=model_device(model))).detach().cpu().double().view(3)
            one = model.normalize(torch.ones(1, 3, 1, 1, device=model_device(model))).detach().cpu().double().view(3)
        if not bool(torch.all(one != zero)):
            raise CertattrError("the model's normalize is constant in a channel: cannot find the mean colour")
        return (-zero / (one - zero)).float()
    values = [fill] * 3 if isinstance(fill, (int, float, np.integer, np.floating)) and not isinstance(fill, bool) else fill
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise CertattrError(f"fill={fill!r} is not allowed: give 'mean', a float in [0, 1] or 3 floats in [0, 1]") from None
    if len(values) != 3 or not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        raise CertattrError(f"fill={fill!r} is not allowed: pixel fill values lie in [0, 1] (one or three of them)")
    return torch.tensor(values, dtype=torch.float32)


def fill_in_channels(colour: torch.Tensor, channels: int) -> torch.Tensor:
    """The (3,) fill colour of :func:`fill_value` in a model's ``channels``: itself for 3, its luma (ITU-R 601, as a
    colour image is made grey for a greyscale model) as (1,) for 1."""
    colour = torch.as_tensor(colour, dtype=torch.float32).reshape(-1)
    if int(channels) == 1 and colour.numel() == 3:
        return (colour * torch.tensor(LUMA, dtype=torch.float32)).sum().reshape(1)
    return colour


def deletion_masks(labels, ks) -> tuple[tuple[float, ...], np.ndarray]:
    """Cumulative deletion masks from label maps (len(ks), H, W) certified at ``ks`` (in that order).

    Returns ``(ks_ascending, masks)`` with masks bool (len(ks), H, W): masks[j] = union of the
    certified-'1' pixels of the j+1 smallest K values (smallest K first).
    """
    lab = _labels(labels, ndim=(3,))
    ks = [float(k) for k in (ks if isinstance(ks, (list, tuple, np.ndarray)) else [ks])]
    check_ks(ks)
    if len(ks) != lab.shape[0]:
        raise CertattrError(f"{len(ks)} K values for {lab.shape[0]} label maps: give one K per map")
    order = np.argsort(ks, kind="stable")
    masks = np.logical_or.accumulate(lab[order] == 1, axis=0)
    return tuple(ks[i] for i in order), masks


@dataclass
class DeletionCurve:
    """The target's softmax probability as certified top-K pixels are removed, smallest K first.

    Point 0 is the unmodified image; point j >= 1 removes the union of the certified-'1' pixels of the
    j smallest K values (``ks[:j]``). Arrays have length len(ks) + 1.

    ``auc``: trapezoid area under ``probabilities`` over the normalized step index t_j = j / len(ks)
    (so in [0, 1], and a single K gives the mean of the two end points). Lower = removing certified
    pixels hurts the prediction more (more faithful). The step index, not the removed fraction, is the
    x-axis because it is the same for every method: a method certifying few pixels would otherwise
    have a short, incomparable curve. :meth:`auc_over_fraction` gives the other reading.
    """

    ks: tuple  #: K values, ascending
    target: int
    fill: tuple  #: the RGB fill colour in [0,1] pixel units
    fill_spec: str  #: how the fill was asked for ("mean" or the value)
    n_removed: np.ndarray  #: (len(ks)+1,) int: pixels removed at each point
    removed_fraction: np.ndarray  #: (len(ks)+1,) float: n_removed / (H*W)
    probabilities: np.ndarray  #: (len(ks)+1,) float: softmax probability of the target

    @property
    def steps(self) -> np.ndarray:
        return np.arange(len(self.ks) + 1)

    @property
    def auc(self) -> float:
        return _trapezoid(self.steps / len(self.ks), self.probabilities)

    def auc_over_fraction(self) -> float:
        """Trapezoid area under probability vs removed fraction (0 if nothing was removed at any step)."""
        return _trapezoid(self.removed_fraction, self.probabilities)

    @property
    def relative(self) -> np.ndarray:
        """probabilities / probabilities[0] (NaN-free only if the clean probability is > 0)."""
        return self.probabilities / self.probabilities[0]


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def deletion_curve(model, image, target: int, certificate: Certificate, *, ks=None, fill="mean") -> DeletionCurve:
    """Deletion faithfulness of one Certificate.

    ``model``: callable on [0,1] images (B, 3, H, W) returning logits (B, classes) (a LoadedModel), with a
    ``normalize`` method when ``fill="mean"``. ``image``: (3, H, W) in [0, 1], the image the certificate
    was computed for (same H, W as the certificate). ``target``: the class whose probability is tracked.
    ``ks``: which of the certificate's K values to use (default all); they are applied smallest first,
    cumulatively. ``fill``: see :func:`fill_value` (default "mean": 0 in the model's normalized space).
    Removing a pixel sets all three channels to the fill colour. The clean image and all len(ks) deleted
    images go through the model in one batch (no gradient); softmax is taken in float64.
    """
    if not callable(model):
        raise CertattrError("model must be callable on [0,1] images (B, 3, H, W) and return logits")
    if not isinstance(certificate, Certificate):
        raise CertattrError(f"certificate of type {type(certificate).__name__} is not allowed: give a Certificate")
    ks = _resolve_ks([certificate], ks)
    h, w = certificate.labels.shape[1:]
    channels = getattr(model, "channels", 3)
    image = check_image(image, spatial=(h, w), channels=channels)  # a greyscale model's image stays grey
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise CertattrError(f"target={target!r} is not allowed: give a class index >= 0")
    colour = fill_in_channels(fill_value(model, fill), channels)
    ks_up, masks = deletion_masks(np.stack([certificate.label_map(k) for k in ks]), ks)
    m = torch.from_numpy(masks).unsqueeze(1)  # (J, 1, H, W)
    deleted = torch.where(m, colour.view(1, -1, 1, 1), image.unsqueeze(0))
    batch = torch.cat([image.unsqueeze(0), deleted]).to(model_device(model))
    with torch.no_grad():
        logits = model(batch)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch.shape[0]:
        raise CertattrError(f"the model returned shape {tuple(getattr(logits, 'shape', ()))}: expected logits (B, classes)")
    if target >= logits.shape[1]:
        raise CertattrError(f"target={target} is not allowed: the model has {logits.shape[1]} classes")
    probs = torch.softmax(logits.detach().to("cpu", torch.float64), dim=1)[:, int(target)].numpy()
    n_removed = np.concatenate([[0], masks.reshape(len(ks_up), -1).sum(axis=1)]).astype(np.int64)
    return DeletionCurve(ks=ks_up, target=int(target), fill=tuple(float(v) for v in colour),
                         fill_spec=fill if isinstance(fill, str) else repr(fill), n_removed=n_removed,
                         removed_fraction=n_removed / float(h * w), probabilities=probs)


def certified_components(label_map: np.ndarray) -> dict:
    """The 4-connected components of the certified-'1' pixels of one label map (H, W): their number
    ``n_components_1`` and mean size in pixels ``mean_component_px_1`` (0 when there is none)."""
    from scipy import ndimage

    ones = np.asarray(label_map) == 1
    labelled, count = ndimage.label(ones)
    return {"n_components_1": int(count), "mean_component_px_1": float(ones.sum() / count) if count else 0.0}


def faithfulness_scores(faith):
    """Per (model, image, method, layer) of deletion rows (:func:`certattr.evaluation.rows.deletion_rows`):
    ``faithfulness`` = the confidence drop at the first deletion step, 1 - p after the first step / p clean (the
    faithfulness chapter's table shows p / p clean; a rise of the confidence gives a negative drop, not clipped),
    and ``nothing_removed`` (the first step removed no pixel, so the drop of 0 is not a measurement)."""
    first = faith[faith.step == 1]
    out = first[["model", "image_id", "method", "layer", "relative_probability"]].copy()
    out["faithfulness"] = 1.0 - out.relative_probability
    out["nothing_removed"] = (first.n_removed.to_numpy() == 0) if "n_removed" in first else False
    return out
