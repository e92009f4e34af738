"""A small in-memory LRU bounded by bytes, keyed by the exact content of tensors (BLAKE2b), for work that
several methods or targets repeat on the same noisy copies (see :mod:`certattr.models.registry` and
:mod:`certattr.methods.perturbation`). A hit returns what the same computation produced, bit for bit."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import torch

__all__ = ["BoundedMemo", "tensor_key"]


def _dense(t: torch.Tensor) -> bool:
    """Whether t's elements fill a block of memory without gaps or overlaps, in some order of its dimensions
    (NCHW, channels_last, ...)."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def tensor_key(prefix: str, *tensors: torch.Tensor) -> str:
    """BLAKE2b of ``prefix`` and each tensor's shape, memory order, dtype, device and bytes.

    A dense tensor is hashed in its own memory order (a channels_last batch is not copied to NCHW first), with
    its strides in the key, so equal keys still mean equal values; the same values in another memory order only
    get another key (a memo miss, never a wrong hit)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prefix.encode())
    for t in tensors:
        t = t.detach().cpu()
        if not _dense(t):
            t = t.contiguous()
        order = tuple(st if sz != 1 else 0 for sz, st in zip(t.shape, t.stride()))  # size-1 strides are arbitrary
        h.update(f"|{tuple(t.shape)}|{order}|{t.dtype}|{t.device}".encode())
        flat = t.as_strided((t.numel(),), (1,))  # the elements in memory order
        h.update(flat.view(torch.uint8).numpy())  # bf16 has no numpy; hashed without a copy
    return h.hexdigest()


class BoundedMemo:
    """LRU of values whose size ``size_of(value)`` (bytes) adds up to at most ``max_bytes``; a value larger
    than ``max_entry`` bytes is not kept. Values are read-only by contract."""

    def __init__(self, size_of: Callable[[object], int], max_bytes: int, max_entry: int | None = None):
        self.size_of, self.max_bytes = size_of, max_bytes
        self.max_entry = max_bytes if max_entry is None else max_entry
        self.bytes, self.hits, self.misses = 0, 0, 0
        self.entries: OrderedDict = OrderedDict()

    def get(self, key: str):
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        return found[0]

    def put(self, key: str, value) -> None:
        size = int(self.size_of(value))
        if size > self.max_entry or key in self.entries:
            return
        self.entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, old) = self.entries.popitem(last=False)
            self.bytes -= old

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0
