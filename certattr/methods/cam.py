"""The CAM family, vectorized over the batch: one forward and (for gradient CAMs) one backward.

A is the layer's tensor (B, C, h, w): the Final activation, or at the Input layer the normalized image
(C = 3 colour channels). g = d y_target / d A.
"""
from __future__ import annotations

import torch

from ..validation import UndefinedAttribution
from .base import AttributionMethod, input_gradient, register


@register
class GradCam(AttributionMethod):
    """ReLU(sum_c mean_hw(g_c) * A_c)."""

    name, title, family = "gradcam", "GradCam", "activation"

    def explain(self, view, target, *, seed, image_id):
        act, grad = input_gradient(view, target)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        return torch.relu((weights * act).sum(dim=1))
