"""Any image classifier as a certattr model: ``wrap(module, final_layer=..., mean=..., std=..., input_size=...)``.

The result is a :class:`~certattr.models.registry.LoadedModel`, the type of the presets, so every method, the
engine, the metrics and the CLI take it as they take ``load_model("resnet18")``. What ``wrap`` derives from the
network itself (nothing hand-written):

* **the split at the Final layer** (a module path: ``layer4``, ``features.19``, ``blocks.6``,
  ``encoder.layers.11``): a torch.fx cut (:func:`certattr.models.split.fx_split`): the body runs once per batch
  and the head is the graph of the operations after the layer. Where the network does not trace (data-dependent
  control flow), forward hooks substitute the activation instead (:class:`~certattr.models.split.HookHead`):
  the same maps, but every head call re-runs the body, so RISE, Occlusion and AblationCam at the Final layer
  cost a full forward pass per head call (hundreds per map) instead of a head pass;
* **a GAP->linear head** (global average pooling, then one linear layer): then the head is
  :class:`~certattr.models.registry.GapLinearHead` of that linear layer (checked against the traced head on the
  probe activation), Cam is defined and the perturbation methods apply the head in closed form, exactly as
  for the presets; otherwise Cam says why it is undefined;
* **token layers** (output (B, N, D), ViT-like): the last N - ``drop_tokens`` tokens as a (B, D, s, s) grid
  (s² = N - drop_tokens), the leading ones (CLS, registers) passed to the head unchanged; channels are reduced
  by |.| (as for the ViT preset);
* **LRP**: the canonizers that the network's layers need (BatchNorm merges, torchvision's and timm's residual
  blocks, the GAP head) are chosen from :data:`certattr.models.canonizers.CANONIZERS`; LRP is undefined, with
  the layer type named, for a layer type that its rules do not cover (LayerNorm, attention, ...) and for a
  residual sum written in a ``forward`` that no canonizer makes a ``Sum`` module.

``wrap`` puts the module in eval mode and stops its parameters' gradients (it shares them, nothing is copied).
"""
from __future__ import annotations

import difflib
from typing import Sequence

import torch
import torch.nn as nn

from ..engine.validation import CertattrError, check_positive_int
from .registry import GapLinearHead, LoadedModel, ModelSpec
from .split import (HookBody, HookHead, TokenGridBody, TokenGridHead, fx_split, gap_linear_of, head_operations,
                    residual_sums)

__all__ = ["wrap", "LRP_LAYER_TYPES"]

#: Layer types LRP's rules in certattr cover (others with parameters or mixing positions make LRP undefined).
LRP_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU,
                   nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.ELU, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                   nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Identity, nn.Flatten)
_SUM_CANONIZERS = ("torchvision_resnet_sum", "timm_residual_sum", "tiny_resnet")


def _floats(name: str, values, channels: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise CertattrError(f"{name}={values!r} is not allowed: give one number per input channel "
                            f"({channels})") from None
    if len(out) != channels:
        raise CertattrError(f"{name} has {len(out)} values but the model takes {channels} channel(s): give one "
                            f"value per channel (e.g. {name}={list(out[:1]) * channels})")
    if name == "std" and any(not v > 0 for v in out):
        raise CertattrError(f"std={list(out)} is not allowed: every standard deviation must be > 0")
    return out


def _size(input_size) -> int:
    if isinstance(input_size, (tuple, list)):
        if len(input_size) != 2 or input_size[0] != input_size[1]:
            raise CertattrError(f"input_size={input_size!r} is not allowed: give one side length for square "
                                f"inputs (e.g. 224)")
        input_size = input_size[0]
    return check_positive_int("input_size", input_size)


def _find_layer(net: nn.Module, path: str) -> nn.Module:
    modules = dict(net.named_modules())
    if not isinstance(path, str) or path not in modules or not path:
        close = difflib.get_close_matches(str(path), [p for p in modules if p], n=3)
        top = ", ".join(name for name, _ in net.named_children()) or "none"
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"its top-level modules are {top}"
        raise CertattrError(f"final_layer={path!r} is not a module path of {type(net).__name__}: {hint} "
                            f"(print(model) shows every path)")
    return modules[path]


def _probe(net: nn.Module, layer: nn.Module, path: str, channels: int, size: int, device) -> tuple:
    """(the layer's output, the logits) on one zero image (1, channels, size, size)."""
    seen = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        with torch.no_grad():
            logits = net(torch.zeros(1, channels, size, size, device=device))
    except Exception as err:  # the user's network: any error it raises is reported in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CertattrError(f"the module failed on a ({1}, {channels}, {size}, {size}) input ({type(err).__name__}: "
                            f"{first}): check channels= and input_size=") from None
    finally:
        handle.remove()
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CertattrError(f"the module is not a classifier: it maps a (1, {channels}, {size}, {size}) image to "
                            f"{got}, not to logits (1, classes >= 2); wrap the module that returns the logits")
    if len(seen) != 1 or not isinstance(seen[0], torch.Tensor):
        what = f"is called {len(seen)} times" if len(seen) != 1 else f"returns {type(seen[0]).__name__}"
        raise CertattrError(f"final_layer={path!r} {what} in one forward pass: pick a module called once that "
                            f"returns one tensor")
    return seen[0], logits


