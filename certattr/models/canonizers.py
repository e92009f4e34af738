"""LRP canonizers, declared per model: how each architecture's blocks are made explicit for LRP's rules.

LRP's rules act on modules (a convolution, a pooling, a ``zennit.layer.Sum``); what a network computes in a
``forward`` written by hand (``branch + shortcut``, ``x.mean(dim=(2, 3))``) or in a module that folds two
operations (BatchNorm after a convolution) is invisible to them. A canonizer rewrites such blocks for the
duration of an LRP call (zennit's canonizers; undone on exit). As in zennit, each model says which ones its
architecture needs: ``ModelSpec(..., canonizers=("merge_batchnorm", "torchvision_resnet_sum",
"gap_linear_head"))``, by the names of :data:`CANONIZERS`:

* ``merge_batchnorm``: BatchNorm merged into the preceding convolution (zennit's ``SequentialMergeBatchNorm``,
  made an exact identity afterwards, see :class:`MergeBatchNorm`);
* ``merge_timm_batchnorm_act``: the same, timm's ``BatchNormAct2d`` included (after the merge it runs only its
  dropout and activation);
* ``torchvision_resnet_sum``: zennit's canonizers of torchvision's ResNet ``BasicBlock`` and ``Bottleneck``;
* ``timm_residual_sum``: timm EfficientNet blocks with a skip (``has_skip``): ``Sum(shortcut, branch)``;
* ``gap_linear_head``: :class:`~certattr.models.registry.GapLinearHead`'s ``x.mean(dim=(2, 3))`` as an
  ``nn.AdaptiveAvgPool2d`` module;
* ``tiny_resnet``: the test network :class:`~certattr.models.tiny_nets.TinyResNet` (its block's residual sum
  and its pooling).

Each entry also names the layer types that need it (:attr:`CanonizerKind.needed_by`), so that
:func:`missing_canonizer` can say which layer of a model its declared canonizers leave unhandled. Type checks
on third-party blocks (timm, torchvision) look the class up only if its module is imported already: no
instance can exist otherwise, and importing this module imports neither library.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from zennit.canonizers import AttributeCanonizer, Canonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.types import BatchNorm

from ..engine.validation import CertattrError
from .registry import GapLinearHead
from .tiny_nets import BasicBlock, TinyResNet

__all__ = ["CANONIZERS", "CanonizerKind", "MergeBatchNorm", "canonizers_for", "missing_canonizer",
           "register_canonizer"]


def _loaded_classes(module_name: str, *class_names: str) -> tuple[type, ...]:
    """The named classes of ``module_name`` if that module is imported already, else () (isinstance is False)."""
    module = sys.modules.get(module_name)
    return tuple(getattr(module, name) for name in class_names) if module is not None else ()


# --- BatchNorm ---------------------------------------------------------------------------------------
def _leaves(module: nn.Module):
    """Leaves in forward (definition) order, counting BatchNorm modules as leaves (timm's BatchNormAct2d
    holds its activation as a child)."""
    children = list(module.children())
    if not children or isinstance(module, BatchNorm):
        yield module
        return
    for child in children:
        yield from _leaves(child)


def _merged_identity(self, x):
    """A BatchNorm merged into the preceding layer: the identity."""
    return x


def _merged_batch_norm_act(self, x):
    """timm's BatchNormAct2d merged into the preceding layer: only its dropout and activation."""
    return self.act(self.drop(x))


class MergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's SequentialMergeBatchNorm, with two fixes: BatchNorm subclasses with children (timm's
    BatchNormAct2d) are merged too, and the emptied BatchNorm computes exactly the identity (zennit leaves
    running_var = 1, i.e. a factor 1/sqrt(1 + eps)). The emptied BatchNorms whose exact type is a key of
    ``skipped`` are not computed: their forward becomes ``skipped[type]`` (the identity for ``nn.BatchNorm2d``)."""

    def __init__(self, skipped: dict | None = None):
        super().__init__()
        self.skipped = {nn.BatchNorm2d: _merged_identity} if skipped is None else skipped

    def copy(self):
        return MergeBatchNorm(self.skipped)

    def register(self, linears, batch_norm):
        super().register(linears, batch_norm)
        forward = self.skipped.get(type(batch_norm))
        if forward is not None:
            batch_norm.forward = forward.__get__(batch_norm)

    def remove(self):
        self.batch_norm.__dict__.pop("forward", None)
        super().remove()

    def apply(self, root_module):
        instances, last = [], None
        for leaf in _leaves(root_module):
            if isinstance(last, self.linear_type) and isinstance(leaf, self.batch_norm_type):
                instance = self.copy()
                instance.register((last,), leaf)
                instances.append(instance)
            last = leaf
        return instances

    @staticmethod
    def merge_batch_norm(modules, batch_norm):
        SequentialMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data, 1 - batch_norm.eps)


def _merge_timm_batchnorm_act() -> MergeBatchNorm:
    from timm.layers import BatchNormAct2d

    return MergeBatchNorm({nn.BatchNorm2d: _merged_identity, BatchNormAct2d: _merged_batch_norm_act})


# --- residual sums and poolings written in a forward ---------------------------------------------------
def _torchvision_resnet_sum() -> Canonizer:
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    return CompositeCanonizer([ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()])


def _timm_blocks() -> tuple[type, ...]:
    return _loaded_classes("timm.models._efficientnet_blocks", "DepthwiseSeparableConv", "InvertedResidual")


def _is_timm_skip_block(module: nn.Module) -> bool:
    return isinstance(module, _timm_blocks()) and module.has_skip


def _timm_skip_forward(self, x):
    """timm block with a skip: the block's own forward without the skip, then Sum(shortcut, branch)."""
    self.has_skip = False
    try:
        branch = type(self).forward(self, x)
    finally:
        self.has_skip = True
    return self.canonizer_sum(torch.stack([x, self.drop_path(branch)], dim=-1))


