"""Images: the bundled real photos (offline default) and a user's ImageNet-validation folder.

Every image is an ``Image`` with a stable id and a float32 tensor (3, 224, 224) in [0,1] pixel units,
made by the paper's geometry: resize the shorter side to 256 (bilinear, antialiased), center crop 224.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from ..engine.validation import CertattrError
from .imagefile import read_image

__all__ = ["Image", "BUNDLED_PHOTOS", "bundled_photo", "bundled_photos", "to_tensor", "load_image_file",
           "paper_order", "ImageNetFolder"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Image:
    """One image: ``tensor`` (3, H, W) float32 in [0,1]; ``label`` the ground truth class or None."""

    id: str
    tensor: torch.Tensor
    label: int | None = None
    source: str = ""


def to_tensor(array: np.ndarray, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3|4), or float (H, W, 3) in [0,1] (as :func:`certattr.models.imagefile.read_image`
    gives) -> float32 (3, crop, crop) in [0,1]: shorter side to ``resize``, center crop."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise CertattrError(f"an image array of shape {array.shape} is not allowed: give (H, W) or (H, W, 3)")
    array = array[..., :3]
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise CertattrError("a float image array outside [0, 1] is not allowed: give values in [0, 1]")
        x = torch.from_numpy(np.array(array, dtype=np.float32, copy=True)).permute(2, 0, 1)
    elif array.dtype != np.uint8:
        raise CertattrError(f"an image array of dtype {array.dtype} is not allowed here: give uint8 or float in [0, 1]")
    else:
        x = torch.from_numpy(np.array(array, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    import torchvision.transforms.functional as TF  # torchvision loads at the first image, not on `import certattr`

    x = TF.resize(x, resize, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    x = TF.center_crop(x, [crop, crop])
    return x.clamp_(0.0, 1.0).contiguous()


def load_image_file(path, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """Read an image file as a viewer shows it -> (3, crop, crop) float32 in [0,1].

    Any bit depth by its true range, EXIF orientation applied, transparency over white; a file that cannot
    be read gets a one-line CertattrError naming it and why (see :mod:`certattr.models.imagefile`).
    """
    return to_tensor(read_image(path), resize, crop)


# --- bundled photos (installed with scikit-image, scikit-learn and matplotlib; no download) ---------
def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if name == "stereo_motorcycle" else img  # (left, right, disparity): the left view

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load():
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(fh).convert("RGB"))


#: id -> (loader, where it comes from). Order is the default order of the image set.
BUNDLED_PHOTOS: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "chelsea": (_skimage("chelsea"), "scikit-image data.chelsea (a cat)"),
    "coffee": (_skimage("coffee"), "scikit-image data.coffee (a cup of coffee)"),
    "camera": (_skimage("camera"), "scikit-image data.camera (a photographer with a camera on a tripod; greyscale)"),
    "rocket": (_skimage("rocket"), "scikit-image data.rocket (a rocket on its launch pad)"),
    "astronaut": (_skimage("astronaut"), "scikit-image data.astronaut (Eileen Collins)"),
    "motorcycle": (_skimage("stereo_motorcycle"), "scikit-image data.stereo_motorcycle, left view"),
    "grace_hopper": (_grace_hopper, "matplotlib sample data grace_hopper.jpg"),
    "china": (_sklearn("china"), "scikit-learn sample image china.jpg (a palace)"),
    "flower": (_sklearn("flower"), "scikit-learn sample image flower.jpg"),
}


def bundled_photo(image_id: str, resize: int = 256, crop: int = 224) -> Image:
    if image_id not in BUNDLED_PHOTOS:
        raise CertattrError(f"photo {image_id!r} is unknown: bundled photos are {', '.join(BUNDLED_PHOTOS)}")
    loader, source = BUNDLED_PHOTOS[image_id]
    return Image(image_id, to_tensor(loader(), resize, crop), None, source)


def bundled_photos(ids: Sequence[str] | None = None, resize: int = 256, crop: int = 224) -> list[Image]:
    """The bundled real photos (all, or the given ids, in that order); ``label`` is None (use top-1)."""
    return [bundled_photo(i, resize, crop) for i in (ids if ids is not None else BUNDLED_PHOTOS)]


# --- ImageNet validation folder ----------------------------------------------------------------------
def paper_order(count: int, total: int = 50000) -> list[int]:
    """The paper's image order: ``random.seed(73); random.sample(range(50000), 50000)`` (CPython ``random``).

    For a folder of ``count`` < 50000 images, that permutation restricted to indices < count.
    """
    rng = random.Random(73)
    perm = rng.sample(range(total), total)
    return perm if count >= total else [i for i in perm if i < count]


class ImageNetFolder:
    """A folder of ImageNet validation images with a labels file.

    ``labels_file`` (default ``<root>/labels.txt``) has one line per image: ``<file name> <class index>``
    (whitespace or comma separated; class index 0-999 in torchvision's order). Images are the files
    named there, sorted by file name; index i of :func:`paper_order` refers to the i-th of them, so a
    complete 50,000-image folder gives exactly the paper's images.
    """

    def __init__(self, root, labels_file=None, resize: int = 256, crop: int = 224):
        self.root = Path(root)
        if not self.root.is_dir():
            raise CertattrError(f"ImageNet folder {str(self.root)!r} does not exist or is not a folder")
        self.labels_file = Path(labels_file) if labels_file else self.root / "labels.txt"
        if not self.labels_file.is_file():
            raise CertattrError(f"labels file {str(self.labels_file)!r} does not exist: give one line "
                                f"'<file name> <class index 0-999>' per image")
        self.resize, self.crop = resize, crop
        self.entries = self._read_labels()

    def _read_labels(self) -> list[tuple[str, int]]:
        entries = {}
        for lineno, line in enumerate(self.labels_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or not 0 <= int(parts[1]) < 1000:
                raise CertattrError(f"{self.labels_file}:{lineno}: malformed line {line!r}: expected "
                                    f"'<file name> <class index 0-999>'")
            name = parts[0]
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                raise CertattrError(f"{self.labels_file}:{lineno}: {name!r} is not an image file name")
            if not (self.root / name).is_file():
                raise CertattrError(f"{self.labels_file}:{lineno}: image {name!r} is missing from {self.root}")
            entries[name] = int(parts[1])
        if not entries:
            raise CertattrError(f"labels file {str(self.labels_file)!r} lists no images")
        return sorted(entries.items())

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Image:
        name, label = self.entries[index]
        return Image(Path(name).stem, load_image_file(self.root / name, self.resize, self.crop), label, str(self.root / name))

    def paper_images(self, count: int) -> Iterator[Image]:
        """The first ``count`` images in the paper's seed-73 order."""
        for index in paper_order(len(self))[:count]:
            yield self[index]
