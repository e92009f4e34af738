"""The sampling work of a chapter as a plan: what its notebook certifies and what a sweep computes ahead of it.

A chapter's costly part is filling the sample cache: for each (model, method, layer, sigma, image, target) it
needs ``n`` noisy attribution maps, stored in chunks of ``chunk_size`` (:mod:`certattr.engine.smoothing`). A *plan*
lists exactly those cache entries (:class:`Work`, one per entry, with how many samples the chapter reads). Each
chapter declares one function that builds it from the chapter's parameters with a :class:`PlanBuilder`
(:mod:`certattr.book.chapters`); the chapter's notebook calls that function and certifies the plan's works, and
a sweep (:mod:`certattr.sweeps.run`) calls the same function to fill the cache on many workers first.

Each work also says what its readers take from the entry (``reads``: encoding, n pairs; :mod:`certattr.engine.encodings`):
the certificates' top-K codes, Sparsified SmoothGrad's top-k sets, the cosine certificate's bounded sums (its
uniform-ball noise is a work of its own), raw maps where a chapter shows them. Not in a plan: work that does not
go through the sample cache (clean maps, deletion curves, attacks); it is cheap next to the smoothing samples,
and each chapter still does it.

    plan = book_plan("smoke")               # every chapter of the profile, duplicates merged (certattr.book.chapters)
    plan.summary()                          # {"works": ..., "chunks": ..., "samples": ...}
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import torch

from ..engine.cache import SampleCache, cache_key
from ..engine.config import SamplingConfig
from ..engine.encodings import certificate_encoding, encoding_from_spec
from ..engine.heap import PeriodicRelease
from ..engine.noise import Gaussian, UniformBall
from ..engine.smoothing import SmoothedAttribution
from ..engine.validation import CertattrError
from ..evaluation.jobs import Job, engine_configs, image_set, model_list, photo_jobs, takes_input_size
from ..evaluation.grids import Grid, build_grids, qualify_images
from ..models.vit_tokens import reinit_zero_head
from ..methods import get_method
from ..models.data import Image
from ..models.registry import MODELS
from ..models.labelled import labelled_images
from ..models.sources import load_source

__all__ = ["Work", "Plan", "ModelPool", "PlanBuilder", "RunSpec", "Certified", "certify_plan", "execution_order", "merge", "cache_keys",
           "compare_with_cache", "load_work_model", "SOURCE_PARAMETERS",
           "work_engine", "photo_jobs_for", "models_of", "job_for"]


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
    source: tuple = ()  #: (name, value) pairs of a user's model (final_layer, mean, std, input_size, trust_pickle)
    keys: tuple = ()  #: the chapter's keys of the jobs that read the entry (an image id, or (grid id, cell))
    #: what loads the model where that differs from its name (a user's ``file:PATH``, whose name is the file's name)
    loads: str = ""

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
        return (self.loads or self.model, self.weights, self.model_seed, self.zero_head_redraw, self.precision,
                self.compilation, self.source)


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
    undefined: dict = field(default_factory=dict)  #: {model name: {(method, layer): why not defined}}
    pool: object = None  #: the ModelPool that loaded the plan's models (a chapter certifies with the same ones)
    extras: dict = field(default_factory=dict)  #: what a planner made on the way that its chapter shows (its grids)

    @property
    def n_chunks(self) -> int:
        return sum(w.n_chunks for w in self.works)

    def models(self) -> dict:
        """{model name: the loaded model} of the plan's works, in the order they first appear (from its pool)."""
        pool = self.pool or ModelPool(self.device)
        out = {}
        for w in self.works:
            if w.model not in out:
                out[w.model] = pool.get(*w.model_key)
        return out

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
                old, reads=tuple(sorted(set(old.reads) | set(w.reads))), chapters=tuple(dict.fromkeys(old.chapters + w.chapters)),
                keys=tuple(dict.fromkeys(old.keys + w.keys)))
    undefined: dict = {}
    extras: dict = {}
    for plan in plans:
        extras.update(plan.extras)
        for name, pairs in plan.undefined.items():
            undefined.setdefault(name, {}).update(pairs)
    return Plan(list(by_entry.values()), images, dirs.pop() if dirs else None,
                plans[0].device if plans else "cpu", notes, undefined, plans[0].pool if plans else None, extras)


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
#: the parameters that say how a user's model (torchvision:, timm:, a file) is read, passed to load_source
SOURCE_PARAMETERS = ("final_layer", "mean", "std", "input_size", "trust_pickle", "classes")


