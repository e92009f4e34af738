"""Backpropagation methods computed with captum: Grad (Saliency) and Input x Gradient."""
from __future__ import annotations

import torch
from captum.attr import InputXGradient, Saliency

from .base import AttributionMethod, register


def _captum_kwargs(view, target):
    return {"target": target, "additional_forward_args": view.context or None}


@register
class Grad(AttributionMethod):
    """|d y / d A| summed over channels (captum ``Saliency`` with ``abs=True``)."""

    name, title, family = "grad", "Grad", "backprop"

    def explain(self, view, target, *, seed, image_id):
        with torch.enable_grad():
            attr = Saliency(view.forward).attribute(view.inputs, abs=True, **_captum_kwargs(view, target))
        return view.reduce_channels(attr)


@register
class InputXGrad(AttributionMethod):
    """A * d y / d A, summed over channels, signed (captum ``InputXGradient``)."""

    name, title, family = "ixg", "IxG", "backprop"

    def explain(self, view, target, *, seed, image_id):
        with torch.enable_grad():
            attr = InputXGradient(view.forward).attribute(view.inputs, **_captum_kwargs(view, target))
        return view.reduce_channels(attr)
