"""Two attacks on the related certificates' maps: (a) the top-k overlap (raw map or Sparsified SmoothGrad) and
(b) the cosine similarity (raw map or the uniformly smoothed map). The attacker minimises both."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.sparsify import check_fraction, rank_order
from ...engine.validation import check_positive_int, check_sigma
from ...models.registry import LoadedModel
from ..cosine import bound_norm, check_radius, check_threshold, smooth_uniform, uniform_ball_noise
from ..sparsified_smoothgrad import check_k, relaxed_sparsify, sparsified_smoothgrad
from .loop import AttackLoop, AttackResult, attack_noise
from .surrogate import check_method_and_layer, differentiable_maps, registry_maps

__all__ = ["attack_topk", "attack_cosine"]


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
    method, layer = check_method_and_layer(method, layer)
    att = AttackLoop(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                     image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                     progress=progress, desc=f"top-k attack {image_id}")
    label = att.label
    target = torch.tensor([label])
    if smoothing:
        sigma = check_sigma(sigma)
        tau_frac, gamma_frac = check_fraction("tau_frac", tau_frac), check_fraction("gamma_frac", gamma_frac)
        n_attack, n_eval = check_positive_int("n_attack", n_attack), check_positive_int("n_eval", n_eval)

        def real_map(x_adv):
            return sparsified_smoothgrad(model, x_adv.cpu(), label, method=method, layer=layer, sigma=sigma,
                                         n=n_eval, tau_frac=tau_frac, seed=seed, image_id=image_id,
                                         chunk_size=chunk_size).s_hat
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
        if smoothing:
            noise = attack_noise(x_adv.shape, sigma, seed, image_id, restart, step, n_attack).to(x_adv.device)
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
    method, layer = check_method_and_layer(method, layer)
    if r is not None:
        r = check_radius(r)
        N, n_attack = check_positive_int("N", N), check_positive_int("n_attack", n_attack)
    if T is not None:
        T = check_threshold(T)
    att = AttackLoop(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                     image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                     progress=progress, desc=f"cosine attack {image_id}")
    label = att.label
    target = torch.tensor([label])

    def real_map(x_adv) -> np.ndarray:
        if r is None:
            return registry_maps(model, x_adv.unsqueeze(0), label, method, layer)[0].double().numpy().ravel()
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