def load_work_model(model: str, weights: str, device: str, model_seed: int = 0, zero_head_redraw: bool = False,
                    precision: str = "fp32", compilation: str = "auto", source: tuple = ()):
    """The model as the chapter loads it (:func:`certattr.models.sources.load_source`: a preset, or a user's model
    with the ``source`` (name, value) pairs of :data:`SOURCE_PARAMETERS`, at the chapter's ``precision`` and
    ``compilation``), plus the ViT chapter's head fix (:func:`certattr.models.vit_tokens.reinit_zero_head`;
    ``net.head_redrawn`` says whether it redrew)."""

    net = load_source(model, weights=weights, device=device, seed=model_seed,
                      **{k: v for k, v in source if v is not None}).set_compilation(compilation)
    net.head_redrawn = bool(zero_head_redraw and weights == "random" and reinit_zero_head(net, model_seed))
    return net.set_precision(precision)


class ModelPool:
    """Loaded models by (name, weights, seed, zero-head redraw, precision, compilation, source), each loaded once;
    ``loader`` makes them (default :func:`load_work_model` on ``device``)."""

    def __init__(self, device: str = "cpu", loader: Callable | None = None):
        self.device = device
        self.loader = loader or (lambda name, weights, seed, redraw, precision, compilation, source=():
                                 load_work_model(name, weights, device, seed, redraw, precision, compilation, source))
        self._models: dict = {}

    def get(self, name: str, weights: str, seed: int = 0, redraw: bool = False, precision: str = "fp32",
            compilation: str = "auto", source: tuple = ()):
        key = (name, weights, int(seed), bool(redraw), str(precision), str(compilation), tuple(source))
        if key not in self._models:
            self._models[key] = self.loader(*key[:6], key[6]) if key[6] else self.loader(*key[:6])
        return self._models[key]

    def forget(self, net) -> None:
        """Drop ``net`` from the pool (a chapter done with a model frees its memory)."""
        self._models = {k: v for k, v in self._models.items() if v is not net}


def work_engine(work: Work, model, cache=None, progress: bool = False, n: int | None = None):
    """The :class:`certattr.engine.smoothing.SmoothedAttribution` engine of ``work``'s cache entry that reads the first
    ``n`` samples (default: the most any reader takes)."""

    method = get_method(work.method, **json.loads(work.method_params))
    noise = UniformBall(work.sigma) if work.noise == "uniform-ball" else Gaussian(work.sigma)
    sampling = SamplingConfig(n=n or work.n, seed=work.seed, chunk_size=work.chunk_size)
    return SmoothedAttribution(model, method, work.layer, noise, sampling, cache=cache, progress=progress)


@dataclass(frozen=True)
class RunSpec:
    """Which (method, layer, σ) a chapter certifies: ``methods`` ("all", a list, or {layer: "all" | list}) at
    ``layers`` under each noise σ of ``sigmas`` ([0, 1] pixel units), with ``method_overrides`` ({"name" or
    "name@layer": hyperparameters}), the methods of ``first_sigma_only`` certified at ``sigmas[0]`` only and those
    of ``skip`` not at all ("name" or "name@layer")."""

    methods: object
    layers: tuple
    sigmas: tuple
    method_overrides: dict | None = None
    first_sigma_only: tuple = ()
    skip: tuple = ()


