"""Attribution methods behind one call: ``get_method(name).attribute(model, images, target, layer)``."""
from .base import METHODS, AttributionMethod, as_target, get_method, method_names, register
from . import gradient, cam  # noqa: F401  (registration)

__all__ = ["METHODS", "AttributionMethod", "as_target", "get_method", "method_names", "register"]
