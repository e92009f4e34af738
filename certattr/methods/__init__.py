"""Attribution methods behind one call: ``get_method(name).attribute(model, images, target, layer)``."""
from ..engine.registry import METHODS, get_method, method_names, register
from .base import AttributionMethod, as_target
from . import gradient, lrp, cam, perturbation  # noqa: F401  (registers the methods, in the paper's order)

__all__ = ["METHODS", "AttributionMethod", "as_target", "get_method", "method_names", "register"]
