"""The attacks' settings, each one frozen and validated when it is made.

    effort = AttackSettings(steps=20, restarts=2)                  # the loop every objective shares
    pixel = PixelAttackSettings(steps=10, n_attack=4)              # the certified-pixel attack (its own defaults)
    targets = TargetSettings(k=25, n_targets=16, eval_n=400)       # which pixels it targets, how flips are measured
    pixel.replace(smoothed=False, n_attack=1)                      # a new, validated object

The attacked map is a :class:`certattr.certificates.settings.MethodAtLayer`; the samples an attack measures with
are a :class:`certattr.engine.config.SamplingConfig` (its seed is the attack's seed), and the certificate the
certified-pixel attack attacks a :class:`certattr.certificates.settings.PixelCertificateSettings`. eps, the l2
size of the perturbation ([0,1] pixel units), is given to each attack beside its settings: it is what a sweep
varies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...engine.config import DEFAULT_CERT, DEFAULT_SAMPLING, SamplingConfig, _Settings
from ...engine.validation import (CertattrError, check_choice, check_finite_number, check_interval,
                                  check_ks, check_positive_int)
from ..settings import MethodAtLayer, PixelCertificateSettings

__all__ = ["AttackSettings", "PixelAttackSettings", "TargetSettings", "TARGET_GROUPS", "DEFAULT_ATTACK",
           "DEFAULT_ATTACK_SAMPLING", "DEFAULT_ATTACKED_CERTIFICATE", "AUTO_BETA"]

#: the groups of pixels the certified-pixel attack can target
TARGET_GROUPS = ("certified", "uncertified")
#: the softplus sharpness that beta="auto" gives where the map is not first-order in the input
AUTO_BETA = 10.0


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise CertattrError(f"{name}={value!r} is not allowed: give True or False")
    return bool(value)


def _check_beta(beta):
    if beta is None or (isinstance(beta, str) and beta == "auto"):
        return beta
    if isinstance(beta, str):
        raise CertattrError(f"beta={beta!r} is not allowed: give a softplus sharpness > 0, None (the model itself) "
                            f"or 'auto'")
    value = check_finite_number("beta", beta)
    if value <= 0:
        raise CertattrError(f"beta={beta!r} is not allowed: the softplus sharpness must be > 0")
    return value


def _check_positive(name: str, value, what: str) -> float:
    number = check_finite_number(name, value)
    if number <= 0:
        raise CertattrError(f"{name}={value!r} is not allowed: {what} must be > 0")
    return number


@dataclass(frozen=True)
class AttackSettings(_Settings):
    """How hard an attack tries: the settings of the loop every objective shares (:class:`.loop.AttackLoop`).

    ``steps``: normalised gradient steps per restart (>= 1); ``restarts``: random starts on the eps-sphere (>= 1),
    the best of which is returned; ``step_size``: a step's length as a fraction of eps (> 0); ``momentum``: the
    weight of the running sum of normalised gradients (0 <= momentum < 1; 0: plain steps); ``decay``: the step
    shrinks as 1/(1 + t/2) at step t; ``beta``: the sharpness of the softplus surrogate the gradient is taken
    through (> 0), None for the model itself, or "auto" (the model itself where the map is first-order in the
    input, else :data:`AUTO_BETA`); ``n_attack``: fresh noisy copies per step in a smoothed objective's surrogate
    (>= 1); ``max_backtracks``: halvings of a step that would change the predicted class (>= 0; then no step);
    ``init_tries``: random starts tried per restart, the radius halved after each that changes the class (>= 0;
    none left: the restart starts at x).
    """

    steps: int = 20
    restarts: int = 2
    step_size: float = 0.5
    momentum: float = 0.0
    decay: bool = True
    beta: Any = 10.0
    n_attack: int = 8
    max_backtracks: int = 10
    init_tries: int = 10

    what = "attack setting"

    def __post_init__(self):
        values = {"steps": check_positive_int("steps", self.steps),
                  "restarts": check_positive_int("restarts", self.restarts),
                  "step_size": _check_positive("step_size", self.step_size, "the step (a fraction of eps)"),
                  "momentum": check_interval("momentum", self.momentum, 0, 1, low_open=False,
                                             what="the momentum of the normalised gradients"),
                  "decay": _check_bool("decay", self.decay), "beta": _check_beta(self.beta),
                  "n_attack": check_positive_int("n_attack", self.n_attack),
                  "max_backtracks": check_positive_int("max_backtracks", self.max_backtracks, 0),
                  "init_tries": check_positive_int("init_tries", self.init_tries, 0)}
        for name, value in values.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class PixelAttackSettings(AttackSettings):
    """The certified-pixel attack's settings: the loop's (:class:`AttackSettings`, with this attack's defaults:
    steps of a quarter of eps with momentum 0.9 and no decay, and beta "auto"), and its objective.

    ``smoothed``: attack the smoothed top-K labels (True: ``n_attack`` fresh noisy copies per step) or the plain
    map's (False: one copy, no noise); ``temperature``: T of the soft hinge T softplus(m / T + 1) on each target's
    margin m (> 0; smaller is closer to a hinge at margin -T).
    """

    step_size: float = 0.25
    momentum: float = 0.9
    decay: bool = False
    beta: Any = "auto"
    smoothed: bool = True
    temperature: float = 1.0

    what = "certified-pixel attack setting"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "smoothed", _check_bool("smoothed", self.smoothed))
        object.__setattr__(self, "temperature", _check_positive("temperature", self.temperature, "it"))


@dataclass(frozen=True)
class TargetSettings(_Settings):
    """Which pixels the certified-pixel attack targets, and how their flips are measured afterwards.

    Targets: ``k``, the top-K percentage whose labels are attacked (0 < k <= 100, one of the certificate's ks;
    None: the largest); ``group``, "certified" or "uncertified" (abstained, with a clear majority); ``n_targets``
    pixels of the group (>= 1), those nearest their decision boundary; ``select_n`` further fresh samples that rank
    them (0: none, else >= 2); or ``pixels``, the targets themselves as flat (row-major, H x W) pixel indices
    (None: chosen as above).

    Measurement: ``eval_n`` fresh samples per perturbed image (>= 2) of seed ``eval_seed`` (>= 0 and not the
    certificate's seed; None: that seed + 1000); a flip is confident when a one-sided binomial test rejects "the
    label is kept" at level ``eval_alpha`` / (number of targets) (0 < eval_alpha < 1; None: the certificate's
    alpha); ``random_control``: also measure x + a random direction of the attack's norm; ``eval_clean``: also
    measure x itself.
    """

    k: float | None = None
    group: str = "certified"
    n_targets: int = 32
    select_n: int = 0
    pixels: tuple | None = None
    eval_n: int = 1000
    eval_seed: int | None = None
    eval_alpha: float | None = None
    random_control: bool = True
    eval_clean: bool = False

    what = "target setting"

    def __post_init__(self):
        select_n = check_positive_int("select_n", self.select_n, 0)
        if select_n == 1:
            raise CertattrError("select_n=1 is not allowed: give 0 (rank by the certificate's samples only) or at "
                                "least 2 fresh samples")
        values = {"k": None if self.k is None else check_ks([self.k])[0],
                  "group": check_choice("group", self.group, TARGET_GROUPS),
                  "n_targets": check_positive_int("n_targets", self.n_targets), "select_n": select_n,
                  "pixels": None if self.pixels is None else _check_pixels(self.pixels),
                  "eval_n": check_positive_int("eval_n", self.eval_n, 2),
                  "eval_seed": None if self.eval_seed is None else check_positive_int("eval_seed", self.eval_seed, 0),
                  "eval_alpha": None if self.eval_alpha is None else _check_eval_alpha(self.eval_alpha),
                  "random_control": _check_bool("random_control", self.random_control),
                  "eval_clean": _check_bool("eval_clean", self.eval_clean)}
        for name, value in values.items():
            object.__setattr__(self, name, value)


def _check_pixels(pixels) -> tuple:
    """Flat pixel indices (any sequence or array of integers >= 0) as a tuple of ints."""
    flat = np.asarray(pixels).ravel()
    if flat.size and (not np.issubdtype(flat.dtype, np.integer) or flat.min() < 0):
        raise CertattrError(f"pixels={pixels!r} is not allowed: give flat pixel indices, integers >= 0")
    return tuple(int(i) for i in flat)


def _check_eval_alpha(value) -> float:
    return check_interval("eval_alpha", value, 0, 1, what="the evaluation's failure probability")


#: the loop of the attacks on the related certificates' maps
DEFAULT_ATTACK = AttackSettings()
#: what those attacks measure the smoothed map with: 64 samples of seed 0 (also the loop's), 32 per model call
DEFAULT_ATTACK_SAMPLING = SamplingConfig(n=64, seed=0, chunk_size=32)
#: the certificate the certified-pixel attack attacks by default: IxG at the Final layer, sigma = 0.25, K = 50%
DEFAULT_ATTACKED_CERTIFICATE = PixelCertificateSettings(MethodAtLayer("ixg", "final"), 0.25, DEFAULT_SAMPLING,
                                                        DEFAULT_CERT.replace(ks=(50.0,)))
