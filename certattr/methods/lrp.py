"""Layer-wise relevance propagation with zennit.

Rules: ZBox on the first convolution at the Input layer (bounds: the normalized values of pixels 0 and 1),
ZPlus on the other convolutions, Epsilon on linear layers, proportional (Norm) redistribution through
average pooling and residual sums, relevance passed unchanged through activations and (merged) BatchNorms.
Relevance starts as one-hot(y) * logit.

Canonizers make the networks fit those rules, and are undone on exit:

* BatchNorm is merged into the preceding convolution (zennit's ``SequentialMergeBatchNorm``, extended to
  timm's ``BatchNormAct2d`` and made an exact identity afterwards, see :class:`MergeBatchNorm`);
* residual sums ``branch + shortcut`` become a zennit ``Sum`` module, so relevance splits in proportion to
  the two summands: zennit's own canonizers for torchvision ResNet blocks, ours for timm EfficientNet
  blocks with a skip (``has_skip``) and for ``certattr.testing.BasicBlock``;
* global average pooling written as ``x.mean(dim=(2, 3))`` (certattr's GAP->linear heads, the tiny test
  ResNet) goes through an ``nn.AdaptiveAvgPool2d`` module.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.layer import Sum
from zennit.core import BasicHook, ParamMod, RemovableHandleList
from zennit.rules import Epsilon, Norm, Pass, ZBox, ZPlus
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import Activation, AvgPool, BatchNorm, Convolution

from ..models import GapLinearHead
from ..testing import BasicBlock, TinyResNet
from ..validation import CertattrError, UndefinedAttribution, check_finite_number
from .base import AttributionMethod, register


# --- canonizers ------------------------------------------------------------------------------------
def _leaves(module: nn.Module):
    """Leaves in forward (definition) order, counting BatchNorm modules as leaves (timm's BatchNormAct2d
    holds its activation as a child)."""
    children = list(module.children())
    if not children or isinstance(module, BatchNorm):
        yield module
        return
    for child in children:
        yield from _leaves(child)


class MergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's SequentialMergeBatchNorm, with two fixes: BatchNorm subclasses with children (timm's
    BatchNormAct2d) are merged too, and the emptied BatchNorm computes exactly the identity (zennit leaves
    running_var = 1, i.e. a factor 1/sqrt(1 + eps))."""

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


def _timm_skip_forward(self, x):
    """timm block with a skip: the block's own forward without the skip, then Sum(shortcut, branch)."""
    self.has_skip = False
    try:
        branch = type(self).forward(self, x)
    finally:
        self.has_skip = True
    return self.canonizer_sum(torch.stack([x, self.drop_path(branch)], dim=-1))


def _basic_block_forward(self, x):
    """certattr.testing.BasicBlock with its residual sum as a Sum module."""
    out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
    return self.relu(self.canonizer_sum(torch.stack([x, out], dim=-1)))


def _gap_head_forward(self, act):
    """GapLinearHead with its pooling as a module."""
    return self.linear(self.canonizer_pool(act).flatten(1))


def _tiny_resnet_forward(self, x):
    """certattr.testing.TinyResNet with its pooling as a module."""
    return self.fc(self.canonizer_pool(self.last(self.block(self.stem(x)))).flatten(1))


