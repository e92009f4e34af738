"""The registry of attribution methods: a name -> its class, filled by :mod:`certattr.methods` when it is imported
(``import certattr`` imports it), so that the engine can build a method from its name without importing the
methods package (which sits above the engine).

    get_method("gradcam", **overrides)     # an instance; names are matched case-insensitively
    method_names()                         # in registration order (the paper's order of the methods)
"""
from __future__ import annotations

from typing import Protocol

import torch

from .validation import check_choice

__all__ = ["METHODS", "Method", "register", "get_method", "method_names"]


class Method(Protocol):
    """What the engine asks of an attribution method (:class:`certattr.methods.base.AttributionMethod` is one)."""

    name: str
    params: dict  #: the hyperparameters

    def config(self) -> dict:
        """Everything that determines the method's output (part of the sample-cache key)."""

    def check_defined(self, model, layer: str) -> None:
        """Raise UndefinedAttribution if the method is not defined for this model and layer."""

    def attribute(self, model, images: torch.Tensor, target, layer: str, *, seed: int = 0,
                  image_id: str = "") -> torch.Tensor:
        """Maps (B, h, w) at the layer's resolution of images (B, 3, H, W) in [0,1] pixel units."""


METHODS: dict[str, type] = {}  #: name -> the method's class


def register(cls):
    """Class decorator: register an attribution method under its ``name``."""
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str, **overrides) -> Method:
    """An instance of the registered method ``name`` with hyperparameter ``overrides``."""
    key = name.lower() if isinstance(name, str) else name
    aliases = {m.lower(): m for m in METHODS}
    check_choice("method", key, list(aliases))
    return METHODS[aliases[key]](**overrides)
