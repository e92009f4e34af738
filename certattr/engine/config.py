"""The two settings of a certificate, each one frozen, validated object, their defaults written here once.

    sampling = SamplingConfig(n=200)                   # which samples: n, seed, chunk size (and the cache entry)
    cert = CertConfig(tau=0.9, ks=(30, 10))            # how they are certified: n0, tau, alpha, correction, ks
    cert.replace(alpha=0.01)                           # a new, validated config (re-certifying never resamples)
    SamplingConfig.from_params(params), CertConfig.from_params(params)   # the fields a chapter or the CLI sets
    check_fits(sampling, cert)                         # 1 <= n0 < n: where both meet (the engine's certify)

A :class:`SamplingConfig` (with the engine's noise, :mod:`certattr.engine.noise`) decides the noisy samples:
``n``, ``seed`` and ``chunk_size`` (the model's batch, part of the cache key); ``keep_maps`` only what the sample
cache keeps. A :class:`CertConfig` decides how the samples are certified, so changing it re-reads the cache and
never resamples (a K outside the cached top-K ladder, :func:`certattr.engine.encodings.topk_ladder`, does
resample unless raw maps were kept). The related certificates (Sparsified SmoothGrad, the cosine certificate)
read samples only: they build a SamplingConfig and no CertConfig.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .validation import (CertattrError, check_alpha, check_correction, check_ks, check_n, check_positive_int,
                         check_sample_count, check_tau)

__all__ = ["SamplingConfig", "CertConfig", "DEFAULT_SAMPLING", "DEFAULT_CERT", "check_fits", "route_settings"]


class _Settings:
    """What both settings objects share: validated replacement, construction from parameters, a dict."""

    what = "setting"  #: how an error message names a field

    @classmethod
    def field_names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes):
        """A new config with ``changes`` (validated); an unknown field name is refused in one line."""
        fields = self.field_names()
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise CertattrError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a {self.what}: "
                                f"allowed are {', '.join(fields)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_params(cls, params: dict, base=None):
        """The config a chapter's (or the CLI's) parameters give: the fields named in ``params`` replace those of
        ``base`` (default: the defaults); other names in ``params`` are ignored."""
        changes = {name: params[name] for name in cls.field_names() if params.get(name) is not None}
        return (base or cls()).replace(**changes)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.field_names()}


@dataclass(frozen=True)
class SamplingConfig(_Settings):
    """Which noisy samples are drawn; every field is checked when the object is made.

    n: noisy samples (1 <= n; a certificate needs n > n0); seed: the noise and the methods' own randomness;
    chunk_size: noisy copies per model call and per cache file (bounds memory; part of the cache key, since the
    model's batch changes maps at float rounding); keep_maps: also keep the float32 maps in the sample cache (the
    compact encodings are always kept; raw maps let a new K be certified without resampling, and are what
    :meth:`certattr.engine.smoothing.SmoothedAttribution.sample` returns).
    """

    n: int = 100
    seed: int = 0
    chunk_size: int = 10
    keep_maps: bool = False

    what = "sampling setting"

    def __post_init__(self):
        values = {"n": check_sample_count(self.n), "seed": check_positive_int("seed", self.seed, 0),
                  "chunk_size": check_positive_int("chunk_size", self.chunk_size)}
        if not isinstance(self.keep_maps, bool):
            raise CertattrError(f"keep_maps={self.keep_maps!r} is not allowed: give True or False")
        for name, value in values.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class CertConfig(_Settings):
    """How the samples are certified; every field is checked when the object is made.

    n0: the first n0 samples choose each pixel's label (1 <= n0 < n, checked with the samples' n by
    :func:`check_fits`); tau: the agreement threshold (0.5 <= tau < 1), radius R = sigma Phi^-1(tau); alpha: the
    failure probability of the whole map (0 < alpha < 1); correction: "bonferroni" or "holm" over the map's
    pixels; ks: the top-K percentages certified (0 < K <= 100, stored largest first).
    """

    n0: int = 10
    tau: float = 0.75
    alpha: float = 0.001
    correction: str = "bonferroni"
    ks: tuple = (50.0, 25.0, 5.0)

    what = "certificate setting"

    def __post_init__(self):
        values = {"n0": check_positive_int("n0", self.n0, 1), "tau": check_tau(self.tau),
                  "alpha": check_alpha(self.alpha), "correction": check_correction(self.correction),
                  "ks": check_ks(self.ks)}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_params(cls, params: dict, base: "CertConfig | None" = None) -> "CertConfig":
        """As :meth:`_Settings.from_params`; ``ks`` may be one number."""
        if params.get("ks") is not None and not isinstance(params["ks"], (list, tuple)):
            params = {**params, "ks": (params["ks"],)}
        return super().from_params(params, base)

    def statement(self, n: int) -> str:
        """The statistics in words, for ``n`` samples: what the certificate's alpha, correction and n mean."""
        return (f"n = {n} noisy samples (the first n0 = {self.n0} choose each pixel's label), one-sided binomial "
                f"test at tau = {self.tau:g}, family-wise failure probability alpha = {self.alpha:g} over the map's "
                f"pixels ({self.correction} correction)")


def check_fits(sampling: SamplingConfig, cert: CertConfig) -> None:
    """Raise one line naming both unless the samples can be certified: 1 <= n0 < n."""
    check_n(sampling.n, cert.n0)


def route_settings(sampling: SamplingConfig | None, cert: CertConfig | None,
                   settings: dict) -> tuple[SamplingConfig, CertConfig]:
    """(sampling, cert) with each keyword of ``settings`` replacing the field of the object it belongs to
    (``n=200, tau=0.9``); None stands for the defaults. A keyword of neither is refused in one line."""
    for name, value, kind in (("sampling", sampling, SamplingConfig), ("cert", cert, CertConfig)):
        if value is not None and not isinstance(value, kind):
            raise CertattrError(f"{name}={value!r} is not allowed: give a certattr.{kind.__name__} (or keywords "
                                f"such as n=..., tau=...)")
    sampling, cert = sampling or DEFAULT_SAMPLING, cert or DEFAULT_CERT
    unknown = sorted(set(settings) - set(SamplingConfig.field_names()) - set(CertConfig.field_names()))
    if unknown:
        raise CertattrError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a setting: allowed are "
                            f"sigma, {', '.join(SamplingConfig.field_names() + CertConfig.field_names())}")
    of_sampling = {k: v for k, v in settings.items() if k in SamplingConfig.field_names()}
    of_cert = {k: v for k, v in settings.items() if k in CertConfig.field_names()}
    return (sampling.replace(**of_sampling) if of_sampling else sampling,
            cert.replace(**of_cert) if of_cert else cert)


DEFAULT_SAMPLING = SamplingConfig()  #: the paper's sampling, written once (above)
DEFAULT_CERT = CertConfig()  #: the paper's certificate settings, written once (above)
