"""Declarative sweeps: the sampling work of each chapter as a plan, computed ahead of the chapter.

A chapter's costly part is filling the sample cache: for each (model, method, layer, sigma, image, target) it
needs ``n`` noisy attribution maps, stored in chunks of ``chunk_size`` (:mod:`certattr.engine.smoothing`). A *plan*
lists exactly those cache entries (:class:`Work`, one per entry, with how many samples the chapter reads), built
from the chapter's parameters (:func:`certattr.book.build.chapter_parameters`) with the same helpers the chapter uses
(:func:`certattr.evaluation.experiments.engine_configs`, ``image_set``, ``photo_jobs``, ``grid_jobs``, ``build_grids``,
``grids_for_model``), so that a sweep (:mod:`certattr.sweeps.run`) can fill the cache on many workers first and the
chapter then only reads it. ``tests/test_book.py`` checks that the smoke profile's plan is exactly the set of
chunks the smoke chapters write.

Each work also says what its readers take from the entry (``reads``: encoding, n pairs; :mod:`certattr.engine.encodings`):
the certificates' top-K codes, Sparsified SmoothGrad's top-k sets, the cosine certificate's bounded sums (its
uniform-ball noise is a work of its own), raw maps where a chapter shows them. Not in a plan: work that does not
go through the sample cache (clean maps, deletion curves, attacks); it is cheap next to the smoothing samples,
and each chapter still does it.

    plan = book_plan("smoke")               # every chapter of the profile, duplicates merged
    plan.summary()                          # {"works": ..., "chunks": ..., "samples": ...}
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..book.build import CHAPTERS, ROOT, chapter_parameters, declared_parameters
from ..certificates.attack import select_seed
from ..engine.cache import SampleCache, cache_key
from ..engine.config import SamplingConfig
from ..engine.encodings import BoundedSum, TopKSet, certificate_encoding, encoding_from_spec
from ..engine.noise import Gaussian, UniformBall
from ..engine.smoothing import SmoothedAttribution
from ..engine.targets import resolve_target
from ..engine.validation import CertattrError, check_choice
from ..evaluation.experiments import (Job, engine_configs, grid_jobs, grids_for_model, image_set, method_for,
    model_list, model_scope_of, photo_jobs, resolve_methods)
from ..evaluation.grids import Grid, build_grids
from ..methods import get_method
from ..models.data import Image, bundled_photo
from ..models.registry import load_model

__all__ = ["Work", "Plan", "ModelPool", "chapter_plan", "book_plan", "merge", "cache_keys", "compare_with_cache",
           "PLANNERS", "load_work_model", "work_engine", "redraw_zero_head"]


@dataclass(frozen=True)
class Work:
    """One sample-cache entry a chapter reads: the first n samples, for each n in ``ns`` (the chunks of
    ``chunk_size`` below n, the last one partial when n is not a multiple; see :attr:`chunk_specs`), of ``method`` (with ``method_params``, JSON) at ``layer`` of ``model`` under noise ``sigma`` ([0,1] pixel
    units), noise and method seeded by ``seed``, for the image ``image_id`` (tensor ``Plan.images[image_key]``,
    (3, H, W) float32 in [0,1]) and class ``target``. ``model_seed`` and ``zero_head_redraw`` say how the model was
    made (random weights: ``load_model(..., seed=model_seed)``; the ViT chapter redraws an all-zero head); ``precision``
    is that of its model passes (:meth:`certattr.models.registry.LoadedModel.set_precision`) and ``compilation`` their
    ``torch.compile`` policy (:mod:`certattr.models.compilation`)."""

    model: str
    weights: str
    model_seed: int
    zero_head_redraw: bool
    method: str
    method_params: str
    layer: str
    sigma: float
    seed: int
    reads: tuple
    chunk_size: int
    image_id: str
    image_key: str
    target: int
    shape: tuple
    chapters: tuple = ()
    noise: str = "gaussian"
    precision: str = "fp32"
    compilation: str = "auto"

    @property
    def n(self) -> int:
        """The most samples any reader of the entry takes."""
        return max(self.ns)

    @property
    def ns(self) -> tuple:
        """The sample counts of the entry's readers."""
        return tuple(sorted({n for _, n in self.reads}))

    def _specs(self, n: int) -> set:
        return {(c, min(self.chunk_size, n - c * self.chunk_size)) for c in range(-(-n // self.chunk_size))}

    @property
    def chunk_specs(self) -> tuple:
        """The chunks the readers need: ``(chunk index, samples in it)``, in order. A reader of n samples
        reads chunks 0..ceil(n/chunk_size)-1, the last one holding the n - c*chunk_size samples below n (a file
        of its own when that is fewer than chunk_size, see :mod:`certattr.engine.cache`)."""
        return tuple(sorted(set().union(*(self._specs(n) for n in self.ns))))

    @property
    def chunk_files(self) -> tuple:
        """``(chunk, samples, encodings)`` for each chunk: the encodings (:mod:`certattr.engine.encodings`) its readers
        take. Raw maps serve every reader (the others are derived from them), so a chunk kept raw is only raw."""
        out = []
        for c, size in self.chunk_specs:
            specs = {spec for spec, n in self.reads if (c, size) in self._specs(n)}
            out.append((c, size, ("raw",) if "raw" in specs else tuple(sorted(specs))))
        return tuple(out)

    def encodings(self, chunk: int, size: int) -> tuple:
        for c, r, specs in self.chunk_files:
            if (c, r) == (chunk, size):
                return tuple(encoding_from_spec(s) for s in specs)
        return ()

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_specs)

    @property
    def samples(self) -> int:
        """Samples computed to fill the entry (a partial chunk counts its own samples)."""
        return sum(size for _, size in self.chunk_specs)

    @property
    def entry(self) -> tuple:
        """What identifies the cache entry (everything but ``ns`` and ``chapters``)."""
        return (self.model, self.weights, self.model_seed, self.zero_head_redraw, self.method, self.method_params,
                self.layer, self.noise, self.sigma, self.seed, self.chunk_size, self.image_id, self.image_key, self.target)

    @property
    def model_key(self) -> tuple:
        return (self.model, self.weights, self.model_seed, self.zero_head_redraw, self.precision, self.compilation)


@dataclass
class Plan:
    """The works of one or more chapters; ``images`` maps each ``Work.image_key`` to its tensor (3, H, W);
    ``cache_dir`` is the sample cache the chapters read; ``device`` the device the chapters run on; ``notes``
    say what the plan had to assume (e.g. placeholder images for a dry run without the ImageNet folder)."""

    works: list[Work]
    images: dict = field(default_factory=dict)
    cache_dir: str | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        return sum(w.n_chunks for w in self.works)

    def summary(self) -> dict:
        return {"works": len(self.works), "chunks": self.n_chunks,
                "samples": sum(w.samples for w in self.works),
                "models": len({w.model for w in self.works}), "images": len({w.image_key for w in self.works})}


def merge(plans: Iterable[Plan]) -> Plan:
    """One plan from several: works of the same cache entry merged (the union of their readers' n and chapters)."""
    plans = list(plans)
    dirs = {p.cache_dir for p in plans}
    if len(dirs) > 1:
        raise CertattrError(f"the chapters read different sample caches {sorted(map(str, dirs))}: give one cache_dir")
    by_entry: dict = {}
    images, notes = {}, []
    for plan in plans:
        images.update(plan.images)
        notes += [n for n in plan.notes if n not in notes]
        for w in plan.works:
            old = by_entry.get(w.entry)
            by_entry[w.entry] = w if old is None else replace(
                old, reads=tuple(sorted(set(old.reads) | set(w.reads))), chapters=tuple(dict.fromkeys(old.chapters + w.chapters)))
    return Plan(list(by_entry.values()), images, dirs.pop() if dirs else None,
                plans[0].device if plans else "cpu", notes)


def _image_key(image_id: str, tensor: torch.Tensor) -> str:
    """``<image id>|<sha256 of the tensor's bytes>``: the image a work reads (ids and tensors both matter)."""
    return f"{image_id}|" + hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()[:24]


def cache_keys(plan: Plan, pool: "ModelPool | None" = None) -> dict:
    """``{sample-cache key: Work}`` of the plan's works (loads each model once, through ``pool``)."""

    pool = pool or ModelPool(plan.device)
    out = {}
    for w in plan.works:
        engine = work_engine(w, pool.get(*w.model_key))
        out[cache_key(engine.identity(plan.images[w.image_key], w.image_id, w.target))] = w
    return out


def compare_with_cache(plan: Plan, pool: "ModelPool | None" = None) -> tuple[dict, dict]:
    """``(missing, extra)``: per sample-cache key, the chunk file names the plan lists that are not in
    ``plan.cache_dir``, and those in it that the plan does not list. After the chapters ran, both empty means
    the plan is exactly the chapters' sampling work (a sweep of it leaves them nothing to compute)."""

    cache = SampleCache(plan.cache_dir)
    planned = {key: {cache.chunk_path(key, c, None if size == w.chunk_size else size, enc).name
                     for c, size, _ in w.chunk_files for enc in w.encodings(c, size)}
               for key, w in cache_keys(plan, pool).items()}
    root = Path(plan.cache_dir)
    written = {e.name: {p.name for p in e.glob("chunk_*")} for e in root.glob("*/*") if e.is_dir()} if root.is_dir() else {}
    missing = {k: v - written.get(k, set()) for k, v in planned.items() if v - written.get(k, set())}
    extra = {k: v - planned.get(k, set()) for k, v in written.items() if v - planned.get(k, set())}
    return missing, extra


# --- models, as each chapter makes them -----------------------------------------------------------------------
def redraw_zero_head(net, seed: int) -> bool:
    """The ViT chapter's fix for a randomly initialised ViT: torchvision sets its classifier to zeros (every logit
    and gradient would be 0), so the head is redrawn from N(0, 0.02^2) with ``seed``. True if it redrew."""
    if hasattr(net.net, "heads") and not net.net.heads.head.weight.any():
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed)
            net.net.heads.head.weight.copy_(0.02 * torch.randn(net.net.heads.head.weight.shape, generator=gen))
        return True
    return False


def load_work_model(model: str, weights: str, device: str, model_seed: int = 0, zero_head_redraw: bool = False,
                    precision: str = "fp32", compilation: str = "auto"):
    """The model as the chapter loads it (:func:`certattr.models.registry.load_model` at the chapter's
    ``precision`` and ``compilation``, plus the ViT chapter's head fix)."""

    net = load_model(model, weights, device, seed=model_seed, compilation=compilation)
    if zero_head_redraw and weights == "random":
        redraw_zero_head(net, model_seed)
    return net.set_precision(precision)


class ModelPool:
    """Loaded models by (name, weights, seed, zero-head redraw, precision, compilation), each loaded once; ``loader`` makes
    them (default :func:`load_work_model` on ``device``)."""

    def __init__(self, device: str = "cpu", loader: Callable | None = None):
        self.device = device
        self.loader = loader or (lambda name, weights, seed, redraw, precision, compilation:
                                 load_work_model(name, weights, device, seed, redraw, precision, compilation))
        self._models: dict = {}

    def get(self, name: str, weights: str, seed: int = 0, redraw: bool = False, precision: str = "fp32",
            compilation: str = "auto"):
        key = (name, weights, int(seed), bool(redraw), str(precision), str(compilation))
        if key not in self._models:
            self._models[key] = self.loader(*key)
        return self._models[key]


def work_engine(work: Work, model, cache=None, progress: bool = False, n: int | None = None):
    """The :class:`certattr.engine.smoothing.SmoothedAttribution` engine of ``work``'s cache entry that reads the first
    ``n`` samples (default: the most any reader takes)."""

    method = get_method(work.method, **json.loads(work.method_params))
    noise = UniformBall(work.sigma) if work.noise == "uniform-ball" else Gaussian(work.sigma)
    sampling = SamplingConfig(n=n or work.n, seed=work.seed, chunk_size=work.chunk_size)
    return SmoothedAttribution(model, method, work.layer, noise, sampling, cache=cache, progress=progress)


# --- the chapters' image sets -----------------------------------------------------------------------------------
class _Builder:
    """Collects the works of one chapter; knows the chapter's common parameters."""

    def __init__(self, chapter: str, params: dict, pool: ModelPool, placeholders: bool):
        self.chapter, self.p, self.pool, self.placeholders = chapter, params, pool, placeholders
        self.works: list[Work] = []
        self.images: dict = {}
        self.notes: list[str] = []

    # images -----------------------------------------------------------------------------------------------
    def _placeholder_needed(self, imagenet_dir) -> bool:
        return self.placeholders and self.p.get("profile") == "paper" and not imagenet_dir

    def image_set(self, photos, imagenet_dir, n_images, resize: int = 256, crop: int = 224):
        """:func:`certattr.evaluation.experiments.image_set`; for a dry run of the paper profile without ``imagenet_dir``,
        ``n_images`` placeholder 224x224 images (labels 0) that count the same work."""

        if self._placeholder_needed(imagenet_dir):
            note = ("imagenet_dir is not set: the paper profile is counted with placeholder 224x224 images "
                    "(the first n_images of the folder) and grids of four of them")
            if note not in self.notes:
                self.notes.append(note)
            count = int(n_images or 1)
            return [Image(f"placeholder-{i:05d}", torch.full((3, 224, 224), (i % 251) / 251.0), 0)
                    for i in range(count)]
        return image_set(photos, imagenet_dir, n_images, resize=resize, crop=crop)

    def grids(self, photos, imagenet_dir, n_images, qualify, n_grids, grid_seed, threshold, grid_size):
        """The chapter's grids (:func:`certattr.evaluation.grids.build_grids` on :func:`grid_sources`), or placeholders."""

        if self._placeholder_needed(imagenet_dir):
            side = int(grid_size) if grid_size else 448
            return [Grid(f"placeholder-grid-{i:04d}", tuple(f"placeholder-{4 * i + c}" for c in range(4)),
                         (0, 1, 2, 3), torch.full((3, 1, 1), (i % 251) / 251.0).expand(3, side, side))
                    for i in range(int(n_grids))]
        sources = [(im.id, im.tensor, im.label) for im in self.image_set(photos, imagenet_dir, n_images)]
        return build_grids(sources, qualify, n_grids, seed=grid_seed, threshold=threshold, grid_size=grid_size)

    def model(self, name, seed: int = 0, redraw: bool = False):
        return self.pool.get(name, self.p["weights"], seed, redraw, self.p.get("precision", "fp32"),
                             self.p.get("compilation", "auto"))

    def image_key(self, image_id, tensor) -> str:
        """:func:`_image_key`, once per tensor object (a placeholder is keyed by its id alone)."""
        memo = self.__dict__.setdefault("_keys", {})
        if id(tensor) not in memo:
            key = f"{image_id}|placeholder" if str(image_id).startswith("placeholder-") else _image_key(str(image_id), tensor)
            memo[id(tensor)] = (key, tensor)  # the tensor is kept so that its id is not reused
        return memo[id(tensor)][0]

    # works ------------------------------------------------------------------------------------------------
    def add(self, net, jobs, methods, layers, sigmas, *, method_overrides=None, first_sigma_only=(), skip=(),
            n=None, seed=None, model_seed: int = 0, redraw: bool = False):
        """The works of one ``certify_jobs(net, jobs, methods, layers, sigmas, ...)`` call of the chapter."""

        configs, _ = engine_configs(net, methods, layers, sigmas, method_overrides=method_overrides,
                                    first_sigma_only=first_sigma_only, skip=skip)
        keys = [self.image_key(job.image_id, job.tensor) for job in jobs]  # hashed once per image, not per work
        for name, layer, method, sigma in configs:
            for job, key in zip(jobs, keys):
                self.add_one(net, method, layer, sigma, job.image_id, job.tensor, job.target, n=n, seed=seed,
                             model_seed=model_seed, redraw=redraw, image_key=key)

    def add_one(self, net, method, layer, sigma, image_id, tensor, target, *, n=None, seed=None,
                model_seed: int = 0, redraw: bool = False, image_key: str | None = None, reads=None,
                noise: str = "gaussian"):
        """One entry; ``reads``: its readers' (encoding spec, n) pairs, default the certificate's encoding at the
        chapter's ks (:func:`certattr.engine.encodings.certificate_encoding`) for ``n`` (one or several; default the
        chapter's n)."""

        method = get_method(method) if isinstance(method, str) else method
        if reads is None:
            ns = (self.p["n"] if n is None else n,) if not isinstance(n, (tuple, list)) else n
            spec = certificate_encoding(layer, self.p.get("ks") or ()).spec
            reads = [(spec, v) for v in ns]
        reads = tuple(sorted({(str(spec), int(max(v, 1))) for spec, v in reads}))
        key = image_key or self.image_key(image_id, tensor)
        self.images[key] = tensor
        self.works.append(Work(
            model=net.name, weights=self.p["weights"], model_seed=int(model_seed), zero_head_redraw=bool(redraw),
            method=method.name, method_params=json.dumps(dict(method.params), sort_keys=True), layer=layer,
            sigma=float(sigma), seed=int(self.p["seed"] if seed is None else seed),
            reads=reads, chunk_size=int(self.p["chunk_size"]),
            image_id=str(image_id), image_key=key, target=int(target), shape=tuple(tensor.shape),
            chapters=(self.chapter,), noise=noise, precision=net.precision,
            compilation=str(self.p.get("compilation", "auto"))))

    def plan(self) -> Plan:
        """The chapter's works, an entry read twice (e.g. the method chapter's focus method) listed once."""
        return merge([Plan(self.works, self.images, self.p.get("cache_dir"), self.p.get("device", "cpu"), self.notes)])


def _photo_jobs(net, images):
    if images and str(images[0].id).startswith("placeholder-"):  # no model call for placeholder targets
        return photo_jobs(net, [Image(im.id, im.tensor, 0) for im in images])
    return photo_jobs(net, images)


def _models(p):
    return model_list(p.get("models"), p.get("model"))


# --- one planner per chapter: each mirrors the chapter's certification cell -----------------------------------------
def _plan_method(b: _Builder):
    p = b.p
    net = b.model(p["model"])
    image = b.image_set(p["photo"], p.get("imagenet_dir"), 1)[0]
    target = resolve_target(net, image.tensor, image.label)
    overrides = p.get("method_overrides") or {}
    # the focus method's maps are shown (engine.sample): raw maps, from which its certificate is derived
    b.add_one(net, method_for(p["focus_method"], p["focus_layer"], overrides), p["focus_layer"], p["sigma"],
              image.id, image.tensor, target, reads=[("raw", p["n"])])
    names = resolve_methods(p["methods"])
    b.add(net, [_job(image.id, image.tensor, target)], {layer: names for layer in p["layers"]}, p["layers"],
          [p["sigma"]], method_overrides=overrides)
    # "Fewer samples": fixed n (each of fewer_ns and fewer_n_max) and the anytime runs (up to fewer_n_max) read
    # one entry per bundled photo, at the certificate's encoding
    if p.get("fewer_photos"):
        fewer = method_for(p["fewer_method"], p["fewer_layer"], overrides)
        spec = certificate_encoding(p["fewer_layer"], p.get("ks") or ()).spec
        ns = sorted({int(v) for v in p.get("fewer_ns") or ()} | {int(p["fewer_n_max"])})
        for photo_id in p["fewer_photos"]:
            shot = bundled_photo(photo_id)
            b.add_one(net, fewer, p["fewer_layer"], p["fewer_sigma"], shot.id, shot.tensor,
                      resolve_target(net, shot.tensor, None), reads=[(spec, v) for v in ns])


def _job(image_id, tensor, target):
    return Job(image_id, image_id, tensor, int(target))


#: the certificates chapter's per-profile defaults of the certified-pixel attack's selection samples
_SELECT_N = {"smoke": 20, "cpu": 100, "paper": 500}


def _plan_certificates(b: _Builder):
    import math

    p = b.p
    net = b.model(p["model"])
    image = b.image_set(p["photo"], p.get("imagenet_dir"), 1)[0]
    target = 0 if image.id.startswith("placeholder-") else resolve_target(net, image.tensor, None)  # the top-1
    # the certificate (n samples, its top-K codes) and Sparsified SmoothGrad (each of topk_ns, its top-k sets)
    # read the same entry
    cert_spec = certificate_encoding(p["layer"], p["ks"]).spec
    reads = [(cert_spec, int(p["n"]))] + [(TopKSet(p["topk_frac"]).spec, int(m)) for m in p.get("topk_ns", [])]
    b.add_one(net, p["method"], p["layer"], p["sigma"], image.id, image.tensor, target, reads=reads)
    select_n = p.get("pixel_attack_select_n")
    select_n = int(select_n if select_n is not None else _SELECT_N.get(p.get("profile"), _SELECT_N["cpu"]))
    if select_n > 0:  # the certified-pixel attack ranks its targets on fresh samples at the largest K
        b.add_one(net, p["method"], p["layer"], p["sigma"], image.id, image.tensor, target, seed=select_seed(p["seed"]),
                  reads=[(certificate_encoding(p["layer"], [max(p["ks"])]).spec, select_n)])
    # the cosine certificate: uniform noise in the l2 ball, the chunks' sums of the maps bounded by M
    d_input = int(image.tensor.numel())
    r = float(p["cos_r"]) if p.get("cos_r") is not None else float(p["sigma"]) * math.sqrt(d_input + 2)
    b.add_one(net, p["method"], p["layer"], r, image.id, image.tensor, target, noise="uniform-ball",
              reads=[(BoundedSum(p.get("cos_M", 1.0), "normalize").spec, int(p["cos_N"]))])


def _plan_robustness(b: _Builder):
    p = b.p
    images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    trend_photos = p.get("trend_photos")
    trend_ids = set(trend_photos) if (trend_photos and not p.get("imagenet_dir")) else {im.id for im in images}
    sigmas, skip = list(p["sigmas"]), list(p.get("skip") or [])
    common = dict(method_overrides=p.get("method_overrides"))
    for name in _models(p):
        net = b.model(name)
        scope = model_scope_of(p.get("model_scope"), name)
        # as the chapter: every model reads the images at its own input size, narrowed to its scope's photos
        own = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"), net.spec.resize, net.spec.crop)
        own = [im for im in own if not scope.get("photos") or im.id in set(scope["photos"])]
        methods = scope.get("methods", p["methods"])
        b.add(net, _photo_jobs(net, own), methods, p["layers"], [float(sigmas[0])], skip=skip, **common)
        if len(sigmas) > 1:
            b.add(net, _photo_jobs(net, [im for im in own if im.id in trend_ids]), methods, p["layers"], sigmas[1:],
                  skip=skip + list(p.get("first_sigma_only") or []), **common)


def _plan_localization(b: _Builder):
    p = b.p
    names = _models(p)
    qualify = model_list(p["qualify_models"], None) if p.get("qualify_models") else names
    grids = b.grids(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"), [b.model(m) for m in qualify],
                    p["n_grids"], p.get("grid_seed", 0), p["threshold"], p.get("grid_size"))
    for name in names:
        net = b.model(name)
        b.add(net, grid_jobs(grids_for_model(grids, net), p.get("cells", "all")), p["methods"], p["layers"],
              p["sigmas"], method_overrides=p.get("method_overrides"), first_sigma_only=p.get("first_sigma_only") or (),
              skip=p.get("skip") or ())


def _plan_tradeoff(b: _Builder):
    """What the trade-off chapter computes when the robustness and localization tables are missing."""

    p = b.p
    names, skip, overrides = _models(p), p.get("skip") or (), p.get("method_overrides")
    images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    for name in names:
        net = b.model(name)
        b.add(net, _photo_jobs(net, images), p["methods"], p["layers"], [p["sigma"]], skip=skip,
              method_overrides=overrides)
    qualify = model_list(p["qualify_models"], None) if p.get("qualify_models") else names
    grids = b.grids(p.get("grid_photos"), p.get("imagenet_dir"), p.get("grid_n_images"), [b.model(m) for m in qualify],
                    p["n_grids"], p.get("grid_seed", 0), p["threshold"], p.get("grid_size"))
    grid_overrides = p.get("grid_method_overrides")
    for name in names:
        net = b.model(name)
        b.add(net, grid_jobs(grids_for_model(grids, net), p.get("cells", "all")), p["methods"], p["layers"],
              [p["sigma"]], skip=skip, method_overrides=grid_overrides if grid_overrides is not None else overrides)


def _plan_photos(b: _Builder):
    """faithfulness and gallery: every model x image x method x layer at one sigma."""
    p = b.p
    images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    for name in _models(p):
        net = b.model(name)
        b.add(net, _photo_jobs(net, images), p["methods"], p["layers"], [p["sigma"]],
              method_overrides=p.get("method_overrides"))


def _plan_vit(b: _Builder):
    p = b.p
    seed = int(p["seed"])
    net = b.model(p["model"], seed=seed, redraw=True)
    images = b.image_set(p.get("photos"), p.get("imagenet_dir"), p.get("n_images"))
    b.add(net, _photo_jobs(net, images), p["methods"], p["layers"], [p["sigma"]],
          method_overrides=p.get("method_overrides"), model_seed=seed, redraw=True)


def _plan_levine(b: _Builder):
    """Nothing: the levine chapter samples networks it trains itself (their weights are not known before it runs),
    and keeps those samples and its Fig. 1(b) samples in its own folder (``levine_cache_dir``), not in the
    shared sample cache."""


#: chapter -> planner (each mirrors the cells of ``notebooks/<chapter>.md`` that sample)
PLANNERS = {"method": _plan_method, "robustness": _plan_robustness, "localization": _plan_localization,
            "faithfulness": _plan_photos, "tradeoff": _plan_tradeoff, "vit": _plan_vit, "gallery": _plan_photos,
            "certificates": _plan_certificates, "levine": _plan_levine}


def _declared(chapter: str, root=None) -> dict:
    """The defaults of the chapter's parameters cell ({} where the notebooks are not at hand)."""

    try:
        return declared_parameters(chapter, Path(root) if root is not None else ROOT)
    except CertattrError:
        return {}


def chapter_plan(chapter: str, params: dict, *, pool: ModelPool | None = None, placeholders: bool = False,
                 root=None) -> Plan:
    """The sampling work of ``chapter`` run with ``params`` (from :func:`certattr.book.build.chapter_parameters`).

    ``pool`` shares loaded models between chapters; ``placeholders`` lets a dry run of the paper profile count
    its work without the ImageNet folder (then nothing may be computed from the plan)."""
    check_choice("chapter", chapter, PLANNERS)
    params = {**_declared(chapter, root), **params}  # the chapter's own defaults where the profile sets nothing
    builder = _Builder(chapter, params, pool or ModelPool(params.get("device", "cpu")), placeholders)
    PLANNERS[chapter](builder)
    return builder.plan()


def book_plan(profile: str, chapters=None, overrides: dict | None = None, *, root=None, pool: ModelPool | None = None,
              placeholders: bool = False) -> Plan:
    """The merged plan of ``chapters`` (default: every chapter, in book order) under ``profile``."""

    chapters = list(CHAPTERS if not chapters else chapters)
    for chapter in chapters:
        check_choice("chapter", chapter, CHAPTERS)
    root = Path(root) if root is not None else ROOT
    params = {c: chapter_parameters(profile, c, overrides, root=root) for c in chapters}
    pool = pool or ModelPool(next(iter(params.values())).get("device", "cpu"))
    return merge(chapter_plan(c, params[c], pool=pool, placeholders=placeholders, root=root) for c in chapters)
