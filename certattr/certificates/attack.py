"""l2 attacks on attributions (Ghorbani et al. 2019, as adapted by Levine et al.; SPEC §6).

Normalised-gradient descent on a differentiable surrogate, with random restarts, projection onto the
eps-ball around x (l2, [0,1] pixel units) and the [0,1] box, and backtracking so that the **real** model's
predicted class never changes:

* the surrogate is a copy of the model with every ``nn.ReLU`` replaced by ``Softplus(beta)`` and every
  ``nn.ReLU6`` by ``Softplus(beta)(x) - Softplus(beta)(x - 6)`` (:func:`smooth_surrogate`); the attack
  loss (and its second-order gradient through the attribution) is computed on it, every success
  criterion on the real model;
* start of each restart: a uniform direction on the eps-sphere (halved until the class is kept, at most
  ``init_tries`` times; else delta = 0); step t: delta <- P(delta - lr_t g/||g||), lr_t =
  step_size*eps/(1 + t/2) (:func:`attack_certified`: a constant step along a momentum-averaged direction);
  if the real class changes the step is halved (at most ``max_backtracks`` times, else no step). P = radial projection onto the ball, then clipping to the box (clipping never
  increases ||delta|| since x is in the box; a final exact check in float64 keeps ||delta|| <= eps);
* noise for smoothed surrogates is drawn per (seed, image id, restart, step, sample) from its own
  streams (:func:`certattr.engine.noise.gaussian_noise` with ``stream="attack-noise|restart|step"``); every
  evaluation uses the pipeline's noise, and every certification goes through the pipeline's engine
  (:class:`certattr.engine.smoothing.SmoothedAttribution`, optionally with its sample cache);
* the real objective is memoised per evaluated point, so the clean map and the chosen candidate are
  computed once.

Objectives (the attacker minimises): (a) :func:`attack_topk`, the top-k overlap of the unsmoothed map or
of Sparsified SmoothGrad (surrogate: its relaxed variant); (b) :func:`attack_cosine`, the cosine of the
uniformly smoothed (or unsmoothed) map; (c) :func:`attack_certified`, the smoothed (or plain) top-K
agreement of the certified pixels nearest their decision boundary (SPEC §1), measured afterwards with
fresh noise and more samples than certification used.

**What (c) is checked against.** If the clean certificate is right (probability >= 1 - alpha), every
certified pixel keeps its label with probability > 1/2 at every x + delta with ||delta|| < R =
sigma Phi^-1(tau) (and with probability >= 1/2 at ||delta|| = R); a one-sided binomial test on fresh
samples then finds it flipped only by a false rejection (probability <= eval_alpha). So for an attack
inside R, P(any certified target confidently flipped) <= alpha + eval_alpha. Uncertified pixels and the
plain map carry no guarantee; the attack is shown strong on them (and beyond R) so that "nothing flipped
inside R" means something.
"""
from __future__ import annotations

import copy
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..engine.certify import CertificationWarning, DegenerateMapWarning
from ..engine.config import DEFAULT, CertConfig
from .cosine import bound_norm, check_radius, check_threshold, uniform_ball_noise
from ..models.registry import LoadedModel, check_layer
from ..engine.noise import gaussian_noise, numpy_generator
from ..engine.certificate import ABSTAIN, Certificate
from ..engine.smoothing import SmoothedAttribution
from ..engine.sparsify import upsample_maps
from .sparsified_smoothgrad import _order, check_eps, check_fraction, check_k, relaxed_sparsify
from ..engine.validation import (CertattrError, check_alpha, check_choice, check_finite_number, check_image, check_interval,
                         check_ks, check_positive_int, check_sigma)

__all__ = ["SmoothReLU6", "smooth_surrogate", "differentiable_maps", "predicted_class", "AttackResult",
           "attack_topk", "attack_cosine", "attack_certified", "choose_targets", "smoothed_membership",
           "plain_membership", "target_flips", "random_perturbation", "selection_agreement", "select_seed",
           "first_order", "DIFFERENTIABLE_METHODS"]

DIFFERENTIABLE_METHODS = ("grad", "ixg")


# --- the surrogate -------------------------------------------------------------------------------------
class SmoothReLU6(nn.Module):
    """softplus_beta(x) - softplus_beta(x - 6): a smooth ReLU6."""

    def __init__(self, beta: float):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return F.softplus(x, beta=self.beta) - F.softplus(x - 6.0, beta=self.beta)


