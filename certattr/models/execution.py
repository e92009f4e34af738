"""How a model's passes run: memory layout, BatchNorm folded into the convolutions, and numeric precision.

Every attribution map is a function of the network's passes; running them in the fastest exact form changes the
maps only at float rounding (folding, layout) or at the precision's rounding (bf16, fp16), and each of these is
part of the model's fingerprint, hence of every sample-cache key, so samples computed one way are never read as
samples computed another.

* ``layout``: ``"channels_last"`` (NHWC) or ``"contiguous"`` (NCHW) for the weights and for every batch the
  model normalizes; which is faster depends on the architecture and the device, so each preset declares it per
  device type (``ModelSpec.layouts``, measured with ``benchmarks/bench_execution.py``).
* ``fold_batchnorm``: eval-mode BatchNorm merged into the preceding convolution (w' = w * g, b' = (b - mean) * g
  + beta with g = gamma / sqrt(var + eps)); the BatchNorm module is replaced by its activation (timm's
  ``BatchNormAct2d``) or by the identity. The folded network's outputs are checked against the unfolded one's
  when it is folded; a network whose definition order does not match its data flow is left unfolded.
* ``precision``: ``"fp32"``, ``"bf16"`` (CPU and CUDA) or ``"fp16"`` (CUDA): the model passes run under
  ``torch.autocast``; maps are returned as float32.
* ``compilation``: ``"off"``, ``"auto"`` or ``"on"``: whether RISE's and Occlusion's forward-only passes run
  through ``torch.compile`` (:mod:`certattr.models.compilation` decides, and says why "auto" is deterministic).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..engine.validation import CertattrError, check_choice
from .compilation import POLICIES, policy_key, resolve_policy

__all__ = ["Execution", "LAYOUTS", "PRECISIONS", "check_precision", "fold_batchnorm", "default_execution"]

LAYOUTS = ("contiguous", "channels_last")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_DEVICE_PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}


def check_precision(precision, device) -> str:
    """``precision`` if the device type supports it, else a one-line error naming the allowed ones."""
    check_choice("precision", precision, PRECISIONS)
    device_type = torch.device(device).type
    allowed = _DEVICE_PRECISIONS.get(device_type, ("fp32",))
    if precision not in allowed:
        raise CertattrError(f"precision {precision!r} is not available on {device_type}: use one of "
                            f"{', '.join(allowed)}")
    return precision


@dataclass(frozen=True)
class Execution:
    """How the passes of one loaded model run (see the module's docstring)."""

    layout: str = "contiguous"
    fold_batchnorm: bool = False
    precision: str = "fp32"
    compilation: str = "off"  #: "off" | "auto" | "on", see certattr.models.compilation

    def __post_init__(self):
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("compilation", self.compilation, POLICIES)

    @property
    def is_default(self) -> bool:
        return self == Execution()

    def key(self) -> str:
        """What enters the model's fingerprint: empty for the plain way (so those cache keys stay as they were)."""
        if self.is_default:
            return ""
        key = f"layout={self.layout};fold_batchnorm={self.fold_batchnorm};precision={self.precision}"
        compiled = policy_key(self.compilation)  # empty for "off": those keys stay as they were
        return f"{key};{compiled}" if compiled else key

    def describe(self) -> str:
        parts = [self.layout.replace("_", "-"), self.precision]
        if self.fold_batchnorm:
            parts.append("BatchNorm folded")
        if self.compilation != "off":
            parts.append(f"compilation {self.compilation}")
        return ", ".join(parts)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.layout == "channels_last" else torch.contiguous_format

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        """A (B, C, H, W) batch in this layout (no copy when it is in it already)."""
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    def autocast(self, device: torch.device):
        """The context the model passes run in: autocast to bf16/fp16, or nothing for fp32."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=dtype)


def default_execution(layouts: dict, device, *, foldable: bool, fast: bool, precision: str = "fp32",
                      compilation: str = "off", spec=None) -> Execution:
    """The fastest exact way for a model whose spec declares ``layouts`` (device type -> layout) on ``device``;
    the plain way (NCHW, unfolded, "auto" compilation off) when ``fast`` is False. ``precision`` is never lowered
    unless asked; ``compilation`` is turned off where it is unavailable or, for "auto", where ``spec``'s
    architecture has no estimate (:func:`.compilation.resolve_policy`)."""
    precision = check_precision(precision, device)
    compilation = resolve_policy(compilation, device, spec)
    if not fast:
        return Execution(precision=precision, compilation="on" if compilation == "on" else "off")
    layout = layouts.get(torch.device(device).type, "contiguous")
    return Execution(layout=layout, fold_batchnorm=foldable, precision=precision, compilation=compilation)


# --- BatchNorm folding -------------------------------------------------------------------------------------
def _batchnorm_replacement(bn: nn.Module) -> nn.Module | None:
    """What a folded BatchNorm becomes: the identity, or (timm's BatchNormAct2d) its dropout and activation;
    None for a BatchNorm subclass whose forward is unknown (then nothing is folded into it)."""
    if type(bn) in (nn.BatchNorm2d,):
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act") and hasattr(bn, "drop"):
        return nn.Sequential(bn.drop, bn.act)
    return None


def _leaves(module: nn.Module, prefix: str = ""):
    """(path, module) of the leaves in definition order, a BatchNorm counted as a leaf."""
    children = list(module.named_children())
    if not children or isinstance(module, nn.modules.batchnorm._BatchNorm):
        yield prefix, module
        return
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def _fold_into(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias.detach() if bn.affine else 0.0) - bn.running_mean * scale
    weight = conv.weight.detach() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=False)


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def fold_batchnorm(net: nn.Module, example: torch.Tensor, *, rtol: float = 1e-4) -> tuple[nn.Module, int]:
    """(a folded copy of the eval-mode ``net``, how many BatchNorms were folded); ``net`` is not modified.

    A convolution directly followed (in definition order) by a BatchNorm is merged with it. The copy's output on
    ``example`` (a normalized batch) must match the original's to ``rtol`` of its largest magnitude; otherwise the
    definition order did not follow the data flow and the original is returned with 0."""
    if net.training:
        raise CertattrError("BatchNorm can be folded only in eval mode: call net.eval() first")
    folded = copy.deepcopy(net)
    count, last = 0, (None, None)
    for path, leaf in list(_leaves(folded)):
        last_path, last_leaf = last
        if isinstance(leaf, nn.modules.batchnorm._BatchNorm) and isinstance(last_leaf, nn.Conv2d) \
                and leaf.track_running_stats and leaf.running_var is not None:
            replacement = _batchnorm_replacement(leaf)
            if replacement is not None and last_leaf.out_channels == leaf.num_features:
                _fold_into(last_leaf, leaf)
                _set_module(folded, path, replacement)
                count += 1
        last = (path, leaf)
    if count == 0:
        return net, 0
    with torch.no_grad():
        reference, candidate = net(example), folded(example)
    scale = reference.abs().max().clamp_min(1e-12)
    if reference.shape != candidate.shape or ((reference - candidate).abs().max() / scale) > rtol:
        return net, 0
    return folded, count
