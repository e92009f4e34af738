"""A method at a layer, as chapters and profiles write it: ``"rise@input"`` (one layer) or ``"rise"`` (both layers),
parsed once into a :class:`MethodAt` wherever such a string or a ``method_overrides`` key is read."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..engine.registry import get_method
from ..engine.validation import CertattrError

__all__ = ["LAYER_NAMES", "MethodAt", "method_specs", "overrides_at"]

LAYER_NAMES = ("input", "final")


@dataclass(frozen=True)
class MethodAt:
    """``method`` (a registered name) at ``layer`` ("input" or "final"), or at both layers when ``layer`` is None."""

    method: str
    layer: str | None = None

    @classmethod
    def parse(cls, spec) -> "MethodAt":
        """From ``"name"`` or ``"name@layer"`` (or a MethodAt); a one-line error for an unknown method or layer."""
        if isinstance(spec, MethodAt):
            return spec
        name, at, layer = str(spec).partition("@")
        get_method(name)  # an unknown name is an error naming the methods
        if at and layer not in LAYER_NAMES:
            raise CertattrError(f"{spec!r}: the layer after '@' must be one of {', '.join(LAYER_NAMES)}, not {layer!r}")
        return cls(name, layer or None)

    def covers(self, method: str, layer: str) -> bool:
        """Does this spec name ``method`` at ``layer``?"""
        return method == self.method and self.layer in (None, layer)

    def __str__(self) -> str:
        return self.method + (f"@{self.layer}" if self.layer else "")


def method_specs(specs: Iterable | None) -> tuple[MethodAt, ...]:
    """Every spec of ``specs`` (strings or MethodAt) parsed."""
    return tuple(MethodAt.parse(s) for s in specs or ())


def overrides_at(method_overrides: dict | None, method: str, layer: str) -> dict:
    """The hyperparameters ``method_overrides`` gives ``method`` at ``layer``: its "name" entry, then its
    "name@layer" entry (which wins)."""
    out: dict = {}
    for at, params in sorted(((MethodAt.parse(k), v) for k, v in (method_overrides or {}).items()),
                             key=lambda kv: kv[0].layer is not None):
        if at.covers(method, layer):
            out.update(params or {})
    return out
