"""The smoothed and the plain top-K membership of every pixel at one image: what the certified-pixel attack
measures and compares with the clean certificate's labels."""
from __future__ import annotations

import numpy as np
import torch

from ...engine.config import DEFAULT_SAMPLING, SamplingConfig
from ...engine.smoothing import SmoothedAttribution
from ...engine.sparsify import sparsify, topk_thresholds, upsample_maps
from ...engine.validation import check_positive_int
from ...models.registry import LoadedModel
from .surrogate import registry_maps

__all__ = ["smoothed_membership", "plain_membership"]


def smoothed_membership(model: LoadedModel, image: torch.Tensor, target: int, *, method: str, layer: str, k: float,
                        sigma: float, n: int, seed: int, image_id: str, chunk_size: int = DEFAULT_SAMPLING.chunk_size,
                        cache=None, progress: bool = False) -> np.ndarray:
    """(H, W) float64: the fraction of ``n`` noisy copies (seed ``seed``, the pipeline's noise and engine) in
    which each pixel is in the top K%: the Monte-Carlo estimate of the smoothed top-K probability.

    It is a certificate's ``mean_sparsified`` in float64 (the engine's sample, sparsify and count steps,
    :meth:`certattr.engine.smoothing.SmoothedAttribution.top_k_frequencies`, streaming the cached samples)."""
    n = check_positive_int("eval_n", n, 2)
    sampling = SamplingConfig(n=n, seed=seed, chunk_size=chunk_size)
    engine = SmoothedAttribution(model, method, layer, sigma, sampling, cache=cache, progress=progress)
    return engine.top_k_frequencies(image.cpu(), image_id, target, [k])[0]


def plain_membership(model: LoadedModel, image: torch.Tensor, target: int, *, method: str, layer: str, k: float,
                     margins: bool = False):
    """(H, W) float64 in {0, 1}: the top-K membership of the plain (unsmoothed) map, upsampled to H x W; with
    ``margins``, also (|a_p| - t_K) / std|a| (the distance to the plain map's threshold, in its std)."""
    size = tuple(image.shape[1:])
    maps = upsample_maps(registry_maps(model, image.unsqueeze(0), target, method, layer).float(), size).numpy()
    member = sparsify(maps, [k])[0, 0].astype(np.float64)
    if not margins:
        return member
    a = np.abs(maps[0].astype(np.float64))
    return member, (a - topk_thresholds(maps, [k])[0, 0]) / max(float(a.std()), 1e-300)
