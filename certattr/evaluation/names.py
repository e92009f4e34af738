"""Display names of the book's tables and texts: method ids as titles, layers capitalized, K as an integer
where it is one."""
from __future__ import annotations

from ..methods import get_method

__all__ = ["method_title", "layer_title", "k_text"]


def method_title(name: str) -> str:
    """The display name of a method id ("gradcampp" -> "GradCam++")."""

    try:
        return get_method(name).title
    except Exception:  # not a method id: leave it
        return str(name)


def layer_title(layer: str) -> str:
    """"input" -> "Input", "final" -> "Final"; anything else unchanged."""
    return {"input": "Input", "final": "Final"}.get(str(layer), str(layer))


def k_text(k) -> str:
    """K as the book writes it: an integer when it is one (50, not 50.0)."""
    k = float(k)
    return f"{int(k)}" if k.is_integer() else f"{k:g}"
