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
from zennit.core import ParamMod
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


class NonNegativeZPlus(ZPlus):
    """zennit's ZPlus, computed with one modified pass instead of two where the layer's input is >= 0.

    ZPlus sums two terms, x+ through W+ and x- through W- (bias zeroed); after a ReLU/ReLU6 the input has
    no negative part, the second term is exactly zero and its forward and gradient passes are skipped.
    The result is the same as ZPlus's (tested); signed inputs take zennit's two-term path.
    """

    def backward(self, module, grad_input, grad_output):
        original_input = self.stored_tensors["input"][0]
        if (original_input < 0).any():
            return super().backward(module, grad_input, grad_output)
        inputs = original_input.clone().requires_grad_()
        with ParamMod.ensure(self.param_modifiers[0])(module) as modified, torch.autograd.enable_grad():
            output = modified.forward(inputs)
        (gradient,) = torch.autograd.grad(output, inputs, grad_outputs=self.gradient_mapper(grad_output[0], [output])[0],
                                          create_graph=grad_output[0].requires_grad)
        relevance = inputs * gradient
        return tuple(relevance if original.shape == relevance.shape else None for original in grad_input)


def composite(view, epsilon: float):
    """The zennit composite for ``view``: ZBox on the first convolution at the Input layer only."""
    layer_map = [
        (Activation, Pass()),
        (Sum, Norm()),
        (AvgPool, Norm()),
        (BatchNorm, Pass()),
        (Convolution, NonNegativeZPlus()),
        (nn.Linear, Epsilon(epsilon=epsilon)),
    ]
    if view.layer == "input":
        low, high = (bound.expand_as(view.inputs) for bound in view.model.input_bounds())
        return SpecialFirstLayerMapComposite(layer_map, [(Convolution, ZBox(low, high))], canonizers=canonizers())
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
