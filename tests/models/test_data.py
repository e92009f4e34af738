"""Images: bundled photos and the ImageNet-folder loader with the paper's seed-73 order."""
import random

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from certattr.models.data import BUNDLED_PHOTOS, ImageNetFolder, bundled_photos, load_image_file, paper_order, to_tensor
from certattr.engine.validation import CertattrError


def test_bundled_photos_are_real_224_images_in_unit_range():
    photos = bundled_photos()
    assert [p.id for p in photos] == list(BUNDLED_PHOTOS) and len(photos) >= 8
    for p in photos:
        assert p.tensor.shape == (3, 224, 224) and p.tensor.dtype == torch.float32
        assert 0 <= float(p.tensor.min()) and float(p.tensor.max()) <= 1 and float(p.tensor.std()) > 0.05


def test_resize_then_center_crop():
    arr = np.zeros((300, 600, 3), dtype=np.uint8)
    arr[:, 300:] = 255  # right half white
    x = to_tensor(arr)
    assert x.shape == (3, 224, 224)
    # shorter side 300 -> 256, width 600 -> 512; the central 224 columns straddle the edge at column 256
    assert float(x[:, :, :100].max()) < 1e-6 and float(x[:, :, 124:].min()) > 1 - 1e-6


def test_paper_order_is_the_cpython_recipe():
    random.seed(73)
    expected = random.sample(range(50000), 50000)
    assert paper_order(50000) == expected
    small = paper_order(7)
    assert sorted(small) == list(range(7)) and small == [i for i in expected if i < 7]


def _folder(tmp_path, n=6):
    lines = []
    for i in range(n):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        PILImage.fromarray(np.full((40 + i, 50, 3), 20 * i, dtype=np.uint8)).save(tmp_path / name, format="JPEG")
        lines.append(f"{name} {100 + i}")
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_imagenet_folder_in_paper_order(tmp_path):
    folder = ImageNetFolder(_folder(tmp_path))
    assert len(folder) == 6
    images = list(folder.paper_images(3))
    order = paper_order(6)[:3]
    assert [im.id for im in images] == [f"ILSVRC2012_val_{i + 1:08d}" for i in order]
    assert [im.label for im in images] == [100 + i for i in order]
    assert images[0].tensor.shape == (3, 224, 224)


@pytest.mark.parametrize("content,message", [
    ("ILSVRC2012_val_00000001.JPEG", "malformed"),
    ("ILSVRC2012_val_00000001.JPEG 1000", "malformed"),
    ("missing.JPEG 3", "missing"),
    ("", "lists no images"),
])
def test_malformed_labels_file(tmp_path, content, message):
    _folder(tmp_path, 1)
    (tmp_path / "labels.txt").write_text(content)
    with pytest.raises(CertattrError, match=message):
        ImageNetFolder(tmp_path)


def test_missing_folder_and_unreadable_image(tmp_path):
    with pytest.raises(CertattrError, match="does not exist"):
        ImageNetFolder(tmp_path / "nope")
    with pytest.raises(CertattrError, match="labels file"):
        ImageNetFolder(tmp_path)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CertattrError, match="could not be read"):
        load_image_file(bad)
