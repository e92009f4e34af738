"""Deletion faithfulness of a set of certificates: the tidy curve rows of every certificate, and whether
removing the first (smallest-K) certified set flips the model's top-1 class."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .metrics import deletion_curve, deletion_masks, fill_in_channels, fill_value
from .rows import deletion_rows
from .names import method_title

__all__ = ["first_step_flipped", "deletion_results"]


def first_step_flipped(model, image: torch.Tensor, target: int, certificate, ks: Sequence[float], colour) -> bool:
    """Does the model's top-1 class differ from ``target`` once the certified-'1' pixels of the smallest K
    of ``ks`` are set to ``colour`` ((3,) in [0, 1] pixel units, e.g. :func:`fill_value`)?
    ``image``: (3, H, W) in [0, 1], the image ``certificate`` was computed for."""
    ks = [float(k) for k in ks]
    _, masks = deletion_masks(np.stack([certificate.label_map(k) for k in ks]), ks)
    colour = fill_in_channels(colour, int(image.shape[0]))  # (C,) for a (C, H, W) image, C = 1 or 3
    first = torch.where(torch.from_numpy(masks[:1]).unsqueeze(1), colour.view(1, -1, 1, 1), image.unsqueeze(0))
    with torch.no_grad():
        top1 = int(model(first.to(model.device)).argmax(1)[0])
    return top1 != target


def deletion_results(model, certificates: Mapping, images: Mapping[str, torch.Tensor], targets: Mapping[str, int],
                     ks: Sequence[float], *, fill="mean", sigma: float) -> tuple[list[dict], list[dict]]:
    """For every certificate ``certificates[(image_id, method, layer, sigma)]`` (from
    :meth:`certattr.book.plans.Certified.of` on photos) of ``model`` (a LoadedModel): its deletion
    curve rows (:func:`certattr.evaluation.metrics.deletion_rows`, removing the certified pixels of ``ks``
    cumulatively, smallest K first, set to ``fill``) and one flip row (model, image_id, method, layer, flipped:
    :func:`first_step_flipped`). ``images``: image id -> (3, H, W) tensor; ``targets``: image id -> class.
    Returns (curve rows, flip rows), in the certificates' order."""
    colour = fill_value(model, fill)
    ks_up = sorted(float(k) for k in ks)
    rows, flips = [], []
    for (image_id, method, layer, _), cert in certificates.items():
        image = images[image_id]
        curve = deletion_curve(model, image, targets[image_id], cert, ks=ks_up, fill=fill)
        # a curve of a degenerate certificate (a constant map) says so, like the robustness rows, so that the
        # findings do not count it as evidence
        degenerate = str(getattr(cert, "degenerate", "") or "")
        rows += deletion_rows(curve, model=model.name, model_title=model.spec.title, image_id=image_id,
                              method=method, method_title=method_title(method), layer=layer, sigma=float(sigma),
                              degenerate=degenerate)
        flips.append({"model": model.name, "image_id": image_id, "method": method, "layer": layer,
                      "flipped": first_step_flipped(model, image, targets[image_id], cert, ks_up, colour),
                      "degenerate": degenerate})
    return rows, flips
