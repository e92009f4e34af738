"""The attack's differentiable model and maps: a softplus copy of the model, and grad / IxG with a graph.

The attack loss (and its second-order gradient through the attribution) is computed on the surrogate; every
success criterion on the real model (:func:`predicted_class`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...engine.validation import CertattrError, check_choice, check_finite_number
from ...methods import get_method
from ...models.registry import LoadedModel, check_layer

__all__ = ["DIFFERENTIABLE_METHODS", "SmoothReLU6", "smooth_surrogate", "no_surrogate", "first_order",
           "differentiable_maps", "predicted_class", "registry_maps", "check_method_and_layer"]

#: the methods whose maps :func:`differentiable_maps` computes with a graph
DIFFERENTIABLE_METHODS = ("grad", "ixg")


class SmoothReLU6(nn.Module):
    """softplus_beta(x) - softplus_beta(x - 6): a smooth ReLU6."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.softplus(x, beta=self.beta) - F.softplus(x - 6.0, beta=self.beta)


def _check_beta(beta) -> float:
    value = check_finite_number("beta", beta)
    if value <= 0:
        raise CertattrError(f"beta={beta!r} is not allowed: the softplus sharpness must be > 0")
    return value


def smooth_surrogate(model: LoadedModel, beta: float = 10.0) -> LoadedModel:
    """A deep copy of ``model`` with nn.ReLU -> Softplus(beta) and nn.ReLU6 -> SmoothReLU6(beta).

    Shared modules stay shared (one replacement per original module). ``surrogate.swapped`` counts the
    replaced modules (0 for models without ReLU modules, e.g. ViT with GELU; functional relus in a
    ``forward`` cannot be swapped).
    """
    beta = _check_beta(beta)
    sur = copy.deepcopy(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(sur.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):  # ReLU6 subclasses Hardtanh, test it first
                new = replaced.setdefault(id(child), SmoothReLU6(beta))
            elif isinstance(child, nn.ReLU):
                new = replaced.setdefault(id(child), nn.Softplus(beta=beta))
            else:
                continue
            setattr(parent, name, new)
    sur.swapped = len(replaced)
    return sur.eval()


def no_surrogate(model: LoadedModel) -> LoadedModel:
    """The model itself as the attack's differentiable model (``beta=None``): right when the attribution is
    first-order in the input (IxG at the Final layer of a GAP->linear head is linear in the features), where
    a softplus copy would only bias the gradient."""
    model.swapped = 0
    return model


def first_order(model: LoadedModel, method: str, layer: str) -> bool:
    """Whether the map is a first-order function of the input, so its gradient needs no surrogate: IxG at the
    Final layer of a GAP->linear head (d logit / d A = W_y / hw is constant, the map is linear in A)."""
    return method == "ixg" and layer == "final" and getattr(model, "gap_linear", None) is not None


def check_method_and_layer(method: str, layer: str) -> tuple[str, str]:
    """(method, layer), validated: a method the attack can differentiate and a layer of the registry."""
    method = check_choice("method", method, DIFFERENTIABLE_METHODS)
    return method, check_layer(layer)


def differentiable_maps(model: LoadedModel, images: torch.Tensor, target: torch.Tensor, method: str,
                        layer: str) -> torch.Tensor:
    """(B, h, w) maps of "grad" (|dy/dA| summed over channels) or "ixg" (A dy/dA, channel-reduced as the
    model's layer view does) of images (B, 3, H, W) in [0,1], differentiable w.r.t. the images.

    The same quantities as the registry's methods (captum Saliency / InputXGradient), computed with
    ``create_graph=True`` so that an attack can take their gradient.
    """
    method = check_choice("method", method, DIFFERENTIABLE_METHODS)
    layer = check_layer(layer)
    with torch.enable_grad():
        if not images.requires_grad:
            images = images.detach().clone().requires_grad_(True)
        xn = model.normalize(images)
        if layer == "input":
            a = xn
            logits = model.net(xn)
            reduce = "sum"
        else:
            a, context = model.features(xn)
            logits = model.logits_from_final(a, *context)
            reduce = model.spec.final_reduce
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, a, create_graph=True)
    attr = grad.abs() if method == "grad" else a * grad
    return attr.abs().sum(dim=1) if reduce == "l1" else attr.sum(dim=1)


@torch.no_grad()
def predicted_class(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Top-1 classes (B,) of images (B, 3, H, W) in [0,1]."""
    return model(images.to(model.device)).argmax(dim=1).cpu()


def registry_maps(model: LoadedModel, images: torch.Tensor, target, method: str, layer: str) -> torch.Tensor:
    """(B, h, w) maps of the registry's ``method`` (no graph), on the CPU: what the attacks measure."""
    return get_method(method).attribute(model, images, target, layer).cpu()
