"""A second domain that installs offline: scikit-learn's bundled handwritten digits and a small CNN trained here.

**The digits.** ``sklearn.datasets.load_digits``: 1,797 digits of 8x8 pixels with 17 grey levels (0..16), 10
classes. :func:`digit_splits` scales them to [0, 1], upsamples them bilinearly to ``size`` x ``size`` and splits
each class with a seed (stratified). :func:`write_digits_folder` writes one split as a labelled folder in the
torchvision ``ImageFolder`` layout (``<root>/<class>/<id>.png``, 8-bit greyscale PNG), the form in which a
researcher brings a data set, so that the book reads the digits through the same path as a user's folder.

**The network** (:class:`DigitsCNN`): four 3x3 convolutions, each followed by BatchNorm and ReLU (widths 16, 16,
32, 32; the second and third with stride 2), global average pooling and one linear layer: a GAP->linear head,
so every attribution method is defined at both layers and LRP's BatchNorm and head canonizers apply. For 32x32
digits its Final layer is the 32x8x8 output of the last block. It is small on purpose: RISE and Occlusion at the
Input layer run thousands of passes per noisy copy, and at these widths a pass costs about 1/300 of an
EfficientNet-Lite0 pass on a 224x224 photo. :func:`trained_digits_cnn` trains it on the training
split of the digits as the PNG files store them (8-bit), on one CPU thread with a seeded generator, so the same
settings give the same weights on any machine; the weights are cached by a hash of every setting and of the
digits (:func:`model_cache_dir`), like the weights of the Levine chapter. It is trained with random shifts of up
to 2 pixels and with Gaussian noise of a standard deviation drawn in [0, 0.3] (pixel units), as a model meant to
be explained under noise would be: without the noise, a wider version's test accuracy fell from 98% to 47% at σ = 0.1, and the noisy
maps would explain a network that no longer sees a digit.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine.files import atomic_write_bytes
from ..engine.validation import CertattrError, check_interval, check_positive_int

__all__ = ["DigitSplits", "digit_splits", "MAX_GREY", "DigitsCNN", "DigitsTraining", "TrainedDigits",
           "trained_digits_cnn", "write_digits_folder", "model_cache_dir", "one_thread", "DIGIT_CLASSES"]

MAX_GREY = 16.0  #: load_digits stores 17 grey levels, 0..16
DIGIT_CLASSES = tuple(str(d) for d in range(10))  #: the class names, in class order (the folder names)
_FORMAT = 1  #: the weights cache's format (part of its key)


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block (the previous count is restored after it).

    The digit networks are so small that a second thread only adds synchronisation (one training of the Levine
    chapter's tests took 21 s on two threads and 1.8 s on one on a busy 2-core machine). One thread also fixes the
    float reductions, so trained weights do not depend on the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class DigitSplits:
    """Train and test digits: images (N, 3, size, size) float32 in [0, 1], labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    size: int

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every image and label: part of the weights cache keys."""
        h = hashlib.sha256()
        for t in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def _upsample(grey: np.ndarray, size: int) -> torch.Tensor:
    t = torch.from_numpy(grey.astype(np.float32) / MAX_GREY).view(-1, 1, 8, 8)
    if size != 8:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous()


def digit_splits(size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> DigitSplits:
    """The bundled digits at ``size`` x ``size`` (three identical channels), split per class (stratified) with
    ``seed``: ``test_fraction`` of each class is test."""
    from sklearn.datasets import load_digits  # scikit-learn is a dependency of the bundled photos

    size = check_positive_int("size", size, 8)
    if size % 4:
        raise CertattrError(f"size={size!r} is not allowed: the networks pool twice by 2, so give a multiple of 4 "
                            f"(>= 8)")
    test_fraction = check_interval("test_fraction", test_fraction, 0, 1, what="the share of test digits")
    digits = load_digits()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(digits.target), dtype=bool)
    for label in range(10):
        members = np.flatnonzero(digits.target == label)
        chosen = rng.permutation(members)[: int(round(test_fraction * len(members)))]
        test[chosen] = True
    images = _upsample(digits.images, size)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return DigitSplits(images[~test], labels[~test], images[test], labels[test], size)


class DigitsCNN(nn.Module):
    """Greyscale digits (B, 1, size, size), normalized, -> logits (B, 10): four conv-BN-ReLU blocks, then global
    average pooling and a linear layer (``features`` then ``classifier``)."""

    def __init__(self, widths: tuple = (16, 16, 32, 32), classes: int = 10):
        super().__init__()
        layers, before = [], 1
        for i, width in enumerate(widths):
            width = check_positive_int("widths", width)
            layers += [nn.Conv2d(before, width, 3, stride=2 if i in (1, 2) else 1, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU()]
            before = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(before, check_positive_int("classes", classes, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@dataclass(frozen=True)
class DigitsTraining:
    """Every setting that decides the trained weights (all are in the cache key): the digits (``size``,
    ``test_fraction``, ``split_seed``), the network (``widths``) and the optimisation (Adam at ``lr`` with cosine
    decay, ``epochs`` passes over the training split in batches of ``batch_size``, shuffled by ``seed``; each
    training image shifted by up to ``shift`` pixels, a fresh shift per epoch, and with ``noise`` > 0 given Gaussian noise
    of a standard deviation drawn uniformly in [0, ``noise``], in [0, 1] pixel units)."""

    size: int = 32
    test_fraction: float = 0.3
    split_seed: int = 0
    widths: tuple = (16, 16, 32, 32)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.003
    shift: int = 2
    noise: float = 0.3
    seed: int = 0
    mean: float = 0.5  #: the normalization the network is trained with (and the registry's preset applies)
    std: float = 0.5

    def key(self, data_fingerprint: str) -> str:
        text = json.dumps({**asdict(self), "widths": list(self.widths), "format": _FORMAT,
                           "data": data_fingerprint}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class TrainedDigits:
    """A trained :class:`DigitsCNN` (eval mode) with its settings, its accuracy on the held-out test split (the
    share of test digits classified correctly, in [0, 1]), the test split's size and whether it came from the
    cache."""

    net: DigitsCNN
    settings: DigitsTraining
    test_accuracy: float
    n_test: int
    cached: bool = False


def as_stored(images: torch.Tensor) -> torch.Tensor:
    """Greyscale images (N, 1, H, W) as an 8-bit PNG stores them: round(255 x) / 255."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def _data(settings: DigitsTraining) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    s = digit_splits(settings.size, settings.test_fraction, settings.split_seed)
    return as_stored(s.train_images[:, :1]), s.train_labels, as_stored(s.test_images[:, :1]), s.test_labels


