"""On-disk cache of noisy attribution samples, one entry per (model, method, layer, sigma, seed, image, target).

An entry holds fixed chunks of sample indices [c*m, (c+1)*m), m the engine's chunk size (part of the key), each
stored in one or more encodings (:mod:`certattr.engine.encodings`): the layer-resolution float32 maps (m, h, w) in
``chunk_<c>.npz`` when they are kept, and compact encodings (bit-packed top-K codes, top-k sets, bounded sums) in
``chunk_<c>.<tag>.npz``. Sample i does not depend on n, so a run with a
larger n reuses the chunks of a smaller one. When n is not a multiple of m, the last chunk holds only the
r = n - c*m samples below n (it is computed as one batch of r, never past n) and is its own file
``chunk_<c>_r<r>.npz``; when the full chunk c of a larger n is cached already, the engine uses its first r
maps instead (the same samples up to float rounding of the model's batch).

Each chunk is written atomically (temporary file unique per process and thread + rename). Its SHA-256
covers the chunk format, the entry key, the chunk index, the shape and the maps, so a chunk that was
truncated, bit-flipped, moved, copied or swapped from another entry or index fails its check. Anything
unreadable in a chunk's place (bad zip, bad compression, wrong checksum, a directory, a FIFO or another
special file) is reported in one warning line, removed, and recomputed; it is never read as data and never
blocks (a special file is never opened).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np

from .config import DEFAULT_SAMPLING
from .encodings import RAW, Encoding
from .files import atomic_write_bytes, check_writable_folder, os_cause
from .validation import CertattrError

__all__ = ["DEFAULT_CHUNK", "SampleCache", "CacheWarning", "cache_key", "default_cache_dir", "chunk_checksum"]

DEFAULT_CHUNK = DEFAULT_SAMPLING.chunk_size  #: samples per model call and per chunk file
SAMPLES_VERSION = 3  #: bump when a change to certattr changes the samples it computes or the chunk format
CHUNK_FORMAT = 3  #: 3: the checksum covers the entry key, the chunk index and the shape
ENCODED_FORMAT = 1  #: the format of a chunk stored in a compact encoding (:mod:`certattr.engine.encodings`)
MAX_CHUNK_BYTES = 2 ** 31  #: a chunk file larger than this is damaged (a chunk is a few MB at most)


class CacheWarning(UserWarning):
    """A damaged chunk was found in the sample cache (it is recomputed), or the cache could not be used."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("CERTATTR_CACHE", Path.home() / ".cache" / "certattr"))


