"""Top-K sparsification h_K (SPEC §1.3) and bilinear upsampling of layer maps.

h_K(a)_p = 1 if |a_p| > t_K, else 0, where t_K is the (100-K)-th percentile of |a| over the map
(linear interpolation, as ``numpy.percentile``). The raw |a| is ranked: nothing is clipped first.
The strict '>' means tied and zero-valued pixels are never important, so a map with many ties or
zeros (CAMs after ReLU) may select fewer than K% of its pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .validation import CertattrError, check_ks

__all__ = ["topk_thresholds", "sparsify", "upsample_maps"]


def _as_numpy(maps) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    maps = np.asarray(maps)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise CertattrError(f"maps of shape {maps.shape} are not allowed: give (H, W) or (n, H, W)")
    if not np.isfinite(maps).all():
        raise CertattrError("maps contain NaN or inf, which is not allowed: an attribution map must be finite")
    return maps


def topk_thresholds(maps, ks: Sequence[float]) -> np.ndarray:
    """t_K for each K and each map: array (len(ks), n) of the (100-K)-th percentiles of |a| (float64)."""
    ks = [float(k) for k in ks]
    check_ks(ks)
    absmaps = np.abs(_as_numpy(maps).astype(np.float64, copy=False))
    flat = absmaps.reshape(absmaps.shape[0], -1)
    return np.percentile(flat, [100.0 - k for k in ks], axis=1, method="linear").reshape(len(ks), flat.shape[0])


def sparsify(maps, ks: Sequence[float]) -> np.ndarray:
    """Binary top-K maps: bool array (len(ks), n, H, W) for maps (n, H, W) or (H, W) (then n = 1).

    The order of ``ks`` is kept as given.
    """
    arr = _as_numpy(maps)
    thresholds = topk_thresholds(arr, ks)
    absmaps = np.abs(arr.astype(np.float64, copy=False))
    return absmaps[None] > thresholds[:, :, None, None]


def upsample_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of (B, h, w) layer maps to (B, H, W) input pixels."""
    if maps.dim() != 3:
        raise CertattrError(f"maps of shape {tuple(maps.shape)} are not allowed: give (B, h, w)")
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