# --- the chapters' image sets -----------------------------------------------------------------------------------
class PlanBuilder:
    """Collects the works of one chapter; knows the chapter's common parameters."""

    def __init__(self, chapter: str, params: dict, pool: ModelPool, placeholders: bool):
        self.chapter, self.p, self.pool, self.placeholders = chapter, params, pool, placeholders
        self.undefined: dict = {}  #: {model name: {(method, layer): why}}: the pairs a model does not define
        self._made: dict = {}  #: {id(model): (model seed, head redrawn)}: how each model was loaded
        self.extras: dict = {}  #: what the planner made on the way that the chapter shows (e.g. "grids")
        self.works: list[Work] = []
        self.images: dict = {}
        self.notes: list[str] = []

    # images -----------------------------------------------------------------------------------------------
    def _placeholder_needed(self, imagenet_dir) -> bool:
        return self.placeholders and self.p.get("profile") == "paper" and not imagenet_dir

    def image_set(self, photos, imagenet_dir, n_images, resize: int = 256, crop: int = 224):
        """:func:`certattr.evaluation.jobs.image_set`; for a dry run of the paper profile without ``imagenet_dir``,
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
        """The chapter's grids (:func:`certattr.evaluation.grids.build_grids`), or placeholders; the source images
        and their qualification (:func:`certattr.evaluation.grids.qualify_images`: how many qualified, of how many,
        at ``threshold``) are kept in ``extras["grid_sources"]`` and ``extras["qualification"]``.

        With ``image_dir``, the sources are the user's images (a labelled image qualifies only where the models'
        top-1 class is its label) at the first qualifying model's size and channels, and ``grid_size`` is not used: the cells keep that size, as
        the paper's 224-pixel images make 448-pixel grids, unless the model takes only its own input size (a head
        that is not global pooling), whose grids are that size (cells of half its side)."""

        if self._placeholder_needed(imagenet_dir):
            side = int(grid_size) if grid_size else 448
            return [Grid(f"placeholder-grid-{i:04d}", tuple(f"placeholder-{4 * i + c}" for c in range(4)),
                         (0, 1, 2, 3), torch.full((3, 1, 1), (i % 251) / 251.0).expand(3, side, side))
                    for i in range(int(n_grids))]
        if self.p.get("image_dir"):
            first = qualify[0]
            images = self.images_for(first)
            side = int(first.spec.crop)
            grid_size = 2 * side if takes_input_size(first, 2 * side) else side
        else:
            images = self.image_set(photos, imagenet_dir, n_images)
        sources = [(im.id, im.tensor, im.label) for im in images]
        qual = qualify_images(sources, qualify, threshold)
        self.extras["grid_sources"], self.extras["qualification"] = images, qual
        return build_grids(sources, qualify, n_grids, seed=grid_seed, threshold=threshold, grid_size=grid_size,
                           qualification=qual)

    def source(self, name) -> tuple:
        """The (name, value) pairs that say how a user's model is read (empty for a preset)."""
        if name in MODELS:
            return ()
        return tuple((k, _frozen(self.p.get(k))) for k in SOURCE_PARAMETERS if self.p.get(k) not in (None, False))

    def model(self, name, seed: int = 0, redraw: bool = False):
        """The model ``name`` as the chapter loads it (a ViT with random weights: ``seed`` and the head ``redraw``);
        the works added for it remember how it was made."""
        net = self.pool.get(name, self.p["weights"], seed, redraw, self.p.get("precision", "fp32"),
                            self.p.get("compilation", "auto"), self.source(name))
        self._made[id(net)] = (int(seed), bool(redraw), str(name))
        return net

    def images_for(self, net, photos=None, imagenet_dir=None, n_images=None):
        """The chapter's images as ``net`` reads them: the user's ``image_dir`` (a class folder tree, a CSV of
        (file, label) or a plain folder or glob: :func:`certattr.models.labelled.labelled_images`, labels checked
        against the model's classes and used as targets) at the model's size and channels, or the bundled photos /
        ImageNet images at the model's size (the first ``n_images`` where the chapter sets it). Read once per model
        and arguments; the first set read for a model is kept in ``extras["images"][model name]`` (what its chapter
        shows)."""
        memo = self.__dict__.setdefault("_images", {})
        key = (id(net), self.p.get("image_dir"), repr(photos), imagenet_dir, n_images)
        if key not in memo:
            if self.p.get("image_dir"):
                memo[key] = labelled_images(self.p["image_dir"], net).first(self.p.get("n_images"))
            else:
                memo[key] = self.image_set(photos, imagenet_dir, n_images, net.spec.resize, net.spec.crop)
            self.extras.setdefault("images", {}).setdefault(net.name, memo[key])
        return memo[key]

    def image_key(self, image_id, tensor) -> str:
        """:func:`_image_key`, once per tensor object (a placeholder is keyed by its id alone)."""
        memo = self.__dict__.setdefault("_keys", {})
        if id(tensor) not in memo:
            key = f"{image_id}|placeholder" if str(image_id).startswith("placeholder-") else _image_key(str(image_id), tensor)
            memo[id(tensor)] = (key, tensor)  # the tensor is kept so that its id is not reused
        return memo[id(tensor)][0]

    # works ------------------------------------------------------------------------------------------------
    def add(self, net, jobs, spec: "RunSpec", *, n=None, seed=None):
        """The works of certifying every (job, method, layer, σ) of ``spec`` (:func:`engine_configs` decides which
        methods run at which layer and σ); the pairs the model does not define are kept in ``self.undefined``."""

        configs, undefined = engine_configs(net, spec.methods, spec.layers, spec.sigmas,
                                            method_overrides=spec.method_overrides,
                                            first_sigma_only=spec.first_sigma_only, skip=spec.skip)
        self.undefined.setdefault(net.name, {}).update(undefined)
        keys = [self.image_key(job.image_id, job.tensor) for job in jobs]  # hashed once per image, not per work
        for name, layer, method, sigma in configs:
            for job, key in zip(jobs, keys):
                self.add_one(net, method, layer, sigma, job, n=n, seed=seed, image_key=key)

    def add_one(self, net, method, layer, sigma, job: Job, *, n=None, seed=None, reads=None, noise: str = "gaussian",
                image_key: str | None = None):
        """One entry: ``method`` at ``layer`` of ``net`` under noise ``sigma`` for ``job`` (its image and target);
        ``reads``: its readers' (encoding spec, n) pairs, default the certificate's encoding at the chapter's ks
        (:func:`certattr.engine.encodings.certificate_encoding`) for ``n`` (one or several; default the chapter's n);
        ``seed``: of the noise (default the chapter's)."""

        method = get_method(method) if isinstance(method, str) else method
        if reads is None:
            ns = (self.p["n"] if n is None else n,) if not isinstance(n, (tuple, list)) else n
            spec = certificate_encoding(layer, self.p.get("ks") or ()).spec
            reads = [(spec, v) for v in ns]
        reads = tuple(sorted({(str(spec), int(max(v, 1))) for spec, v in reads}))
        key = image_key or self.image_key(job.image_id, job.tensor)
        self.images[key] = job.tensor
        model_seed, redraw, loads = self._made.get(id(net), (0, False, net.name))
        self.works.append(Work(
            model=net.name, weights=self.p["weights"], model_seed=model_seed, zero_head_redraw=redraw,
            method=method.name, method_params=json.dumps(dict(method.params), sort_keys=True), layer=layer,
            sigma=float(sigma), seed=int(self.p["seed"] if seed is None else seed),
            reads=reads, chunk_size=int(self.p["chunk_size"]),
            image_id=str(job.image_id), image_key=key, target=int(job.target), shape=tuple(job.tensor.shape),
            chapters=(self.chapter,), noise=noise, precision=net.precision,
            compilation=str(self.p.get("compilation", "auto")), source=self.source(loads), keys=(job.key,),
            loads="" if loads == net.name else loads))

    def plan(self) -> Plan:
        """The chapter's works, an entry read twice (e.g. the method chapter's focus method) listed once."""
        return merge([Plan(self.works, self.images, self.p.get("cache_dir"), self.p.get("device", "cpu"), self.notes,
                           self.undefined, self.pool, self.extras)])


