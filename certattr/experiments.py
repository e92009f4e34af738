"""What chapters share: image sets from parameters, class names, and certifying many configurations
into tidy rows (one row per image x method x layer x sigma x K)."""
from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import numpy as np

from .data import Image, ImageNetFolder, bundled_photos
from .methods import get_method, method_names
from .models import LoadedModel
from .metrics import certificate_rows
from .smoothing import SmoothedAttribution, predict
from .validation import CertattrError, UndefinedAttribution

__all__ = ["class_names", "image_set", "resolve_methods", "certificate_rows", "method_for", "certify_many"]


def class_names() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (shipped with torchvision, no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def image_set(photos: Sequence[str] | str | None = None, imagenet_dir: str | None = None,
              n_images: int | None = None) -> list[Image]:
    """Bundled photos (default: all) or the first ``n_images`` of an ImageNet folder in the paper's order."""
    if imagenet_dir:
        folder = ImageNetFolder(imagenet_dir)
        return list(folder.paper_images(n_images or len(folder)))
    if isinstance(photos, str):
        photos = [photos]
    images = bundled_photos(photos)
    return images[:n_images] if n_images else images


def resolve_methods(methods: Sequence[str] | str) -> list[str]:
    """``"all"`` -> every registered method; otherwise the given names, checked."""
    if methods == "all":
        return method_names()
    names = [methods] if isinstance(methods, str) else list(methods)
    for name in names:
        get_method(name)
    return names


def method_for(name: str, layer: str, method_overrides: dict | None = None):
    """The method ``name`` with its hyperparameter overrides for ``layer``.

    ``method_overrides`` maps a method name to hyperparameters for both layers, and ``"name@layer"``
    to hyperparameters for one layer only (these win), e.g.
    ``{"rise": {"n_masks": 50}, "occlusion@input": {"window": 56, "stride": 56}}``.
    """
    overrides = method_overrides or {}
    return get_method(name, **{**overrides.get(name, {}), **overrides.get(f"{name}@{layer}", {})})


def certify_many(model: LoadedModel, images: Iterable[Image], methods: Sequence[str], layers: Sequence[str],
                 sigmas: Sequence[float], ks: Sequence[float], *, n: int = 100, n0: int = 10, tau: float = 0.75,
                 alpha: float = 0.001, correction: str = "bonferroni", seed: int = 0, chunk_size: int = 10,
                 cache_dir: str | None = None, method_overrides: dict | None = None, progress: bool = False):
    """Certify every (image, method, layer, sigma). Returns ``(certificates, undefined)``:
    ``certificates[(image_id, method, layer, sigma)] = Certificate`` and
    ``undefined[(method, layer)] = reason`` for combinations the method does not define."""
    certificates, undefined = {}, {}
    overrides = method_overrides or {}
    images = list(images)
    targets = {im.id: (im.label if im.label is not None else predict(model, im.tensor)[0]) for im in images}
    for name, layer, sigma in itertools.product(methods, layers, sigmas):
        method = method_for(name, layer, overrides)
        reason = method.undefined_reason(model, layer)
        if reason:
            undefined[(name, layer)] = reason
            continue
        engine = SmoothedAttribution(model, method, layer, sigma, n=n, n0=n0, seed=seed, chunk_size=chunk_size,
                                     cache=cache_dir, progress=progress)
        for im in images:
            certificates[(im.id, name, layer, sigma)] = engine.certify(
                im.tensor, im.id, targets[im.id], ks=ks, tau=tau, alpha=alpha, correction=correction)
    return certificates, undefined