def _lrp_reason(net: nn.Module, canonizers: tuple[str, ...]) -> str | None:
    """Why LRP is undefined for ``net`` (a layer type or a residual sum its rules cannot handle), or None."""
    from .canonizers import CANONIZERS  # here: the canonizers are zennit's, which `import certattr` must not load

    for path, module in net.named_modules():
        leaf = not list(module.children()) or isinstance(module, nn.modules.batchnorm._BatchNorm)
        covered = isinstance(module, LRP_LAYER_TYPES) or any(CANONIZERS[c].needed_by(module) for c in canonizers)
        if type(module).__name__ == "InterpreterModule":
            return ("a torch.export program's layers are graph interpreters (InterpreterModule), not torch.nn layers, "
                    "so LRP's rules cannot attach to them: wrap the original module for LRP")
        if leaf and not covered and (any(True for _ in module.parameters(recurse=False))
                                     or isinstance(module, (nn.MultiheadAttention, nn.LayerNorm, nn.GroupNorm,
                                                            nn.Softmax, nn.Upsample))):
            return (f"LRP's rules in certattr cover convolutions, linear layers, BatchNorm, activations, pooling and "
                    f"residual sums, not {type(module).__name__} (at {path!r})")
    try:
        sums = residual_sums(net)
    except Exception:  # untraceable: the residual sums cannot be listed; say so rather than guess
        return ("the network does not trace with torch.fx, so its residual sums cannot be checked for LRP "
                "(wrap a traceable module, or use the other methods)")
    for where, modules in sums:
        if not any(CANONIZERS[c].needed_by(m) for c in canonizers if c in _SUM_CANONIZERS for m in modules):
            return (f"a residual sum written in forward code (at {where or 'the root'!r}, "
                    f"{type(modules[-1]).__name__ if modules else type(net).__name__}) that no LRP canonizer makes "
                    f"a Sum module, so relevance would not be conserved there")
    return None


def _canonizers(net: nn.Module, gap_linear: bool) -> tuple[str, ...]:
    """The canonizers ``net``'s layers need, in the presets' order (merges, residual sums, the GAP head)."""
    from .canonizers import CANONIZERS  # here: see _lrp_reason

    modules = list(net.modules())

    def needed(name):
        return any(CANONIZERS[name].needed_by(m) for m in modules)

    names = []
    if needed("merge_timm_batchnorm_act"):
        names.append("merge_timm_batchnorm_act")
    elif needed("merge_batchnorm"):
        names.append("merge_batchnorm")
    names += [name for name in _SUM_CANONIZERS if needed(name)]
    if gap_linear:
        names.append("gap_linear_head")
    return tuple(names)


def _split(net: nn.Module, path: str, layer: nn.Module, act: torch.Tensor, drop_tokens: int, split: str):
    """(body, head, gap_linear, head_note, how): the split at ``path`` (see the module docstring); ``head_note``
    says why the head is not GAP->linear ("" when it is)."""
    tokens = act.dim() == 3
    head_note = ""
    if split == "fx":
        try:
            body, head, n_context = fx_split(net, path)
        except Exception as err:  # anything torch.fx raises on code it cannot trace
            split, head_note = "hooks", f"torch.fx could not trace the network ({type(err).__name__})"
        else:
            how = "torch.fx"
            linear = gap_linear_of(head) if not tokens and n_context == 0 else None
            if linear is not None:
                gap = GapLinearHead(linear)
                with torch.no_grad():
                    if torch.allclose(gap(act), head(act), rtol=1e-4, atol=1e-5 * float(head(act).abs().max() + 1)):
                        return body, gap, linear, "", how
            ops = ", ".join(head_operations(head)) or "nothing"
            head_note = (f"the head after {path!r} ({ops}) is not global average pooling then one linear layer, "
                         f"so Cam is undefined (GradCam and the other methods apply)")
    if split == "hooks":
        how = "forward hooks"
        body, head = HookBody(net, layer), HookHead(net, layer)
        head_note = (f"{head_note + '; ' if head_note else ''}the head after {path!r} is run through forward hooks, "
                     f"so whether it is GAP->linear is unknown and Cam is undefined")
    if tokens:
        body, head = TokenGridBody(body, drop_tokens), TokenGridHead(head)
    return body, head, None, head_note, how


