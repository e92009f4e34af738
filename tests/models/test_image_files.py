"""Image files are read as a viewer shows them: every bit depth by its true range, EXIF orientation applied;
what cannot be read is one line naming the file and why (issue 16, point 1).

Oracle: each kind of file is built from one 8-bit reference picture (exactly representable in every kind),
so its tensor must equal the tensor of the reference's 8-bit PNG.
"""
import io
import os
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

from certattr.models.data import load_image_file
from certattr.engine.validation import CertattrError

H, W = 40, 60  # landscape, so that a wrong orientation changes the shape before the crop


@pytest.fixture(scope="module")
def ref8():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H // 4, W // 4, 3), dtype=np.uint8)
    return np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))  # blocky: resizing keeps it recognisable


def _png(arr: np.ndarray, bitdepth: int, colortype: int) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB): colortype 0 grey, 2 RGB, 6 RGBA."""
    h, w = arr.shape[:2]
    dtype = ">u2" if bitdepth == 16 else "u1"
    raw = b"".join(b"\0" + np.ascontiguousarray(arr[i]).astype(dtype).tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bitdepth, colortype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _save(img, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _tiff(arr) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
    return buf.getvalue()


def _palette(ref):
    """The picture as a palette image with its exact colours (it has at most 150)."""
    colors, index = np.unique(ref.reshape(-1, 3), axis=0, return_inverse=True)
    img = PILImage.fromarray(index.reshape(ref.shape[:2]).astype(np.uint8), "P")
    img.putpalette(colors.astype(np.uint8).flatten().tolist())
    return img


def _kinds(ref):
    grey8 = ref[..., 0]
    rgb16 = ref.astype(np.uint16) * 257  # v/255 == 257 v/65535 exactly
    opaque = np.full(ref.shape[:2], 255, np.uint8)
    return {
        "png8_rgb": (_save(PILImage.fromarray(ref), "PNG"), "rgb"),
        "png16_rgb": (_png(rgb16, 16, 2), "rgb"),
        "png16_rgba": (_png(np.dstack([rgb16, np.full(ref.shape[:2], 65535, np.uint16)]), 16, 6), "rgb"),
        "png16_grey": (_png(rgb16[..., 0], 16, 0), "grey"),
        "png8_grey": (_save(PILImage.fromarray(grey8), "PNG"), "grey"),
        "png_palette": (_save(_palette(ref), "PNG"), "rgb"),
        "png_rgba": (_save(PILImage.fromarray(np.dstack([ref, opaque])), "PNG"), "rgb"),
        "png_grey_alpha": (_save(PILImage.fromarray(np.dstack([grey8, opaque]), "LA"), "PNG"), "grey"),
        "tiff_float_grey": (_tiff((grey8 / 255.0).astype(np.float32)), "grey"),
        "tiff_float_rgb": (_tiff((ref / 255.0).astype(np.float32)), "rgb"),
        "tiff16_rgb": (_tiff(rgb16), "rgb"),
        "tiff16_grey": (_tiff(rgb16[..., 0]), "grey"),
        "tiff_cmyk": (_save(PILImage.fromarray(ref).convert("CMYK"), "TIFF"), "cmyk"),
        "bmp": (_save(PILImage.fromarray(ref), "BMP"), "rgb"),
    }


KINDS = ["png8_rgb", "png16_rgb", "png16_rgba", "png16_grey", "png8_grey", "png_palette", "png_rgba", "png_grey_alpha",
         "tiff_float_grey", "tiff_float_rgb", "tiff16_rgb", "tiff16_grey", "tiff_cmyk", "bmp"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_bit_depth_and_mode_reads_as_the_8bit_reference(kind, ref8, tmp_path):
    data, family = _kinds(ref8)[kind]
    path = tmp_path / f"image.{'tif' if 'tiff' in kind else kind.split('_')[0][:3]}"
    path.write_bytes(data)
    got = load_image_file(path, resize=64, crop=64)
    if family == "grey":
        expected = load_image_file(_ref_file(tmp_path, np.stack([ref8[..., 0]] * 3, -1)), resize=64, crop=64)
    elif family == "cmyk":  # Pillow's RGB->CMYK->RGB round trip is exact
        expected = load_image_file(_ref_file(tmp_path, np.asarray(PILImage.fromarray(ref8).convert("CMYK")
                                                                  .convert("RGB"))), resize=64, crop=64)
    else:
        expected = load_image_file(_ref_file(tmp_path, ref8), resize=64, crop=64)
    tol = 1e-6
    assert got.shape == (3, 64, 64) and got.dtype == expected.dtype
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=tol, rtol=0)
    assert 0.2 < float(got.mean()) < 0.8  # neither saturated white nor black


def _ref_file(tmp_path, arr):
    path = tmp_path / "reference.png"
    PILImage.fromarray(np.ascontiguousarray(arr)).save(path)
    return path


def test_the_8bit_path_is_unchanged(ref8, tmp_path):
    """The new reader gives the same tensor as the previous uint8 path (/255 in float32)."""
    from certattr.models.data import to_tensor

    np.testing.assert_array_equal(load_image_file(_ref_file(tmp_path, ref8)).numpy(), to_tensor(ref8).numpy())


def test_transparency_is_composited_over_white(tmp_path):
    arr = np.zeros((8, 8, 4), np.uint8)  # black, fully transparent
    PILImage.fromarray(arr).save(tmp_path / "clear.png")
    assert float(load_image_file(tmp_path / "clear.png", 8, 8).min()) == 1.0


@pytest.mark.parametrize("orientation", [3, 6, 8, 2])  # 180, 90 clockwise, 90 counter-clockwise, mirrored
def test_exif_orientation_is_applied(ref8, tmp_path, orientation):
    # store the picture so that applying the EXIF orientation gives ref8 back
    inverse = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1),
               2: lambda a: a[:, ::-1]}[orientation]
    stored = np.ascontiguousarray(inverse(ref8))
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(stored).save(tmp_path / "o.png", exif=exif.tobytes())
    np.testing.assert_allclose(load_image_file(tmp_path / "o.png", 64, 64).numpy(),
                               load_image_file(_ref_file(tmp_path, ref8), 64, 64).numpy(), atol=1e-6)


def test_exif_orientation_of_a_jpeg(ref8, tmp_path):
    stored = np.ascontiguousarray(np.rot90(ref8, 1))  # orientation 6: turn 90 clockwise to view
    exif = PILImage.Exif()
    exif[0x0112] = 6
    PILImage.fromarray(stored).save(tmp_path / "o.jpg", quality=100, subsampling=0, exif=exif.tobytes())
    viewed = load_image_file(tmp_path / "o.jpg", 64, 64).numpy()
    ref = load_image_file(_ref_file(tmp_path, ref8), 64, 64).numpy()
    assert np.abs(viewed - ref).mean() < 0.03  # JPEG loss only
    assert np.abs(load_image_file(_ref_file(tmp_path, stored), 64, 64).numpy() - ref).mean() > 0.1  # not vacuous


def _one_line(err: CertattrError, path) -> str:
    text = str(err)
    assert "\n" not in text and str(path) in text
    return text


def test_unreadable_files_give_one_line_naming_file_and_why(tmp_path, monkeypatch):
    cases = {}
    (tmp_path / "folder.png").mkdir()
    cases["folder.png"] = "is a folder"
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    cases["text.png"] = "could not be read as an image"
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "is empty"
    good = _save(PILImage.fromarray(np.zeros((64, 64, 3), np.uint8) + 100), "PNG")
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    cases["truncated.png"] = "could not be decoded"
    (tmp_path / "float_out_of_range.tif").write_bytes(_tiff(np.full((8, 8), 7.5, np.float32)))
    cases["float_out_of_range.tif"] = "float images must lie in [0, 1]"
    cases["missing.png"] = "does not exist"
    for name, message in cases.items():
        with pytest.raises(CertattrError) as exc:
            load_image_file(tmp_path / name)
        assert message in _one_line(exc.value, tmp_path / name), (name, str(exc.value))


def test_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    PILImage.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "big.png")  # 1600 > 1000 pixels
    with pytest.raises(CertattrError) as exc:
        load_image_file(tmp_path / "big.png")
    assert "too large to decode" in _one_line(exc.value, tmp_path / "big.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform (os.mkfifo is missing)")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            load_image_file(fifo)
        except CertattrError as err:
            result["err"] = str(err)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader before failing
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("reading a FIFO blocked")
    assert "not a regular file" in result["err"] and str(fifo) in result["err"]
