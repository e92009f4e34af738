"""The sentences a chapter writes about its own run (what ran, which settings were reduced, which models ran
narrower), generated from its parameters and its tables so that the text cannot disagree with them."""
from __future__ import annotations

from typing import Sequence

from ..evaluation.findings.evidence import listing
from ..evaluation.jobs import layer_methods, model_scope_of
from ..evaluation.names import layer_title, method_title
from ..methods import get_method, method_names
from ..methods.spec import MethodAt, method_specs

__all__ = ["scope_text", "describe_settings", "methods_run_text", "one_level_text"]


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


_REFERENCE_SETTINGS = {"rise": "1000 masks", "occlusion@input": "a 16x16 window, stride 8",
                       "occlusion@final": "a 5x5 window, stride 2",
                       "occlusion": "16x16/8 at the Input layer, 5x5/2 at the Final layer", "intgrad": "20 steps"}


def _spec_titles(specs) -> str:
    """"IxG and GB at the Input layer; LRP at both layers" from ["ixg@input", "gb@input", "lrp"]."""
    groups: dict = {}
    for at in method_specs(specs):
        groups.setdefault(at.layer or "", []).append(get_method(at.method).title)
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
        at = MethodAt.parse(key)
        name, layer = at.method, at.layer or ""
        if not ran(name, layer):
            continue
        where = f" at the {layer.capitalize()} layer" if layer else ""
        values = ", ".join(f"{k} = {v}" for k, v in params.items())
        ref = _REFERENCE_SETTINGS.get(str(at), _REFERENCE_SETTINGS.get(name))
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
    for at in method_specs(specs):
        name, layer = at.method, at.layer or ""
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


def one_level_text(frame, layer: str, x_col: str, method_order: Sequence[str], titles: dict) -> str:
    """The sentence under a trend figure (:func:`certattr.book.plotting.method_bars_figure` with ``min_levels=2``)
    naming the methods it leaves out because a model ran them at one value of ``x_col`` only ("Run at one R only,
    and so not drawn here: RISE, Occlusion on EfficientNet-Lite0. "). ``frame``: rows with model, method_title,
    layer and ``x_col``; ``titles``: {model: title}, in the figure's order."""
    levels = frame[frame.layer == layer].groupby(["model", "method_title"])[x_col].nunique()
    if len(levels) and levels.max() < 2:  # the figure then draws every method at its one value
        return f"Every method was run at one {x_col} only. "
    single = set(levels[levels < 2].index)
    parts = [listing([m for m in method_order if (model, m) in single]) + f" on {title}"
             for model, title in titles.items() if any((model, m) in single for m in method_order)]
    return (f"Run at one {x_col} only, and so not drawn here: {'; '.join(parts)}. " if parts else
            f"No method was run at one {x_col} only. ")