def _timm_residual_attributes(name, module):
    if _is_timm_skip_block(module):
        return {"forward": _timm_skip_forward.__get__(module), "canonizer_sum": Sum()}
    return None


def _gap_head_forward(self, act):
    """GapLinearHead with its pooling as a module."""
    return self.linear(self.canonizer_pool(act).flatten(1))


def _gap_head_attributes(name, module):
    if isinstance(module, GapLinearHead):
        return {"forward": _gap_head_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
    return None


def _basic_block_forward(self, x):
    """certattr.models.tiny_nets.BasicBlock with its residual sum as a Sum module."""
    out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
    return self.relu(self.canonizer_sum(torch.stack([x, out], dim=-1)))


def _tiny_resnet_forward(self, x):
    """certattr.models.tiny_nets.TinyResNet with its pooling as a module."""
    return self.fc(self.canonizer_pool(self.last(self.block(self.stem(x)))).flatten(1))


def _tiny_resnet_attributes(name, module):
    if isinstance(module, BasicBlock):
        return {"forward": _basic_block_forward.__get__(module), "canonizer_sum": Sum()}
    if isinstance(module, TinyResNet):
        return {"forward": _tiny_resnet_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
    return None


# --- the registry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CanonizerKind:
    """One canonizer a model can declare by ``name``."""

    name: str
    make: Callable[[], Canonizer]  #: () -> a fresh zennit canonizer (applied, then removed, once per LRP call)
    needed_by: Callable[[nn.Module], bool]  #: module -> does LRP need this canonizer (or another for it) there?
    does: str  #: what it makes explicit, in words


CANONIZERS: dict[str, CanonizerKind] = {}


def register_canonizer(name: str, make: Callable[[], Canonizer], needed_by: Callable[[nn.Module], bool],
                       does: str) -> CanonizerKind:
    """Make ``name`` declarable in ``ModelSpec.canonizers`` (a name registered again is replaced)."""
    kind = CANONIZERS[name] = CanonizerKind(name, make, needed_by, does)
    return kind


register_canonizer("merge_batchnorm", MergeBatchNorm, lambda m: isinstance(m, BatchNorm),
                   "BatchNorm merged into the preceding convolution")
register_canonizer("merge_timm_batchnorm_act", _merge_timm_batchnorm_act,
                   lambda m: isinstance(m, _loaded_classes("timm.layers.norm_act", "BatchNormAct2d")),
                   "BatchNorm, timm's BatchNormAct2d included, merged into the preceding convolution")
register_canonizer("torchvision_resnet_sum", _torchvision_resnet_sum,
                   lambda m: isinstance(m, _loaded_classes("torchvision.models.resnet", "BasicBlock", "Bottleneck")),
                   "the residual sums of torchvision's ResNet blocks as Sum modules")
register_canonizer("timm_residual_sum", lambda: AttributeCanonizer(_timm_residual_attributes), _is_timm_skip_block,
                   "the residual sums of timm's EfficientNet blocks with a skip as Sum modules")
register_canonizer("gap_linear_head", lambda: AttributeCanonizer(_gap_head_attributes),
                   lambda m: isinstance(m, GapLinearHead), "GapLinearHead's global average pooling as a module")
register_canonizer("tiny_resnet", lambda: AttributeCanonizer(_tiny_resnet_attributes),
                   lambda m: isinstance(m, (BasicBlock, TinyResNet)),
                   "the test TinyResNet's residual sum and pooling as modules")


def _declared(spec) -> tuple[str, ...]:
    names = tuple(spec.canonizers)
    unknown = [name for name in names if name not in CANONIZERS]
    if unknown:
        raise CertattrError(f"model {spec.name!r} declares the unknown canonizer(s) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(CANONIZERS)}")
    return names


def canonizers_for(spec) -> list[Canonizer]:
    """Fresh canonizers for a model, in the order its spec (a ``ModelSpec``) declares them."""
    return [CANONIZERS[name].make() for name in _declared(spec)]


def missing_canonizer(spec, module: nn.Module) -> str | None:
    """One line naming each layer type of ``module`` (part of the model of ``spec``) that needs a canonizer
    its spec does not declare (with where it first occurs, and the canonizers that would cover it), or None
    when the declared ones cover every layer."""
    declared = set(_declared(spec))
    uncovered: dict[type, list] = {}  # layer type -> [first path, count, canonizers that cover it]
    for path, child in module.named_modules():
        needing = [kind.name for kind in CANONIZERS.values() if kind.needed_by(child)]
        if needing and not declared.intersection(needing):
            entry = uncovered.setdefault(type(child), [path, 0, needing])
            entry[1] += 1
    if not uncovered:
        return None

    def layers(layer_type, path, count, needing):
        where = f"{count} layers, first at {path!r}" if count > 1 else (f"at {path!r}" if path else "the root")
        return f"{layer_type.__name__} ({where}) needs {' or '.join(map(repr, needing))}"

    declared_text = ", ".join(map(repr, spec.canonizers)) or "none"
    return (f"model {spec.name!r} has layers that the canonizers its spec declares ({declared_text}) do not "
            f"cover: {'; '.join(layers(t, *entry) for t, entry in uncovered.items())}")
