"""What the sample cache stores of a chunk of noisy attribution maps: exactly what its reader needs.

A chunk is b consecutive noisy samples of one cache entry; the engine computes their layer-resolution maps
(b, h, w) float32 once and stores one or more *encodings* of them, each a file of its own
(``chunk_<c>[_r<b>].<tag>.npz``; raw maps keep the plain ``chunk_<c>[_r<b>].npz``):

* :class:`RawMaps` (tag ``""``): the float32 maps. Kept on request (``keep_maps``) and where they are the
  smallest encoding (Final-layer maps are 7x7 or 14x14); every other encoding can be derived from them.
* :class:`TopKCodes` (``topk-<K>-<K>...``): what the paper's certificate needs. For a ladder of top-K percentages
  K_1 > ... > K_m the top-K sets of one map are nested (h_K selects |a_p| > v[lo(K)], and lo(K) falls as K grows;
  see :mod:`certattr.engine.sparsify`), so one code per pixel, c_p = the number of ladder K at which p is selected
  (0..m), gives every h_K exactly: p is selected at K_j iff c_p >= j (j = 1 for the largest K). The codes are
  bit-packed at ceil(log2(m + 1)) bits per pixel, at the input's resolution (where the certificate works), with
  one flag per sample saying whether the map was constant up to rounding (the degenerate-map check). Any n0,
  tau, alpha or correction is certified from them without resampling; a K outside the ladder is not.
* :class:`TopKSet` (``topset-<fraction>``): Sparsified SmoothGrad's g(a), the exact top-ceil(f*d) elements of each
  layer map (ties by the lower flat index), one bit per element.
* :class:`BoundedSum` (``sum-<mode>-<M>``): the cosine certificate's sum over the chunk of the maps rescaled to
  norm <= M, float64; the chunks' sums, added in order, give h_hat * N.

Every encoding checks what it reads (``check``) and the cache checksums its arrays with the entry key and chunk
index, so a file of another encoding, entry or index is never read as this one.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .sparsify import check_fraction, flat_maps, sparsify, sparsify_topk, upsample_maps
from .validation import CertattrError, check_choice, check_finite_number, check_ks

__all__ = ["Encoding", "RawMaps", "TopKCodes", "TopKSet", "BoundedSum", "RAW", "DEFAULT_LADDER", "topk_ladder",
           "encoding_from_spec", "pack_codes", "unpack_codes", "certificate_encoding", "bound_norm"]

#: the top-K percentages the compact cache stores by default: every K the paper and the book certify
DEFAULT_LADDER = (50.0, 40.0, 30.0, 25.0, 20.0, 10.0, 5.0)


def topk_ladder(ks: Sequence[float] = ()) -> tuple:
    """The ladder stored for a certificate at ``ks``: :data:`DEFAULT_LADDER`, extended by any K it lacks (a new
    ladder is a new cache entry: its samples are drawn again, or derived from kept raw maps)."""
    return check_ks(tuple(DEFAULT_LADDER) + tuple(k for k in check_ks(ks) if k not in DEFAULT_LADDER))


def _num(x: float) -> str:
    return f"{float(x):g}"


class Encoding:
    """One way of storing a chunk. ``spec`` names it in plans and manifests, ``tag`` in file names."""

    spec: str = ""
    tag: str = ""
    sliceable: bool = True  #: the first r samples of a full chunk are its first r rows (a partial chunk's content)

    def encode(self, maps: np.ndarray, size: Sequence[int]) -> dict:
        """The arrays stored for the layer maps ``maps`` (b, h, w) float32 of an image of ``size`` (H, W)."""
        raise NotImplementedError

    def check(self, arrays: dict, b: int) -> None:
        """Raise ValueError unless ``arrays`` is a valid encoding of b samples."""
        raise NotImplementedError

    def head(self, arrays: dict, r: int) -> dict:
        """The encoding of the first r samples (only for ``sliceable`` encodings)."""
        return {k: (v[:r] if np.ndim(v) and k not in self.fixed else v) for k, v in arrays.items()}

    fixed: tuple = ()  #: arrays that are not per sample

    def bytes_per_sample(self, layer_hw, image_hw) -> float:
        """Uncompressed bytes of one sample."""
        raise NotImplementedError

    def __eq__(self, other):
        return isinstance(other, Encoding) and other.spec == self.spec

    def __hash__(self):
        return hash(self.spec)

    def __repr__(self):
        return f"<encoding {self.spec}>"


class RawMaps(Encoding):
    spec, tag = "raw", ""

    def encode(self, maps, size):
        return {"maps": np.ascontiguousarray(maps, dtype=np.float32)}

    def check(self, arrays, b):
        maps = arrays["maps"]
        if maps.dtype != np.float32 or maps.ndim != 3 or maps.shape[0] != b:
            raise ValueError(f"maps of shape {maps.shape} and dtype {maps.dtype}, expected {b} float32 maps")

    def bytes_per_sample(self, layer_hw, image_hw):
        return 4.0 * layer_hw[0] * layer_hw[1]


RAW = RawMaps()


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (b, P) in 0..2^bits-1 as uint8 rows of ceil(P*bits/8) bytes (the low ``bits`` of each, LSB first)."""
    codes = np.asarray(codes, dtype=np.uint8)
    planes = (codes[..., None] >> np.arange(bits, dtype=np.uint8)) & 1  # (b, P, bits)
    return np.packbits(planes.reshape(codes.shape[0], -1), axis=1, bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, n_values: int) -> np.ndarray:
    """The inverse of :func:`pack_codes`: uint8 codes (b, n_values)."""
    planes = np.unpackbits(packed, axis=1, count=n_values * bits, bitorder="little").reshape(len(packed), n_values, bits)
    return (planes << np.arange(bits, dtype=np.uint8)).sum(axis=2, dtype=np.uint8)


