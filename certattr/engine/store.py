"""Where the engine's noisy samples live between model calls: one cache entry, read and written chunk by chunk.

    store = SampleStore(cache, chunk_size=10, keep_maps=False, also_store=(), progress=True)
    for data in store.chunks(identity, n, encoding, compute, image_hw=(H, W)):   # samples 0..n-1, in order
        ...

The unit is a *chunk* of ``chunk_size`` consecutive sample indices (the last chunk below n holds only the indices
below n). For each chunk the store reads, in this order: the chunk in the asked encoding (a partial last chunk
may also be the head of a cached full chunk of a larger n); the encoding derived from kept raw maps; otherwise it
calls ``compute(chunk, size)`` (the engine's model call, :meth:`certattr.engine.smoothing.SmoothedAttribution.
attribute_chunk`) and writes every encoding a reader of this entry needs. After the first computed chunk it
checks that the remaining ones fit on the cache's disk. Memory is one chunk, whatever n.
"""
from __future__ import annotations

import shutil
import time
from typing import Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from .cache import SampleCache, cache_key
from .encodings import RAW, Encoding
from .validation import CertattrError, check_positive_int

__all__ = ["SampleStore", "chunk_sizes"]


def chunk_sizes(n: int, chunk_size: int) -> list[int]:
    """The samples of each chunk of samples 0..n-1: chunk_size, and fewer for the last chunk below n."""
    return [min(chunk_size, n - start) for start in range(0, n, chunk_size)]


class SampleStore:
    """The cache reads and writes of one engine: its ``cache`` (a SampleCache, possibly disabled), its
    ``chunk_size``, whether raw maps are kept (``keep_maps``), further encodings written for every computed chunk
    (``also_store``: so that another reader of the same samples finds them) and whether a progress bar is shown."""

    def __init__(self, cache: SampleCache, chunk_size: int, *, keep_maps: bool = False,
                 also_store: Sequence[Encoding] = (), progress: bool = True):
        self.cache, self.chunk_size = cache, chunk_size
        self.keep_maps, self.also_store, self.progress = keep_maps, tuple(also_store), progress

    def stored_encodings(self, encoding: Encoding) -> list[Encoding]:
        """What a computed chunk is written as: the encoding read, those of ``also_store``, raw maps if kept."""
        out = [encoding, *self.also_store] + ([RAW] if self.keep_maps else [])
        return list(dict.fromkeys(out))

    def chunks(self, identity: dict, n: int, encoding: Encoding, compute: Callable[[int, int], np.ndarray], *,
               image_hw: Sequence[int], label: str = "") -> Iterator:
        """Samples 0..n-1 of the entry ``identity`` in ``encoding``, chunk by chunk in order: raw maps (b, h, w)
        float32, or the encoding's arrays. ``compute(chunk, size)`` gives the raw layer maps (size, h, w) of a
        chunk that is not stored; ``image_hw`` (H, W) is the input's size (top-K codes are at that resolution)."""
        n = check_positive_int("n", n)
        key = cache_key(identity)
        self.cache.write_manifest(key, identity)  # writes only where the entry has no manifest yet
        sizes = chunk_sizes(n, self.chunk_size)
        stores = self.stored_encodings(encoding)
        image_hw = tuple(image_hw)
        with tqdm(total=n, unit="sample", desc=label, disable=not self.progress, leave=False) as bar:
            computed = 0
            for c, size in enumerate(sizes):
                data = self.read(key, c, size, encoding, image_hw)
                if data is None:
                    if computed == 0 and self.cache.enabled:
                        # here, not before: a read-only cache that holds every chunk is only read
                        self.cache.check_writable()
                    began = time.perf_counter()
                    data = self.write(key, c, size, compute(c, size), encoding, stores, image_hw)
                    computed += 1
                    if computed == 1:
                        self.check_budget(key, c, size, sizes[c + 1:], time.perf_counter() - began, stores, n)
                bar.update(size)
                yield data

    def read(self, key: str, chunk: int, size: int, encoding: Encoding, image_hw):
        """A stored chunk of ``size`` samples in ``encoding``, derived from kept raw maps if need be, or None."""
        if not self.cache.enabled:
            return None
        data = self._load(key, chunk, size, encoding)
        if data is None and encoding is not RAW:
            maps = self._load(key, chunk, size, RAW)
            data = None if maps is None else encoding.encode(maps, image_hw)
        return data

    def _load(self, key: str, chunk: int, size: int, encoding: Encoding):
        """A cached chunk in ``encoding`` (a partial last chunk: also the head of a full chunk), or None."""
        if size < self.chunk_size and encoding.sliceable:
            full = self.cache.load_chunk(key, chunk, self.chunk_size, self.chunk_size, encoding)
            if full is not None:
                return full[:size] if encoding is RAW else encoding.head(full, size)
        return self.cache.load_chunk(key, chunk, size, self.chunk_size, encoding)

    def write(self, key: str, chunk: int, size: int, maps: np.ndarray, encoding: Encoding, stores, image_hw):
        """Store the computed raw maps (size, h, w) of a chunk in each encoding of ``stores``; returns them in
        ``encoding``."""
        data = None
        for enc in stores:
            encoded = maps if enc is RAW else enc.encode(maps, image_hw)
            self.cache.save_chunk(key, chunk, encoded, self.chunk_size, enc, size)
            if enc == encoding:
                data = encoded
        return data

    def check_budget(self, key: str, chunk: int, size: int, rest: list, seconds: float, stores, n: int) -> None:
        """After the first computed chunk: fail fast, in one line, if the remaining chunks (``rest``: their sizes)
        cannot fit on the cache's disk (estimated from this chunk's files)."""
        if not self.cache.enabled or not rest:
            return
        try:
            per_sample = sum(self.cache.chunk_path(key, chunk, None if size == self.chunk_size else size, enc)
                             .stat().st_size for enc in stores) / size
            free = shutil.disk_usage(self.cache.root).free
        except OSError:
            return
        need = per_sample * sum(rest)
        if need > free:
            raise CertattrError(f"n={n} would need about {need / 2**30:.3g} GiB more in the sample cache "
                                f"{str(self.cache.root)!r} but {free / 2**30:.3g} GiB are free (and about "
                                f"{seconds / size * sum(rest) / 3600:.3g} hours at this chunk's speed); lower n, "
                                f"free space, or use another cache folder")
