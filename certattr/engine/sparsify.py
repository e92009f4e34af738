"""Top-K sparsification h_K of the paper, Sparsified SmoothGrad's hard top-k sets, and bilinear upsampling of
layer maps: the sparsify step of every certificate.

h_K(a)_p = 1 if |a_p| > t_K, else 0, where t_K is the (100-K)-th percentile of |a| over the map
(linear interpolation, as ``numpy.percentile``). The raw |a| is ranked: nothing is clipped first.
The strict '>' means tied and zero-valued pixels are never important, so a map with many ties or
zeros (CAMs after ReLU) may select fewer than K% of its pixels.

**Exactly, without rounding.** With v the N values of |a| sorted ascending, the percentile sits at the
position q = (100 - K)/100 * (N - 1), and t_K = v[lo] + f (v[lo+1] - v[lo]) with lo = floor(q), f = q - lo.
Whatever f, no value of the map lies strictly between v[lo] and t_K (t_K = v[lo] when f = 0 or when
v[lo] = v[lo+1], and v[lo] < t_K < v[lo+1] otherwise), so {p : |a_p| > t_K} = {p : |a_p| > v[lo]}. That is
how the selection is computed: lo from K as a rational number (``Fraction(repr(K))``, i.e. the decimal K
as written: 12.5, 30, 0.1 = 1/10) in integer arithmetic, and v[lo] by ``np.partition``. No float rounding
enters, so a tie block at the threshold is never selected. (``np.percentile`` computes t_K in floating
point: for ``np.r_[np.arange(63.), np.full(28, 100.)]`` at K = 30 the exact t_K is 100, which it rounds to
just below 100, selecting all 28 tied pixels; the exact rule selects none.)
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .validation import CertattrError, check_interval, check_ks

__all__ = ["topk_thresholds", "sparsify", "flat_maps", "FLAT_RTOL", "upsample_maps", "check_fraction", "topk_count",
           "abs_values", "rank_order", "sparsify_topk"]

FLAT_RTOL = 2.0 ** -16  #: a map whose |a| spreads less than this fraction of its max is constant up to rounding


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


def _position(k: float, n_values: int) -> tuple[int, Fraction]:
    """(lo, f): the exact floor and fractional part of q = (100 - K)/100 * (N - 1), K as written in decimal."""
    q = (100 - Fraction(repr(float(k)))) * (n_values - 1) / 100
    lo = math.floor(q)
    return lo, q - lo


def _order_statistics(flat: np.ndarray, ks: Sequence[float]):
    """For each K: lo, f and the values v[lo], v[lo+1] (clipped to N-1) of every row of flat (n, N)."""
    n_values = flat.shape[1]
    positions = [_position(k, n_values) for k in ks]
    kth = sorted({i for lo, _ in positions for i in (lo, min(lo + 1, n_values - 1))})
    part = np.partition(flat, kth, axis=1)
    return [(lo, f, part[:, lo], part[:, min(lo + 1, n_values - 1)]) for lo, f in positions]


def _abs_flat(maps) -> np.ndarray:
    absmaps = np.abs(_as_numpy(maps).astype(np.float64, copy=False))
    return absmaps.reshape(absmaps.shape[0], -1)


def _threshold(lo_value: float, hi_value: float, f: Fraction) -> float:
    """The float64 nearest the exact t_K = v_lo + f (v_hi - v_lo), moved down to the largest float below v_hi
    in the rare case it rounds up onto v_hi, so that |a_p| > t selects exactly the pixels |a_p| > v_lo."""
    if f == 0 or lo_value == hi_value:
        return float(lo_value)
    exact = Fraction(lo_value) + f * (Fraction(hi_value) - Fraction(lo_value))
    t = float(exact)
    return t if t < hi_value else float(np.nextafter(hi_value, -np.inf))


def topk_thresholds(maps, ks: Sequence[float]) -> np.ndarray:
    """t_K for each K and each map: array (len(ks), n) of the (100-K)-th percentiles of |a| (float64).

    Each is the float64 nearest the exact percentile (kept below the next value of the map, see
    :func:`_threshold`), so ``|a| > t_K`` is exactly the selection of :func:`sparsify`.
    """
    ks = [float(k) for k in ks]
    check_ks(ks)
    flat = _abs_flat(maps)
    out = np.empty((len(ks), flat.shape[0]), dtype=np.float64)
    for i, (lo, f, v_lo, v_hi) in enumerate(_order_statistics(flat, ks)):
        out[i] = [_threshold(a, b, f) for a, b in zip(v_lo.tolist(), v_hi.tolist())]
    return out


def sparsify(maps, ks: Sequence[float]) -> np.ndarray:
    """Binary top-K maps: bool array (len(ks), n, H, W) for maps (n, H, W) or (H, W) (then n = 1).

    Pixel p of map i is selected for K iff |a_p| > v[lo] (see the module docstring: the same set as
    |a_p| > t_K, computed exactly). The order of ``ks`` is kept as given.
    """
    arr = _as_numpy(maps)
    ks = [float(k) for k in ks]
    check_ks(ks)
    flat = _abs_flat(arr)
    absmaps = flat.reshape(arr.shape)
    lows = np.stack([v_lo for _, _, v_lo, _ in _order_statistics(flat, ks)])  # (len(ks), n)
    return absmaps[None] > lows[:, :, None, None]


def flat_maps(maps) -> np.ndarray:
    """bool (n,): maps (n, H, W) whose |a| is constant up to float rounding, max|a| - min|a| <= FLAT_RTOL max|a|
    (all-zero maps included). Their top-K sets are chosen by rounding (or are empty), not by the image."""
    a = np.abs(np.asarray(maps, dtype=np.float64).reshape(len(maps), -1))
    hi, lo = a.max(axis=1), a.min(axis=1)
    return (hi - lo) <= FLAT_RTOL * hi


def upsample_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of (B, h, w) layer maps to (B, H, W) input pixels."""
    if maps.dim() != 3:
        raise CertattrError(f"maps of shape {tuple(maps.shape)} are not allowed: give (B, h, w)")
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


