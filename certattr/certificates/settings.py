"""The settings objects of the certificates, each one frozen and validated when it is made.

    attribution = MethodAtLayer("ixg", "final")                  # the map: a method at a layer
    certificate = PixelCertificateSettings(attribution, 0.25, SamplingConfig(n=200), CertConfig(ks=(50,)))
    smoothing = SparsifiedSmoothing(sigma=0.25, tau_frac=0.1)     # Levine et al.'s Sparsified SmoothGrad
    ball = UniformSmoothing(r=2.0, M=1.0)                         # the cosine certificate's uniform smoothing
    claim = TopKCertConfig(k=20, eps=0.1, eta=0.95)               # what a top-k certificate certifies
    smoothing.replace(tau_frac=0.2)                               # a new, validated object

Which samples are drawn (n, seed, chunk_size) is always a :class:`certattr.engine.config.SamplingConfig`, and how
the paper's certificate tests them a :class:`certattr.engine.config.CertConfig`; these objects add what the
certificates and the attacks need besides. Noise levels and radii are in [0,1] pixel units (l2 over all of the
input's values).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.config import DEFAULT_CERT, DEFAULT_SAMPLING, CertConfig, SamplingConfig, _Settings, check_fits
from ..engine.sparsify import check_fraction
from ..engine.validation import (CertattrError, check_choice, check_finite_number, check_layer, check_positive_int,
                                 check_sigma)
from ..methods import get_method, method_names
from .checks import check_eps, check_eta, check_radius, check_settings

__all__ = ["MethodAtLayer", "PixelCertificateSettings", "SparsifiedSmoothing", "UniformSmoothing", "TopKCertConfig",
           "NORM_BOUNDS"]

NORM_BOUNDS = ("normalize", "clip")  #: how the cosine certificate bounds each map's norm by M


@dataclass(frozen=True)
class MethodAtLayer(_Settings):
    """An attribution method at one layer: the map that is smoothed, certified or attacked.

    ``method``: a registered method's name ("grad", "ixg", "gradcam", ...; any case) or a method object (what
    :func:`certattr.methods.get_method` returns); ``layer``: "input" (maps over the normalized image, H x W) or
    "final" (over the model's Final activation, h x w); any case, kept in lower case.
    """

    method: Any = "grad"
    layer: str = "input"

    what = "method-at-layer setting"

    def __post_init__(self):
        if isinstance(self.method, str):
            check_choice("method", self.method.lower(), [name.lower() for name in method_names()])
        elif not (hasattr(self.method, "attribute") and hasattr(self.method, "config")):
            raise CertattrError(f"method={self.method!r} is not allowed: give a registered method's name (e.g. 'grad') "
                                f"or a method object (certattr.get_method(name))")
        object.__setattr__(self, "layer", check_layer(self.layer))

    def method_object(self):
        """The method itself: the registry's instance for a name, else the object given."""
        return get_method(self.method) if isinstance(self.method, str) else self.method


@dataclass(frozen=True)
class PixelCertificateSettings(_Settings):
    """Everything the paper's pixel certificate of one map is made with, so that it can be made again.

    ``attribution``: the method at its layer; ``sigma``: the Gaussian noise level (> 0, [0,1] pixel units), so the
    radius is R = sigma Phi^-1(tau); ``sampling``: the noisy samples (n, seed, chunk_size); ``cert``: how they are
    certified (n0, tau, alpha, correction, ks). The samples must fit the certificate: 1 <= n0 < n.
    """

    attribution: MethodAtLayer
    sigma: float
    sampling: SamplingConfig = DEFAULT_SAMPLING
    cert: CertConfig = DEFAULT_CERT

    what = "pixel certificate setting"

    def __post_init__(self):
        check_settings("attribution", self.attribution, MethodAtLayer)
        check_settings("sampling", self.sampling, SamplingConfig)
        check_settings("cert", self.cert, CertConfig)
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        check_fits(self.sampling, self.cert)

    def check_describes(self, certificate) -> None:
        """Raise one line unless ``certificate`` (a :class:`certattr.engine.certificate.Certificate`) has these
        settings' sigma, n, n0, tau, alpha, correction and ks."""
        mine = {"sigma": self.sigma, "n": self.sampling.n, "n0": self.cert.n0, "tau": self.cert.tau,
                "alpha": self.cert.alpha, "correction": self.cert.correction, "ks": self.cert.ks}
        theirs = {"sigma": float(certificate.sigma), "n": int(certificate.n), "n0": int(certificate.n0),
                  "tau": float(certificate.tau), "alpha": float(certificate.alpha),
                  "correction": certificate.correction, "ks": tuple(float(k) for k in certificate.ks)}
        differ = [name for name in mine if mine[name] != theirs[name]]
        if differ:
            found = ", ".join(f"{name}={theirs[name]!r}" for name in differ)
            given = ", ".join(f"{name}={mine[name]!r}" for name in differ)
            raise CertattrError(f"the clean certificate ({found}) is not allowed with these settings ({given}): give "
                                f"the certificate that these settings make")


@dataclass(frozen=True)
class SparsifiedSmoothing(_Settings):
    """Levine et al.'s Sparsified SmoothGrad: how each noisy map is sparsified before the maps are averaged.

    ``sigma``: the Gaussian noise level (> 0, [0,1] pixel units); ``tau_frac``: the share of the map's d elements
    set to 1 in each sample, k_s = ceil(tau_frac d) (0 < tau_frac <= 1); ``gamma_frac``: None for the hard top-k_s
    sets, else the relaxed variant, linear between the k_s-th and the ceil(gamma_frac d)-th largest value
    (0 < gamma_frac < tau_frac).
    """

    sigma: float
    tau_frac: float = 0.1
    gamma_frac: float | None = None

    what = "Sparsified SmoothGrad setting"

    def __post_init__(self):
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        object.__setattr__(self, "tau_frac", check_fraction("tau_frac", self.tau_frac))
        if self.gamma_frac is not None:
            gamma = check_fraction("gamma_frac", self.gamma_frac)
            if gamma >= self.tau_frac:
                raise CertattrError(f"gamma_frac={gamma!r} is not allowed with tau_frac={self.tau_frac!r}: the "
                                    f"clipped top fraction must satisfy 0 < gamma_frac < tau_frac")
            object.__setattr__(self, "gamma_frac", gamma)


@dataclass(frozen=True)
class UniformSmoothing(_Settings):
    """The cosine certificate's smoothing: noise uniform in an l2 ball, each map's norm bounded by M.

    ``r``: the ball's radius (> 0, l2 over the input's values, [0,1] pixel units); ``M``: the bound on each map's
    norm (> 0); ``bound``: "normalize" (every nonzero map rescaled to norm M) or "clip" (only maps longer than M
    shortened to M).
    """

    r: float
    M: float = 1.0
    bound: str = "normalize"

    what = "uniform smoothing setting"

    def __post_init__(self):
        object.__setattr__(self, "r", check_radius(self.r))
        M = check_finite_number("M", self.M)
        if M <= 0:
            raise CertattrError(f"M={self.M!r} is not allowed: the bound on ||g|| must be > 0")
        object.__setattr__(self, "M", M)
        check_choice("bound", self.bound, NORM_BOUNDS)


@dataclass(frozen=True)
class TopKCertConfig(_Settings):
    """What Levine et al.'s top-k certificate certifies: how many of the k top elements of the estimated map stay
    in the top k at every perturbation of l2 size up to eps, with probability at least eta.

    ``k``: the top elements (an integer >= 1, at most the map's d elements); ``eps``: the perturbation size (>= 0,
    [0,1] pixel units); ``eta``: the success probability over the noise samples (0 < eta < 1).
    """

    k: int
    eps: float
    eta: float = 0.95

    what = "top-k certificate setting"

    def __post_init__(self):
        object.__setattr__(self, "k", check_positive_int("k", self.k))
        object.__setattr__(self, "eps", check_eps(self.eps))
        object.__setattr__(self, "eta", check_eta(self.eta))
