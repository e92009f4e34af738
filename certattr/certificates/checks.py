"""The one-line checks of the certificates' parameters (each raises :class:`CertattrError` naming the parameter, the
value it got and what is allowed), shared by the certificates, their settings objects and the attacks."""
from __future__ import annotations

from ..engine.validation import CertattrError, check_interval

__all__ = ["check_eps", "check_eta", "check_radius", "check_settings"]


def check_eps(eps, name: str = "eps") -> float:
    """An l2 perturbation size in [0,1] pixel units: finite and >= 0."""
    return check_interval(name, eps, 0, low_open=False, what="the perturbation size",
                          unit="(l2 norm in [0,1] pixel units)")


def check_eta(eta) -> float:
    """The success probability of Levine et al.'s certificate: 0 < eta < 1."""
    return check_interval("eta", eta, 0, 1, what="the success probability")


def check_radius(r, name: str = "r") -> float:
    """The radius of the uniform smoothing ball, l2 in [0,1] pixel units: finite and > 0."""
    return check_interval(name, r, 0, what="the smoothing radius", unit="(l2, [0,1] pixel units)")


def check_settings(name: str, value, kind: type):
    """``value`` itself when it is a ``kind`` (a settings object), else one line naming the class to give."""
    if not isinstance(value, kind):
        raise CertattrError(f"{name}={value!r} is not allowed: give a {kind.__name__} "
                            f"({kind.__module__}.{kind.__name__})")
    return value
