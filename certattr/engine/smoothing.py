"""The sparsify-smooth-certify engine (SPEC §1), one small class that reads like the algorithm.

    engine = SmoothedAttribution(model, "gradcam", "final", sigma=0.25)
    cert = engine.certify(image, "chelsea", ks=(50, 25, 5))        # a Certificate
    cert = engine.certify(image, "chelsea", tau=0.9)               # re-certified from the cache, no resampling

1. ``noisy_copies``: x + eps_i ([0,1] pixel units, before normalization, not clamped; eps_i from the engine's
   noise distribution, Gaussian N(0, sigma^2 I) for the paper, seeded per (seed, image id, i));
2. ``attribute_chunk``: the method's maps of one chunk of copies, in one batched model call;
3. ``certify``: top-K sparsification of each map, then per-pixel majority, count, binomial test and
   abstention, with radius R = sigma * Phi^-1(tau).

This one sampling path serves every certificate of certattr: the paper's (Gaussian noise, top-K codes), Levine
et al.'s Sparsified SmoothGrad (Gaussian noise, top-k sets; :mod:`certattr.certificates.sparsified_smoothgrad`) and the cosine
certificate (noise uniform in an l2 ball, bounded sums; :mod:`certattr.certificates.cosine`): each reads
:meth:`SmoothedAttribution.chunks` in the encoding it needs (:mod:`certattr.engine.encodings`). The settings are one
:class:`certattr.engine.config.CertConfig`.

Samples are cached on disk per chunk of sample indices (see :mod:`certattr.engine.cache`) in compact encodings, so
re-certifying at other tau, alpha, n0 or correction never resamples, and an interrupted run resumes where it
stopped.

The engine never changes the caller's model: a model found in train mode is sampled in eval mode (BatchNorm
uses its running statistics and is not updated, dropout is off) and put back in its own mode afterwards,
with one :class:`ModelModeWarning`; the samples (and the cache key) are those of the eval-mode model.
Certifying streams the chunks (:class:`certattr.engine.certify.MapCounter`): its memory is bounded by one chunk
and the image size, whatever n.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import shutil
import time
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import SampleCache, cache_key
from .certify import MapCounter
from .config import DEFAULT, CertConfig
from .encodings import RAW, Encoding, TopKCodes, certificate_encoding
from ..methods import AttributionMethod, get_method
from ..models.registry import LoadedModel, check_layer
from .noise import Gaussian, UniformBall, as_noise
from .certificate import Certificate
from .sparsify import upsample_maps
from .targets import ModelModeWarning, eval_mode, in_train_mode, predict, resolve_target
from .validation import CertattrError, check_image, check_positive_int

__all__ = ["SmoothedAttribution", "predict", "eval_mode", "in_train_mode", "ModelModeWarning"]


class SmoothedAttribution:
    """Certified top-K attributions of ``method`` at ``layer`` of ``model`` under ``noise``: a number is Gaussian
    noise of that sigma ([0,1] pixel units), or give :class:`certattr.engine.noise.Gaussian` /
    :class:`certattr.engine.noise.UniformBall`.

    ``config`` (a :class:`certattr.engine.config.CertConfig`; keywords such as ``n=200, tau=0.9`` replace its fields)
    fixes n, n0, tau, alpha, correction, ks, the seed of the noise (and of the method's own randomness), the
    chunk size and whether raw maps are kept; ``cache`` is a folder (or SampleCache) for the samples, None to
    keep nothing; ``also_store``: further encodings written for every chunk this engine computes (so that
    another reader of the same samples, e.g. Sparsified SmoothGrad, finds them).

    The unit of work is a *chunk* of ``chunk_size`` consecutive sample indices, attributed in one batched
    call and cached as one file per encoding: memory is bounded by the chunk, whatever n. The last chunk holds
    only the indices below n (no sample past n is computed; it is computed as one smaller batch and cached as
    its own file, unless the full chunk of a larger n is cached already, whose first samples are then used).
    A chunk's maps depend only on its indices, so certificates are bit-for-bit identical whatever the order in
    which chunks are computed, whether the run was interrupted and resumed, or how n is split; a different
    ``chunk_size`` (a different model batch), and so a partial last chunk, changes the maps only at float
    rounding (up to about 1e-6 relative on CPU), which is why it is part of the cache key.
    """

    def __init__(self, model: LoadedModel, method: str | AttributionMethod, layer: str, noise=None,
                 config: CertConfig | None = None, *, cache: SampleCache | str | None = None, progress: bool = True, also_store: Sequence[Encoding] = (),
                 **settings):
        self.model = model
        self.method = get_method(method) if isinstance(method, str) else method
        self.layer = check_layer(layer)
        self.method.check_defined(model, self.layer)
        if "sigma" in settings:  # SmoothedAttribution(model, method, layer, sigma=0.25)
            if noise is not None:
                raise CertattrError("give the noise once: sigma= or the fourth argument, not both")
            noise = settings.pop("sigma")
        if noise is None:
            raise CertattrError("the noise is missing: give sigma (a number > 0), Gaussian(sigma) or UniformBall(r)")
        self.noise = as_noise(noise)
        if config is not None and not isinstance(config, CertConfig):
            raise CertattrError(f"config={config!r} is not allowed: give a certattr.CertConfig (or keywords n=..., tau=...)")
        self.config = (config or DEFAULT).replace(**settings) if settings else (config or DEFAULT)
        self.cache = cache if isinstance(cache, SampleCache) else SampleCache(cache)
        self.progress = progress
        self.also_store = tuple(also_store)

    # the settings, read from the config (one place for them)
    n = property(lambda self: self.__dict__.get("_reader_n") or self.config.n)  # see _reading
    n0 = property(lambda self: self.config.n0)
    seed = property(lambda self: self.config.seed)
    chunk_size = property(lambda self: self.config.chunk_size)

    @property
    def sigma(self) -> float:
        """The Gaussian noise level (the paper's certificate needs Gaussian noise)."""
        if not isinstance(self.noise, Gaussian):
            raise CertattrError(f"this engine's noise is {self.noise!r}: the top-K certificate (radius sigma Phi^-1(tau)) "
                                f"needs Gaussian noise")
        return self.noise.sigma

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

    # --- steps 1-2: noisy copies and their attribution maps ------------------------------------------
    def identity(self, image: torch.Tensor, image_id: str, target: int) -> dict:
        """Everything that determines the samples (the cache key is its hash). The samples are always those
        of the model in eval mode (see :func:`eval_mode`); ``weights`` hashes every parameter and buffer."""
        return {"model": self.model.name, "weights": self._fingerprint(), "mode": "eval",
                "method": self.method.config(), "layer": self.layer, **self.noise.identity(), "seed": self.seed,
                "image_id": image_id, "image_sha256": hashlib.sha256(image.numpy().tobytes()).hexdigest(),
                "shape": list(image.shape), "target": int(target), "chunk_size": self.chunk_size}

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)

    def chunk_length(self, chunk: int) -> int:
        """Samples in chunk ``chunk``: chunk_size, or fewer for the last chunk below n."""
        return max(0, min(self.chunk_size, self.n - chunk * self.chunk_size))

    def _reading(self, n: int) -> "SmoothedAttribution":
        """This engine reading the first n samples (n may be 1, below what a certificate allows)."""
        if n == self.n:
            return self
        other = copy.copy(self)
        other._reader_n = check_positive_int("n", n)
        return other

    def noisy_copies(self, image: torch.Tensor, image_id: str, indices: Sequence[int]) -> torch.Tensor:
        """x + eps_i for the sample indices: (B, 3, H, W) in [0,1] pixel units, not clamped."""
        return image.unsqueeze(0).cpu() + self.noise.draw(image.shape, self.seed, image_id, list(indices))

    def attribute_chunk(self, image: torch.Tensor, image_id: str, target: int, chunk: int) -> np.ndarray:
        """Layer-resolution maps (b, h, w) float32 of the noisy copies of one chunk (b = :meth:`chunk_length`),
        in one batched call of the model in eval mode."""
        start = chunk * self.chunk_size
        batch = self.noisy_copies(image, image_id, range(start, start + self.chunk_length(chunk)))
        with self._eval():
            maps = self.method.attribute(self.model, batch, target, self.layer, seed=self.seed, image_id=image_id)
        maps = maps.cpu().numpy().astype(np.float32, copy=False)
        if not np.isfinite(maps).all():
            raise CertattrError(f"{self.method.name} at the {self.layer} layer produced NaN or inf maps for image {image_id!r}")
        return maps

    def _load(self, key: str, chunk: int, size: int, encoding: Encoding):
        """A cached chunk in ``encoding`` (a partial last chunk: also the head of a full chunk), or None."""
        cache = self.cache
        if size < self.chunk_size and encoding.sliceable:
            full = cache.load_chunk(key, chunk, self.chunk_size, self.chunk_size, encoding)
            if full is not None:
                return full[:size] if encoding is RAW else encoding.head(full, size)
        return cache.load_chunk(key, chunk, size, self.chunk_size, encoding)

    def stored_encodings(self, encoding: Encoding) -> list[Encoding]:
        """What a computed chunk is written as: the encoding read, those of ``also_store``, raw maps if kept."""
        out = [encoding, *self.also_store] + ([RAW] if self.config.keep_maps else [])
        return list(dict.fromkeys(out))

    def chunks(self, image: torch.Tensor, image_id: str, target: int, encoding: Encoding = RAW,
               n: int | None = None) -> Iterator:
        """Samples 0..n-1 (default: the config's n) in ``encoding``, chunk by chunk in order: raw maps (b, h, w)
        float32, or the encoding's arrays. Each chunk is read from the cache where present and valid (derived from
        kept raw maps otherwise), else computed and written. One chunk in memory at a time."""
        if n is not None and n != self.n:
            yield from self._reading(n).chunks(image, image_id, target, encoding)
            return
        n = self.n
        identity = self.identity(image, image_id, target)
        key = cache_key(identity)
        if self.cache.enabled:
            self.cache.check_writable()
        self.cache.write_manifest(key, identity)
        lengths = [self.chunk_length(c) for c in range(self.n_chunks)]
        stores = self.stored_encodings(encoding)
        size_hw = tuple(image.shape[1:])
        with self._eval(), tqdm(total=n, unit="sample", desc=f"{self.method.name}@{self.layer} {image_id}",
                                disable=not self.progress, leave=False) as bar:
            computed = 0
            for c, size in enumerate(lengths):
                data = self._load(key, c, size, encoding) if self.cache.enabled else None
                if data is None and encoding is not RAW and self.cache.enabled:
                    maps = self._load(key, c, size, RAW)
                    data = None if maps is None else encoding.encode(maps, size_hw)
                if data is None:
                    began = time.perf_counter()
                    maps = self.attribute_chunk(image, image_id, target, c)
                    for enc in stores:
                        encoded = maps if enc is RAW else enc.encode(maps, size_hw)
                        self.cache.save_chunk(key, c, encoded, self.chunk_size, enc, size)
                        if enc == encoding:
                            data = encoded
                    computed += 1
                    if computed == 1:
                        self._check_budget(key, c, size, lengths[c + 1:], time.perf_counter() - began, stores)
                bar.update(size)
                yield data

    def layer_chunks(self, image: torch.Tensor, image_id: str, target: int) -> Iterator[np.ndarray]:
        """The raw layer-resolution maps (b, h, w) float32 of samples 0..n-1, chunk by chunk (:meth:`chunks`)."""
        return self.chunks(image, image_id, target, RAW)

    def _check_budget(self, key: str, chunk: int, size: int, rest: list, seconds: float, stores) -> None:
        """After the first computed chunk: fail fast, in one line, if the remaining chunks cannot fit on the
        cache's disk (estimated from this chunk's files)."""
        if not self.cache.enabled or not rest:
            return
        try:
            per_sample = sum(self.cache.chunk_path(key, chunk, None if size == self.chunk_size else size, enc)
                             .stat().st_size for enc in stores) / size
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

        Reads (or computes and keeps) raw maps; holds the n maps it returns (n * H * W * 4 bytes) and one chunk.
        :meth:`certify` needs neither.
        """
        image = check_image(image)
        target = self.resolve_target(image, target)
        out = np.empty((self.n, *image.shape[1:]), dtype=np.float32)
        i = 0
        with contextlib.closing(self.chunks(image, image_id, target, RAW)) as chunks:
            for maps in chunks:
                out[i:i + len(maps)] = upsample_maps(torch.from_numpy(maps), image.shape[1:]).numpy()
                i += len(maps)
        return out

    def resolve_target(self, image: torch.Tensor, target: int | None) -> int:
        """:func:`certattr.engine.targets.resolve_target` (the top-1 class of the clean image for None)."""
        with self._eval():
            return resolve_target(self.model, image, target)

    # --- steps 3-6: sparsify, certify each pixel, abstain ---------------------------------------------
    def certificate_encoding(self, ks: Sequence[float] | None = None) -> Encoding:
        """What :meth:`certify` reads at ``ks``: top-K codes of the ladder at the Input layer, raw maps otherwise
        (:func:`certattr.engine.encodings.certificate_encoding`)."""
        return certificate_encoding(self.layer, self.config.ks if ks is None else ks)

    def certify(self, image: torch.Tensor, image_id: str, target: int | None = None, **settings) -> Certificate:
        """Certify every pixel of the top-K maps for each K (SPEC §1.3-§1.6), streaming the chunks.

        ``settings`` replace the config's ks, tau, alpha, correction or n0 for this certificate (the samples and
        the cache entry are the same: nothing is resampled, except a K outside the cached ladder without raw maps).
        When the noisy maps are degenerate (constant up to float rounding, or selecting no pixel) the
        certificate's ``degenerate`` says so and a one-line :class:`certattr.DegenerateMapWarning` is emitted.
        """
        sampling = sorted(set(settings) & {"n", "seed", "chunk_size", "keep_maps"})
        if sampling:
            raise CertattrError(f"{', '.join(sampling)} cannot change at certify(): it changes the samples; make an "
                                f"engine with it (SmoothedAttribution(..., {sampling[0]}=...))")
        cfg = self.config.replace(**settings) if settings else self.config
        sigma = self.sigma
        image = check_image(image)
        target = self.resolve_target(image, target)
        counter = MapCounter(cfg.ks, cfg.n, cfg.n0, image.shape[1:])
        encoding = self.certificate_encoding(cfg.ks)
        with contextlib.closing(self.chunks(image, image_id, target, encoding)) as chunks:
            for data in chunks:
                if isinstance(encoding, TopKCodes):
                    counter.add_binary(*encoding.decode(data, cfg.ks))
                else:
                    counter.add(upsample_maps(torch.from_numpy(data), image.shape[1:]).numpy())
        meta = {"model": self.model.name, "weights": self.model.weights, "method": self.method.name,
                "method_params": dict(self.method.params),
                "layer": self.layer, "image_id": image_id, "target": target, "seed": self.seed}
        return counter.certificate(sigma=sigma, tau=cfg.tau, alpha=cfg.alpha, correction=cfg.correction, metadata=meta)
