"""The model as the engine uses it: in eval mode, and the class a map explains (one target resolution for all).

:func:`resolve_target` is the one place that turns a caller's ``target`` (a class index, or None for the model's
top-1 class of the clean image) into the class every certificate explains: the Gaussian engine, Sparsified
SmoothGrad, the cosine certificate, the attacks and the CLI call it.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from .validation import CertattrError

__all__ = ["ModelModeWarning", "in_train_mode", "eval_mode", "predict", "resolve_target"]


class ModelModeWarning(UserWarning):
    """The model was in train mode; certattr sampled it in eval mode and restored its mode afterwards."""


def in_train_mode(model) -> bool:
    """Whether some leaf module of ``model`` (a layer that computes: BatchNorm, Dropout, Conv, ...) is in train
    mode. A wrapper's own flag (LoadedModel around an eval-mode network) does not count."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    return any(m.training for m in modules if next(iter(m.children()), None) is None)


@contextlib.contextmanager
def eval_mode(model, warn: str | None = None):
    """Run the body with every submodule of ``model`` in eval mode if some layer is in train mode (see
    :func:`in_train_mode`), then restore each module's own mode; otherwise change nothing.

    ``warn``: if given and the model was in train mode, a one-line ModelModeWarning naming this model.
    """
    if not in_train_mode(model):
        yield model
        return
    training = [m for m in model.modules() if m.training]
    if warn is not None:
        warnings.warn(f"model {warn!r} is in train mode: certattr samples it in eval mode (BatchNorm running "
                      f"statistics, no dropout; its buffers are not changed) and restores its mode afterwards",
                      ModelModeWarning, stacklevel=4)
    try:
        for m in training:
            m.training = False
        yield model
    finally:
        for m in training:
            m.training = True


@torch.no_grad()
def predict(model: torch.nn.Module, image: torch.Tensor) -> tuple[int, float]:
    """(top-1 class, its softmax probability) of the clean image (3, H, W) in [0,1], in eval mode."""
    with eval_mode(model):
        probs = model(image.unsqueeze(0).to(model.device)).softmax(dim=1)[0]
    top = int(probs.argmax())
    return top, float(probs[top])


def resolve_target(model, image: torch.Tensor, target) -> int:
    """The class to explain: ``target`` checked against the model's classes, or (None) the top-1 class of the
    clean ``image`` (3, H, W) in [0,1], predicted in eval mode."""
    if target is None:
        return predict(model, image)[0]
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise CertattrError(f"target={target!r} is not allowed: give a class index or None for the top-1 class")
    classes = _classes(model, image)
    if not 0 <= int(target) < classes:
        raise CertattrError(f"target={target} is not allowed: the model has classes 0..{classes - 1}")
    return int(target)


def _classes(model, image: torch.Tensor) -> int:
    """The number of classes: ``model.head_classes()`` for a LoadedModel, else the width of one forward pass."""
    if hasattr(model, "head_classes"):
        with eval_mode(model):
            return int(model.head_classes())
    with torch.no_grad(), eval_mode(model):
        device = getattr(model, "device", None) or next(model.parameters()).device
        return int(model(image.unsqueeze(0).to(device)).shape[1])
