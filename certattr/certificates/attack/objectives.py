"""Two attacks on the related certificates' maps: (a) the top-k overlap (raw map or Sparsified SmoothGrad) and
(b) the cosine similarity (raw map or the uniformly smoothed map). The attacker minimises both."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.config import SamplingConfig
from ...engine.sparsify import rank_order
from ...models.registry import LoadedModel
from ..checks import check_settings
from ..cosine import bound_norm, check_threshold, smooth_uniform, uniform_ball_noise
from ..settings import MethodAtLayer, SparsifiedSmoothing, UniformSmoothing
from ..sparsified_smoothgrad import check_k, relaxed_sparsify, sparsified_smoothgrad
from .loop import AttackLoop, AttackResult, attack_noise
from .settings import DEFAULT_ATTACK, DEFAULT_ATTACK_SAMPLING, AttackSettings
from .surrogate import check_method_and_layer, differentiable_maps, registry_maps

__all__ = ["attack_topk", "attack_cosine", "SURROGATE_GAMMA_FRAC"]

#: the relaxed sparsification of the top-k attack's surrogate when the smoothing gives no gamma_frac
SURROGATE_GAMMA_FRAC = 0.01


def _checked(attribution, sampling, attack) -> MethodAtLayer:
    """The attacked map with a method the attack can differentiate, once the three settings are checked."""
    check_settings("attribution", attribution, MethodAtLayer)
    check_settings("sampling", sampling, SamplingConfig)
    check_settings("attack", attack, AttackSettings)
    return MethodAtLayer(*check_method_and_layer(attribution.method, attribution.layer))


# --- (a) top-k overlap -----------------------------------------------------------------------------------
def attack_topk(model: LoadedModel, image, *, k: int, eps: float, attribution: MethodAtLayer = MethodAtLayer(),
                smoothing: SparsifiedSmoothing | None = None, sampling: SamplingConfig = DEFAULT_ATTACK_SAMPLING,
                attack: AttackSettings = DEFAULT_ATTACK, image_id: str = "", progress: bool = True) -> AttackResult:
    """Minimise the top-k overlap |X ∩ top-k(map(x + delta))| / k over ||delta||_2 <= ``eps`` ([0,1] pixel units),
    X = the clean map's top-k (ties: index), for ``image`` (3, H, W) in [0,1] and its predicted class.

    ``smoothing=None``: the registry map |method(x)| of ``attribution``; surrogate loss = the share of |map| inside
    X (Ghorbani et al.'s top-k loss). With ``smoothing``: hard Sparsified SmoothGrad s_hat at its sigma and tau_frac
    from ``sampling.n`` samples (the pipeline's noise, seed ``sampling.seed`` at both x and x + delta,
    ``sampling.chunk_size`` copies per model call); surrogate = the relaxed variant at its ``gamma_frac`` (None:
    :data:`SURROGATE_GAMMA_FRAC`) over ``attack.n_attack`` fresh noisy copies per step. ``attack``: the loop's
    steps, restarts, step size and surrogate; ``sampling.seed`` also seeds the loop's random starts.
    """
    attribution = _checked(attribution, sampling, attack)
    method, layer, seed = attribution.method, attribution.layer, sampling.seed
    att = AttackLoop(model, image, eps=eps, settings=attack, attribution=attribution, seed=seed, image_id=image_id,
                     progress=progress, desc=f"top-k attack {image_id}")
    label = att.label
    target = torch.tensor([label])
    if smoothing is not None:
        check_settings("smoothing", smoothing, SparsifiedSmoothing)
        sigma, n_attack = smoothing.sigma, attack.n_attack
        gamma_frac = SURROGATE_GAMMA_FRAC if smoothing.gamma_frac is None else smoothing.gamma_frac
        measured = SparsifiedSmoothing(sigma, smoothing.tau_frac)  # the hard estimate
        relaxed = SparsifiedSmoothing(sigma, smoothing.tau_frac, gamma_frac)  # its surrogate

        def real_map(x_adv):
            return sparsified_smoothgrad(model, x_adv.cpu(), label, attribution=attribution, smoothing=measured,
                                         sampling=sampling, image_id=image_id).s_hat
    else:
        def real_map(x_adv):
            return np.abs(registry_maps(model, x_adv.unsqueeze(0), label, method, layer)[0].double().numpy())

    real_map = att.memoised(real_map)
    clean = real_map(att.x)
    k = check_k(k, clean.size)
    top = torch.from_numpy(rank_order(clean.ravel()[None])[0][:k].copy())

    def overlap(x_adv) -> float:
        m = real_map(x_adv).ravel()
        return len(set(top.tolist()) & set(rank_order(m[None])[0][:k].tolist())) / k

    def loss_fn(x_adv, restart, step):
        if smoothing is not None:
            noise = attack_noise(x_adv.shape, sigma, seed, image_id, restart, step, n_attack).to(x_adv.device)
            maps = differentiable_maps(att.surrogate, x_adv.unsqueeze(0) + noise, target.expand(n_attack), method,
                                       layer)
            m = relaxed_sparsify(maps, relaxed.tau_frac, relaxed.gamma_frac).mean(dim=0).flatten()
        else:
            m = differentiable_maps(att.surrogate, x_adv.unsqueeze(0), target, method, layer)[0].abs().flatten()
        return m[top].sum() / m.sum().clamp_min(1e-12)

    before = overlap(att.x)
    x_adv, scores, history = att.run(loss_fn, overlap)
    after = overlap(x_adv)
    smoothed = smoothing is not None
    return att.result("top-k overlap", x_adv, before, after, scores, history,
                      {"k": k, "method": method, "layer": layer, "smoothing": smoothed,
                       "sigma": smoothing.sigma if smoothed else None, "n_eval": sampling.n if smoothed else None})


# --- (b) cosine similarity -------------------------------------------------------------------------------
def attack_cosine(model: LoadedModel, image, *, eps: float, smoothing: UniformSmoothing | None = None,
                  T: float | None = None, attribution: MethodAtLayer = MethodAtLayer(),
                  sampling: SamplingConfig = DEFAULT_ATTACK_SAMPLING, attack: AttackSettings = DEFAULT_ATTACK,
                  image_id: str = "", progress: bool = True) -> AttackResult:
    """Minimise cos(map(x), map(x + delta)) over ||delta||_2 <= ``eps`` ([0,1] pixel units) for ``image``
    (3, H, W) in [0,1] and its predicted class: the uniformly smoothed map h_hat of ``smoothing`` (ball radius r,
    maps bounded by M; N = ``sampling.n`` samples of seed ``sampling.seed``, the same ball samples at x and
    x + delta, ``sampling.chunk_size`` per model call) or, with ``smoothing=None``, the raw map of
    ``attribution``. The surrogate averages ``attack.n_attack`` fresh ball samples per step. With ``T``,
    ``details["below_T"]`` says whether the attack pushed the cosine below T."""
    attribution = _checked(attribution, sampling, attack)
    method, layer, seed = attribution.method, attribution.layer, sampling.seed
    if smoothing is not None:
        check_settings("smoothing", smoothing, UniformSmoothing)
        n_attack = attack.n_attack
    if T is not None:
        T = check_threshold(T)
    att = AttackLoop(model, image, eps=eps, settings=attack, attribution=attribution, seed=seed, image_id=image_id,
                     progress=progress, desc=f"cosine attack {image_id}")
    label = att.label
    target = torch.tensor([label])

    def real_map(x_adv) -> np.ndarray:
        if smoothing is None:
            return registry_maps(model, x_adv.unsqueeze(0), label, method, layer)[0].double().numpy().ravel()
        return smooth_uniform(model, x_adv.cpu(), label, attribution=attribution, smoothing=smoothing,
                              sampling=sampling, image_id=image_id).h_hat.ravel()

    real_map = att.memoised(real_map)
    clean = real_map(att.x)
    clean_t = torch.from_numpy(clean).float()

    def cosine(x_adv) -> float:
        m = real_map(x_adv)
        den = np.linalg.norm(m) * np.linalg.norm(clean)
        return float(m @ clean / den) if den > 0 else 0.0

    def loss_fn(x_adv, restart, step):
        if smoothing is None:
            m = differentiable_maps(att.surrogate, x_adv.unsqueeze(0), target, method, layer)[0].flatten()
        else:
            noise = uniform_ball_noise(x_adv.shape, smoothing.r, seed, image_id, range(n_attack),
                                       stream=f"attack-ball|{restart}|{step}").to(x_adv.device)
            maps = differentiable_maps(att.surrogate, x_adv.unsqueeze(0) + noise, target.expand(n_attack), method,
                                       layer)
            m = bound_norm(maps, smoothing.M, smoothing.bound).mean(dim=0).flatten()
        return F.cosine_similarity(m, clean_t.to(m.device), dim=0, eps=1e-12)

    before = cosine(att.x)
    x_adv, scores, history = att.run(loss_fn, cosine)
    after = cosine(x_adv)
    smoothed = smoothing is not None
    # a raw map has no norm bound: "M" then reports the default bound, as it always has
    details = {"method": method, "layer": layer, "r": smoothing.r if smoothed else None,
               "N": sampling.n if smoothed else None, "M": smoothing.M if smoothed else UniformSmoothing.M, "T": T}
    if T is not None:
        details["below_T"] = after < T
    return att.result("cosine similarity", x_adv, before, after, scores, history, details)