def _check_beta(beta) -> float:
    value = check_finite_number("beta", beta)
    if value <= 0:
        raise CertattrError(f"beta={beta!r} is not allowed: the softplus sharpness must be > 0")
    return value


def smooth_surrogate(model: LoadedModel, beta: float = 10.0) -> LoadedModel:
    """A deep copy of ``model`` with nn.ReLU -> Softplus(beta) and nn.ReLU6 -> SmoothReLU6(beta).

    Shared modules stay shared (one replacement per original module). ``surrogate.swapped`` counts the
    replaced modules (0 for models without ReLU modules, e.g. ViT with GELU; functional relus in a
    ``forward`` cannot be swapped).
    """
    beta = _check_beta(beta)
    sur = copy.deepcopy(model)
    replaced: dict[int, nn.Module] = {}
    for parent in list(sur.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):  # ReLU6 subclasses Hardtanh, test it first
                new = replaced.setdefault(id(child), SmoothReLU6(beta))
            elif isinstance(child, nn.ReLU):
                new = replaced.setdefault(id(child), nn.Softplus(beta=beta))
            else:
                continue
            setattr(parent, name, new)
    sur.swapped = len(replaced)
    return sur.eval()


def _no_surrogate(model: LoadedModel) -> LoadedModel:
    """The model itself as the attack's differentiable model (``beta=None``): right when the attribution is
    first-order in the input (IxG at the Final layer of a GAP->linear head is linear in the features), where
    a softplus copy would only bias the gradient."""
    model.swapped = 0
    return model


# --- differentiable attribution ------------------------------------------------------------------------
def differentiable_maps(model: LoadedModel, images: torch.Tensor, target: torch.Tensor, method: str,
                        layer: str) -> torch.Tensor:
    """(B, h, w) maps of "grad" (|dy/dA| summed over channels) or "ixg" (A dy/dA, channel-reduced as the
    model's layer view does) of images (B, 3, H, W) in [0,1], differentiable w.r.t. the images.

    The same quantities as the registry's methods (captum Saliency / InputXGradient), computed with
    ``create_graph=True`` so that an attack can take their gradient.
    """
    method = check_choice("method", method, DIFFERENTIABLE_METHODS)
    layer = check_layer(layer)
    with torch.enable_grad():
        if not images.requires_grad:
            images = images.detach().clone().requires_grad_(True)
        xn = model.normalize(images)
        if layer == "input":
            a = xn
            logits = model.net(xn)
            reduce = "sum"
        else:
            a, context = model.features(xn)
            logits = model.logits_from_final(a, *context)
            reduce = model.spec.final_reduce
        score = logits.gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, a, create_graph=True)
    attr = grad.abs() if method == "grad" else a * grad
    return attr.abs().sum(dim=1) if reduce == "l1" else attr.sum(dim=1)


