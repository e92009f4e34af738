"""The sparsify-smooth-certify engine (SPEC §1), one small class that reads like the algorithm.

    engine = SmoothedAttribution(model, "gradcam", "final", sigma=0.25)
    cert = engine.certify(image, "chelsea", ks=(50, 25, 5))        # a Certificate

1. ``sample``: n noisy copies x + sigma*eps_i ([0,1] pixel units, before normalization, not clamped;
   eps_i seeded per (seed, image id, i)), attributed in batches, upsampled to the input's H x W;
2. ``certify``: top-K sparsification of each map, then per-pixel majority, count, binomial test and
   abstention, with radius R = sigma * Phi^-1(tau).

Samples are cached on disk per chunk of sample indices (see :mod:`certattr.cache`), so re-certifying at
other K, tau, alpha or correction never resamples, and an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import DEFAULT_CHUNK, SampleCache, cache_key
from .certify import certify_maps
from .methods import AttributionMethod, get_method
from .models import LoadedModel, check_layer
from .noise import noisy_copies
from .result import Certificate
from .sparsify import upsample_maps
from .validation import CertattrError, check_image, check_n, check_positive_int, check_sigma

__all__ = ["SmoothedAttribution", "predict"]


@torch.no_grad()
def predict(model: LoadedModel, image: torch.Tensor) -> tuple[int, float]:
    """(top-1 class, its softmax probability) of the clean image (3, H, W) in [0,1]."""
    probs = model(image.unsqueeze(0).to(model.device)).softmax(dim=1)[0]
    top = int(probs.argmax())
    return top, float(probs[top])


class SmoothedAttribution:
    """Certified top-K attributions of ``method`` at ``layer`` of ``model`` under Gaussian noise ``sigma``.

    ``n`` samples, the first ``n0`` of which select each pixel's label; ``seed`` fixes the noise (and
    the method's own randomness); ``cache`` is a folder (or SampleCache) for the samples, None to keep
    nothing.

    The unit of work is a *chunk* of ``chunk_size`` consecutive sample indices, attributed in one batched
    call and cached as one file: memory is bounded by the chunk, whatever n. A chunk's maps depend only
    on its indices, so certificates are bit-for-bit identical whatever the order in which chunks are
    computed, whether the run was interrupted and resumed, or how n is split; a different ``chunk_size``
    (a different model batch) changes the maps only at float rounding (up to about 1e-6 relative on CPU), which is
    why it is part of the cache key.
    """

    def __init__(self, model: LoadedModel, method: str | AttributionMethod, layer: str, sigma: float, *,
                 n: int = 100, n0: int = 10, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
                 cache: SampleCache | str | None = None, progress: bool = True):
        self.model = model
        self.method = get_method(method) if isinstance(method, str) else method
        self.layer = check_layer(layer)
        self.method.check_defined(model, self.layer)
        self.sigma = check_sigma(sigma)
        self.n, self.n0 = check_n(n, n0)
        self.seed = check_positive_int("seed", seed, 0)
        self.chunk_size = check_positive_int("chunk_size", chunk_size)
        self.cache = cache if isinstance(cache, SampleCache) else SampleCache(cache)
        self.progress = progress

    # --- step 1-2: noisy samples of the attribution map ---------------------------------------------
    def identity(self, image: torch.Tensor, image_id: str, target: int) -> dict:
        """Everything that determines the samples (the cache key is its hash)."""
        return {"model": self.model.name, "weights": self.model.fingerprint(), "method": self.method.config(),
                "layer": self.layer, "sigma": self.sigma, "seed": self.seed, "image_id": image_id,
                "image_sha256": hashlib.sha256(image.numpy().tobytes()).hexdigest(), "shape": list(image.shape),
                "target": int(target), "chunk_size": self.chunk_size}

    def attribute_chunk(self, image: torch.Tensor, image_id: str, target: int, chunk: int) -> np.ndarray:
        """Layer-resolution maps (chunk_size, h, w) of the noisy copies of one chunk, in one batched call."""
        indices = range(chunk * self.chunk_size, (chunk + 1) * self.chunk_size)
        batch = noisy_copies(image, self.sigma, self.seed, image_id, indices)
        maps = self.method.attribute(self.model, batch, target, self.layer, seed=self.seed, image_id=image_id)
        maps = maps.cpu().numpy().astype(np.float32, copy=False)
        if not np.isfinite(maps).all():
            raise CertattrError(f"{self.method.name} at the {self.layer} layer produced NaN or inf maps for image {image_id!r}")
        return maps

    def sample(self, image: torch.Tensor, image_id: str, target: int | None = None) -> np.ndarray:
        """The n attribution maps (n, H, W) float32 of the noisy copies, at the image's resolution."""
        image = check_image(image)
        target = self.resolve_target(image, target)
        identity = self.identity(image, image_id, target)
        key = cache_key(identity)
        if self.cache.enabled:
            self.cache.write_manifest(key, identity)
        n_chunks = -(-self.n // self.chunk_size)
        chunks = {c: self.cache.load_chunk(key, c, self.chunk_size) for c in range(n_chunks)}
        missing = [c for c, maps in chunks.items() if maps is None]
        with tqdm(total=n_chunks * self.chunk_size, initial=(n_chunks - len(missing)) * self.chunk_size,
                  unit="sample", desc=f"{self.method.name}@{self.layer} {image_id}",
                  disable=not self.progress or not missing, leave=False) as bar:
            for c in missing:
                chunks[c] = self.attribute_chunk(image, image_id, target, c)
                self.cache.save_chunk(key, c, chunks[c])
                bar.update(self.chunk_size)
        maps = np.concatenate([chunks[c] for c in range(n_chunks)])[: self.n]
        return upsample_maps(torch.from_numpy(maps), image.shape[1:]).numpy()

    def resolve_target(self, image: torch.Tensor, target: int | None) -> int:
        if target is None:
            return predict(self.model, image)[0]
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise CertattrError(f"target={target!r} is not allowed: give a class index or None for the top-1 class")
        classes = self.model.head_classes()
        if not 0 <= int(target) < classes:
            raise CertattrError(f"target={target} is not allowed: the model has classes 0..{classes - 1}")
        return int(target)

    # --- step 3-6: sparsify, certify each pixel, abstain ---------------------------------------------
    def certify(self, image: torch.Tensor, image_id: str, target: int | None = None, *,
                ks: Sequence[float] = (50, 25, 5), tau: float = 0.75, alpha: float = 0.001,
                correction: str = "bonferroni") -> Certificate:
        """Certify every pixel of the top-K maps for each K (SPEC §1.3-§1.6)."""
        image = check_image(image)
        target = self.resolve_target(image, target)
        maps = self.sample(image, image_id, target)
        meta = {"model": self.model.name, "weights": self.model.weights, "method": self.method.name,
                "method_params": dict(self.method.params),
                "layer": self.layer, "image_id": image_id, "target": target, "seed": self.seed}
        return certify_maps(maps, ks, sigma=self.sigma, n0=self.n0, tau=tau, alpha=alpha,
                            correction=correction, metadata=meta)
