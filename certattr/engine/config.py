"""The configuration of a certificate: one frozen, validated object, its defaults written here once.

    config = CertConfig()                              # the paper's settings (n = 100, n0 = 10, tau = 0.75, ...)
    config = CertConfig(n=200, ks=(30, 10))           # validated at once: CertConfig(tau=0.3) raises
    config.replace(tau=0.9)                           # a new, validated config (re-certifying never resamples)
    CertConfig.from_params(chapter_parameters)        # the fields a chapter's parameters cell sets

The engine (:class:`certattr.engine.smoothing.SmoothedAttribution`), the CLI, the chapters and the sweeps build their
certificates from a ``CertConfig``; nobody else writes these defaults. ``n``, ``seed`` and ``chunk_size``
determine the samples (and the cache entry); ``n0``, ``tau``, ``alpha``, ``correction`` and ``ks`` only how they
are certified, so changing them re-reads the cache and never resamples (a K outside the cached top-K ladder,
:func:`certattr.engine.encodings.topk_ladder`, does resample unless raw maps were kept).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .validation import CertattrError, check_alpha, check_correction, check_ks, check_n, check_positive_int, check_tau

__all__ = ["CertConfig", "DEFAULT", "SAMPLING_FIELDS"]

#: the fields that determine the noisy samples (everything else is how they are certified)
SAMPLING_FIELDS = ("n", "seed", "chunk_size")


@dataclass(frozen=True)
class CertConfig:
    """How one certificate is computed (SPEC §1); every field is checked when the object is made.

    n: noisy samples (2 <= n); n0: the first n0 choose each pixel's label (1 <= n0 < n); tau: the agreement
    threshold (0.5 <= tau < 1), radius R = sigma Phi^-1(tau); alpha: the failure probability of the whole map
    (0 < alpha < 1); correction: "bonferroni" or "holm" over the map's pixels; seed: noise and the methods'
    own randomness; chunk_size: noisy copies per model call and per cache file (bounds memory); ks: the top-K
    percentages certified (0 < K <= 100, stored largest first); keep_maps: also keep the float32 maps in the
    sample cache (the compact top-K codes are always kept; raw maps let a new K be certified without
    resampling, and are what :meth:`SmoothedAttribution.sample` returns).
    """

    n: int = 100
    n0: int = 10
    tau: float = 0.75
    alpha: float = 0.001
    correction: str = "bonferroni"
    seed: int = 0
    chunk_size: int = 10
    ks: tuple = (50.0, 25.0, 5.0)
    keep_maps: bool = False

    def __post_init__(self):
        n, n0 = check_n(self.n, self.n0)
        values = {"n": n, "n0": n0, "tau": check_tau(self.tau), "alpha": check_alpha(self.alpha),
                  "correction": check_correction(self.correction), "seed": check_positive_int("seed", self.seed, 0),
                  "chunk_size": check_positive_int("chunk_size", self.chunk_size), "ks": check_ks(self.ks)}
        if not isinstance(self.keep_maps, bool):
            raise CertattrError(f"keep_maps={self.keep_maps!r} is not allowed: give True or False")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes) -> "CertConfig":
        """A new config with ``changes`` (validated); an unknown field name is refused in one line."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise CertattrError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a certificate "
                                f"setting: allowed are {', '.join(field_names())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_params(cls, params: dict, base: "CertConfig | None" = None) -> "CertConfig":
        """The config a chapter's (or the CLI's) parameters give: the fields named in ``params`` replace those of
        ``base`` (default: the defaults); other names in ``params`` are ignored. ``ks`` may be one number."""
        changes = {name: params[name] for name in field_names() if name in params and params[name] is not None}
        if "ks" in changes and not isinstance(changes["ks"], (list, tuple)):
            changes["ks"] = (changes["ks"],)
        return (base or DEFAULT).replace(**changes)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in field_names()}

    def statement(self) -> str:
        """The statistics in words: what the certificate's alpha, correction and n mean."""
        return (f"n = {self.n} noisy samples (the first n0 = {self.n0} choose each pixel's label), one-sided binomial "
                f"test at tau = {self.tau:g}, family-wise failure probability alpha = {self.alpha:g} over the map's "
                f"pixels ({self.correction} correction)")


def field_names() -> tuple:
    return tuple(f.name for f in dataclasses.fields(CertConfig))


DEFAULT = CertConfig()  #: the defaults, written once (above)
