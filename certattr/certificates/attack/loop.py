"""The attack loop shared by the three objectives: normalised gradient steps on the surrogate, projected on
the eps-ball (l2, [0,1] pixel units) and the [0,1] box, with random restarts and backtracking that keeps the
**real** model's predicted class.

* start of each restart: a uniform direction on the eps-sphere (halved until the class is kept, at most
  ``init_tries`` times; else delta = 0);
* step t: delta <- P(delta - lr_t g/||g||), lr_t = step_size*eps/(1 + t/2) (with ``decay``; optionally along a
  momentum-averaged direction); if the real class changes the step is halved (at most ``max_backtracks``
  times, else no step);
* P = radial projection onto the ball, then clipping to the box (clipping never increases ||delta|| since x is
  in the box; a final exact check in float64 keeps ||delta|| <= eps);
* noise for smoothed surrogates is drawn per (seed, image id, restart, step, sample) from its own streams
  (:func:`attack_noise`);
* the real objective can be memoised per evaluated point (:meth:`AttackLoop.memoised`), so the clean map and
  the chosen candidate are computed once.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ...engine.noise import gaussian_noise, numpy_generator
from ...engine.validation import check_image, check_positive_int
from ..checks import check_eps, check_settings
from ..settings import MethodAtLayer
from .settings import AUTO_BETA, AttackSettings
from .surrogate import first_order, no_surrogate, predicted_class, smooth_surrogate

__all__ = ["AttackResult", "AttackLoop", "attack_noise"]


@dataclass
class AttackResult:
    """The outcome of one attack: the perturbed image, the objective before and after, and the checks."""

    objective: str
    x_adv: torch.Tensor
    delta_norm: float
    eps: float
    label: int
    label_adv: int
    before: float  #: the real objective at delta = 0
    after: float  #: the real objective at the returned x_adv (lower = stronger attack)
    restarts: int
    steps: int
    seed: int
    restart_scores: list = field(default_factory=list)
    loss_history: list = field(default_factory=list)  #: per restart, the surrogate loss at each step
    details: dict = field(default_factory=dict)

    @property
    def delta(self) -> torch.Tensor:
        return self.x_adv - self.details["x"] if "x" in self.details else None

    def statement(self) -> str:
        return (f"{self.objective}: {self.before:.4f} -> {self.after:.4f} with ||delta||_2 = {self.delta_norm:.4f} "
                f"<= eps = {self.eps:g} ([0,1] pixel units), x + delta in [0,1], predicted class {self.label} kept "
                f"({self.label_adv}); best of {self.restarts} restart(s) x {self.steps} step(s), seed {self.seed}. "
                f"An attack only shows an upper bound on robustness; it certifies nothing.")


class AttackLoop:
    """One attack: its clean image x (3, H, W) in [0,1], its budget eps, its ``settings``
    (:class:`.settings.AttackSettings`), the real model's label at x, the surrogate the gradient is taken through,
    and the counters of halved, failed and rejected steps.

    ``attribution``: the attacked map (it decides beta="auto": the model itself where the map is first-order in the
    input, :func:`.surrogate.first_order`); ``seed`` and ``image_id`` key every random stream of the loop;
    ``progress``/``desc``: the progress bar and its label."""

    def __init__(self, model, image, *, eps, settings: AttackSettings, attribution: MethodAtLayer, seed, image_id,
                 progress, desc):
        self.model = model
        self.settings = check_settings("settings", settings, AttackSettings)
        self.momentum, self.decay = settings.momentum, settings.decay
        self.x = check_image(image).to(model.device)
        self.x64 = self.x.double()
        self.eps = check_eps(eps)
        self.steps, self.restarts, self.step_size = settings.steps, settings.restarts, settings.step_size
        self.seed = check_positive_int("seed", seed, 0)
        self.image_id = image_id
        self.max_backtracks, self.init_tries = settings.max_backtracks, settings.init_tries
        beta = settings.beta
        if isinstance(beta, str):  # "auto"
            beta = None if first_order(model, attribution.method, attribution.layer) else AUTO_BETA
        self.surrogate = smooth_surrogate(model, beta) if beta is not None else no_surrogate(model)
        self.label = int(predicted_class(model, self.x.unsqueeze(0))[0])
        self.progress, self.desc = progress, desc
        self.counts = {"init_halvings": 0, "init_failed": 0, "backtracks": 0, "rejected_steps": 0}

    def keeps_class(self, x_adv: torch.Tensor) -> bool:
        return int(predicted_class(self.model, x_adv.unsqueeze(0))[0]) == self.label

    def project(self, x_cand: torch.Tensor) -> torch.Tensor:
        """A point of the eps-ball around x and of the box near x_cand; ||x_adv - x|| <= eps exactly.

        Rounding x + delta to float32 can push ||x_adv - x|| just past eps, and shrinking delta by less than
        the float32 spacing of its coordinates rounds back to the same point; so the radius aimed at is
        eps (1 - margin), the margin doubling from 1e-7 until the rounded point is inside (at most 0.5).
        """
        delta = x_cand.double() - self.x64
        margin = 0.0
        for _ in range(60):
            norm = float(delta.norm())
            radius = self.eps * (1.0 - margin)
            if norm > radius:
                delta = delta * (radius / norm)
            x_adv = (self.x64 + delta).clamp(0.0, 1.0).to(torch.float32)
            real = x_adv.double() - self.x64
            if float(real.norm()) <= self.eps:
                return x_adv
            delta = real
            margin = min(0.5, 2 * margin if margin else 1e-7)
        return self.x.clone()

    def memoised(self, fn: Callable) -> Callable:
        """fn(x_adv) computed once per distinct x_adv (keyed by its bytes): the real objective is deterministic."""
        memo = {}

        def wrapped(x_adv):
            key = hashlib.blake2b(x_adv.detach().cpu().numpy().tobytes(), digest_size=16).digest()
            if key not in memo:
                memo[key] = fn(x_adv)
            return memo[key]

        return wrapped

    def generator(self, restart: int, stream: str) -> np.random.Generator:
        """NumPy PCG64 keyed by the whole 128-bit hash of (seed, image id, restart, stream)."""
        return numpy_generator(self.seed, self.image_id, restart, stream)

    def run(self, loss_fn: Callable, score_fn: Callable, select: str = "score"):
        """Minimise loss_fn(x_adv, restart, step) (surrogate, differentiable); score_fn(x_adv) -> float on the
        real model. Returns the best x_adv over the restarts (by score, or by final surrogate loss)."""
        candidates, history = [], []
        bar = tqdm(total=self.restarts * self.steps, desc=self.desc, disable=not self.progress, leave=False)
        for restart in range(self.restarts):
            x_adv = self.x.clone()
            if self.eps > 0:
                gen = self.generator(restart, "attack-init")
                radius = self.eps
                for _ in range(self.init_tries):
                    z = torch.from_numpy(gen.standard_normal(tuple(self.x.shape))).to(self.x.device)
                    cand = self.project(self.x64 + z * (radius / float(z.norm())))
                    if self.keeps_class(cand):
                        x_adv = cand
                        break
                    radius /= 2
                    self.counts["init_halvings"] += 1
                else:
                    self.counts["init_failed"] += self.init_tries > 0
            losses = []
            velocity = None
            for t in range(self.steps):
                if self.eps == 0:
                    bar.update(1)
                    continue
                var = x_adv.clone().requires_grad_(True)
                loss = loss_fn(var, restart, t)
                (grad,) = torch.autograd.grad(loss, var)
                losses.append(float(loss.detach()))
                gnorm = float(grad.double().norm())
                if gnorm > 0 and math.isfinite(gnorm):
                    direction = grad / gnorm
                    if self.momentum > 0:  # a running sum of normalised (noisy) gradients, renormalised
                        velocity = direction if velocity is None else self.momentum * velocity + direction
                        direction = velocity / velocity.norm().clamp_min(1e-30)
                    lr = self.step_size * self.eps / (1 + t / 2 if self.decay else 1)
                    for _ in range(self.max_backtracks + 1):
                        cand = self.project(x_adv - lr * direction)
                        if self.keeps_class(cand):
                            x_adv = cand
                            break
                        lr /= 2
                        self.counts["backtracks"] += 1
                    else:
                        self.counts["rejected_steps"] += 1
                bar.update(1)
            final_loss = math.nan
            if self.eps > 0 and select == "loss" and self.restarts > 1:  # only to choose among restarts
                final_loss = float(loss_fn(x_adv.clone().requires_grad_(True), restart, self.steps).detach())
            history.append(losses)
            candidates.append((x_adv, final_loss))
        bar.close()
        if select == "score":
            scores = [float(score_fn(c)) for c, _ in candidates]
        else:
            scores = [fl for _, fl in candidates]
        best = int(np.nanargmin(scores)) if not all(math.isnan(s) for s in scores) else 0
        return candidates[best][0], scores, history

    def result(self, objective, x_adv, before, after, scores, history, details) -> AttackResult:
        norm = float((x_adv.double() - self.x64).norm())
        label_adv = int(predicted_class(self.model, x_adv.unsqueeze(0))[0])
        return AttackResult(objective=objective, x_adv=x_adv.cpu(), delta_norm=norm, eps=self.eps, label=self.label,
                            label_adv=label_adv, before=float(before), after=float(after), restarts=self.restarts,
                            steps=self.steps, seed=self.seed, restart_scores=scores, loss_history=history,
                            details={"x": self.x.cpu(), "surrogate_swapped": self.surrogate.swapped, **self.counts,
                                     **details})


def attack_noise(shape, sigma, seed, image_id, restart, step, count) -> torch.Tensor:
    """Gaussian noise sigma * eps_j (count, *shape) for the surrogate at (restart, step), from its own stream."""
    return sigma * gaussian_noise(shape, seed, image_id, range(count), stream=f"attack-noise|{restart}|{step}")

