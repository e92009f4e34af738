"""Layer-wise relevance propagation with zennit.

Rules: ZBox on the first convolution at the Input layer (bounds: the normalized values of pixels 0 and 1),
ZPlus on the other convolutions, Epsilon on linear layers, proportional (Norm) redistribution through
average pooling and residual sums, relevance passed unchanged through activations and (merged) BatchNorms.
Relevance starts as one-hot(y) * logit.

Canonizers make a network fit those rules (BatchNorm merged into the preceding convolution; residual sums
``branch + shortcut`` as a zennit ``Sum`` module, so relevance splits in proportion to the two summands;
global average pooling written as ``x.mean(dim=(2, 3))`` as an ``nn.AdaptiveAvgPool2d`` module), and are
undone on exit. Each model declares the ones its architecture needs (``ModelSpec.canonizers``, see
:mod:`certattr.models.canonizers`); LRP applies those, and is undefined for a model with a layer that none
of them covers (the reason names the layer).

The rules are zennit's, but certattr wires them (:class:`RelayedRule`): autograd runs each rule once and
no ordinary backward, and ZPlus, ZBox and Norm-through-a-sum take shortcuts that give the same relevance
with fewer passes (each tested against zennit's own hooks). On 2 CPU cores that makes LRP 2.3-4x
faster than zennit's hooks and brings it near its bound: ZPlus needs the model's convolutions three
times (forward, with W+, transposed), where the gradient needs them twice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine.validation import CertattrError, UndefinedAttribution, check_finite_number
from .base import AttributionMethod, register


@register
class LRP(AttributionMethod):
    """LRP relevance of the layer's tensor (B, C, h, w), summed over channels: (B, h, w), signed.

    At the Final layer, relevance is propagated through the model from that layer on (the head) only.
    Not defined for ViT (``model.spec.lrp`` gives the reason), nor for a model with a layer that the
    canonizers its spec declares do not cover (the reason names the model and the layer). The canonizers
    modify the model's modules in place for the duration of the call (restored on exit, also on errors):
    do not run the same model in another thread meanwhile.
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
        from ..models.canonizers import missing_canonizer  # zennit (and torchvision) load at first use
        missing = missing_canonizer(model.spec, model.net if layer == "input" else model.head)
        if missing is not None:
            raise UndefinedAttribution(f"lrp: {missing}")

    def explain(self, view, target, *, seed, image_id):
        from .lrp_rules import composite  # zennit (and torchvision) load at first use
        with composite(view, self.params["epsilon"]).context(view.module), torch.enable_grad():
            inputs = view.inputs.clone().requires_grad_(True)
            logits = view.forward(inputs)
            start = F.one_hot(target, logits.shape[1]).to(logits) * logits.detach()
            (relevance,) = torch.autograd.grad(logits, inputs, grad_outputs=start)
        return view.reduce_channels(relevance)
