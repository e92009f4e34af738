"""certattr: pixel-level certified attributions via randomized smoothing (Anani et al., ICML 2025).

The main API, flat; the folders below hold it in the pipeline's order (see the README's "How the code is laid
out"): ``engine`` (sparsify, smooth, count, certify; the sample cache), ``models``, ``methods``,
``certificates`` (the related certificates and the attack), ``evaluation`` (metrics, grids, findings), and the
book, course, sweeps and CLI above them. Cheap to import: captum, zennit, torchvision and timm load when a
method or a model first needs them.
"""
from .engine.certificate import ABSTAIN, Certificate
from .engine.certify import CertificationWarning, DegenerateMapWarning, certify_maps
from .engine.config import CertConfig, SamplingConfig
from .engine.noise import Gaussian, UniformBall
from .engine.smoothing import SmoothedAttribution
from .engine.statistics import certified_radius, min_samples_to_certify
from .engine.validation import CertattrError, UndefinedAttribution
from .models.data import bundled_photo, bundled_photos, load_image_file
from .models.labelled import labelled_images
from .models.registry import load_model, model_names
from .models.wrap import wrap
from .methods import get_method, method_names  # importing the methods registers them
from .certificates.sparsified_smoothgrad import TopKCertificate, sparsified_smoothgrad, topk_certificate
from .certificates.cosine import CosineCertificate, certify_cosine, smooth_uniform
from .certificates.settings import MethodAtLayer, SparsifiedSmoothing, TopKCertConfig, UniformSmoothing

__version__ = "0.1.0"

__all__ = [
    # the paper's certificate
    "SmoothedAttribution", "SamplingConfig", "CertConfig", "Certificate", "ABSTAIN", "certify_maps",
    "certified_radius", "min_samples_to_certify", "Gaussian", "UniformBall",
    # models, methods, images
    "load_model", "model_names", "get_method", "method_names", "bundled_photo", "bundled_photos", "load_image_file",
    "labelled_images",
    # the related certificates
    "sparsified_smoothgrad", "topk_certificate", "TopKCertificate", "smooth_uniform", "certify_cosine",
    "CosineCertificate", "MethodAtLayer", "SparsifiedSmoothing", "UniformSmoothing", "TopKCertConfig",
    # errors and warnings
    "CertattrError", "UndefinedAttribution", "CertificationWarning", "DegenerateMapWarning",
    "__version__",
]
