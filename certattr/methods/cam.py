"""The CAM family, vectorized over the batch.

A is the layer's tensor (B, C, h, w): the Final activation, or at the Input layer the normalized image
(C = 3 colour channels). y is the target logit and g = d y / d A. Every map is (B, h, w), >= 0.
Gradient CAMs need one batched forward and backward; AblationCam batches its C ablated forwards.
"""
from __future__ import annotations

import torch

from ..models.registry import GapLinearHead
from ..engine.validation import UndefinedAttribution
from .base import AttributionMethod, check_pass_batch, input_gradient, pass_batch, register, target_logits


def _weighted_map(weights: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """ReLU(sum_c w_c A_c) for weights (B, C) or (B, C, h, w) and A (B, C, h, w)."""
    if weights.dim() == 2:
        weights = weights[:, :, None, None]
    return torch.relu((weights * act).sum(dim=1))


def _divide_or_zero(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den != 0, else 0 (broadcasting)."""
    nonzero = den != 0
    return torch.where(nonzero, num / torch.where(nonzero, den, torch.ones_like(den)), torch.zeros_like(num))


@register
class Cam(AttributionMethod):
    """ReLU(sum_c w_{y,c} A_c), with w the weights of the GAP->linear classifier (Final layer only)."""

    name, title, family = "cam", "Cam", "activation"

    def check_defined(self, model, layer):
        if layer != "final":
            raise UndefinedAttribution("cam: Cam is defined only at the Final layer (it weights the channels of the "
                                       "last feature map by the classifier), not at the Input layer")
        if model.gap_linear is None:
            raise UndefinedAttribution(f"cam: {model.spec.head_note or 'the head is not GAP->linear'}")

    def explain(self, view, target, *, seed, image_id):
        return _weighted_map(view.gap_linear.weight[target], view.inputs)


@register
class GradCam(AttributionMethod):
    """ReLU(sum_c mean_hw(g_c) A_c)."""

    name, title, family = "gradcam", "GradCam", "activation"

    def explain(self, view, target, *, seed, image_id):
        act, grad = input_gradient(view, target)
        return _weighted_map(grad.mean(dim=(2, 3)), act)


@register
class GradCamPP(AttributionMethod):
    """GradCam++ in the stable form (no exp(logit)): ReLU(sum_c w_c A_c) with w_c = sum_hw alpha_c ReLU(g_c),
    alpha = g^2 / (2 g^2 + sum_hw(A_c) g^3), and alpha = 0 where that denominator is 0.

    This is the standard alpha of Chattopadhay et al. with the exponential's derivatives cancelled
    analytically (the reference evaluates exp(logit), which overflows).
    """

    name, title, family = "gradcampp", "GradCam++", "activation"

    def explain(self, view, target, *, seed, image_id):
        act, grad = input_gradient(view, target)
        g2 = grad.pow(2)
        denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * grad.pow(3)
        alpha = _divide_or_zero(g2, denom)
        return _weighted_map((alpha * torch.relu(grad)).sum(dim=(2, 3)), act)


@register
class LayerCam(AttributionMethod):
    """ReLU(sum_c ReLU(g_c) A_c), elementwise weights."""

    name, title, family = "layercam", "LayerCam", "activation"

    def explain(self, view, target, *, seed, image_id):
        act, grad = input_gradient(view, target)
        return _weighted_map(torch.relu(grad), act)


@register
class AblationCam(AttributionMethod):
    """ReLU(sum_c w_c A_c) with w_c = (y - y_{A_c=0}) / y (w = 0 for rows whose y is exactly 0).

    The B*C ablated copies (one channel set to 0 in the layer's space) go through the model from the
    layer on, ``pass_batch`` copies per forward pass (None: a per-device budget, see :func:`.base.pass_batch`), under
    ``torch.inference_mode``.
    """

    name, title, family = "ablationcam", "AblationCam", "activation"
    defaults = {"pass_batch": None}

    def validate_params(self):
        check_pass_batch("pass_batch", self.params["pass_batch"])

    def explain(self, view, target, *, seed, image_id):
        act = view.inputs
        rows, channels = act.shape[:2]
        batch = pass_batch(self.params["pass_batch"], act)
        with torch.inference_mode():
            y = target_logits(view.forward(act), target)
            if isinstance(view.module, GapLinearHead) and not view.context:
                # closed form: zeroing channel c removes W[y, c] * mean_hw(A_c) from the logit
                drop = view.module.linear.weight[target] * act.mean(dim=(2, 3))
                weights = _divide_or_zero(drop, y[:, None])
                return _weighted_map(weights, act)
            pair_row = torch.arange(rows, device=act.device).repeat_interleave(channels)
            pair_channel = torch.arange(channels, device=act.device).repeat(rows)
            ablated = torch.empty(rows * channels, device=act.device)
            for start in range(0, rows * channels, batch):
                b = pair_row[start:start + batch]
                c = pair_channel[start:start + batch]
                inputs = act[b]  # advanced indexing: a copy
                inputs[torch.arange(len(b), device=act.device), c] = 0
                logits = view.forward(inputs, *(ctx[b] for ctx in view.context))
                ablated[start:start + len(b)] = target_logits(logits, target[b])
            weights = _divide_or_zero(y[:, None] - ablated.view(rows, channels), y[:, None])
        return _weighted_map(weights, act)
