"""The digits of Levine et al.'s adversarial training, offline: scikit-learn's bundled ``load_digits``.

Their experiment uses MNIST (28x28, 60,000 training images). No wheel here ships MNIST, so this module uses the
1,797 handwritten digits that ship inside scikit-learn (8x8 pixels, 17 grey levels 0..16, 64 pixels per digit),
scaled to [0, 1] and upsampled bilinearly to ``size`` x ``size`` (default 16). The split is stratified and seeded.

Images are returned as 3-channel tensors with three identical channels, (N, 3, size, size) in [0, 1]: the
engine's models take RGB images, and every l2 size in this package (the attack's eps, sigma) is measured over
all 3·size² values, as everywhere in certattr. The network averages the channels first (:mod:`.network`), so a
perturbation equal on the three channels moves its grey input by 1/sqrt(3) of its 3-channel norm.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.validation import CertattrError, check_interval, check_positive_int

__all__ = ["DigitSplits", "digit_splits", "MAX_GREY"]

MAX_GREY = 16.0  #: load_digits stores 17 grey levels, 0..16


@dataclass(frozen=True)
class DigitSplits:
    """Train and test digits: images (N, 3, size, size) float32 in [0, 1], labels (N,) int64."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    size: int

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every image and label: part of the weights cache key."""
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
    """The bundled digits, split per class (stratified) with ``seed``: ``test_fraction`` of each class is test."""
    from sklearn.datasets import load_digits  # scikit-learn is a dependency of the bundled photos

    size = check_positive_int("size", size, 8)
    if size % 4:
        raise CertattrError(f"size={size!r} is not allowed: the network pools twice by 2, so give a multiple of 4 (>= 8)")
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
