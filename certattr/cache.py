"""On-disk cache of noisy attribution samples, one entry per (model, method, layer, sigma, seed, image, target).

An entry holds the layer-resolution maps (float32, (m, h, w)) of fixed chunks of sample indices
[c*m, (c+1)*m), m the engine's chunk size (part of the key). Sample i does not depend on n, so a run with a larger n reuses the chunks of a
smaller one. Each chunk is written atomically (temporary file + rename) with a SHA-256 of its maps; a
truncated or corrupted chunk is detected on reading, deleted and recomputed, never read as data.
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .result import atomic_write_bytes

__all__ = ["DEFAULT_CHUNK", "SampleCache", "cache_key", "default_cache_dir"]

DEFAULT_CHUNK = 10  #: samples per model call and per chunk file
SAMPLES_VERSION = 2  #: bump when a change to certattr changes the samples it computes


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("CERTATTR_CACHE", Path.home() / ".cache" / "certattr"))


def cache_key(identity: dict) -> str:
    """SHA-256 of the canonical JSON of everything that determines the samples."""
    blob = json.dumps({"samples_version": SAMPLES_VERSION, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _digest(maps: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(maps).tobytes()).hexdigest()


class SampleCache:
    """A folder of cache entries. ``SampleCache(None)`` keeps nothing (every chunk is recomputed)."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else None
        self.corrupt_chunks = 0  #: chunks found damaged and discarded since this object was made

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def write_manifest(self, key: str, identity: dict) -> None:
        path = self.entry(key) / "manifest.json"
        if not path.exists():
            atomic_write_bytes(path, json.dumps({"identity": identity}, indent=1,
                                                sort_keys=True, default=str).encode())

    def _chunk_path(self, key: str, chunk: int) -> Path:
        return self.entry(key) / f"chunk_{chunk:05d}.npz"

    def load_chunk(self, key: str, chunk: int, size: int) -> np.ndarray | None:
        """The maps (size, h, w) of a chunk, or None if absent or damaged (then it is deleted)."""
        if not self.enabled:
            return None
        path = self._chunk_path(key, chunk)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                maps, digest = data["maps"], str(data["sha256"])
            if _digest(maps) != digest or maps.shape[0] != size:
                raise ValueError("checksum mismatch")
            return maps
        except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:
            warnings.warn(f"sample cache: discarding damaged chunk {path} ({type(err).__name__}: {err}); it will be recomputed")
            self.corrupt_chunks += 1
            path.unlink(missing_ok=True)
            return None

    def save_chunk(self, key: str, chunk: int, maps: np.ndarray) -> None:
        if not self.enabled:
            return
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, maps=maps, sha256=np.array(_digest(maps)))
        atomic_write_bytes(self._chunk_path(key, chunk), buf.getvalue())