class TopKCodes(Encoding):
    """Nested top-K codes of the input-resolution maps for the ladder ``ks`` (stored largest K first)."""

    fixed = ("hw",)

    def __init__(self, ks: Sequence[float]):
        self.ks = check_ks(ks)
        if len(self.ks) > 255:
            raise CertattrError(f"a top-K ladder of {len(self.ks)} values is not allowed: at most 255")
        self.bits = max(1, math.ceil(math.log2(len(self.ks) + 1)))
        self.spec = "topk:" + ",".join(_num(k) for k in self.ks)
        self.tag = "topk-" + "-".join(_num(k) for k in self.ks)

    def codes_of(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes uint8 (b, H, W), flat bool (b,)) of input-resolution maps (b, H, W)."""
        binary = sparsify(maps, self.ks)  # (m, b, H, W), nested: a pixel selected at K_j is selected at every larger K
        return binary.sum(axis=0, dtype=np.uint8), flat_maps(maps)

    def encode(self, maps, size):
        up = upsample_maps(torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32)), size).numpy()
        codes, flat = self.codes_of(up)
        return {"codes": pack_codes(codes.reshape(len(codes), -1), self.bits), "flat": flat,
                "hw": np.array(up.shape[1:], dtype=np.int64)}

    def check(self, arrays, b):
        packed, flat, hw = arrays["codes"], arrays["flat"], arrays["hw"]
        if hw.shape != (2,) or (hw <= 0).any():
            raise ValueError(f"image size {hw.tolist()} is not an (H, W)")
        width = math.ceil(int(hw[0]) * int(hw[1]) * self.bits / 8)
        if packed.dtype != np.uint8 or packed.shape != (b, width) or flat.dtype != bool or flat.shape != (b,):
            raise ValueError(f"codes {packed.shape} {packed.dtype} and flags {flat.shape}, expected ({b}, {width}) uint8 "
                             f"and ({b},) bool")

    def decode(self, arrays, ks: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(binary bool (len(ks), b, H, W) = sparsify(maps, ks), flat (b,)) for ks in the ladder."""
        H, W = (int(v) for v in arrays["hw"])
        codes = unpack_codes(arrays["codes"], self.bits, H * W).reshape(-1, H, W)
        missing = [k for k in ks if k not in self.ks]
        if missing:
            raise CertattrError(f"K = {', '.join(map(_num, missing))} is not in the cached top-K ladder "
                                f"{', '.join(map(_num, self.ks))}")
        levels = [self.ks.index(float(k)) + 1 for k in ks]
        return np.stack([codes >= j for j in levels]), arrays["flat"]

    def bytes_per_sample(self, layer_hw, image_hw):
        return math.ceil(image_hw[0] * image_hw[1] * self.bits / 8) + 1


