"""What chapters share: image sets from parameters, class names, and certifying many configurations
into tidy rows (one row per image x method x layer x sigma x K)."""
from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import numpy as np

from ..models.data import Image, ImageNetFolder, bundled_photos
from ..methods import get_method, method_names
from ..models.registry import LoadedModel
from .findings.evidence import listing
from .metrics import certificate_rows, gridpg_rows
from .names import layer_title, method_title
from ..engine.config import DEFAULT_CERT as _CERT, DEFAULT_SAMPLING as _SAMPLING, CertConfig, SamplingConfig, check_fits
from ..engine.smoothing import SmoothedAttribution, predict
from ..engine.targets import resolve_target
from ..engine.validation import CertattrError, UndefinedAttribution

__all__ = ["class_names", "image_set", "resolve_methods", "certificate_rows", "method_for", "certify_many"]


def class_names() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (shipped with torchvision, no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def image_set(photos: Sequence[str] | str | None = None, imagenet_dir: str | None = None,
              n_images: int | None = None, *, resize: int = 256, crop: int = 224) -> list[Image]:
    """Bundled photos (default: all) or the first ``n_images`` of an ImageNet folder in the paper's order, resized
    so that the shorter side is ``resize`` pixels and centre-cropped to ``crop`` x ``crop`` (a model's own
    preprocessing: ``model.spec.resize``, ``model.spec.crop``)."""
    if imagenet_dir:
        folder = ImageNetFolder(imagenet_dir, resize=resize, crop=crop)
        return list(folder.paper_images(n_images or len(folder)))
    if isinstance(photos, str):
        photos = [photos]
    images = bundled_photos(photos, resize, crop)
    return images[:n_images] if n_images else images


def model_scope_of(model_scope: dict | None, name: str) -> dict:
    """A chapter's narrower run for one model: ``model_scope[name]`` = {"photos": [ids], "methods": {layer:
    methods}} (either key optional), checked; {} where the model runs the chapter's full settings."""
    scope = dict((model_scope or {}).get(name) or {})
    unknown = set(scope) - {"photos", "methods"}
    if unknown:
        raise CertattrError(f"model_scope[{name!r}] has unknown key(s) {sorted(unknown)}: allowed are 'photos' "
                            f"(a list of photo ids) and 'methods' (as the chapter's methods parameter)")
    return scope


def scope_text(model_scope: dict | None, titles: dict, layers: Sequence[str]) -> str:
    """One sentence per group of models with the same narrower run (``titles``: {model name: title}), e.g.
    "EfficientNet-Lite1 and EfficientNet-Lite2 ran on chelsea, coffee and camera only, with Grad and LRP at the
    Input layer and every method at the Final layer."; "" when every model runs the chapter's full settings."""
    groups: dict = {}
    for name, title in titles.items():
        scope = model_scope_of(model_scope, name)
        if scope:
            groups.setdefault(repr(sorted(scope.items(), key=str)), (scope, []))[1].append(title)
    sentences = []
    for scope, names in groups.values():
        parts = []
        if scope.get("photos"):
            parts.append(f"on {listing(list(scope['photos']))} only")
        if "methods" in scope:
            per_layer = layer_methods(scope["methods"], layers)
            said = [("every method" if set(ms) == set(method_names()) else
                     listing([method_title(m) for m in ms]) if ms else "no method") + f" at the {layer_title(l)} layer"
                    for l, ms in per_layer.items()]
            parts.append("with " + listing(said))
        sentences.append(f"{listing(names)} ran {', '.join(parts)}.")
    return " ".join(sentences)


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
                 sigmas: Sequence[float], ks: Sequence[float], *, n: int = _SAMPLING.n, n0: int = _CERT.n0,
                 tau: float = _CERT.tau, alpha: float = _CERT.alpha, correction: str = _CERT.correction,
                 seed: int = _SAMPLING.seed, chunk_size: int = _SAMPLING.chunk_size, cache_dir: str | None = None,
                 method_overrides: dict | None = None, progress: bool = False):
    """Certify every (image, method, layer, sigma). Returns ``(certificates, undefined)``:
    ``certificates[(image_id, method, layer, sigma)] = Certificate`` and
    ``undefined[(method, layer)] = reason`` for combinations the method does not define."""
    sampling, config = SamplingConfig(n=n, seed=seed, chunk_size=chunk_size), CertConfig(
        n0=n0, tau=tau, alpha=alpha, correction=correction, ks=ks)
    check_fits(sampling, config)  # validated before any work
    certificates, undefined = {}, {}
    overrides = method_overrides or {}
    images = list(images)
    targets = {im.id: resolve_target(model, im.tensor, im.label) for im in images}
    for name, layer, sigma in itertools.product(methods, layers, sigmas):
        method = method_for(name, layer, overrides)
        reason = method.undefined_reason(model, layer)
        if reason:
            undefined[(name, layer)] = reason
            continue
        engine = SmoothedAttribution(model, method, layer, sigma, sampling, config, cache=cache_dir, progress=progress)
        for im in images:
            certificates[(im.id, name, layer, sigma)] = engine.certify(im.tensor, im.id, targets[im.id])
    return certificates, undefined