def _frozen(value):
    """A parameter value as a hashable one (lists to tuples)."""
    return tuple(value) if isinstance(value, list) else value


def photo_jobs_for(net, images):
    if images and str(images[0].id).startswith("placeholder-"):  # no model call for placeholder targets
        return photo_jobs(net, [Image(im.id, im.tensor, 0) for im in images])
    return photo_jobs(net, images)


def models_of(p):
    return model_list(p.get("models"), p.get("model"))


def job_for(image_id, tensor, target):
    return Job(image_id, image_id, tensor, int(target))


# --- certifying a plan: what a chapter does with the plan its declaration builds -------------------------------------
@dataclass
class Certified:
    """The certificates of a plan's works: ``certificates[(model, key, method, layer, sigma)]`` (``key``: the job's
    key, an image id or (grid id, cell)), ``at_tau[(model, key, method, layer, sigma, tau)]`` for the further τ
    certified from the same samples, ``log``: one dict per certificate with its wall-clock ``seconds`` (a cache hit
    is nearly free), ``undefined``: {model: {(method, layer): why}} for the pairs a model does not define."""

    certificates: dict
    at_tau: dict
    log: list
    undefined: dict

    def of(self, model: str) -> dict:
        """{(key, method, layer, sigma): Certificate} of one model (the shape the row builders take)."""
        return {k[1:]: c for k, c in self.certificates.items() if k[0] == model}

    def at_tau_of(self, model: str) -> dict:
        """{(key, method, layer, sigma, tau): Certificate} of one model."""
        return {k[1:]: c for k, c in self.at_tau.items() if k[0] == model}


