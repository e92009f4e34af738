"""What a chapter certifies, as values: its image sets (bundled photos, an ImageNet folder, grids' sources), its
models and methods per layer, one :class:`Job` per image or grid target, and the (method, layer, sigma) engines
that run (:func:`engine_configs`)."""
from __future__ import annotations

from dataclasses import dataclass as _dataclass
from typing import Iterable, Sequence

from ..engine.targets import resolve_target
from ..engine.validation import CertattrError
from ..methods import get_method, method_names
from ..methods.spec import method_specs, overrides_at
from ..models.data import Image, ImageNetFolder, bundled_photos
from ..models.registry import MODELS as _PRESETS, LoadedModel

__all__ = ["class_names", "image_set", "model_scope_of", "resolve_methods", "method_for", "model_list", "layer_methods", "run_list", "Job", "photo_jobs", "grid_jobs", "engine_configs", "grids_for_model", "takes_input_size", "grid_sources", "undefined_table"]


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
    return get_method(name, **overrides_at(method_overrides, name, layer))


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
    """Is (name, layer) named in ``specs`` (method names or ``name@layer`` strings, or MethodAt values)?"""
    return any(at.covers(name, layer) for at in method_specs(specs))


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
    """The (method name, layer, AttributionMethod, sigma) engines a chapter certifies, in order, and
    ``undefined[(name, layer)] = reason`` for the pairs the model does not define; a chapter's plan
    (:class:`certattr.book.plans.PlanBuilder`) lists its sampling work with it."""
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


def takes_input_size(model: LoadedModel, side: int) -> bool:
    """Whether ``model`` takes (1, channels, side, side) images: a network with global pooling takes any size, one
    whose head flattens a fixed grid (or a ViT's position embedding) only its own. One forward pass, remembered per
    model and side."""
    import torch

    memo = model.__dict__.setdefault("_takes_size", {})
    if side not in memo:
        try:
            with torch.no_grad():
                logits = model(torch.zeros(1, model.channels, int(side), int(side), device=model.device))
            memo[side] = isinstance(logits, torch.Tensor) and logits.dim() == 2
        except Exception:  # the network's own error on a size it cannot take (a shape mismatch in its head)
            memo[side] = False
    return memo[side]


def grids_for_model(grids, model: LoadedModel) -> list:
    """The grids as ``model`` can take them: unchanged for models that accept any input size (CNNs with global
    pooling), resized (bilinear, antialiased) to the fixed input size of a model that has one (ViT-B/16: 224x224; a
    user's model whose head flattens its Final layer: its ``input_size``), with the size appended to the grid id
    (so the noise and the cache entries differ from the full-size grid's)."""
    import dataclasses

    import torch.nn.functional as F

    size = getattr(getattr(model, "net", None), "image_size", None)
    if not size and grids and getattr(model, "spec", None) is not None and model.spec.name not in _PRESETS:
        side = grids[0].size[0]
        size = None if takes_input_size(model, side) else int(model.spec.crop)
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