# --- Sparsified SmoothGrad's hard top-k sets (Levine et al. 2019) ----------------------------------------------
def check_fraction(name: str, value, *, upper_open: bool = False) -> float:
    """A fraction of the map's elements: 0 < value <= 1 (< 1 with ``upper_open``)."""
    return check_interval(name, value, 0, 1, high_open=upper_open)


def topk_count(d: int, tau_frac: float) -> int:
    """k_s = ceil(tau_frac * d), at least 1 (a tiny tolerance absorbs float error in tau_frac * d)."""
    tau_frac = check_fraction("tau_frac", tau_frac)
    return max(1, min(int(d), math.ceil(tau_frac * d - 1e-9)))


def abs_values(maps) -> np.ndarray:
    """|a| as float64, any shape with at least one axis; NaN or inf refused."""
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim < 1:
        raise CertattrError(f"maps of shape {arr.shape} are not allowed: give (d,), (h, w) or (n, h, w)")
    if not np.isfinite(arr).all():
        raise CertattrError("maps contain NaN or inf, which is not allowed: an attribution map must be finite")
    return np.abs(arr)


def rank_order(absflat: np.ndarray) -> np.ndarray:
    """Per row of ``absflat`` (..., d), element indices from the largest |a| to the smallest; ties: lower index
    first."""
    return np.argsort(-absflat, axis=-1, kind="stable")


def sparsify_topk(maps, tau_frac: float) -> np.ndarray:
    """g: 1.0 for the k_s = ceil(tau_frac*d) largest |a| of each map (ties: lower flat index), else 0.0.

    ``maps`` (h, w) or (n, h, w); returns float64 of the same shape; each map has exactly k_s ones.
    """
    a = abs_values(maps)
    single = a.ndim == 2 or a.ndim == 1
    rows = a.reshape(1 if single else a.shape[0], -1)
    d = rows.shape[1]
    k = topk_count(d, tau_frac)
    out = np.zeros_like(rows)
    np.put_along_axis(out, rank_order(rows)[:, :k], 1.0, axis=1)
    return out.reshape(a.shape)
