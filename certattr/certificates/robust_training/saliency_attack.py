"""Levine et al.'s l2 attack on the top-k overlap of gradient maps (their Algorithm 1, after Ghorbani et al.),
batched over images, and the random control of the same norm.

For each image x (label y kept by the classifier throughout) and ``restarts`` times:

1. a random start on the eps-sphere (uniform direction), clipped to the [0, 1] box; up to ``init_tries``
   directions until the classifier still predicts y (none found: the restart starts at x itself);
2. ``steps`` steps of normalised gradient descent on Ghorbani et al.'s top-k loss, computed on the **softplus
   twin** (:class:`.network.DigitCNN` with ``beta``): the share of the twin's |map| inside X, the top-k set of
   the clean map. Step size ``step_size * eps / (t + 1)`` at step t (Levine: proportional to 1/t); each step is
   projected onto the eps-ball around x and clipped to the box;
3. backtracking, batched: a step that would change the classifier's label is not taken and that image's step
   size is halved (Levine backtrack until the step stays in the class; one trial per step here).

The result keeps, per image, the iterate with the smallest top-k overlap of the **classifier's** map (not the
twin's; on ties the later one, so a map the attack cannot move still gets a perturbation of the attack's size): overlap = |X ∩ top-k(map(x + delta))| / k, ties broken by the lower flat index. All l2 sizes are over
the 3·size² values in [0, 1] pixel units. Randomness comes from the ``generator`` passed in (seeded by callers).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...engine.config import _Settings
from ...engine.validation import CertattrError, check_interval, check_positive_int
from ..checks import check_settings
from .network import DigitCNN, saliency_maps

__all__ = ["AttackOutcome", "SaliencyAttackSettings", "topk_sets", "topk_overlap", "sphere_directions", "project",
           "predicted", "topk_share_loss", "saliency_attack", "random_perturbation", "clipped_scale"]


@dataclass(frozen=True)
class SaliencyAttackSettings(_Settings):
    """How hard the saliency attack tries (the numbered steps above).

    ``steps``: gradient steps per restart (>= 0; 0: the random start only); ``restarts``: random starts (>= 1);
    ``step_size``: the first step's length as a fraction of eps (> 0; step t is ``step_size * eps / (t + 1)``);
    ``beta``: the softplus twin's sharpness (> 0); ``init_tries``: random directions tried per restart until the
    classifier keeps the label (>= 0).
    """

    steps: int = 10
    restarts: int = 1
    step_size: float = 1.0
    beta: float = 10.0
    init_tries: int = 10

    what = "saliency attack setting"

    def __post_init__(self):  # the numbers are kept as given (the twin's softplus reads beta as it is)
        check_positive_int("steps", self.steps, 0)
        check_positive_int("restarts", self.restarts)
        check_interval("step_size", self.step_size, 0, what="the first step (a fraction of eps)")
        check_interval("beta", self.beta, 0, what="the softplus twin's sharpness")
        check_positive_int("init_tries", self.init_tries, 0)


@dataclass
class AttackOutcome:
    """Per image: the perturbed images (B, 3, S, S), their top-k overlap with the clean map (B,), the l2 norm of
    their perturbation (B,), and whether a start that keeps the label was found (B,) bool."""

    adversarial: torch.Tensor
    overlap: torch.Tensor
    norm: torch.Tensor
    found: torch.Tensor


def topk_sets(maps: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) flat indices of the k largest elements of each map (B, h, w); ties: the lower flat index first."""
    flat = maps.detach().flatten(1)
    k = check_positive_int("k", k)
    if k > flat.shape[1]:
        raise CertattrError(f"k={k!r} is not allowed: it must be <= {flat.shape[1]} (the number of map elements)")
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    return order[:, :k]


def topk_overlap(clean_sets: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """|X ∩ top-k(maps)| / k per image (B,), with X = ``clean_sets`` (B, k) and k = its width."""
    k = clean_sets.shape[1]
    other = topk_sets(maps, k)
    member = torch.zeros(maps.shape[0], maps[0].numel(), dtype=torch.bool)
    member.scatter_(1, clean_sets, True)
    return member.gather(1, other).sum(dim=1).double() / k


def sphere_directions(shape, generator: torch.Generator) -> torch.Tensor:
    """Directions (B, ...) uniform on the unit l2 sphere of each image's 3·S·S values."""
    g = torch.randn(shape, generator=generator)
    return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (len(shape) - 1))


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """x_adv moved onto the eps-ball around x (l2, per image), then clipped to [0, 1] (which only shrinks delta)."""
    delta = x_adv - x
    norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    delta = delta * torch.where(norm > eps, eps / norm.clamp_min(1e-12), torch.ones_like(norm))
    return (x + delta).clamp(0.0, 1.0)


@torch.no_grad()
def predicted(net: DigitCNN, images: torch.Tensor) -> torch.Tensor:
    return net(images).argmax(dim=1)


