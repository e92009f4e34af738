"""The sparsify-smooth-certify engine (SPEC §1), one small class that reads like the algorithm.

    engine = SmoothedAttribution(model, "gradcam", "final", sigma=0.25)
    cert = engine.certify(image, "chelsea", ks=(50, 25, 5))        # a Certificate

1. ``sample``: n noisy copies x + sigma*eps_i ([0,1] pixel units, before normalization, not clamped;
   eps_i seeded per (seed, image id, i)), attributed in batches, upsampled to the input's H x W;
2. ``certify``: top-K sparsification of each map, then per-pixel majority, count, binomial test and
   abstention, with radius R = sigma * Phi^-1(tau).

Samples are cached on disk per chunk of sample indices (see :mod:`certattr.cache`), so re-certifying at
other K, tau, alpha or correction never resamples, and an interrupted run resumes where it stopped.

The engine never changes the caller's model: a model found in train mode is sampled in eval mode (BatchNorm
uses its running statistics and is not updated, dropout is off) and put back in its own mode afterwards,
with one :class:`ModelModeWarning`; the samples (and the cache key) are those of the eval-mode model.
Certifying streams the chunks (:class:`certattr.certify.MapCounter`): its memory is bounded by one chunk
and the image size, whatever n.
"""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import DEFAULT_CHUNK, SampleCache, cache_key
from .certify import MapCounter
from .methods import AttributionMethod, get_method
from .models import LoadedModel, check_layer
from .noise import noisy_copies
from .result import Certificate
from .sparsify import upsample_maps
from .validation import CertattrError, check_alpha, check_correction, check_image, check_ks, check_n, \
    check_positive_int, check_sigma, check_tau

__all__ = ["SmoothedAttribution", "predict", "eval_mode", "in_train_mode", "ModelModeWarning"]


class ModelModeWarning(UserWarning):
    """The model was in train mode; certattr sampled it in eval mode and restored its mode afterwards."""