def cache_key(identity: dict) -> str:
    """SHA-256 of the canonical JSON of everything that determines the samples."""
    blob = json.dumps({"samples_version": SAMPLES_VERSION, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def chunk_checksum(key: str, chunk: int, maps: np.ndarray) -> str:
    """SHA-256 of (chunk format, entry key, chunk index, dtype, shape, the maps' bytes)."""
    maps = np.ascontiguousarray(maps)
    h = hashlib.sha256(f"certattr-chunk|{CHUNK_FORMAT}|{key}|{int(chunk)}|{maps.dtype.str}|{maps.shape}|".encode())
    h.update(maps.tobytes())
    return h.hexdigest()


def encoded_checksum(key: str, chunk: int, encoding: Encoding, arrays: dict) -> str:
    """SHA-256 of (format, entry key, chunk index, encoding, each array's name, dtype, shape and bytes)."""
    h = hashlib.sha256(f"certattr-encoded|{ENCODED_FORMAT}|{key}|{int(chunk)}|{encoding.spec}|".encode())
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _remove(path: Path) -> None:
    """Remove a file, link, special file or directory tree in a chunk's place (errors ignored)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


class SampleCache:
    """A folder of cache entries. ``SampleCache(None)`` keeps nothing (every chunk is recomputed)."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else None
        self.corrupt_chunks = 0  #: chunks found damaged and discarded since this object was made
        self._chunk_sizes = {}  #: key -> the entry's chunk size, from its identity (see write_manifest)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def check_writable(self) -> None:
        """Raise a one-line CertattrError if the cache folder cannot be created or written (a file, read-only,
        under /proc, full, ...); nothing is left behind."""
        if not self.enabled or getattr(self, "_writable", False):
            return
        check_writable_folder(self.root, "the sample cache (--cache)")
        self._writable = True

    def write_manifest(self, key: str, identity: dict) -> None:
        """Write the entry's manifest (its identity) once; remembers the entry's chunk size, so that a chunk of
        fewer samples (the last one below n) goes to its own file even when ``full`` is not given."""
        if isinstance(identity.get("chunk_size"), int):
            self._chunk_sizes[key] = identity["chunk_size"]
        if not self.enabled:
            return
        path = self.entry(key) / "manifest.json"
        if not path.is_file():
            if path.exists() or path.is_symlink():
                _remove(path)
            self._write(path, json.dumps({"identity": identity}, indent=1, sort_keys=True, default=str).encode())

    def chunk_path(self, key: str, chunk: int, size: int | None = None, encoding: Encoding = RAW) -> Path:
        """The file of a full chunk (``size`` None or the chunk size) or of a partial last chunk of ``size``, in
        ``encoding`` (raw maps: ``chunk_<c>.npz``; others ``chunk_<c>.<tag>.npz``)."""
        suffix = "" if size is None else f"_r{int(size)}"
        tag = f".{encoding.tag}" if encoding.tag else ""
        return self.entry(key) / f"chunk_{chunk:05d}{suffix}{tag}.npz"

    def _path(self, key: str, chunk: int, size: int, full: int | None, encoding: Encoding = RAW) -> Path:
        full = self._chunk_sizes.get(key) if full is None else full
        return self.chunk_path(key, chunk, None if full is None or size == full else size, encoding)

    def has_chunk(self, key: str, chunk: int, size: int, full: int | None = None, encoding: Encoding = RAW) -> bool:
        """Whether a regular file is in the chunk's place (not whether it is valid: :meth:`load_chunk` checks)."""
        if not self.enabled:
            return False
        try:
            return stat.S_ISREG(os.lstat(self._path(key, chunk, size, full, encoding)).st_mode)
        except OSError:
            return False

    def load_chunk(self, key: str, chunk: int, size: int, full: int | None = None, encoding: Encoding = RAW):
        """A chunk of ``size`` samples in ``encoding``, or None if absent or damaged (then it is reported and
        removed): the maps (size, h, w) float32 for raw maps, else the encoding's dict of arrays.

        ``full``: the entry's chunk size; a chunk of fewer samples (the last one below n) is a separate file.
        """
        if not self.enabled:
            return None
        path = self._path(key, chunk, size, full, encoding)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as err:
            return self._damaged(path, f"{type(err).__name__}: {err}")
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a link" if stat.S_ISLNK(st.st_mode) else \
                "a special file (FIFO, socket or device)"
            return self._damaged(path, f"{kind}, not a chunk file")
        if st.st_size > MAX_CHUNK_BYTES:
            return self._damaged(path, f"{st.st_size} bytes, more than a chunk can hold")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError("not a regular file")
                with os.fdopen(fd, "rb", closefd=False) as fh:
                    blob = fh.read()
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            return self._damaged(path, f"{type(err).__name__}: {err}", remove=False)
        if encoding is not RAW and encoding.tag:
            return self._decode_encoded(path, blob, key, chunk, size, encoding)
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                fmt = int(data["format"]) if "format" in data.files else None
                maps, digest = data["maps"], str(data["sha256"])
            if fmt != CHUNK_FORMAT:
                raise ValueError(f"chunk format {fmt}, expected {CHUNK_FORMAT}")
            if maps.dtype != np.float32 or maps.ndim != 3 or maps.shape[0] != size:
                raise ValueError(f"maps of shape {maps.shape} and dtype {maps.dtype}, expected {size} float32 maps")
            if chunk_checksum(key, chunk, maps) != digest:
                raise ValueError("checksum mismatch (damaged, or a chunk of another entry or index)")
            return maps
        except Exception as err:  # any decoding failure (zipfile, zlib, numpy format, ...) means damaged
            return self._damaged(path, f"{type(err).__name__}: {err}")

    def _decode_encoded(self, path: Path, blob: bytes, key: str, chunk: int, size: int, encoding: Encoding):
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as data:
                meta = {name: data[name] for name in data.files}
            fmt, spec, digest = int(meta.pop("format")), str(meta.pop("encoding")), str(meta.pop("sha256"))
            meta.pop("key", None), meta.pop("chunk", None)
            if fmt != ENCODED_FORMAT or spec != encoding.spec:
                raise ValueError(f"format {fmt} of encoding {spec!r}, expected {ENCODED_FORMAT} of {encoding.spec!r}")
            encoding.check(meta, size)
            if encoded_checksum(key, chunk, encoding, meta) != digest:
                raise ValueError("checksum mismatch (damaged, or a chunk of another entry or index)")
            return meta
        except Exception as err:  # any decoding failure means damaged
            return self._damaged(path, f"{type(err).__name__}: {err}")

    def _damaged(self, path: Path, why: str, remove: bool = True):
        why = " ".join(str(why).split())  # one line
        warnings.warn(f"sample cache: discarding damaged chunk {path} ({why}); it will be recomputed", CacheWarning,
                      stacklevel=3)
        self.corrupt_chunks += 1
        if remove:
            _remove(path)
        return None

    def save_chunk(self, key: str, chunk: int, maps, full: int | None = None, encoding: Encoding = RAW,
                   size: int | None = None) -> None:
        """Write a chunk atomically; ``full``: the entry's chunk size (a smaller chunk gets its own file).

        ``maps``: the float32 maps (b, h, w) for raw maps, else the encoding's arrays (a dict) of ``size`` samples.
        """
        if not self.enabled:
            return
        if encoding is not RAW and encoding.tag:
            arrays = {k: np.asarray(v, order="C") for k, v in maps.items()}  # (ascontiguousarray makes 0-d 1-d)
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays, sha256=np.array(encoded_checksum(key, chunk, encoding, arrays)),
                                format=np.array(ENCODED_FORMAT), encoding=np.array(encoding.spec), key=np.array(key),
                                chunk=np.array(int(chunk)))
            path = self._path(key, chunk, int(size), full, encoding)
            if path.is_symlink() or (path.exists() and not path.is_file()):
                _remove(path)
            self._write(path, buf.getvalue())
            return
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, maps=maps, sha256=np.array(chunk_checksum(key, chunk, maps)),
                            format=np.array(CHUNK_FORMAT), key=np.array(key), chunk=np.array(int(chunk)))
        path = self._path(key, chunk, maps.shape[0], full)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            _remove(path)  # a directory or special file in its place
        self._write(path, buf.getvalue())

    def _write(self, path: Path, data: bytes) -> None:
        # no fsync: every chunk carries its checksum, so one a power cut left incomplete is found, reported and
        # recomputed like any damaged chunk; an fsync per chunk was 29% of a 32x32 digit's Grad certificate
        try:
            atomic_write_bytes(path, data, durable=False)
        except OSError as err:
            raise CertattrError(f"the sample cache {str(self.root)!r} cannot be written ({os_cause(err)} at "
                                f"{str(path)!r}); finished chunks are kept; free space, fix the folder, or run "
                                f"with --no-cache (cache=None)") from None
