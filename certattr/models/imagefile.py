"""Reading an image file as a viewer shows it: (H, W, 3) float32 RGB in [0, 1].

* **Bit depth by its true range**: 8-bit modes (L, P, RGB, CMYK, YCbCr, 1-bit, ...) divide by 255, 16-bit
  (PNG, TIFF: Pillow's ``I;16*``) by 65535, 32-bit integer TIFFs by 2**32 - 1 (2**31 - 1 if signed), float
  images must already lie in [0, 1] (a float image outside [0, 1] is refused: there is no agreed range).
  16-bit RGB(A) files are read by Pillow at their top 8 bits.
* **Orientation**: the EXIF orientation tag is applied (``ImageOps.exif_transpose``).
* **Transparency** (RGBA, LA, palette with transparency): composited over white, as a page shows it.
* **Greyscale** is repeated into three channels; CMYK and YCbCr go through Pillow's conversion to RGB.
* TIFFs Pillow cannot decode (float or 32-bit RGB) are read with ``tifffile`` (a dependency of scikit-image).

What cannot be read raises a one-line CertattrError naming the file and why: missing, a folder or a special
file (a FIFO is never opened for reading, so nothing blocks), unreadable, larger than the decompression-bomb
limit, not an image, truncated, or of an unsupported kind.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from ..engine.validation import CertattrError

__all__ = ["read_image", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 1 << 30  #: a file larger than this (1 GiB) is refused before it is read
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _fail(path: Path, why: str):
    raise CertattrError(f"image file {str(path)!r} {why}")


def _read_bytes(path: Path) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        _fail(path, "does not exist")
    except OSError as err:
        _fail(path, f"cannot be read ({err.strerror or err})")
    if stat.S_ISDIR(st.st_mode):
        _fail(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        _fail(path, "is not a regular file (a FIFO, socket or device): give an image file")
    if st.st_size > MAX_FILE_BYTES:
        _fail(path, f"is too large to read ({st.st_size} bytes, more than {MAX_FILE_BYTES})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                _fail(path, "is not a regular file (a FIFO, socket or device): give an image file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read()
        finally:
            os.close(fd)
    except OSError as err:
        _fail(path, f"cannot be read ({err.strerror or err})")


def _int_range(img, arr: np.ndarray) -> tuple[float, float]:
    """(low, high) of a Pillow 'I' (int32) image: from the TIFF's BitsPerSample/SampleFormat, 16 bits for PNG."""
    if img.format == "PNG":
        return 0.0, 65535.0
    tags = getattr(img, "tag_v2", {}) or {}
    bits = tags.get(258, (32,))
    bits = int(bits[0] if isinstance(bits, (tuple, list)) else bits)
    fmt = tags.get(339, 1)
    signed = int(fmt[0] if isinstance(fmt, (tuple, list)) else fmt) == 2
    return (0.0, float(2 ** (bits - 1) - 1)) if signed else (0.0, float(2 ** bits - 1))


def _from_array(path: Path, arr: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """An integer or float array (H, W), (H, W, 1|3|4) -> (H, W, 3) float32 in [0, 1] (alpha over white)."""
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        _fail(path, f"has an unsupported layout (array of shape {arr.shape}): give a greyscale, RGB or RGBA image")
    if np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float64)
        if not np.isfinite(x).all():
            _fail(path, "holds NaN or inf values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            _fail(path, f"is a float image with values in [{lo:.4g}, {hi:.4g}]: float images must lie in [0, 1]")
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        info = np.iinfo(arr.dtype) if arr.dtype != bool else None
        if low is None:
            low, high = (0.0, 1.0) if info is None else (0.0, float(info.max))
        x = arr.astype(np.float64)
        if float(x.min()) < low:
            _fail(path, f"has negative pixel values (min {x.min():.0f}): give an unsigned image")
        x = (x - low) / (high - low)
    else:
        _fail(path, f"has an unsupported pixel type {arr.dtype}")
    if x.ndim == 2:
        x = np.stack([x] * 3, axis=-1)
    elif x.shape[-1] in (2, 4):  # grey+alpha or RGB+alpha: composite over white
        alpha = x[..., -1:]
        rgb = x[..., :-1] if x.shape[-1] == 4 else np.repeat(x[..., :1], 3, axis=-1)
        x = rgb * alpha + (1.0 - alpha)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _read_tiff(path: Path, data: bytes) -> np.ndarray | None:
    if not (data[:4] in (b"II*\0", b"MM\0*") or data[:4] in (b"II+\0", b"MM\0+")):
        return None
    try:
        import tifffile
    except ImportError:
        return None
    try:
        arr = tifffile.imread(io.BytesIO(data))
    except Exception as err:  # noqa: BLE001 - any decoding failure is "not readable"
        _fail(path, f"could not be read as a TIFF image ({type(err).__name__}: {' '.join(str(err).split())})")
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):  # planar (C, H, W)
        arr = np.moveaxis(arr, 0, -1)
    return _from_array(path, np.asarray(arr))


def _from_pil(path: Path, img) -> np.ndarray:
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
        pass
    mode = img.mode
    if mode.startswith("I;16"):
        return _from_array(path, np.asarray(img).astype(np.uint16), 0.0, 65535.0)
    if mode == "I":
        arr = np.asarray(img)
        low, high = _int_range(img, arr)
        return _from_array(path, arr, low, high)
    if mode == "F":
        return _from_array(path, np.asarray(img, dtype=np.float32))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode in ("PA",):
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        img = img.convert("RGBA") if img.mode not in ("LA",) else img
        return _from_array(path, np.asarray(img))
    try:
        rgb = img.convert("RGB")
    except (ValueError, OSError) as err:
        _fail(path, f"has an image mode ({mode}) that cannot be converted to RGB ({err})")
    return _from_array(path, np.asarray(rgb))


def read_image(path) -> np.ndarray:
    """The image file at ``path`` as (H, W, 3) float32 RGB in [0, 1] (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    data = _read_bytes(path)
    if not data:
        _fail(path, "is empty, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return _from_pil(path, img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            _fail(path, f"is too large to decode safely ({' '.join(str(err).split())})")
        except UnidentifiedImageError:
            tiff = _read_tiff(path, data)
            if tiff is not None:
                return tiff
            _fail(path, "could not be read as an image (unknown or unsupported format)")
        except CertattrError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as err:
            _fail(path, f"could not be decoded ({type(err).__name__}: {' '.join(str(err).split())})")