@torch.no_grad()
def predicted_class(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Top-1 classes (B,) of images (B, 3, H, W) in [0,1]."""
    return model(images.to(model.device)).argmax(dim=1).cpu()


def _registry_maps(model, images, target, method, layer) -> torch.Tensor:
    from ..methods import get_method

    return get_method(method).attribute(model, images, target, layer).cpu()


# --- the optimiser ---------------------------------------------------------------------------------------
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


class _Attack:
    def __init__(self, model, image, *, eps, steps, restarts, step_size, seed, image_id, beta, max_backtracks,
                 init_tries, progress, desc, momentum=0.0, decay=True):
        self.model = model
        self.momentum = check_interval("momentum", momentum, 0, 1, low_open=False,
                                       what="the momentum of the normalised gradients")
        self.decay = bool(decay)
        self.x = check_image(image).to(model.device)
        self.x64 = self.x.double()
        self.eps = check_eps(eps)
        self.steps = check_positive_int("steps", steps)
        self.restarts = check_positive_int("restarts", restarts)
        self.step_size = check_finite_number("step_size", step_size)
        if self.step_size <= 0:
            raise CertattrError(f"step_size={step_size!r} is not allowed: the step (a fraction of eps) must be > 0")
        self.seed = check_positive_int("seed", seed, 0)
        self.image_id = image_id
        self.max_backtracks = check_positive_int("max_backtracks", max_backtracks, 0)
        self.init_tries = check_positive_int("init_tries", init_tries, 0)
        self.surrogate = smooth_surrogate(model, beta) if beta is not None else _no_surrogate(model)
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


def _attack_noise(shape, sigma, seed, image_id, restart, step, count) -> torch.Tensor:
    """Gaussian noise sigma * eps_j (count, *shape) for the surrogate at (restart, step), from its own stream."""
    return sigma * gaussian_noise(shape, seed, image_id, range(count), stream=f"attack-noise|{restart}|{step}")


def _common(model, method, layer):
    method = check_choice("method", method, DIFFERENTIABLE_METHODS)
    return method, check_layer(layer)


# --- (a) top-k overlap -----------------------------------------------------------------------------------
def attack_topk(model: LoadedModel, image, *, k: int, eps: float, method: str = "grad", layer: str = "input",
                smoothing: bool = False, sigma: float = 0.25, tau_frac: float = 0.1, gamma_frac: float = 0.01,
                n_attack: int = 8, n_eval: int = 64, steps: int = 20, restarts: int = 2, step_size: float = 0.5,
                beta: float = 10.0, seed: int = 0, image_id: str = "", chunk_size: int = 32,
                max_backtracks: int = 10, init_tries: int = 10, progress: bool = True) -> AttackResult:
    """Minimise the top-k overlap |X ∩ top-k(map(x + delta))| / k, X = the clean map's top-k (ties: index).

    ``smoothing=False``: the registry map |method(x)|; surrogate loss = the share of |map| inside X
    (Ghorbani et al.'s top-k loss). ``smoothing=True``: Sparsified SmoothGrad s_hat with n_eval samples
    (the pipeline's noise, seed ``seed`` at both x and x + delta, ``chunk_size`` copies per model call),
    surrogate = the relaxed variant over n_attack fresh noisy copies per step.
    """
    method, layer = _common(model, method, layer)
    att = _Attack(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                  image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                  progress=progress, desc=f"top-k attack {image_id}")
    label = att.label
    target = torch.tensor([label])
    if smoothing:
        from .sparsified_smoothgrad import sparsified_smoothgrad

        sigma = check_sigma(sigma)
        tau_frac, gamma_frac = check_fraction("tau_frac", tau_frac), check_fraction("gamma_frac", gamma_frac)
        n_attack, n_eval = check_positive_int("n_attack", n_attack), check_positive_int("n_eval", n_eval)

        def real_map(x_adv):
            return sparsified_smoothgrad(model, x_adv.cpu(), label, method=method, layer=layer, sigma=sigma,
                                         n=n_eval, tau_frac=tau_frac, seed=seed, image_id=image_id,
                                         chunk_size=chunk_size).s_hat
    else:
        def real_map(x_adv):
            return np.abs(_registry_maps(model, x_adv.unsqueeze(0), label, method, layer)[0].double().numpy())

    real_map = att.memoised(real_map)
    clean = real_map(att.x)
    k = check_k(k, clean.size)
    top = torch.from_numpy(_order(clean.ravel()[None])[0][:k].copy())

    def overlap(x_adv) -> float:
        m = real_map(x_adv).ravel()
        return len(set(top.tolist()) & set(_order(m[None])[0][:k].tolist())) / k

    def loss_fn(x_adv, restart, step):
        if smoothing:
            noise = _attack_noise(x_adv.shape, sigma, seed, image_id, restart, step, n_attack).to(x_adv.device)
            maps = differentiable_maps(att.surrogate, x_adv.unsqueeze(0) + noise, target.expand(n_attack), method,
                                       layer)
            m = relaxed_sparsify(maps, tau_frac, gamma_frac).mean(dim=0).flatten()
        else:
            m = differentiable_maps(att.surrogate, x_adv.unsqueeze(0), target, method, layer)[0].abs().flatten()
        return m[top].sum() / m.sum().clamp_min(1e-12)

    before = overlap(att.x)
    x_adv, scores, history = att.run(loss_fn, overlap)
    after = overlap(x_adv)
    return att.result("top-k overlap", x_adv, before, after, scores, history,
                      {"k": k, "method": method, "layer": layer, "smoothing": smoothing,
                       "sigma": sigma if smoothing else None, "n_eval": n_eval if smoothing else None})


# --- (b) cosine similarity -------------------------------------------------------------------------------
def attack_cosine(model: LoadedModel, image, *, eps: float, r: float | None = None, N: int = 64, M: float = 1.0,
                  n_attack: int = 8, T: float | None = None, method: str = "grad", layer: str = "input",
                  steps: int = 20, restarts: int = 2, step_size: float = 0.5, beta: float = 10.0, seed: int = 0,
                  image_id: str = "", chunk_size: int = 32, max_backtracks: int = 10, init_tries: int = 10,
                  progress: bool = True) -> AttackResult:
    """Minimise cos(map(x), map(x + delta)) for the uniformly smoothed map h_hat (ball radius r, N samples,
    maps normalised to norm M; the same ball samples at x and x + delta) or, with r=None, the raw map.
    With ``T``, ``details["below_T"]`` says whether the attack pushed the cosine below T. ``chunk_size``: ball
    samples per model call of h_hat."""
    from .cosine import smooth_uniform

    method, layer = _common(model, method, layer)
    if r is not None:
        r = check_radius(r)
        N, n_attack = check_positive_int("N", N), check_positive_int("n_attack", n_attack)
    if T is not None:
        T = check_threshold(T)
    att = _Attack(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                  image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                  progress=progress, desc=f"cosine attack {image_id}")
    label = att.label
    target = torch.tensor([label])

    def real_map(x_adv) -> np.ndarray:
        if r is None:
            return _registry_maps(model, x_adv.unsqueeze(0), label, method, layer)[0].double().numpy().ravel()
        return smooth_uniform(model, x_adv.cpu(), label, method=method, layer=layer, r=r, N=N, M=M, seed=seed,
                              image_id=image_id, chunk_size=chunk_size).h_hat.ravel()

    real_map = att.memoised(real_map)
    clean = real_map(att.x)
    clean_t = torch.from_numpy(clean).float()

    def cosine(x_adv) -> float:
        m = real_map(x_adv)
        den = np.linalg.norm(m) * np.linalg.norm(clean)
        return float(m @ clean / den) if den > 0 else 0.0

    def loss_fn(x_adv, restart, step):
        if r is None:
            m = differentiable_maps(att.surrogate, x_adv.unsqueeze(0), target, method, layer)[0].flatten()
        else:
            noise = uniform_ball_noise(x_adv.shape, r, seed, image_id, range(n_attack),
                                       stream=f"attack-ball|{restart}|{step}").to(x_adv.device)
            maps = differentiable_maps(att.surrogate, x_adv.unsqueeze(0) + noise, target.expand(n_attack), method,
                                       layer)
            m = bound_norm(maps, M).mean(dim=0).flatten()
        return F.cosine_similarity(m, clean_t.to(m.device), dim=0, eps=1e-12)

    before = cosine(att.x)
    x_adv, scores, history = att.run(loss_fn, cosine)
    after = cosine(x_adv)
    details = {"method": method, "layer": layer, "r": r, "N": N if r is not None else None, "M": M, "T": T}
    if T is not None:
        details["below_T"] = after < T
    return att.result("cosine similarity", x_adv, before, after, scores, history, details)


# --- (c) certified pixels --------------------------------------------------------------------------------
TARGET_GROUPS = ("certified", "uncertified")


def smoothed_membership(model: LoadedModel, image: torch.Tensor, target: int, *, method: str, layer: str, k: float,
                        sigma: float, n: int, seed: int, image_id: str, chunk_size: int = DEFAULT.chunk_size,
                        cache=None, progress: bool = False) -> np.ndarray:
    """(H, W) float64: the fraction of ``n`` noisy copies (seed ``seed``, the pipeline's noise and engine) in
    which each pixel is in the top K%: the Monte-Carlo estimate of the smoothed top-K probability.

    It is the certificate's ``mean_sparsified`` (the engine's certify, which streams the cached samples; its
    labels are not used, so its warnings about what n can certify or about degenerate maps are not shown)."""
    n = check_positive_int("eval_n", n, 2)
    engine = SmoothedAttribution(model, method, layer, sigma, n=n, n0=1, seed=seed, chunk_size=chunk_size,
                                 cache=cache, progress=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CertificationWarning)
        warnings.simplefilter("ignore", DegenerateMapWarning)
        cert = engine.certify(image.cpu(), image_id, target, ks=[k])
    # mean_sparsified is float32 (the count over n, rounded): the exact count, then count / n in float64
    return np.rint(cert.mean_sparsified[0].astype(np.float64) * n) / n


def plain_membership(model: LoadedModel, image: torch.Tensor, target: int, *, method: str, layer: str, k: float,
                     margins: bool = False):
    """(H, W) float64 in {0, 1}: the top-K membership of the plain (unsmoothed) map, upsampled to H x W; with
    ``margins``, also (|a_p| - t_K) / std|a| (the distance to the plain map's threshold, in its std)."""
    from ..engine.sparsify import sparsify, topk_thresholds

    size = tuple(image.shape[1:])
    maps = upsample_maps(_registry_maps(model, image.unsqueeze(0), target, method, layer).float(), size).numpy()
    member = sparsify(maps, [k])[0, 0].astype(np.float64)
    if not margins:
        return member
    a = np.abs(maps[0].astype(np.float64))
    return member, (a - topk_thresholds(maps, [k])[0, 0]) / max(float(a.std()), 1e-300)


def choose_targets(cert: Certificate, k: float, group: str = "certified", count: int = 32, seed: int = 0,
                   image_id: str = "", extra_agree: np.ndarray | None = None, extra_n: int = 0,
                   min_agreement: float = 2 / 3) -> np.ndarray:
    """Flat pixel indices of the ``count`` pixels of ``group`` at this K nearest their decision boundary.

    Agreeing samples: c_p of the n - n0 test samples, plus, with ``extra_agree`` ((H, W) or flat: how many of
    ``extra_n`` further fresh samples agree with the label, e.g. :func:`selection_agreement`), those too, which
    ranks the many pixels that tie on c_p. The pool: "certified", the certified pixels; "uncertified", the
    abstained pixels whose majority m_p is clear, at least ``min_agreement`` of the agreeing samples (a label
    the map does give, though without a certificate; pixels near 1/2 would "flip" under any perturbation and
    by sampling error alone). Within the pool, the pixels with the fewest agreeing samples; remaining ties
    are broken by the distance to an anchor (a seeded random pixel among the weakest), so that tied targets
    form one compact region.
    """
    group = check_choice("group", group, TARGET_GROUPS)
    count = check_positive_int("count", count)
    i = cert.index(k)
    labels, counts = cert.labels[i].ravel(), cert.counts[i].ravel().astype(np.int64)
    extra = np.zeros_like(counts) if extra_agree is None else np.asarray(extra_agree).ravel().astype(np.int64)
    total = counts + extra
    if group == "certified":
        pool = np.flatnonzero(labels != ABSTAIN)
    else:
        n_total = int(cert.n) - int(cert.n0) + (int(extra_n) if extra_agree is not None else 0)
        pool = np.flatnonzero((labels == ABSTAIN) & (total >= min_agreement * n_total))
    if pool.size == 0:
        return pool
    shuffle = numpy_generator(seed, image_id, 0, f"attack-targets|{group}|{float(k):g}").permutation(labels.size)
    agree = total[pool]
    weakest = pool[agree == agree.min()]
    anchor = weakest[np.argmin(np.argsort(shuffle)[weakest])]  # the first of the weakest in the seeded order
    w = cert.labels.shape[2]
    dist2 = (pool // w - anchor // w) ** 2 + (pool % w - anchor % w) ** 2
    return pool[np.lexsort((pool, dist2, agree))][:count]


def target_flips(member: np.ndarray, targets, reference, n_eval: int, eval_alpha: float) -> dict:
    """Which targets flipped, from ``member`` ((H, W) or flat: the fraction of ``n_eval`` evaluation samples in
    the top K, or the plain map's 0/1 membership with n_eval = 1) and the reference labels (0/1) of the targets.

    ``agree``: samples agreeing with the reference; ``flipped``: at most half agree; ``confidently_flipped``:
    a one-sided binomial test rejects P(agree) >= 1/2 at level eval_alpha / len(targets) (for the plain map,
    n_eval = 1, the same as flipped). Counts, fractions and the two masks."""
    targets = np.asarray(targets, dtype=np.int64)
    reference = np.asarray(reference, dtype=np.int64)
    ones = np.rint(np.asarray(member, dtype=np.float64).ravel()[targets] * n_eval).astype(np.int64)
    agree = np.where(reference == 1, ones, n_eval - ones)
    flipped, confident = _flip_counts(agree, n_eval, eval_alpha / max(len(targets), 1))
    if n_eval == 1:
        confident = flipped
    m = max(len(targets), 1)
    return {"agree": agree, "flipped": int(flipped.sum()), "confidently_flipped": int(confident.sum()),
            "fraction_flipped": float(flipped.sum() / m), "fraction_confidently_flipped": float(confident.sum() / m),
            "flipped_mask": flipped, "confident_mask": confident}


def random_perturbation(image: torch.Tensor, eps: float, seed: int = 0, image_id: str = "") -> torch.Tensor:
    """x + a uniformly random direction of norm eps (stream "attack-random"), clipped to the [0,1] box (so the
    norm may end slightly below eps): the control of :func:`attack_certified`, for any eps."""
    x = check_image(image)
    eps = check_eps(eps)
    if eps == 0:
        return x.clone()
    z = numpy_generator(seed, image_id, 0, "attack-random").standard_normal(tuple(x.shape))
    delta = torch.from_numpy(z * (eps / float(np.linalg.norm(z))))
    margin = 0.0
    while True:  # float32 rounding can leave the ball: shrink by a margin doubling from 1e-7 until inside
        out = (x.double() + delta * (1 - margin)).clamp(0.0, 1.0).to(torch.float32)
        if float((out.double() - x.double()).norm()) <= eps or margin >= 0.5:
            return out
        margin = 2 * margin if margin else 1e-7


def select_seed(seed: int) -> int:
    """The seed of the fresh samples that rank the targets (neither the certification's nor the evaluation's)."""
    return int(seed) + 2000


def selection_agreement(model, image, target, cert: Certificate, k: float, *, method, layer, sigma, n, seed,
                        image_id, chunk_size=DEFAULT.chunk_size, cache=None) -> np.ndarray:
    """(H*W,) int: how many of ``n`` fresh samples (seed ``seed``) agree with the certificate's label (its
    majority where it abstains) at each pixel: the extra samples :func:`choose_targets` ranks by."""
    member = smoothed_membership(model, image.cpu(), target, method=method, layer=layer, k=k, sigma=sigma, n=n,
                                 seed=seed, image_id=image_id, chunk_size=chunk_size, cache=cache).ravel()
    i = cert.index(k)
    label = np.where(cert.labels[i] == ABSTAIN, cert.majority[i], cert.labels[i]).ravel()
    ones = np.rint(member * n).astype(np.int64)
    return np.where(label == 1, ones, n - ones)


def first_order(model: LoadedModel, method: str, layer: str) -> bool:
    """Whether the map is a first-order function of the input, so its gradient needs no surrogate: IxG at the
    Final layer of a GAP->linear head (d logit / d A = W_y / hw is constant, the map is linear in A)."""
    return method == "ixg" and layer == "final" and getattr(model, "gap_linear", None) is not None


def _flip_counts(agree_count: np.ndarray, n_eval: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(flipped, confidently flipped) for agree counts out of n_eval: flipped = the estimate no longer keeps
    the label (at most half of the samples agree); confident = a one-sided binomial test rejects
    P(agree) >= 1/2 at ``level`` (P(Bin(n_eval, 1/2) <= agree) <= level)."""
    from scipy.stats import binom

    flipped = 2 * agree_count <= n_eval
    confident = binom.cdf(agree_count, n_eval, 0.5) <= level
    return flipped, confident


def attack_certified(model: LoadedModel, image, *, eps: float, method: str = "ixg", layer: str = "final",
                     ks: Sequence[float] = (50,), k: float | None = None, sigma: float = 0.25, n: int = DEFAULT.n,
                     n0: int = DEFAULT.n0, tau: float = DEFAULT.tau, alpha: float = DEFAULT.alpha,
                     correction: str = DEFAULT.correction,
                     group: str = "certified", n_targets: int = 32, smoothed: bool = True, n_attack: int = 8,
                     temperature: float = 1.0, steps: int = 20, restarts: int = 2, step_size: float = 0.25,
                     beta: float | None | str = "auto", seed: int = DEFAULT.seed, eval_n: int = 1000,
                     eval_seed: int | None = None,
                     eval_alpha: float | None = None, image_id: str = "", chunk_size: int = DEFAULT.chunk_size,
                     cache=None, clean: Certificate | None = None, random_control: bool = True,
                     eval_clean: bool = False, targets: Sequence[int] | None = None, select_n: int = 0,
                     momentum: float = 0.9,
                     decay: bool = False,
                     max_backtracks: int = 10, init_tries: int = 10, progress: bool = True) -> AttackResult:
    """Attack the top-K labels of the pixels nearest their decision boundary, and measure what flipped.

    1. The clean certificate at x (:meth:`certattr.engine.smoothing.SmoothedAttribution.certify`, seed ``seed``,
       ``cache``; or ``clean``). Targets (:func:`choose_targets`, or ``targets`` as flat pixel indices): the
       ``n_targets`` pixels of ``group`` at K = ``k`` (default: the largest of ``ks``), the certified ones
       ranked by their agreeing samples, with ``select_n`` > 0 also counted on that many fresh samples of
       their own seed (:func:`select_seed`); reference labels: the certificate's label (the majority m_p for
       uncertified pixels).
    2. Attack (``smoothed=True``): maximise the smoothed soft top-K disagreement at the targets. At every step
       ``n_attack`` **fresh** noisy copies x + delta + sigma eps (streams "attack-noise|restart|step": an
       expectation over the smoothing noise); per copy the margin m_p = +-(|a_p| - t_K) / std|a| (+ for
       label 1; t_K the linear (100-K)-th percentile of the copy's map), and the loss is the mean over
       copies and targets of T softplus(m_p / T + 1), T = ``temperature`` (a soft hinge: it keeps pushing a
       target until its margin is about -T in every copy). Normalised gradient steps of ``step_size`` * eps
       with ``momentum`` (a running sum of the normalised noisy gradients), ``decay`` (the step shrinks as
       1/(1 + t/2)) off by default, ``restarts`` random starts on the eps-sphere, projection on the eps-ball
       and the [0,1] box, the real model's class kept (backtracking); the returned restart has the lowest
       final surrogate loss (chosen without the evaluation noise). The gradient is taken through the model
       itself when the map is first-order in the input (IxG at the Final layer of a GAP->linear head:
       ``beta="auto"``), else through the softplus surrogate (``beta``). ``smoothed=False`` attacks the plain
       map instead (one copy, no noise; reference = the plain map's labels at x; default targets: the pixels
       nearest the plain map's threshold).
    3. Evaluation with fresh noise (seed ``eval_seed``, default seed + 1000; ``eval_n`` samples, more than the
       certification used): the fraction of the eval copies of x + delta agreeing with the reference label
       at each target. A target is **flipped** when at most half agree (the estimate of the smoothed label
       no longer gives the label), **confidently flipped** when a one-sided binomial test rejects
       P(agree) >= 1/2 at level ``eval_alpha`` / (number of targets) (default eval_alpha = alpha). With
       ``random_control``, the same for x + a random direction of the same norm (projected on the box);
       with ``eval_clean``, the same at x itself (``before``; NaN otherwise).

    What is guaranteed (certified group, ``smoothed=True``): if the clean certificate is right (probability
    >= 1 - alpha), every certified target has P(agree) > 1/2 at every x + delta with ||delta||_2 < R_p
    (>= R, Bonferroni), and >= 1/2 at ||delta||_2 = R_p; so for eps <= R, P(any confidently flipped certified
    target) <= alpha + eval_alpha (``details["failure_probability"]``). "Flipped" without confidence can
    also come from the evaluation's sampling error for a target whose probability is near 1/2. Nothing is
    guaranteed for uncertified pixels, for the plain map, or beyond R_p.
    """
    method, layer = _common(model, method, layer)
    ks = check_ks(ks)
    k = ks[0] if k is None else float(check_ks([k])[0])
    if k not in ks:
        raise CertattrError(f"k={k:g} is not allowed: it must be one of the certified ks {list(ks)}")
    sigma = check_sigma(sigma)
    config = CertConfig(n=n, n0=n0, tau=tau, alpha=alpha, correction=correction, seed=seed, chunk_size=chunk_size,
                        ks=ks)  # the clean certificate's settings, validated
    n, n0, tau, alpha, chunk_size = config.n, config.n0, config.tau, config.alpha, config.chunk_size
    group = check_choice("group", group, TARGET_GROUPS)
    n_targets = check_positive_int("n_targets", n_targets)
    n_attack = check_positive_int("n_attack", n_attack)
    temperature = check_finite_number("temperature", temperature)
    if temperature <= 0:
        raise CertattrError(f"temperature={temperature!r} is not allowed: it must be > 0")
    eval_n = check_positive_int("eval_n", eval_n, 2)
    eval_seed = seed + 1000 if eval_seed is None else check_positive_int("eval_seed", eval_seed, 0)
    if eval_seed == seed:
        raise CertattrError(f"eval_seed={eval_seed} is not allowed: it must differ from seed={seed} "
                            f"(the evaluation needs fresh noise)")
    eval_alpha = alpha if eval_alpha is None else check_alpha(eval_alpha)
    if isinstance(beta, str) and beta == "auto":
        beta = None if first_order(model, method, layer) else 10.0
    att = _Attack(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                  image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                  progress=progress, desc=f"certified-pixel attack {image_id}", momentum=momentum, decay=decay)
    label = att.label
    target = torch.tensor([label])
    size = tuple(att.x.shape[1:])

    if clean is None:
        engine = SmoothedAttribution(model, method, layer, sigma, config=config, cache=cache, progress=progress)
        clean = engine.certify(att.x.cpu(), image_id, label)  # at the config's ks, tau, alpha and correction
    i = clean.index(k)
    if targets is not None:
        targets = np.asarray(targets, dtype=np.int64).ravel()
        if targets.size and (targets.min() < 0 or targets.max() >= clean.n_pixels):
            raise CertattrError(f"targets are not allowed outside 0..{clean.n_pixels - 1}: give flat pixel indices")
    if smoothed:
        if targets is None:
            extra = None
            if select_n:
                extra = selection_agreement(model, att.x, label, clean, k, method=method, layer=layer, sigma=sigma,
                                            n=select_n, seed=select_seed(seed), image_id=image_id,
                                            chunk_size=chunk_size, cache=cache)
            targets = choose_targets(clean, k, group, n_targets, seed, image_id, extra, select_n)
        reference = np.where(clean.labels[i].ravel() == ABSTAIN, clean.majority[i].ravel(),
                             clean.labels[i].ravel())[targets].astype(np.int64)
    else:  # default targets: the plain map's own boundary, the pixels nearest its threshold t_K
        member, margin = plain_membership(model, att.x.cpu(), label, method=method, layer=layer, k=k, margins=True)
        if targets is None:
            targets = np.argsort(np.abs(margin.ravel()), kind="stable")[:n_targets]
        reference = member.ravel()[targets].astype(np.int64)
    want_one = torch.from_numpy(reference == 1).float()
    index = torch.from_numpy(targets)
    q = torch.tensor([(100.0 - k) / 100.0], dtype=torch.float32)

    def loss_fn(x_adv, restart, step):
        if len(targets) == 0:
            return (x_adv * 0).sum()
        if smoothed:
            noise = _attack_noise(x_adv.shape, sigma, seed, image_id, restart, step, n_attack).to(x_adv.device)
            batch = x_adv.unsqueeze(0) + noise
        else:
            batch = x_adv.unsqueeze(0)
        maps = differentiable_maps(att.surrogate, batch, target.expand(batch.shape[0]), method, layer)
        a = upsample_maps(maps, size).abs().flatten(1).cpu()  # (copies, H*W)
        t = torch.quantile(a, q, dim=1, interpolation="linear").T  # (copies, 1)
        scale = a.std(dim=1, keepdim=True).clamp_min(1e-12)
        margin = (a[:, index] - t) / scale * (2 * want_one - 1)  # > 0: the copy agrees with the label
        return (temperature * F.softplus(margin / temperature + 1.0)).mean()

    x_adv, scores, history = att.run(loss_fn, None, select="loss")

    n_eval = eval_n if smoothed else 1

    def measure(x_eval) -> dict:
        if smoothed:
            member = smoothed_membership(model, x_eval, label, method=method, layer=layer, k=k, sigma=sigma,
                                         n=eval_n, seed=eval_seed, image_id=image_id, chunk_size=chunk_size)
        else:
            member = plain_membership(model, x_eval, label, method=method, layer=layer, k=k)
        return target_flips(member, targets, reference, n_eval, eval_alpha)

    attacked = measure(x_adv)
    details = {"method": method, "layer": layer, "k": k, "ks": ks, "sigma": sigma, "n": n, "n0": n0, "tau": tau,
               "alpha": alpha, "group": group, "smoothed": smoothed, "radius": clean.radius,
               "within_radius": att.eps <= clean.radius, "targets": targets, "reference": reference,
               "target_counts": clean.counts[i].ravel()[targets], "target_radii": clean.radii[i].ravel()[targets],
               "eval_n": n_eval, "eval_seed": eval_seed, "eval_alpha": eval_alpha,
               "failure_probability": alpha + eval_alpha, "clean_certificate": clean, "attacked": attacked}
    if random_control:
        x_rand = random_perturbation(att.x.cpu(), att.eps, seed, image_id).to(att.x.device)
        details["random"] = {**measure(x_rand), "delta_norm": float((x_rand.double() - att.x64).norm()),
                             "class_kept": att.keeps_class(x_rand)}
    before = math.nan
    if eval_clean:
        details["clean"] = measure(att.x)
        before = details["clean"]["fraction_flipped"]
    name = "flipped fraction of targeted pixels" + ("" if smoothed else " (plain map)")
    return att.result(name, x_adv, before, attacked["fraction_flipped"], scores, history, details)
