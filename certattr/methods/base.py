"""The uniform attribution interface (the registry its classes join is :mod:`certattr.engine.registry`).

Every method is one class with the same call, as in captum::

    method = get_method("gradcam", **overrides)
    maps = method.attribute(model, images, target, layer)      # (B, h, w) at the layer's resolution

``images`` are (B, 3, H, W) in [0,1] pixel units (the model normalizes them); ``target`` is one class
index for all rows or a (B,) tensor. Hyperparameters are class-level ``defaults``; any of them can be
overridden by name, and unknown names are rejected. Methods that are not defined for a model or layer
raise :class:`~certattr.engine.validation.UndefinedAttribution` with the reason.
"""
from __future__ import annotations

from typing import ClassVar

import torch

from ..engine.memo import tensor_key
from ..engine.registry import METHODS, get_method, method_names, register
from ..models.registry import LayerView, LoadedModel
from ..engine.validation import CertattrError, UndefinedAttribution, check_layer, check_model, check_positive_int

__all__ = ["AttributionMethod", "register", "get_method", "method_names", "METHODS", "as_target", "pass_batch",
           "check_pass_batch", "PASS_ELEMENTS", "PASS_ROWS", "shared_input_gradient"]

#: Elements of the layer's tensor per model pass when a method's pass batch is None ("auto"). CPU kernels
#: are fastest at small batches (EfficientNet-Lite0 on 2 cores, images/s at batch 8 / 16 / 64: forward
#: 27.9 / 25.3 / 14.5, forward+backward 17.3 / 12.7 / 4.6), GPUs at large ones.
PASS_ELEMENTS = {"cpu": 8 * 3 * 224 * 224, "cuda": 128 * 3 * 224 * 224}

#: At most this many rows per CPU pass whatever the element budget: small tensors (a 32x32 greyscale digit is
#: 1,024 elements, so the budget alone would give 1,176 rows) run slower per image in very large passes, whose
#: activations no longer fit the caches (the digits CNN on 1 thread, forward ms per image at 32 / 400 rows:
#: 0.043 / 0.127 at 32x32, 0.22 / 0.55 at 64x64; forward+gradient at 32 rows within 1.1x of the fastest at both
#: sizes). The photos (8 rows at 224x224, at most 19 at their Final layers) are not affected.
PASS_ROWS = {"cpu": 32}


def pass_batch(requested: int | None, inputs: torch.Tensor) -> int:
    """Rows of the layer's tensor ``inputs`` (B, C, h, w) per model pass: ``requested``, or for None as many
    as fit the device's element budget :data:`PASS_ELEMENTS` (at least 1, at most :data:`PASS_ROWS`)."""
    if requested is not None:
        return requested
    device = inputs.device.type
    budget = PASS_ELEMENTS.get(device, PASS_ELEMENTS["cuda"])
    return max(1, min(budget // max(1, inputs[0].numel()), PASS_ROWS.get(device, budget)))


def check_pass_batch(name: str, value) -> None:
    """A pass batch is None (auto: :func:`pass_batch`) or a positive integer."""
    if value is not None:
        check_positive_int(name, value)

def as_target(target, batch: int, device) -> torch.Tensor:
    """A (B,) long tensor of class indices from an int or a sequence/tensor of length B."""
    t = torch.as_tensor(target, dtype=torch.long, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise CertattrError(f"target of shape {tuple(t.shape)} is not allowed: give one class index or one per image ({batch})")
    return t


class AttributionMethod:
    """Base class: subclasses set ``name``, ``family``, ``defaults`` and implement :meth:`explain`."""

    name: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]  #: "backprop" | "activation" | "perturbation"
    defaults: ClassVar[dict] = {}
    #: does the method use randomness that must be shared by all noisy copies of an image (RISE masks)?
    uses_seed: ClassVar[bool] = False

    def __init__(self, **overrides):
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise CertattrError(f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; allowed: {allowed}")
        self.params = {**self.defaults, **overrides}
        self.validate_params()

    def validate_params(self) -> None:
        """Check ``self.params``; subclasses raise CertattrError naming the bad one."""

    def config(self) -> dict:
        """Everything that determines the method's output: part of the sample-cache key."""
        return {"method": self.name, **self.params}

    def check_defined(self, model: LoadedModel, layer: str) -> None:
        """Raise UndefinedAttribution if the method is not defined for this model and layer."""

    def undefined_reason(self, model: LoadedModel, layer: str) -> str | None:
        try:
            self.check_defined(model, check_layer(layer))
        except UndefinedAttribution as err:
            return str(err)
        return None

    def attribute(self, model: LoadedModel, images: torch.Tensor, target, layer: str, *,
                  seed: int = 0, image_id: str = "") -> torch.Tensor:
        """Attribution maps (B, h, w) of ``images`` (B, 3, H, W, [0,1] pixel units) for ``target``.

        ``seed`` and ``image_id`` fix the method's own randomness (RISE masks), shared by all rows.
        """
        layer = check_layer(layer)
        check_model(model)
        self.check_defined(model, layer)
        channels = getattr(model, "channels", 3)
        if images.dim() != 4 or images.shape[1] != channels:
            raise CertattrError(f"images of shape {tuple(images.shape)} are not allowed: give (B, {channels}, H, W)")
        images = images.to(model.device, torch.float32)
        target = as_target(target, images.shape[0], model.device)
        with model.execution.autocast(model.device):  # bf16 / fp16 passes where the model was loaded so
            view = model.view(model.normalize(images), layer)
            maps = self.explain(view, target, seed=seed, image_id=image_id)
        return maps.detach().float()

    def explain(self, view: LayerView, target: torch.Tensor, *, seed: int, image_id: str) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({params})"


def target_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits[b, target[b]] for each row: (B,)."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)


def input_gradient(view: LayerView, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, d logit_target / d inputs), both (B, C, h, w); rows are independent (eval mode)."""
    with torch.enable_grad():
        x = view.inputs.clone().requires_grad_(True)
        score = target_logits(view.forward(x), target).sum()
        (grad,) = torch.autograd.grad(score, x)
    return x.detach(), grad


def shared_input_gradient(view: LayerView, target: torch.Tensor) -> torch.Tensor:
    """d logit_target / d inputs (B, C, h, w), computed once per (layer tensor, target) and shared by the methods
    that need it: Grad and IxG explain the same noisy copies (the noise does not depend on the method), so the
    second of them reads the first one's backward pass from the model's gradient memo (same values bit for bit)."""
    memo = view.model.gradient_memo()
    key = tensor_key(f"gradient|{view.model.fingerprint()}|{view.layer}|{bool(view.model.training)}", view.inputs, target)
    grad = memo.get(key)
    if grad is None:
        grad = input_gradient(view, target)[1]
        memo.put(key, grad)
    return grad
