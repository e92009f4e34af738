"""Gradient methods: Grad and IxG (one shared backward pass), Guided Backprop (own), Integrated Gradients (captum).

All of them explain ``view.inputs`` A (B, C, h, w): the normalized image at the Input layer, the Final
activation at the Final layer. y is the target logit; every method handles the B rows in one batched
backward pass (rows are independent, the model is in eval mode).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine.validation import check_positive_int
from .base import AttributionMethod, check_pass_batch, input_gradient, pass_batch, register, shared_input_gradient


def _captum_args(view, target) -> dict:
    """captum's arguments for explaining ``view.inputs`` (a fresh leaf that requires grad) for ``target``."""
    return {"inputs": view.inputs.clone().requires_grad_(True), "target": target,
            "additional_forward_args": view.context or None}


@register
class Grad(AttributionMethod):
    """|d y / d A| summed over channels (captum's ``Saliency`` with ``abs=True``; tested against it). The gradient
    is shared with IxG on the same copies (:func:`~certattr.methods.base.shared_input_gradient`)."""

    name, title, family = "grad", "Grad", "backprop"

    def explain(self, view, target, *, seed, image_id):
        return view.reduce_channels(shared_input_gradient(view, target).abs())


@register
class InputXGrad(AttributionMethod):
    """A * d y / d A, summed over channels, signed (captum's ``InputXGradient``; tested against it), from the
    gradient Grad computed on the same copies where it ran first."""

    name, title, family = "ixg", "IxG", "backprop"

    def explain(self, view, target, *, seed, image_id):
        return view.reduce_channels(view.inputs * shared_input_gradient(view, target))


# --- Guided Backprop -------------------------------------------------------------------------------
class _Guided(torch.autograd.Function):
    """y = fn(x) elementwise; backward: fn'(x) * relu(grad_out) (the guided rule)."""

    @staticmethod
    def forward(ctx, x, fn):
        ctx.fn = fn
        ctx.save_for_backward(x)
        return fn(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad_in,) = torch.autograd.grad(ctx.fn(x), x, grad_out.clamp(min=0))
        return grad_in, None


def _activation_fn(module: nn.Module):
    """The out-of-place elementwise function of a supported activation module, or None."""
    if isinstance(module, nn.ReLU):
        return torch.relu
    if isinstance(module, nn.ReLU6):
        return lambda x: F.hardtanh(x, 0.0, 6.0)
    if isinstance(module, nn.GELU):
        return lambda x: F.gelu(x, approximate=module.approximate)
    return None


@contextmanager
def guided_activations(root: nn.Module):
    """Within the context, every ReLU, ReLU6 and GELU module under ``root`` (in-place or not, reused or not)
    computes its activation out of place and back-propagates with the guided rule; restored on exit."""
    patched = {}  # module -> the instance-level forward it had (None: the class's)
    try:
        for module in root.modules():
            fn = _activation_fn(module)
            if fn is not None:
                patched[module] = module.__dict__.get("forward")
                module.forward = lambda x, fn=fn: _Guided.apply(x, fn)
        yield root
    finally:
        for module, previous in patched.items():
            if previous is None:
                del module.forward
            else:
                module.forward = previous


@register
class GuidedBackprop(AttributionMethod):
    """|GB| summed over channels: the gradient with only positive gradients passed back through activations.

    Own implementation (see :func:`guided_activations`): captum's ``GuidedBackprop`` only overrides
    ``nn.ReLU``, not EfficientNet-Lite's ReLU6 or ViT's GELU; on ReLU networks the two agree (tested).
    Activations applied as functions (not modules) are not guided.
    """

    name, title, family = "gb", "GB", "backprop"

    def explain(self, view, target, *, seed, image_id):
        with guided_activations(view.module):
            _, grad = input_gradient(view, target)
        return view.reduce_channels(grad.abs())


@register
class IntGrad(AttributionMethod):
    """Integrated Gradients from a zero baseline, signed, summed over channels (captum).

    The baseline is 0 in the layer's space: the normalized image 0 (the dataset mean colour) at the Input
    layer, the zero activation at the Final layer. ``steps`` Gauss-Legendre nodes; at most ``pass_batch`` path
    points are evaluated per forward/backward pass (None: a per-device budget, see :func:`.base.pass_batch`; rows are
    chunked so that a chunk's steps fit).
    """

    name, title, family = "intgrad", "IntGrad", "backprop"
    defaults = {"steps": 20, "pass_batch": None}

    def validate_params(self):
        check_positive_int("steps", self.params["steps"])
        check_pass_batch("pass_batch", self.params["pass_batch"])

    def explain(self, view, target, *, seed, image_id):
        from captum.attr import IntegratedGradients  # here: captum loads matplotlib (see Grad.explain)

        steps, batch = self.params["steps"], pass_batch(self.params["pass_batch"], view.inputs)
        ig = IntegratedGradients(view.forward)
        rows = min(batch, view.inputs.shape[0])
        parts = []
        with torch.enable_grad():
            for start in range(0, view.inputs.shape[0], rows):
                chunk = slice(start, start + rows)
                inputs = view.inputs[chunk]
                attr = ig.attribute(inputs, baselines=torch.zeros_like(inputs), target=target[chunk],
                                    additional_forward_args=tuple(c[chunk] for c in view.context) or None,
                                    n_steps=steps, method="gausslegendre", internal_batch_size=batch)
                parts.append(attr.detach())
        return view.reduce_channels(torch.cat(parts))