def execution_order(works) -> list:
    """The works in the order that lets methods share work on the same noisy copies: per model, layer and σ, image
    by image, every method of the image in turn (Grad and IxG then share one input gradient per chunk, the
    Final-layer methods one activation); certificates do not depend on the order."""
    groups: dict = {}
    for w in works:
        groups.setdefault((w.model_key, w.layer, w.noise, w.sigma), {}).setdefault(w.image_key, []).append(w)
    return [w for by_image in groups.values() for ws in by_image.values() for w in ws]


def certify_plan(plan: Plan, cert, *, n: int, taus=(), tau_sigmas=None, progress: bool = False) -> Certified:
    """Certify every work of ``plan`` from the first ``n`` samples of its entry (computed and cached where missing)
    with the :class:`certattr.engine.config.CertConfig` ``cert``, and at each further τ of ``taus`` from the same
    samples (nothing is resampled; only for the works at a σ of ``tau_sigmas`` when given); the models come from
    the plan's pool."""
    import time

    pool = plan.pool or ModelPool(plan.device)
    other_taus = [cert.replace(tau=float(t)).tau for t in taus if float(t) != cert.tau]  # validated
    certificates, at_tau, log = {}, {}, []
    release = PeriodicRelease()  # or the freed memory of thousands of passes stays with the process
    for w in execution_order(plan.works):
        net = pool.get(*w.model_key)
        method = get_method(w.method, **json.loads(w.method_params))
        noise = UniformBall(w.sigma) if w.noise == "uniform-ball" else Gaussian(w.sigma)
        engine = SmoothedAttribution(net, method, w.layer, noise, SamplingConfig(n=n, seed=w.seed,
                                                                                 chunk_size=w.chunk_size),
                                     cert, cache=plan.cache_dir, progress=progress)
        image = plan.images[w.image_key]
        for key in w.keys:
            start = time.time()
            c = engine.certify(image, w.image_id, w.target)
            certificates[(net.name, key, w.method, w.layer, w.sigma)] = c
            for t in other_taus if tau_sigmas is None or any(abs(w.sigma - s) < 1e-12 for s in tau_sigmas) else ():
                at_tau[(net.name, key, w.method, w.layer, w.sigma, t)] = engine.certify(image, w.image_id, w.target,
                                                                                         tau=t)
            log.append({"model": net.name, "method": w.method, "layer": w.layer, "sigma": float(w.sigma),
                        "key": str(key), "seconds": time.time() - start})
            release()
    return Certified(certificates, at_tau, log, plan.undefined)
