"""A small in-memory LRU bounded by bytes, keyed by the exact content of tensors (BLAKE2b), for work that
several methods or targets repeat on the same noisy copies (see :mod:`certattr.models.registry` and
:mod:`certattr.methods.perturbation`). A hit returns what the same computation produced, bit for bit."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable

import torch

__all__ = ["BoundedMemo", "tensor_key"]


def tensor_key(prefix: str, *tensors: torch.Tensor) -> str:
    """BLAKE2b of ``prefix`` and each tensor's shape, dtype, device and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prefix.encode())
    for t in tensors:
        h.update(f"|{tuple(t.shape)}|{t.dtype}|{t.device}".encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
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
