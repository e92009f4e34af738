"""The parameters a chapter (or ``certattr book -p``) is run with, checked before any work starts.

Here and not in :mod:`certattr.engine.validation`, which imports no other certattr module: these checks need the
registries (:mod:`certattr.methods`, :mod:`certattr.models.registry`). The messages are the API's own.
"""
from __future__ import annotations

from ..engine.config import DEFAULT_CERT, DEFAULT_SAMPLING
from ..methods import get_method
from ..models.compilation import POLICIES
from ..models.execution import check_precision
from ..models.registry import MODELS, check_layer
from ..engine.validation import (CertattrError, check_alpha, check_choice, check_correction, check_ks, check_n,
                         check_positive_int, check_sigma, check_tau)

__all__ = ["check_chapter_parameters"]


def check_chapter_parameters(params: dict) -> dict:
    """Validate the parameters a chapter is run with, before any work starts (same messages as the API)."""
    p = dict(params)
    for name in ("sigma", "tau", "alpha"):
        if name in p:
            {"sigma": check_sigma, "tau": check_tau, "alpha": check_alpha}[name](p[name])
    for s in p.get("sigmas", []) or []:
        check_sigma(s)
    if "n" in p or "n0" in p:
        check_n(p.get("n", DEFAULT_SAMPLING.n), p.get("n0", DEFAULT_CERT.n0))
    for name in ("ks", "ks_vs_r", "ks_grid"):
        if name in p and p[name] is not None:
            check_ks(p[name])
    if "correction" in p:
        check_correction(p["correction"])
    models = p.get("models") or ([p["model"]] if p.get("model") else [])
    for m in [models] if isinstance(models, str) else models:
        user_model = isinstance(m, str) and (m.partition(":")[0] in ("torchvision", "timm", "file")
                                             or m.endswith((".pt2", ".pt", ".pth")))
        if not user_model:  # a user's model (certattr.models.sources) is checked where the chapter loads it
            check_choice("model", m, MODELS)
    methods = p.get("methods", [])
    if isinstance(methods, dict):  # {layer: "all" | [names]}
        for layer, names in methods.items():
            check_layer(layer)
            if names != "all":
                for m in [names] if isinstance(names, str) else names:
                    get_method(m)
    elif methods != "all":
        for m in [methods] if isinstance(methods, str) else methods:
            get_method(m)
    for layer in p.get("layers", []) or []:
        check_layer(layer)
    if "device" in p and not (isinstance(p["device"], str) and p["device"].split(":")[0] in ("cpu", "cuda", "mps")):
        raise CertattrError(f"device={p['device']!r} is not allowed: give cpu, cuda, cuda:N or mps")
    if "precision" in p:
        check_precision(p["precision"], p.get("device", "cpu"))
    if "compilation" in p:
        check_choice("compilation", p["compilation"], POLICIES)
    for name in ("chunk_size", "seed"):
        if name in p:
            check_positive_int(name, p[name], 1 if name == "chunk_size" else 0)
    return p
