"""The smoothed and the plain top-K membership of every pixel at one image: what the certified-pixel attack
measures and compares with the clean certificate's labels."""
from __future__ import annotations

import numpy as np
import torch

from ...engine.config import SamplingConfig
from ...engine.smoothing import SmoothedAttribution
from ...engine.sparsify import sparsify, topk_thresholds, upsample_maps
from ...engine.validation import CertattrError
from ...models.registry import LoadedModel
from ..checks import check_settings
from ..settings import MethodAtLayer
from .surrogate import registry_maps

__all__ = ["smoothed_membership", "plain_membership"]


def smoothed_membership(model: LoadedModel, image: torch.Tensor, target: int, *, attribution: MethodAtLayer,
                        k: float, sigma: float, sampling: SamplingConfig, image_id: str, cache=None) -> np.ndarray:
    """(H, W) float64: the fraction of the ``sampling.n`` noisy copies (n >= 2; seed ``sampling.seed``, the
    pipeline's noise and engine, Gaussian of level ``sigma``) of ``image`` (3, H, W) in which each pixel is in the
    top K% of the ``attribution`` map for class ``target``: the Monte-Carlo estimate of the smoothed top-K
    probability.

    It is a certificate's ``mean_sparsified`` in float64 (the engine's sample, sparsify and count steps,
    :meth:`certattr.engine.smoothing.SmoothedAttribution.top_k_frequencies`, streaming the samples, read from and
    written to ``cache`` when one is given)."""
    check_settings("attribution", attribution, MethodAtLayer)
    check_settings("sampling", sampling, SamplingConfig)
    if sampling.n < 2:
        raise CertattrError(f"n={sampling.n} is not allowed: the smoothed top-K membership needs n >= 2 samples")
    engine = SmoothedAttribution(model, attribution.method, attribution.layer, sigma, sampling, cache=cache,
                                 progress=False)
    return engine.top_k_frequencies(image.cpu(), image_id, target, [k])[0]


def plain_membership(model: LoadedModel, image: torch.Tensor, target: int, *, attribution: MethodAtLayer, k: float,
                     margins: bool = False):
    """(H, W) float64 in {0, 1}: the top-K membership of the plain (unsmoothed) ``attribution`` map of ``image``
    (3, H, W) for class ``target``, upsampled to H x W; with ``margins``, also (|a_p| - t_K) / std|a| (the distance
    to the plain map's threshold, in its std)."""
    size = tuple(image.shape[1:])
    maps = registry_maps(model, image.unsqueeze(0), target, attribution.method, attribution.layer).float()
    maps = upsample_maps(maps, size).numpy()
    member = sparsify(maps, [k])[0, 0].astype(np.float64)
    if not margins:
        return member
    a = np.abs(maps[0].astype(np.float64))
    return member, (a - topk_thresholds(maps, [k])[0, 0]) / max(float(a.std()), 1e-300)