# --- helpers of the evaluation chapters (robustness, localization, trade-off, faithfulness, ViT, gallery) ---
import json as _json
import time as _time
from dataclasses import dataclass as _dataclass

from ..engine.sparsify import upsample_maps
from .findings import bootstrap_interval


def model_list(models: Sequence[str] | str | None, model: str | None = None) -> list[str]:
    """The chapter's models: ``models`` (a name or a list), else ``[model]``."""
    if models is None or models == []:
        if model is None:
            raise CertattrError("give models (a list of model names) or model")
        return [model]
    return [models] if isinstance(models, str) else list(models)


def layer_methods(methods, layers: Sequence[str]) -> dict:
    """``{layer: [method names]}`` from ``methods`` = "all", a list of names, or ``{layer: "all" | list}``."""
    if isinstance(methods, dict):
        unknown = sorted(set(methods) - set(layers))
        if unknown:
            raise CertattrError(f"methods names layers {unknown} that are not in layers={list(layers)}")
        return {layer: resolve_methods(methods.get(layer, [])) for layer in layers}
    names = resolve_methods(methods)
    return {layer: names for layer in layers}


def _listed(name: str, layer: str, specs) -> bool:
    """Is (name, layer) named in ``specs`` (method names or ``name@layer`` strings)?"""
    spec = set(specs or ())
    return name in spec or f"{name}@{layer}" in spec


def run_list(methods, layers: Sequence[str], skip=()) -> dict:
    """``{layer: [method names run there]}``: :func:`layer_methods` without the ``skip`` combinations."""
    return {layer: [m for m in names if not _listed(m, layer, skip)] for layer, names in layer_methods(methods, layers).items()}


@_dataclass(frozen=True)
class Job:
    """One thing to certify: the tensor ``tensor`` (3, H, W), noise keyed on ``image_id``, class ``target``;
    results are stored under ``key`` (an image id, or ``(grid_id, cell)`` for a grid target)."""

    key: object
    image_id: str
    tensor: object
    target: int


def photo_jobs(model: LoadedModel, images: Iterable[Image]) -> list[Job]:
    """One job per image: the ground-truth label where there is one, else the model's top-1."""
    return [Job(im.id, im.id, im.tensor, resolve_target(model, im.tensor, im.label))
            for im in images]


def grid_jobs(grids, cells="all") -> list[Job]:
    """One job per (grid, target cell): the grid tensor, the grid's id (the same noise for every target),
    and the cell's class as the target; ``cells`` = "all" or a list of cell indices."""
    jobs = []
    for grid in grids:
        chosen = range(grid.n_cells) if cells == "all" else cells
        jobs.extend(Job((grid.grid_id, int(c)), grid.grid_id, grid.tensor, grid.target_class(int(c))) for c in chosen)
    return jobs


def engine_configs(model: LoadedModel, methods, layers: Sequence[str], sigmas: Sequence[float], *,
                   method_overrides: dict | None = None, first_sigma_only=(), skip=()):
    """The (method name, layer, AttributionMethod, sigma) engines :func:`certify_jobs` runs, in its order, and
    ``undefined[(name, layer)] = reason`` for the pairs the model does not define. :mod:`certattr.sweeps.plans` lists
    a chapter's sampling work with this same function, so a sweep and the chapter cannot disagree on it."""
    configs, undefined = [], {}
    per_layer = layer_methods(methods, layers)
    for layer in layers:
        for name in per_layer[layer]:
            if _listed(name, layer, skip):
                continue
            method = method_for(name, layer, method_overrides)
            reason = method.undefined_reason(model, layer)
            if reason:
                undefined[(name, layer)] = reason
                continue
            configs.extend((name, layer, method, sigma) for i, sigma in enumerate(sigmas)
                           if not (i > 0 and _listed(name, layer, first_sigma_only)))
    return configs, undefined