def topk_share_loss(maps: torch.Tensor, clean_sets: torch.Tensor) -> torch.Tensor:
    """Ghorbani et al.'s top-k loss per image (B,): the share of sum |map| inside the clean top-k set."""
    flat = maps.flatten(1)
    return flat.gather(1, clean_sets).sum(dim=1) / flat.sum(dim=1).clamp_min(1e-30)


def _norms(x, x_adv):
    return (x_adv - x).flatten(1).norm(dim=1)


def saliency_attack(net: DigitCNN, images: torch.Tensor, target: torch.Tensor, *, eps: float, k: int,
                    attack: SaliencyAttackSettings = SaliencyAttackSettings(),
                    generator: torch.Generator) -> AttackOutcome:
    """The attack above on images (B, 3, S, S) with labels ``target`` (B,) that the classifier must keep: l2 size
    ``eps`` ([0,1] pixel units), the top-``k`` sets of the gradient maps, ``attack``'s steps, restarts, step size,
    twin and starts, directions drawn from ``generator``."""
    eps = check_interval("eps", eps, 0, what="the attack's l2 size", unit="([0,1] pixel units)")
    check_settings("attack", attack, SaliencyAttackSettings)
    steps, restarts, step_size = attack.steps, attack.restarts, attack.step_size
    beta, init_tries = attack.beta, attack.init_tries
    x = images.detach()
    clean_sets = topk_sets(saliency_maps(net, x, target), k)
    best_x, best = x.clone(), torch.ones(len(x), dtype=torch.float64)
    any_found = torch.zeros(len(x), dtype=torch.bool)

    def keep_best(candidate):
        nonlocal best_x, best
        ov = topk_overlap(clean_sets, saliency_maps(net, candidate, target))
        better = ov <= best  # on a tie the later iterate: where nothing lowers the overlap, delta is not left at 0
        best = torch.where(better, ov, best)
        best_x = torch.where(better.view(-1, 1, 1, 1), candidate, best_x)

    for _ in range(restarts):
        start, found = x.clone(), torch.zeros(len(x), dtype=torch.bool)
        for _ in range(init_tries):
            cand = project(x, x + eps * sphere_directions(x.shape, generator), eps)
            ok = (predicted(net, cand) == target) & ~found
            start[ok], found = cand[ok], found | ok
            if bool(found.all()):
                break
        any_found |= found
        x_adv = start
        keep_best(x_adv)
        rate = torch.full((len(x), 1, 1, 1), step_size * eps)
        for t in range(steps):
            with torch.enable_grad():
                x_var = x_adv.detach().clone().requires_grad_(True)
                maps = saliency_maps(net, x_var, target, beta=beta, create_graph=True)
                (grad,) = torch.autograd.grad(topk_share_loss(maps, clean_sets).sum(), x_var)
            unit = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
            cand = project(x, x_adv - rate / (t + 1) * unit, eps)
            ok = (predicted(net, cand) == target).view(-1, 1, 1, 1)
            x_adv = torch.where(ok, cand, x_adv)
            rate = torch.where(ok, rate, rate / 2)
            keep_best(x_adv)
    return AttackOutcome(best_x, best, _norms(x, best_x), any_found)


def clipped_scale(x: torch.Tensor, direction: torch.Tensor, norm: torch.Tensor, iterations: int = 40) -> torch.Tensor:
    """Per image the step s >= 0 with ||clip(x + s·u, 0, 1) - x|| = norm (bisection; the clipped norm grows with
    s). Where even a step of 64·norm + 1 cannot reach ``norm`` (the box blocks the direction), that step."""
    lo = torch.zeros_like(norm)
    hi = 64 * norm + 1
    for _ in range(iterations):
        mid = (lo + hi) / 2
        reach = _norms(x, (x + mid.view(-1, 1, 1, 1) * direction).clamp(0.0, 1.0))
        lo, hi = torch.where(reach < norm, mid, lo), torch.where(reach < norm, hi, mid)
    return hi


def random_perturbation(net: DigitCNN, images: torch.Tensor, target: torch.Tensor, norms: torch.Tensor, *,
                        k: int, tries: int = 10, generator: torch.Generator) -> AttackOutcome:
    """The control: per image a uniformly random direction, scaled so that the perturbation after clipping to
    [0, 1] has exactly the l2 norm ``norms`` (B,) (e.g. the attack's), up to ``tries`` directions until the
    label is kept (none: the last one). Overlap measured as in :func:`saliency_attack`."""
    x = images.detach()
    clean_sets = topk_sets(saliency_maps(net, x, target), k)
    out, found = x.clone(), torch.zeros(len(x), dtype=torch.bool)
    norms = norms.to(x.dtype)
    for attempt in range(check_positive_int("tries", tries)):
        u = sphere_directions(x.shape, generator)
        cand = (x + clipped_scale(x, u, norms).view(-1, 1, 1, 1) * u).clamp(0.0, 1.0)
        ok = predicted(net, cand) == target
        take = (ok | (attempt == tries - 1)) & ~found
        out[take], found = cand[take], found | (ok & ~found)
        if bool(found.all()):
            break
    return AttackOutcome(out, topk_overlap(clean_sets, saliency_maps(net, out, target)), _norms(x, out), found)