class TopKSet(Encoding):
    """Sparsified SmoothGrad's hard top-k_s sets (k_s = ceil(fraction * d), ties by index) of the layer maps."""

    fixed = ("hw",)

    def __init__(self, tau_frac: float):
        self.tau_frac = check_fraction("tau_frac", tau_frac)
        self.spec = f"topset:{self.tau_frac!r}"
        self.tag = f"topset-{self.tau_frac!r}"

    def encode(self, maps, size):
        g = sparsify_topk(np.asarray(maps), self.tau_frac) > 0  # (b, h, w)
        return {"mask": np.packbits(g.reshape(len(g), -1), axis=1, bitorder="little"),
                "hw": np.array(g.shape[1:], dtype=np.int64)}

    def check(self, arrays, b):
        mask, hw = arrays["mask"], arrays["hw"]
        if hw.shape != (2,) or (hw <= 0).any():
            raise ValueError(f"map size {hw.tolist()} is not an (h, w)")
        width = math.ceil(int(hw[0]) * int(hw[1]) / 8)
        if mask.dtype != np.uint8 or mask.shape != (b, width):
            raise ValueError(f"mask {mask.shape} {mask.dtype}, expected ({b}, {width}) uint8")

    def decode(self, arrays) -> np.ndarray:
        """g as float64 (b, h, w) in {0, 1}."""
        h, w = (int(v) for v in arrays["hw"])
        bits = np.unpackbits(arrays["mask"], axis=1, count=h * w, bitorder="little")
        return bits.reshape(-1, h, w).astype(np.float64)

    def bytes_per_sample(self, layer_hw, image_hw):
        return layer_hw[0] * layer_hw[1] / 8


def bound_norm(maps: torch.Tensor, M: float, mode: str = "normalize") -> torch.Tensor:
    """Rows of maps (B, ...) rescaled so that ||g|| <= M: "normalize" (||g|| = M; zero stays zero) or "clip"."""
    check_choice("bound", mode, ("normalize", "clip"))
    flat = maps.reshape(maps.shape[0], -1)
    norms = flat.norm(dim=1, keepdim=True)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    if mode == "normalize":
        scale = torch.where(norms > 0, M / safe, torch.zeros_like(norms))
    else:
        scale = torch.clamp(M / safe, max=1.0)
    return (flat * scale).reshape(maps.shape)


class BoundedSum(Encoding):
    """The sum over the chunk of the maps rescaled to ||g|| <= M (``mode`` "normalize" or "clip"), float64."""

    sliceable = False

    def __init__(self, M: float = 1.0, mode: str = "normalize"):
        M = check_finite_number("M", M)
        if M <= 0:
            raise CertattrError(f"M={M!r} is not allowed: the bound on ||g|| must be > 0")
        self.M, self.mode = M, check_choice("bound", mode, ("normalize", "clip"))
        self.spec = f"sum:{mode}:{M!r}"
        self.tag = f"sum-{mode}-{M!r}"

    def encode(self, maps, size):
        t = torch.from_numpy(np.asarray(maps)).double()
        return {"sum": bound_norm(t, self.M, self.mode).sum(dim=0).numpy(), "count": np.array(len(maps))}

    def check(self, arrays, b):
        total, count = arrays["sum"], arrays["count"]
        if total.dtype != np.float64 or total.ndim != 2 or int(count) != b or not np.isfinite(total).all():
            raise ValueError(f"a sum of shape {total.shape} {total.dtype} over {int(count)} maps, expected {b}")

    def decode(self, arrays) -> np.ndarray:
        return arrays["sum"]

    def bytes_per_sample(self, layer_hw, image_hw):
        return 0.0  # one (h, w) float64 sum per chunk: see bytes_per_chunk

    def bytes_per_chunk(self, layer_hw) -> float:
        return 8.0 * layer_hw[0] * layer_hw[1]


def encoding_from_spec(spec: str) -> Encoding:
    """The encoding a plan or manifest names (:attr:`Encoding.spec`)."""
    kind, _, rest = str(spec).partition(":")
    if kind == "raw" and not rest:
        return RAW
    if kind == "topk" and rest:
        return TopKCodes([float(k) for k in rest.split(",")])
    if kind == "topset" and rest:
        return TopKSet(float(rest))
    if kind == "sum" and rest.count(":") == 1:
        mode, M = rest.split(":")
        return BoundedSum(float(M), mode)
    raise CertattrError(f"encoding {spec!r} is unknown: allowed are raw, topk:<K,...>, topset:<fraction>, sum:<mode>:<M>")


def certificate_encoding(layer: str, ks: Sequence[float] = ()) -> Encoding:
    """What the cache stores for the paper's certificate at ``layer`` by default: the top-K codes of the ladder
    (:func:`topk_ladder`) at the Input layer, whose maps have the input's resolution; raw maps at the Final
    layer, whose 7x7 or 14x14 float maps are smaller than one bit per input pixel and serve every K."""
    return TopKCodes(topk_ladder(ks)) if layer == "input" else RAW