def in_train_mode(model) -> bool:
    """Whether some leaf module of ``model`` (a layer that computes: BatchNorm, Dropout, Conv, ...) is in train
    mode. A wrapper's own flag (LoadedModel around an eval-mode network) does not count."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    return any(m.training for m in modules if next(iter(m.children()), None) is None)


@contextlib.contextmanager
def eval_mode(model, warn: str | None = None):
    """Run the body with every submodule of ``model`` in eval mode if some layer is in train mode (see
    :func:`in_train_mode`), then restore each module's own mode; otherwise change nothing.

    ``warn``: if given and the model was in train mode, a one-line ModelModeWarning naming this model.
    """
    if not in_train_mode(model):
        yield model
        return
    training = [m for m in model.modules() if m.training]
    if warn is not None:
        warnings.warn(f"model {warn!r} is in train mode: certattr samples it in eval mode (BatchNorm running "
                      f"statistics, no dropout; its buffers are not changed) and restores its mode afterwards",
                      ModelModeWarning, stacklevel=4)
    try:
        for m in training:
            m.training = False
        yield model
    finally:
        for m in training:
            m.training = True


@torch.no_grad()
def predict(model: LoadedModel, image: torch.Tensor) -> tuple[int, float]:
    """(top-1 class, its softmax probability) of the clean image (3, H, W) in [0,1], in eval mode."""
    with eval_mode(model):
        probs = model(image.unsqueeze(0).to(model.device)).softmax(dim=1)[0]
    top = int(probs.argmax())
    return top, float(probs[top])


class SmoothedAttribution:
    """Certified top-K attributions of ``method`` at ``layer`` of ``model`` under Gaussian noise ``sigma``.

    ``n`` samples, the first ``n0`` of which select each pixel's label; ``seed`` fixes the noise (and
    the method's own randomness); ``cache`` is a folder (or SampleCache) for the samples, None to keep
    nothing.

    The unit of work is a *chunk* of ``chunk_size`` consecutive sample indices, attributed in one batched
    call and cached as one file: memory is bounded by the chunk, whatever n. The last chunk holds only the
    indices below n (no sample past n is computed; it is computed as one smaller batch and cached as its own
    file, unless the full chunk of a larger n is cached already, whose first maps are then used). A chunk's
    maps depend only on its indices, so
    certificates are bit-for-bit identical whatever the order in which chunks are computed, whether the run
    was interrupted and resumed, or how n is split; a different ``chunk_size`` (a different model batch),
    and so a partial last chunk, changes the maps only at float rounding (up to about 1e-6 relative on CPU),
    which is why it is part of the cache key (a partial chunk is its own file).
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

    def _eval(self):
        """eval_mode(model), warning once per engine when the model is found in train mode."""
        warn = None
        if not getattr(self, "_mode_warned", False) and in_train_mode(self.model):
            self._mode_warned = True
            warn = getattr(self.model, "name", type(self.model).__name__)
        return eval_mode(self.model, warn=warn)

    def _fingerprint(self) -> str:
        """The model's hash of every parameter and buffer, recomputed whenever one of them was replaced or
        changed in place since it was computed (each tensor's identity and version counter is checked)."""
        model = self.model
        stamp = tuple((k, id(v), v._version) for k, v in model.state_dict(keep_vars=True).items())
        if model.__dict__.get("_certattr_stamp") != stamp:
            if hasattr(model, "_fingerprint"):
                model._fingerprint = None  # LoadedModel's memo of its hash: stale
            model.__dict__["_certattr_stamp"] = stamp
        return model.fingerprint()

    # --- step 1-2: noisy samples of the attribution map ---------------------------------------------
    def identity(self, image: torch.Tensor, image_id: str, target: int) -> dict:
        """Everything that determines the samples (the cache key is its hash). The samples are always those
        of the model in eval mode (see :func:`eval_mode`); ``weights`` hashes every parameter and buffer."""
        return {"model": self.model.name, "weights": self._fingerprint(), "mode": "eval",
                "method": self.method.config(),
                "layer": self.layer, "sigma": self.sigma, "seed": self.seed, "image_id": image_id,
                "image_sha256": hashlib.sha256(image.numpy().tobytes()).hexdigest(), "shape": list(image.shape),
                "target": int(target), "chunk_size": self.chunk_size}

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)

    def chunk_length(self, chunk: int) -> int:
        """Samples in chunk ``chunk``: chunk_size, or fewer for the last chunk below n."""
        return max(0, min(self.chunk_size, self.n - chunk * self.chunk_size))

    def attribute_chunk(self, image: torch.Tensor, image_id: str, target: int, chunk: int) -> np.ndarray:
        """Layer-resolution maps (b, h, w) of the noisy copies of one chunk (b = :meth:`chunk_length`), in one
        batched call of the model in eval mode."""
        start = chunk * self.chunk_size
        indices = range(start, start + self.chunk_length(chunk))
        batch = noisy_copies(image, self.sigma, self.seed, image_id, indices)
        with self._eval():
            maps = self.method.attribute(self.model, batch, target, self.layer, seed=self.seed, image_id=image_id)
        maps = maps.cpu().numpy().astype(np.float32, copy=False)
        if not np.isfinite(maps).all():
            raise CertattrError(f"{self.method.name} at the {self.layer} layer produced NaN or inf maps for image {image_id!r}")
        return maps

    def layer_chunks(self, image: torch.Tensor, image_id: str, target: int) -> Iterator[np.ndarray]:
        """The layer-resolution maps of samples 0..n-1, chunk by chunk in order (each (b, h, w) float32), read
        from the cache where present and valid, computed and written otherwise. One chunk in memory at a time."""
        identity = self.identity(image, image_id, target)
        key = cache_key(identity)
        if self.cache.enabled:
            self.cache.check_writable()
        self.cache.write_manifest(key, identity)
        lengths = [self.chunk_length(c) for c in range(self.n_chunks)]
        with self._eval(), tqdm(total=self.n, unit="sample", desc=f"{self.method.name}@{self.layer} {image_id}",
                                disable=not self.progress, leave=False) as bar:
            computed = 0
            for c, size in enumerate(lengths):
                maps = None
                if size < self.chunk_size and self.cache.enabled:
                    # a last chunk below n: a full chunk a larger n already cached serves it (its first maps)
                    full = self.cache.load_chunk(key, c, self.chunk_size, self.chunk_size)
                    maps = None if full is None else full[:size]
                if maps is None:
                    maps = self.cache.load_chunk(key, c, size, self.chunk_size)
                if maps is None:
                    began = time.perf_counter()
                    maps = self.attribute_chunk(image, image_id, target, c)
                    self.cache.save_chunk(key, c, maps, self.chunk_size)
                    computed += 1
                    if computed == 1:
                        self._check_budget(key, c, size, lengths[c + 1:], time.perf_counter() - began)
                bar.update(size)
                yield maps

    def _check_budget(self, key: str, chunk: int, size: int, rest: list, seconds: float) -> None:
        """After the first computed chunk: fail fast, in one line, if the remaining chunks cannot fit on the
        cache's disk (estimated from this chunk's file)."""
        if not self.cache.enabled or not rest:
            return
        try:
            path = self.cache.chunk_path(key, chunk, None if size == self.chunk_size else size)
            per_sample = path.stat().st_size / size
            free = shutil.disk_usage(self.cache.root).free
        except OSError:
            return
        need = per_sample * sum(rest)
        if need > free:
            raise CertattrError(f"n={self.n} would need about {need / 2**30:.3g} GiB more in the sample cache "
                                f"{str(self.cache.root)!r} but {free / 2**30:.3g} GiB are free (and about "
                                f"{seconds / size * sum(rest) / 3600:.3g} hours at this chunk's speed); lower n, "
                                f"free space, or use another cache folder")

    def sample(self, image: torch.Tensor, image_id: str, target: int | None = None) -> np.ndarray:
        """The n attribution maps (n, H, W) float32 of the noisy copies, at the image's resolution.

        Holds the n maps it returns (n * H * W * 4 bytes) and one chunk; :meth:`certify` does not need them.
        """
        image = check_image(image)
        target = self.resolve_target(image, target)
        out = np.empty((self.n, *image.shape[1:]), dtype=np.float32)
        i = 0
        with contextlib.closing(self.layer_chunks(image, image_id, target)) as chunks:
            for maps in chunks:
                out[i:i + len(maps)] = upsample_maps(torch.from_numpy(maps), image.shape[1:]).numpy()
                i += len(maps)
        return out

    def resolve_target(self, image: torch.Tensor, target: int | None) -> int:
        if target is None:
            with self._eval():
                return predict(self.model, image)[0]
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise CertattrError(f"target={target!r} is not allowed: give a class index or None for the top-1 class")
        with self._eval():
            classes = self.model.head_classes()
        if not 0 <= int(target) < classes:
            raise CertattrError(f"target={target} is not allowed: the model has classes 0..{classes - 1}")
        return int(target)

    # --- step 3-6: sparsify, certify each pixel, abstain ---------------------------------------------
    def certify(self, image: torch.Tensor, image_id: str, target: int | None = None, *,
                ks: Sequence[float] = (50, 25, 5), tau: float = 0.75, alpha: float = 0.001,
                correction: str = "bonferroni") -> Certificate:
        """Certify every pixel of the top-K maps for each K (SPEC §1.3-§1.6), streaming the chunks.

        When the noisy maps are degenerate (constant up to float rounding, or selecting no pixel) the
        certificate's ``degenerate`` says so and a one-line :class:`certattr.DegenerateMapWarning` is emitted.
        """
        image = check_image(image)
        ks, tau, alpha = check_ks(ks), check_tau(tau), check_alpha(alpha)
        correction = check_correction(correction)
        target = self.resolve_target(image, target)
        counter = MapCounter(ks, self.n, self.n0, image.shape[1:])
        with contextlib.closing(self.layer_chunks(image, image_id, target)) as chunks:
            for maps in chunks:
                counter.add(upsample_maps(torch.from_numpy(maps), image.shape[1:]).numpy())
        meta = {"model": self.model.name, "weights": self.model.weights, "method": self.method.name,
                "method_params": dict(self.method.params),
                "layer": self.layer, "image_id": image_id, "target": target, "seed": self.seed}
        return counter.certificate(sigma=self.sigma, tau=tau, alpha=alpha, correction=correction, metadata=meta)