def _canonical_attributes(name, module):
    """AttributeCanonizer map: the forward and the new submodule of the modules canonized here."""
    if isinstance(module, (DepthwiseSeparableConv, InvertedResidual)) and module.has_skip:
        return {"forward": _timm_skip_forward.__get__(module), "canonizer_sum": Sum()}
    if isinstance(module, BasicBlock):
        return {"forward": _basic_block_forward.__get__(module), "canonizer_sum": Sum()}
    if isinstance(module, GapLinearHead):
        return {"forward": _gap_head_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
    if isinstance(module, TinyResNet):
        return {"forward": _tiny_resnet_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
    return None


def canonizers() -> list:
    """Fresh canonizers for every architecture certattr registers (each only touches its own module types)."""
    return [MergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer(),
            AttributeCanonizer(_canonical_attributes)]


class RelayedRule:
    """A zennit rule, wired so that autograd runs only the rule.

    zennit's hooks let autograd compute each layer's ordinary gradient and then replace it with the rule's
    relevance: one wasted backward pass per layer. Here the layer runs on a detached copy of its input and
    its output is returned through :class:`_Relay`, whose backward *is* the rule: the relevance of the
    layer's input from the relevance of its output, computed with the rule's own modifiers, mapper and
    reducer (zennit's ``BasicHook`` recipe), or passed through unchanged for ``Pass``. Same relevance as
    zennit's wiring (tested), about half the work.

    ZPlus sums two terms, x+ through W+ and x- through W- (bias zeroed). After a ReLU/ReLU6 the input has no
    negative part and the second term is exactly zero, so it is skipped (one modified pass instead of two).
    """

    def __init__(self, rule):
        self.rule = rule

    def copy(self):
        return RelayedRule(self.rule.copy())

    def terms(self, x: torch.Tensor) -> range:
        """Which of the rule's (input, param, output) modifier triples contribute for input ``x``."""
        if isinstance(self.rule, ZPlus) and bool(x.min() >= 0):
            return range(1)
        return range(len(self.rule.input_modifiers))

    def relevance(self, module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.rule, BasicHook):  # Pass
            return grad_out
        rule, inputs, outputs = self.rule, [], []
        terms = self.terms(x)
        with torch.enable_grad():
            for i in terms:
                term_input = rule.input_modifiers[i](x).requires_grad_()
                with ParamMod.ensure(rule.param_modifiers[i])(module) as modified:
                    outputs.append(rule.output_modifiers[i](modified.forward(term_input)))
                inputs.append(term_input)
            if len(terms) == len(rule.input_modifiers):
                gradients = torch.autograd.grad(outputs, inputs, grad_outputs=rule.gradient_mapper(grad_out, outputs))
                return rule.reducer(inputs, gradients)
            # ZPlus with its x- term dropped: the mapper's first grad_output, the reducer's first product
            (gradient,) = torch.autograd.grad(outputs, inputs, grad_outputs=rule.gradient_mapper(grad_out, outputs)[:1])
        return inputs[0] * gradient

    def register(self, module: nn.Module) -> RemovableHandleList:
        stack = []

        in_place = getattr(module, "inplace", False)

        def pre_forward(module, args):
            stack.append(args[0])
            detached = args[0].detach()
            return (detached.clone() if in_place else detached, *args[1:])  # in place must not touch the original

        def post_forward(module, args, output):
            x = stack.pop()
            if not x.requires_grad:
                return output
            return _Relay.apply(x, output.detach(), lambda x, grad_out: self.relevance(module, x, grad_out))

        return RemovableHandleList([module.register_forward_pre_hook(pre_forward),
                                    module.register_forward_hook(post_forward)])


class _Relay(torch.autograd.Function):
    """Identity on a layer's output; its backward maps the output's relevance to the input's by the rule."""

    @staticmethod
    def forward(ctx, x, output, relevance):
        ctx.save_for_backward(x)
        ctx.relevance = relevance
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return ctx.relevance(x.detach(), grad_out), None, None


def stabilizer(epsilon: float):
    """zennit's default stabilizer, x + eps * (sign(x) + (x == 0)), in two passes over x instead of five
    (bit for bit the same values: x + eps where x >= 0, x - eps where x < 0)."""
    def stabilize(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x + epsilon, x - epsilon)

    return stabilize


def composite(view, epsilon: float, *, relayed: bool = True):
    """The zennit composite for ``view``: ZBox on the first convolution at the Input layer only.

    ``relayed=False`` gives zennit's own wiring and stabilizers of the same rules (slower; the tests'
    reference)."""
    wrap = RelayedRule if relayed else (lambda rule: rule)
    stab = {"stabilizer": stabilizer(1e-6)} if relayed else {}
    layer_map = [
        (Activation, wrap(Pass())),
        (Sum, wrap(Norm(**stab))),
        (AvgPool, wrap(Norm(**stab))),
        (BatchNorm, wrap(Pass())),
        (Convolution, wrap(ZPlus(**stab))),
        (nn.Linear, wrap(Epsilon(epsilon=stabilizer(epsilon) if relayed else epsilon))),
    ]
    if view.layer == "input":
        low, high = (bound.expand_as(view.inputs) for bound in view.model.input_bounds())
        return SpecialFirstLayerMapComposite(layer_map, [(Convolution, wrap(ZBox(low, high, **stab)))],
                                             canonizers=canonizers())
    return LayerMapComposite(layer_map, canonizers=canonizers())


@register
class LRP(AttributionMethod):
    """LRP relevance of the layer's tensor (B, C, h, w), summed over channels: (B, h, w), signed.

    At the Final layer, relevance is propagated through the model from that layer on (the head) only.
    Not defined for ViT (``model.spec.lrp`` gives the reason). The canonizers modify the model's modules
    in place for the duration of the call (restored on exit, also on errors): do not run the same model
    in another thread meanwhile.
    """

    name, title, family = "lrp", "LRP", "backprop"
    defaults = {"epsilon": 1e-6}

    def validate_params(self):
        eps = check_finite_number("epsilon", self.params["epsilon"])
        if eps <= 0:
            raise CertattrError(f"epsilon={self.params['epsilon']!r} is not allowed: the Epsilon rule's stabilizer must be > 0")

    def check_defined(self, model, layer):
        if model.spec.lrp is not None:
            raise UndefinedAttribution(f"lrp: {model.spec.lrp}")

    def explain(self, view, target, *, seed, image_id):
        with composite(view, self.params["epsilon"]).context(view.module), torch.enable_grad():
            inputs = view.inputs.clone().requires_grad_(True)
            logits = view.forward(inputs)
            start = F.one_hot(target, logits.shape[1]).to(logits) * logits.detach()
            (relevance,) = torch.autograd.grad(logits, inputs, grad_outputs=start)
        return view.reduce_channels(relevance)
