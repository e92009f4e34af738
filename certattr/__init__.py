"""certattr: pixel-level certified attributions via randomized smoothing (Anani et al., ICML 2025)."""
from .engine.certify import CertificationWarning, DegenerateMapWarning, certify_maps
from .engine.config import CertConfig, SamplingConfig
from .engine.statistics import certified_radius, min_samples_to_certify
from .engine.noise import Gaussian, UniformBall
from .engine.certificate import ABSTAIN, Certificate
from .engine.validation import CertattrError, UndefinedAttribution
from . import methods as _methods  # noqa: F401  (registers the attribution methods)

__version__ = "0.1.0"

__all__ = ["ABSTAIN", "CertConfig", "SamplingConfig", "Certificate", "CertattrError", "Gaussian", "UniformBall", "CertificationWarning", "DegenerateMapWarning", "UndefinedAttribution",
           "certified_radius", "certify_maps", "min_samples_to_certify", "__version__"]