def certify_jobs(model: LoadedModel, jobs: Sequence[Job], methods, layers: Sequence[str], sigmas: Sequence[float],
                 ks: Sequence[float], *, n: int = _SAMPLING.n, n0: int = _CERT.n0, tau: float = _CERT.tau,
                 alpha: float = _CERT.alpha, correction: str = _CERT.correction, seed: int = _SAMPLING.seed,
                 chunk_size: int = _SAMPLING.chunk_size, cache_dir: str | None = None,
                 method_overrides: dict | None = None, first_sigma_only=(), skip=(), progress: bool = False,
                 log: list | None = None, taus: Sequence[float] = (), tau_out: dict | None = None):
    """Certify every (job, method, layer, sigma), like :func:`certify_many` but with per-layer method lists
    (:func:`layer_methods`), per-layer overrides (:func:`method_for`), combinations computed only at
    ``sigmas[0]`` (``first_sigma_only``: names or ``name@layer``), combinations not run at all (``skip``: names or
    ``name@layer``) and explicit targets per job.

    Returns ``(certificates, undefined)`` with ``certificates[(job.key, method, layer, sigma)]`` and
    ``undefined[(method, layer)] = reason``. ``log``, if given, receives one dict per engine run with
    its wall-clock ``seconds`` (cache hits are nearly free). With ``taus`` and a dict ``tau_out``, the same
    samples are also certified at each of those tau (no resampling):
    ``tau_out[(job.key, method, layer, sigma, tau)] = Certificate``.
    """
    sampling, config = SamplingConfig(n=n, seed=seed, chunk_size=chunk_size), CertConfig(
        n0=n0, tau=tau, alpha=alpha, correction=correction, ks=ks)
    check_fits(sampling, config)  # validated before any work
    other_taus = [config.replace(tau=float(t)).tau for t in taus] if tau_out is not None else []  # validated
    certificates = {}
    configs, undefined = engine_configs(model, methods, layers, sigmas, method_overrides=method_overrides,
                                        first_sigma_only=first_sigma_only, skip=skip)
    engines: dict[tuple, list] = {}  # (layer, sigma) -> [(name, engine)], in the configs' order
    for name, layer, method, sigma in configs:
        engines.setdefault((layer, sigma), []).append(
            (name, SmoothedAttribution(model, method, layer, sigma, sampling, config, cache=cache_dir, progress=progress)))
    # Methods inside jobs: the methods of one (layer, sigma) certify one image's noisy copies one after another,
    # so work they share on the same copies (Grad and IxG: one input gradient; the Final-layer activation) is
    # still in the model's memo; certificates do not depend on the order (returned in the configs' order).
    done, taus_done = {}, {}
    for (layer, sigma), members in engines.items():
        for job in jobs:
            for name, engine in members:
                start = _time.time()
                done[(job.key, name, layer, sigma)] = engine.certify(job.tensor, job.image_id, job.target)
                for t in other_taus:  # the same samples at another tau: the engine re-reads them, never resamples
                    taus_done[(job.key, name, layer, sigma, t)] = engine.certify(job.tensor, job.image_id, job.target,
                                                                                 tau=t)
                if log is not None:
                    log.append({"model": model.name, "method": name, "layer": layer, "sigma": float(sigma),
                                "key": str(job.key), "seconds": _time.time() - start})
    for name, layer, _, sigma in configs:
        for job in jobs:
            certificates[(job.key, name, layer, sigma)] = done[(job.key, name, layer, sigma)]
            for t in other_taus:
                tau_out[(job.key, name, layer, sigma, t)] = taus_done[(job.key, name, layer, sigma, t)]
    return certificates, undefined


def _clean_row(row: dict) -> dict:
    """CSV-friendly: dict/list values (e.g. method_params) as JSON text."""
    return {k: (_json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v) for k, v in row.items()}


def robustness_rows(model: LoadedModel, certificates: dict) -> list[dict]:
    """Tidy %certified rows (one per image x method x layer x sigma x K) from :func:`certify_jobs` output on photos;
    ``degenerate`` holds the certificate's degenerate-map reason ("" when not flagged)."""
    rows = []
    for (key, name, layer, sigma), cert in certificates.items():
        rows.extend(_clean_row(r) for r in certificate_rows(
            cert, image_id=str(key), model=model.name, model_title=model.spec.title, method=name,
            method_title=get_method(name).title, layer=layer, degenerate=cert.degenerate))
    return rows


