"""The sparsify-smooth-certify engine (Anani et al., ICML 2025), one small class that reads like the algorithm.

    engine = SmoothedAttribution(model, "gradcam", "final", sigma=0.25)
    cert = engine.certify(image, "chelsea", ks=(50, 25, 5))        # a Certificate
    cert = engine.certify(image, "chelsea", tau=0.9)               # re-certified from the cache, no resampling

1. **sample** (:meth:`SmoothedAttribution.chunks`): x + eps_i ([0,1] pixel units, before normalization, not
   clamped; eps_i from the engine's noise distribution, Gaussian N(0, sigma^2 I) for the paper, seeded per
   (seed, image id, i)), and the method's maps of each chunk of copies in one batched model call
   (:meth:`SmoothedAttribution.attribute_chunk`);
2. **sparsify** (:meth:`SmoothedAttribution.sparsified`): the top-K binary map of each sample for each K;
3. **count** (:class:`certattr.engine.certify.MapCounter`), **test** and **abstain**
   (:mod:`certattr.engine.statistics`), with radius R = sigma * Phi^-1(tau).

The settings are two frozen objects (:mod:`certattr.engine.config`): a :class:`SamplingConfig` (n, seed,
chunk_size, keep_maps) decides the samples, with the noise; a :class:`CertConfig` (n0, tau, alpha, correction,
ks) how :meth:`SmoothedAttribution.certify` certifies them. Keywords such as ``n=200, tau=0.9`` go to the object
they belong to.

This one sampling path serves every certificate of certattr: the paper's (Gaussian noise, top-K codes), Levine
et al.'s Sparsified SmoothGrad (Gaussian noise, top-k sets; :mod:`certattr.certificates.sparsified_smoothgrad`)
and the cosine certificate (noise uniform in an l2 ball, bounded sums; :mod:`certattr.certificates.cosine`):
each reads :meth:`SmoothedAttribution.chunks` in the encoding it needs (:mod:`certattr.engine.encodings`).

Samples are kept on disk per chunk of sample indices by the engine's :class:`certattr.engine.store.SampleStore`
(in :mod:`certattr.engine.cache`), in compact encodings, so re-certifying at other tau, alpha, n0 or correction
never resamples, and an interrupted run resumes where it stopped. Certifying streams the chunks: its memory is
bounded by one chunk and the image size, whatever n.

The engine never changes the caller's model: a model found in train mode is sampled in eval mode (BatchNorm
uses its running statistics and is not updated, dropout is off) and put back in its own mode afterwards,
with one :class:`ModelModeWarning`; the samples (and the cache key) are those of the eval-mode model.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator, Sequence

import numpy as np
import torch

from .cache import SampleCache
from .certificate import Certificate
from .certify import MapCounter
from .config import CertConfig, SamplingConfig, check_fits, route_settings
from .encodings import RAW, Encoding, TopKCodes, certificate_encoding
from .noise import Gaussian, as_noise
from .prefetch import CopyPrefetch
from .registry import Method, get_method
from .sequential import DEFAULT_UNDECIDED, AnytimeCounter, certify_sequential, check_undecided
from .sparsify import flat_maps, sparsify, upsample_maps
from .store import SampleStore
from .targets import ModelModeWarning, eval_mode, in_train_mode, predict, resolve_target
from .validation import CertattrError, check_image, check_layer, check_model, check_sample_count

__all__ = ["SmoothedAttribution", "predict", "eval_mode", "in_train_mode", "ModelModeWarning"]


class SmoothedAttribution:
    """Certified top-K attributions of ``method`` (a registered name, or a method object) at ``layer`` of ``model``
    (a :class:`certattr.models.registry.LoadedModel`) under ``noise``: a number is Gaussian noise of that sigma
    ([0,1] pixel units), or give :class:`certattr.engine.noise.Gaussian` / :class:`certattr.engine.noise.UniformBall`.

    ``sampling`` (:class:`certattr.engine.config.SamplingConfig`: n, seed, chunk_size, keep_maps) decides the
    samples, ``cert`` (:class:`certattr.engine.config.CertConfig`: n0, tau, alpha, correction, ks) how
    :meth:`certify` certifies them; keywords (``n=200, tau=0.9``) replace fields of the one they belong to.
    ``cache`` is a folder (or SampleCache) for the samples, None to keep nothing; ``also_store``: further
    encodings written for every chunk this engine computes (so that another reader of the same samples, e.g.
    Sparsified SmoothGrad, finds them).

    The unit of work is a *chunk* of ``chunk_size`` consecutive sample indices, attributed in one batched
    call and cached as one file per encoding: memory is bounded by the chunk, whatever n. The last chunk holds
    only the indices below n (no sample past n is computed; it is computed as one smaller batch and cached as
    its own file, unless the full chunk of a larger n is cached already, whose first samples are then used).
    A chunk's maps depend only on its indices, so certificates are bit-for-bit identical whatever the order in
    which chunks are computed, whether the run was interrupted and resumed, or how n is split; a different
    ``chunk_size`` (a different model batch), and so a partial last chunk, changes the maps only at float
    rounding (up to about 1e-6 relative on CPU), which is why it is part of the cache key.
    """

    def __init__(self, model: torch.nn.Module, method: str | Method, layer: str, noise=None,
                 sampling: SamplingConfig | None = None, cert: CertConfig | None = None, *,
                 cache: SampleCache | str | None = None, progress: bool = True, also_store: Sequence[Encoding] = (),
                 **settings):
        self.model = check_model(model)
        self.method = method if hasattr(method, "attribute") and hasattr(method, "config") else get_method(method)
        self.layer = check_layer(layer)
        self.method.check_defined(model, self.layer)
        if "sigma" in settings:  # SmoothedAttribution(model, method, layer, sigma=0.25)
            if noise is not None:
                raise CertattrError("give the noise once: sigma= or the fourth argument, not both")
            noise = settings.pop("sigma")
        if noise is None:
            raise CertattrError("the noise is missing: give sigma (a number > 0), Gaussian(sigma) or UniformBall(r)")
        self.noise = as_noise(noise)
        self.sampling, self.cert = route_settings(sampling, cert, settings)
        self.cache = cache if isinstance(cache, SampleCache) else SampleCache(cache)
        self.store = SampleStore(self.cache, self.sampling.chunk_size, keep_maps=self.sampling.keep_maps,
                                 also_store=also_store, progress=progress)
        self._prefetch = CopyPrefetch()

    # the sampling settings, read from their object (one place for them)
    n = property(lambda self: self.sampling.n)
    seed = property(lambda self: self.sampling.seed)
    chunk_size = property(lambda self: self.sampling.chunk_size)

    @property
    def sigma(self) -> float:
        """The Gaussian noise level (the paper's certificate needs Gaussian noise)."""
        if not isinstance(self.noise, Gaussian):
            raise CertattrError(f"this engine's noise is {self.noise!r}: the top-K certificate (radius sigma Phi^-1(tau)) "
                                f"needs Gaussian noise")
        return self.noise.sigma

    #: draw the next chunk's noisy copies in a background thread while the model runs on this chunk
    #: (:mod:`certattr.engine.prefetch`): None (default) where the model runs off the CPU, or True / False
    prefetch: bool | None = None

    def prefetches(self) -> bool:
        if self.prefetch is not None:
            return bool(self.prefetch)
        return torch.device(getattr(self.model, "device", "cpu")).type != "cpu"

    def _eval(self):
        """eval_mode(model), warning once per engine when the model is found in train mode."""
        warn = None
        if not getattr(self, "_mode_warned", False) and in_train_mode(self.model):
            self._mode_warned = True
            warn = getattr(self.model, "name", type(self.model).__name__)
        return eval_mode(self.model, warn=warn)

    # --- step 1: the noisy samples ----------------------------------------------------------------------
    def identity(self, image: torch.Tensor, image_id: str, target: int) -> dict:
        """Everything that determines the samples (the cache key is its hash). The samples are always those
        of the model in eval mode (see :func:`eval_mode`); ``weights`` hashes every parameter and buffer."""
        return {"model": self.model.name, "weights": self.model.fingerprint(), "mode": "eval",
                "method": self.method.config(), "layer": self.layer, **self.noise.identity(), "seed": self.seed,
                "image_id": image_id, "image_sha256": hashlib.sha256(image.numpy().tobytes()).hexdigest(),
                "shape": list(image.shape), "target": int(target), "chunk_size": self.chunk_size}

    def noisy_copies(self, image: torch.Tensor, image_id: str, indices: Sequence[int]) -> torch.Tensor:
        """x + eps_i for the sample indices: (B, 3, H, W) in [0,1] pixel units, not clamped."""
        noise = self.noise.draw(image.shape, self.seed, image_id, list(indices))  # a new tensor: add in place
        image = image.unsqueeze(0).cpu()
        return noise.add_(image) if noise.dtype == image.dtype else image + noise

    def attribute_chunk(self, image: torch.Tensor, image_id: str, target: int, chunk: int,
                        size: int | None = None, *, until: int | None = None) -> np.ndarray:
        """Layer-resolution maps (size, h, w) float32 of the noisy copies of samples chunk * chunk_size onwards,
        in one batched call of the model in eval mode; ``size`` defaults to the chunk's samples below n.
        ``until``: the run's sample count, so that the next chunk's copies (below it) can be drawn during this
        chunk's model pass (:meth:`prefetches`)."""
        start = chunk * self.chunk_size
        size = min(self.chunk_size, self.n - start) if size is None else size
        batch = self._prefetch.take((image, image_id, start, size))
        if batch is None:
            batch = self.noisy_copies(image, image_id, range(start, start + size))
        after = start + self.chunk_size
        if until is not None and after < until and self.prefetches():
            indices = range(after, min(after + self.chunk_size, until))
            self._prefetch.start((image, image_id, after, len(indices)),
                                 lambda: self.noisy_copies(image, image_id, indices))
        with self._eval():
            maps = self.method.attribute(self.model, batch, target, self.layer, seed=self.seed, image_id=image_id)
        maps = maps.cpu().numpy().astype(np.float32, copy=False)
        if not np.isfinite(maps).all():
            raise CertattrError(f"{self.method.name} at the {self.layer} layer produced NaN or inf maps for image {image_id!r}")
        return maps

    def chunks(self, image: torch.Tensor, image_id: str, target: int, encoding: Encoding = RAW,
               n: int | None = None) -> Iterator:
        """Samples 0..n-1 (default: the sampling's n) in ``encoding``, chunk by chunk in order: raw maps
        (b, h, w) float32, or the encoding's arrays. The store reads each chunk from the cache where present and
        valid (derived from kept raw maps otherwise), else computes it (:meth:`attribute_chunk`) and writes it.
        One chunk in memory at a time."""
        total = self.n if n is None else n

        def compute(chunk: int, size: int) -> np.ndarray:
            return self.attribute_chunk(image, image_id, target, chunk, size=size, until=total)

        identity = self.identity(image, image_id, target)
        with self._eval():
            yield from self.store.chunks(identity, total, encoding, compute,
                                         image_hw=image.shape[1:], label=f"{self.method.name}@{self.layer} {image_id}")

    def layer_chunks(self, image: torch.Tensor, image_id: str, target: int) -> Iterator[np.ndarray]:
        """The raw layer-resolution maps (b, h, w) float32 of samples 0..n-1, chunk by chunk (:meth:`chunks`)."""
        return self.chunks(image, image_id, target, RAW)

    def sample(self, image: torch.Tensor, image_id: str, target: int | None = None) -> np.ndarray:
        """The n attribution maps (n, H, W) float32 of the noisy copies, at the image's resolution.

        Reads (or computes and keeps) raw maps; holds the n maps it returns (n * H * W * 4 bytes) and one chunk.
        :meth:`certify` needs neither.
        """
        image = check_image(image, channels=getattr(self.model, "channels", 3))
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

    # --- step 2: sparsify -----------------------------------------------------------------------------
    def certificate_encoding(self, ks: Sequence[float] | None = None) -> Encoding:
        """What :meth:`certify` reads at ``ks``: top-K codes of the ladder at the Input layer, raw maps otherwise
        (:func:`certattr.engine.encodings.certificate_encoding`)."""
        return certificate_encoding(self.layer, self.cert.ks if ks is None else ks)

    def sparsified(self, image: torch.Tensor, image_id: str, target: int, ks: Sequence[float],
                   n: int | None = None) -> Iterator[tuple]:
        """The top-K maps of samples 0..n-1 (default: the sampling's n), chunk by chunk: (binary bool (len(ks), b, H, W), flat bool (b,)),
        h_K of each map at the image's resolution (:func:`certattr.engine.sparsify.sparsify`) and whether it is
        constant up to rounding (:func:`certattr.engine.sparsify.flat_maps`)."""
        encoding = self.certificate_encoding(ks)
        with contextlib.closing(self.chunks(image, image_id, target, encoding, n=n)) as chunks:
            for data in chunks:
                if isinstance(encoding, TopKCodes):
                    yield encoding.decode(data, ks)  # the cache keeps the top-K maps of the ladder as codes
                else:
                    maps = upsample_maps(torch.from_numpy(data), image.shape[1:]).numpy()
                    yield sparsify(maps, ks), flat_maps(maps)

    def top_k_frequencies(self, image: torch.Tensor, image_id: str, target: int | None, ks: Sequence[float]) -> np.ndarray:
        """float64 (len(ks), H, W), ks largest first: the fraction of the n noisy maps whose top-K set holds each
        pixel (the Monte-Carlo estimate of the smoothed top-K probability; no certificate)."""
        image = check_image(image, channels=getattr(self.model, "channels", 3))
        target = self.resolve_target(image, target)
        counter = MapCounter(ks, self.n, 0, image.shape[1:])
        with contextlib.closing(self.sparsified(image, image_id, target, counter.ks)) as samples:
            for binary, flat in samples:
                counter.add(binary, flat)
        return counter.frequencies()

    # --- steps 3-5: count, test, abstain ---------------------------------------------------------------
    def certify(self, image: torch.Tensor, image_id: str, target: int | None = None, *, sequential: bool = False,
                n_max: int | None = None, undecided: float | None = None, bound: str | None = None,
                **settings) -> Certificate:
        """Certify every pixel of the top-K maps for each K, streaming the chunks.

        ``sequential=True``: anytime certification (:mod:`certattr.engine.sequential`): samples chunk by chunk up
        to ``n_max`` (default: the sampling's n), stops when at most the fraction ``undecided`` (default 0.05) of
        the (K, pixel) pairs is undecided, and gives labels valid for all K and pixels at alpha whatever the
        stopping time (no selection samples: n0 and correction do not apply and may not be given). ``bound`` names
        the anytime bound (default :data:`certattr.engine.sequential.DEFAULT_BOUND`; the allowed names are listed
        in :data:`certattr.engine.validation.ANYTIME_BOUNDS`).

        ``settings`` replace the engine's ks, tau, alpha, correction or n0 for this certificate (the samples and
        the cache entry are the same: nothing is resampled, except a K outside the cached ladder without raw maps).
        When the noisy maps are degenerate (constant up to float rounding, or selecting no pixel) the
        certificate's ``degenerate`` says so and a one-line :class:`certattr.DegenerateMapWarning` is emitted.
        """
        if sequential:
            return self._certify_sequential(image, image_id, target, n_max, undecided, bound, settings)
        if n_max is not None or undecided is not None or bound is not None:
            raise CertattrError("n_max, undecided and bound are settings of sequential certification: give "
                                "sequential=True")
        cert = self._certification(settings)
        check_fits(self.sampling, cert)
        sigma, image = self.sigma, check_image(image, channels=getattr(self.model, "channels", 3))
        target = self.resolve_target(image, target)
        counter = MapCounter(cert.ks, self.n, cert.n0, image.shape[1:])
        with contextlib.closing(self.sparsified(image, image_id, target, cert.ks)) as samples:
            for binary, flat in samples:  # sample, sparsify
                counter.add(binary, flat)  # count
        return counter.certificate(sigma=sigma, tau=cert.tau, alpha=cert.alpha, correction=cert.correction,
                                   metadata=self._metadata(image_id, target))  # test, abstain

    def _certify_sequential(self, image, image_id: str, target, n_max, undecided, bound, settings: dict
                            ) -> Certificate:
        """sample -> sparsify -> count and bound after each chunk -> stop when decided (the loop is
        :func:`certattr.engine.sequential.certify_sequential`)."""
        fixed_only = sorted(set(settings) & {"n0", "correction"})
        if fixed_only:
            raise CertattrError(f"{', '.join(fixed_only)} cannot be given with sequential=True: the anytime "
                                f"certificate has no selection samples and bounds each pixel itself (Bonferroni)")
        cert = self._certification(settings)
        n_max = check_sample_count(self.n if n_max is None else n_max, "n_max")
        undecided = check_undecided(DEFAULT_UNDECIDED if undecided is None else undecided)
        sigma, image = self.sigma, check_image(image, channels=getattr(self.model, "channels", 3))
        target = self.resolve_target(image, target)
        with contextlib.closing(self.sparsified(image, image_id, target, cert.ks, n=n_max)) as samples:
            counter = AnytimeCounter(cert.ks, image.shape[1:], tau=cert.tau, alpha=cert.alpha, bound=bound,
                                     n_max=n_max)
            return certify_sequential(samples, counter, sigma=sigma, undecided=undecided,
                                      metadata=self._metadata(image_id, target))

    def _certification(self, settings: dict) -> CertConfig:
        """The engine's CertConfig with ``settings`` (one certify call's) replaced; sampling fields refused."""
        sampling = sorted(set(settings) & set(SamplingConfig.field_names()))
        if sampling:
            raise CertattrError(f"{', '.join(sampling)} cannot change at certify(): it changes the samples; make an "
                                f"engine with it (SmoothedAttribution(..., {sampling[0]}=...))")
        return self.cert.replace(**settings) if settings else self.cert

    def _metadata(self, image_id: str, target: int) -> dict:
        return {"model": self.model.name, "weights": self.model.weights, "method": self.method.name,
                "method_params": dict(self.method.params),
                "layer": self.layer, "image_id": image_id, "target": target, "seed": self.seed}