def wrap(module: nn.Module, final_layer: str, mean: Sequence[float], std: Sequence[float], input_size: int,
         classes: Sequence[str] | None = None, drop_tokens: int = 0, name: str | None = None, *, split: str = "fx",
         resize: int | None = None) -> LoadedModel:
    """A certattr model from ``module``, an ``nn.Module`` mapping normalized images (B, C, S, S) to logits.

    ``final_layer``: the module path of the Final layer (its output (B, C, h, w), or tokens (B, N, D)).
    ``mean``, ``std``: the normalization, one value per channel (the model sees (x - mean) / std of [0, 1]
    images). ``input_size``: the side S of the square images it takes (images are read at that size: shorter side
    to ``resize``, default S, then a center crop). The channels are 1 (greyscale) for a one-value ``mean``, else 3 (RGB).
    ``classes``: optional class names, one per logit. ``drop_tokens``: leading tokens of a token layer that are
    not patches (1 for a CLS token). ``name``: the model's name in tables and cache keys (default: the class
    name). ``split``: "fx" (torch.fx, with the hook fallback) or "hooks" (the fallback only). Every bad
    specification raises :class:`~certattr.engine.validation.CertattrError` in one line naming what to change.
    """
    if isinstance(module, LoadedModel):
        raise CertattrError("the module is already a certattr model (a LoadedModel): use it as it is")
    if not isinstance(module, nn.Module):
        raise CertattrError(f"module of type {type(module).__name__} is not allowed: give a torch.nn.Module that "
                            f"maps normalized images to logits")
    if split not in ("fx", "hooks"):
        raise CertattrError(f"split={split!r} is unknown: allowed are fx, hooks")
    channels = 1 if hasattr(mean, "__len__") and len(mean) == 1 else 3
    mean, std = _floats("mean", mean, channels), _floats("std", std, channels)
    size = _size(input_size)
    drop_tokens = check_positive_int("drop_tokens", drop_tokens, 0)
    layer = _find_layer(module, final_layer)
    net = module.eval()
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    act, logits = _probe(net, layer, final_layer, channels, size, device)
    if act.dim() == 3:
        grid = act.shape[1] - drop_tokens
        side = int(round(max(grid, 0) ** 0.5))
        if grid < 1 or side * side != grid:
            raise CertattrError(f"final_layer={final_layer!r} gives {act.shape[1]} tokens; after dropping "
                                f"drop_tokens={drop_tokens} leading ones, {grid} is not a square grid: set drop_tokens "
                                f"to the number of CLS/register tokens")
    elif act.dim() != 4:
        raise CertattrError(f"final_layer={final_layer!r} is not spatial: its output is {tuple(act.shape)}, not "
                            f"(B, C, h, w) or tokens (B, N, D); pick an earlier layer (a conv block's output)")
    if classes is not None:
        classes = tuple(str(c) for c in classes)
        if len(classes) != logits.shape[1]:
            raise CertattrError(f"classes has {len(classes)} names but the model gives {logits.shape[1]} logits: give "
                                f"one name per logit")
    body, head, linear, head_note, how = _split(net, final_layer, layer, act, drop_tokens, split)
    canonizers = _canonizers(net, linear is not None)
    lrp = _lrp_reason(net, canonizers)
    name = name or type(module).__name__
    identity = repr(("wrap", final_layer, mean, std, channels, drop_tokens))
    spec = ModelSpec(
        name, name, lambda weights: net, lambda _net: (body, head, linear),
        f"{final_layer} output ({'x'.join(map(str, act.shape[1:]))}{', tokens as a grid' if act.dim() == 3 else ''})",
        mean=mean, std=std, resize=resize or size, crop=size, final_reduce="l1" if act.dim() == 3 else "sum",
        head_kind="gap_linear" if linear is not None else "other", head_note=head_note, lrp=lrp, canonizers=canonizers, channels=channels, identity=identity,
        notes={"split": how, "classes": classes, "final_layer": final_layer, "drop_tokens": drop_tokens})
    return LoadedModel(spec, net, "user").to(device)