def localization_rows(model: LoadedModel, certificates: dict, grids, *, method_overrides: dict | None = None,
                      raw_gridpg: bool = True, seed: int = 0) -> list[dict]:
    """Tidy Certified GridPG rows (one per grid x target cell x method x layer x sigma x K) from
    :func:`certify_jobs` output on :func:`grid_jobs`; with ``raw_gridpg`` also the uncertified GridPG of the
    clean grid's raw attribution map for the same target (one extra attribution per (grid, cell, method, layer))."""

    by_id = {g.grid_id: g for g in grids}
    names = class_names()
    raw_cache: dict = {}
    rows = []
    for ((grid_id, cell), name, layer, sigma), cert in certificates.items():
        grid = by_id[grid_id]
        target = grid.target_class(cell)
        raw = None
        if raw_gridpg:
            rk = (grid_id, cell, name, layer)
            if rk not in raw_cache:
                method = method_for(name, layer, method_overrides)
                amap = method.attribute(model, grid.tensor[None], target, layer, seed=seed, image_id=grid_id)
                raw_cache[rk] = upsample_maps(amap.cpu(), grid.tensor.shape[1:])[0].numpy()
            raw = raw_cache[rk]
        rows.extend(_clean_row(r) for r in gridpg_rows(
            cert, int(cell), grid.layout, attribution=raw, grid_id=grid_id, model=model.name,
            model_title=model.spec.title, method=name, method_title=get_method(name).title, layer=layer,
            degenerate=cert.degenerate, target_class=int(target), target_name=names[target] if target < len(names) else str(target),
            cell_image=grid.image_ids[cell]))
    return rows


def grids_for_model(grids, model: LoadedModel) -> list:
    """The grids as ``model`` can take them: unchanged for models that accept any input size (CNNs), resized
    (bilinear, antialiased) to the fixed input size of a model that has one (ViT-B/16: 224x224), with the size
    appended to the grid id (so the noise and the cache entries differ from the full-size grid's)."""
    import dataclasses

    import torch.nn.functional as F

    size = getattr(getattr(model, "net", None), "image_size", None)
    if not size:
        return list(grids)
    out = []
    for grid in grids:
        if grid.size == (size, size):
            out.append(grid)
            continue
        tensor = F.interpolate(grid.tensor[None], size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True)[0].clamp(0, 1)
        out.append(dataclasses.replace(grid, tensor=tensor, grid_id=f"{grid.grid_id}-{size}px"))
    return out

def grid_sources(photos=None, imagenet_dir: str | None = None, n_images: int | None = None) -> list[tuple]:
    """(image_id, tensor, label) triples for :func:`certattr.evaluation.grids.build_grids` from the chapter's image set."""
    return [(im.id, im.tensor, im.label) for im in image_set(photos, imagenet_dir, n_images)]


def undefined_table(model: LoadedModel, methods=None, layers: Sequence[str] = ("input", "final")) -> list[dict]:
    """One row per (method, layer) the model does not define, with the reason."""
    rows = []
    for name in resolve_methods(methods or "all"):
        for layer in layers:
            reason = get_method(name).undefined_reason(model, layer)
            if reason:
                rows.append({"method": name, "title": get_method(name).title, "layer": layer, "why n/a": reason})
    return rows


def pooled(frame, by: Sequence[str]):
    """%certified pooled over images: sums the pixel counts of tidy :func:`robustness_rows` per group ``by``,
    then divides (columns certified_1, certified_0, abstain, robustness, n_images)."""
    counts = ["n_pixels", "n_certified_1", "n_certified_0", "n_abstain"]
    out = frame.groupby(list(by), sort=False, dropna=False)[counts].sum().reset_index()
    out["n_images"] = frame.groupby(list(by), sort=False, dropna=False).size().values
    for col in ("certified_1", "certified_0", "abstain"):
        out[col] = out[f"n_{col}"] / out["n_pixels"]
    out["robustness"] = 1.0 - out["abstain"]
    return out


def certificate_subset(cert, ks: Sequence[float]):
    """The same Certificate restricted to some of its K values (e.g. to overlay K = 30/20/10 only)."""
    import dataclasses

    idx = [cert.index(k) for k in ks]
    return dataclasses.replace(cert, labels=cert.labels[idx], majority=cert.majority[idx], counts=cert.counts[idx],
                               pvalues=cert.pvalues[idx], mean_sparsified=cert.mean_sparsified[idx],
                               ks=tuple(float(cert.ks[i]) for i in idx))


_REFERENCE_SETTINGS = {"rise": "1000 masks", "occlusion@input": "a 16x16 window, stride 8",
                       "occlusion@final": "a 5x5 window, stride 2",
                       "occlusion": "16x16/8 at the Input layer, 5x5/2 at the Final layer", "intgrad": "20 steps"}