def _shifted(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    if shift <= 0:
        return x
    padded = F.pad(x, (shift,) * 4)
    offsets = torch.randint(0, 2 * shift + 1, (x.shape[0], 2), generator=generator)
    h, w = x.shape[2:]
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def _train(settings: DigitsTraining, progress: bool) -> TrainedDigits:
    from tqdm.auto import tqdm

    x_train, y_train, x_test, y_test = _data(settings)
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = DigitsCNN(settings.widths)
    normalize = lambda x: (x - settings.mean) / settings.std  # noqa: E731
    steps = settings.epochs * -(-len(x_train) // settings.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    net.train()
    for _ in tqdm(range(settings.epochs), desc="training the digits CNN", disable=not progress, leave=False):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            x = _shifted(x_train[idx], settings.shift, generator)
            if settings.noise > 0:
                scale = settings.noise * torch.rand(len(idx), 1, 1, 1, generator=generator)
                x = x + scale * torch.randn(x.shape, generator=generator)
            loss = F.cross_entropy(net(normalize(x)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(normalize(x_test)).argmax(1) == y_test).float().mean())
    return TrainedDigits(net, settings, accuracy, len(y_test))


def model_cache_dir() -> Path:
    """Where trained weights are cached: ``$CERTATTR_MODEL_CACHE``, else ``~/.cache/certattr/models`` (the book's
    build points the variable into the repository's ``.cache``)."""
    return Path(os.environ.get("CERTATTR_MODEL_CACHE") or Path.home() / ".cache" / "certattr" / "models")


def trained_digits_cnn(settings: DigitsTraining = DigitsTraining(), cache_dir=None, *,
                       progress: bool = False) -> TrainedDigits:
    """The digits CNN trained under ``settings``: read from ``<cache_dir>/digits_cnn/<key>.pt`` (default
    :func:`model_cache_dir`) when a file with exactly these settings and digits is there, else trained (on one
    thread, deterministic) and written atomically. An unreadable cache file is retrained, never trusted."""
    x_train, y_train, x_test, y_test = _data(settings)
    fingerprint = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes()
                                          for t in (x_train, y_train, x_test, y_test))).hexdigest()[:16]
    path = Path(cache_dir if cache_dir is not None else model_cache_dir()) / "digits_cnn" / f"{settings.key(fingerprint)}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            net = DigitsCNN(settings.widths)
            net.load_state_dict(stored["weights"])
            return TrainedDigits(net.eval(), settings, float(stored["test_accuracy"]), int(stored["n_test"]),
                                 cached=True)
        except Exception:  # noqa: BLE001 - a file that cannot be read is retrained and rewritten
            pass
    with one_thread():
        result = _train(settings, progress)
    buffer = io.BytesIO()
    torch.save({"weights": result.net.state_dict(), "test_accuracy": result.test_accuracy,
                "n_test": result.n_test}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return result


def write_digits_folder(root, split: str = "test", settings: DigitsTraining = DigitsTraining(), *,
                        count: int | None = None) -> Path:
    """Write the ``split`` ("test" or "train") digits of ``settings`` as a labelled folder
    ``<root>/<class>/<split>-<index>.png`` (8-bit greyscale PNG at ``settings.size``; ``count``: the first
    ``count`` digits in the split's order, default all) and return ``root``. The folder is replaced whole
    (written beside it, then renamed), and left as it is when its manifest says it holds exactly these digits."""
    from PIL import Image as PILImage

    if split not in ("test", "train"):
        raise CertattrError(f"split={split!r} is not allowed: give 'test' or 'train'")
    x_train, y_train, x_test, y_test = _data(settings)
    images, labels = (x_test, y_test) if split == "test" else (x_train, y_train)
    if count is not None:
        count = check_positive_int("count", count)
        if count > len(labels):
            raise CertattrError(f"count={count} is more than the {len(labels)} {split} digits")
        images, labels = images[:count], labels[:count]
    pixels = (images[:, 0] * 255).round().to(torch.uint8).numpy()
    manifest = json.dumps({"split": split, "settings": {**asdict(settings), "widths": list(settings.widths)},
                           "count": len(labels),
                           "digest": hashlib.sha256(pixels.tobytes() + labels.numpy().tobytes()).hexdigest()},
                          sort_keys=True)
    root = Path(root)
    if (root / ".digits-manifest.json").is_file() and (root / ".digits-manifest.json").read_text() == manifest:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for i, (image, label) in enumerate(zip(pixels, labels.tolist())):
            folder = tmp / DIGIT_CLASSES[label]
            folder.mkdir(exist_ok=True)
            PILImage.fromarray(image, mode="L").save(folder / f"{split}-{i:04d}.png")
        (tmp / ".digits-manifest.json").write_text(manifest)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