def _spec_titles(specs) -> str:
    """"IxG and GB at the Input layer; LRP at both layers" from ["ixg@input", "gb@input", "lrp"]."""
    groups: dict = {}
    for spec in specs:
        name, _, layer = str(spec).partition("@")
        groups.setdefault(layer, []).append(get_method(name).title)
    parts = []
    for layer, titles in groups.items():
        listed = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        parts.append(f"{listed} at {'the ' + layer.capitalize() + ' layer' if layer else 'both layers'}")
    return "; ".join(parts)


def describe_settings(method_overrides: dict | None = None, first_sigma_only=(), sigmas: Sequence[float] = (),
                      skip=(), run: dict | None = None) -> str:
    """A few sentences stating the reduced settings of a run (for the chapter text), or that there are none.

    ``run`` (``{layer: [method names]}``, e.g. from :func:`run_list`) limits the statement to what was run."""
    def ran(name, layer):
        return run is None or any(name in names for lay, names in run.items() if not layer or lay == layer)

    parts = []
    for key, params in (method_overrides or {}).items():
        name, _, layer = str(key).partition("@")
        if not ran(name, layer):
            continue
        where = f" at the {layer.capitalize()} layer" if layer else ""
        values = ", ".join(f"{k} = {v}" for k, v in params.items())
        ref = _REFERENCE_SETTINGS.get(key, _REFERENCE_SETTINGS.get(name))
        parts.append(f"{get_method(name).title}{where} uses {values}"
                     + (f" (the reference setting: {ref})" if ref else ""))
    text = "; ".join(parts) + "." if parts else "Every method uses its reference settings."
    if skip:
        text += f" To fit the compute budget, this run leaves out {_spec_titles(skip)}."
    ran_only = _ran_specs(first_sigma_only, run)
    if ran_only and len(sigmas) > 1:
        text += f" Only at σ = {sigmas[0]:g}, not at the larger σ: {_spec_titles(ran_only)}."
    return text[0].upper() + text[1:]


def _ran_specs(specs, run: dict | None) -> list[str]:
    """The "method" / "method@layer" specs restricted to what ``run`` ({layer: names}) ran: a spec for both layers
    becomes one spec per layer it ran at, and a spec for a layer it did not run at is dropped."""
    if run is None:
        return list(specs)
    out = []
    for spec in specs:
        name, _, layer = str(spec).partition("@")
        ran_at = [lay for lay, names in run.items() if name in names and (not layer or lay == layer)]
        if len(ran_at) == len(run) and not layer and len(run) > 1:
            out.append(name)
        else:
            out += [f"{name}@{lay}" for lay in ran_at]
    return out


def methods_run_text(frame, layers: Sequence[str] = ("input", "final")) -> str:
    """"At the Input layer this run certified Grad, IxG and LRP; at the Final layer ...", read from the run's own
    tidy rows (columns ``method`` and ``layer``), so that the text cannot disagree with the tables."""
    parts = []
    for layer in layers:
        names = [get_method(m).title for m in dict.fromkeys(frame[frame.layer == layer].method)] if len(frame) else []
        listed = (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]) if names else "nothing"
        parts.append(f"at the {layer.capitalize()} layer {listed}")
    return "This run certified " + "; ".join(parts) + "."


__all__ += ["model_list", "layer_methods", "engine_configs", "Job", "photo_jobs", "grid_jobs", "certify_jobs",
            "robustness_rows", "localization_rows", "grid_sources", "undefined_table", "pooled",
            "certificate_subset", "describe_settings", "run_list", "grids_for_model", "methods_run_text"]


def gridpg_intervals(frame, by: Sequence[str], *, n_boot: int = 1000, seed: int = 0):
    """Mean Certified GridPG per group of localization rows, with a percentile bootstrap interval over the
    rows (grid targets) of the group: columns ``by`` + value, low, high, targets, gridpg (uncertified mean,
    NaN where not computed) and no_certified (share of targets with nothing certified '1')."""
    import pandas as pd

    out = []
    for key, g in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high = bootstrap_interval(g.certified_gridpg.to_numpy(float), np.mean, n_boot=n_boot, seed=seed)
        out.append({**dict(zip(by, key)), "value": mean, "low": low, "high": high, "targets": int(len(g)),
                    "gridpg": float(g.gridpg.mean()) if "gridpg" in g else float("nan"),
                    "no_certified": float(g.no_certified.mean()) if "no_certified" in g else float("nan")})
    return pd.DataFrame(out)


__all__ += ["gridpg_intervals"]
