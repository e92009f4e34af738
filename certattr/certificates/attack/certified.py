"""(c) The attack on the certified pixels: flip the smoothed top-K labels of the pixels nearest their decision
boundary, measured afterwards with fresh noise and more samples than certification used.

**What it is checked against.** If the clean certificate is right (probability >= 1 - alpha), every
certified pixel keeps its label with probability > 1/2 at every x + delta with ||delta|| < R =
sigma Phi^-1(tau) (and with probability >= 1/2 at ||delta|| = R); a one-sided binomial test on fresh
samples then finds it flipped only by a false rejection (probability <= eval_alpha). So for an attack
inside R, P(any certified target confidently flipped) <= alpha + eval_alpha. Uncertified pixels and the
plain map carry no guarantee; the attack is shown strong on them (and beyond R) so that "nothing flipped
inside R" means something.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.certificate import Certificate
from ...engine.config import DEFAULT_CERT, DEFAULT_SAMPLING, CertConfig, SamplingConfig, check_fits
from ...engine.smoothing import SmoothedAttribution
from ...engine.sparsify import upsample_maps
from ...engine.validation import (CertattrError, check_alpha, check_choice, check_finite_number, check_ks,
                                  check_positive_int, check_sigma)
from ...models.registry import LoadedModel
from .flips import random_perturbation, target_flips
from .loop import AttackLoop, AttackResult, attack_noise
from .membership import plain_membership, smoothed_membership
from .surrogate import check_method_and_layer, differentiable_maps, first_order
from .targets import TARGET_GROUPS, choose_targets, evaluation_seed, reference_labels, select_seed, selection_agreement

__all__ = ["attack_certified"]


def attack_certified(model: LoadedModel, image, *, eps: float, method: str = "ixg", layer: str = "final",
                     ks: Sequence[float] = (50,), k: float | None = None, sigma: float = 0.25,
                     n: int = DEFAULT_SAMPLING.n,
                     n0: int = DEFAULT_CERT.n0, tau: float = DEFAULT_CERT.tau, alpha: float = DEFAULT_CERT.alpha,
                     correction: str = DEFAULT_CERT.correction,
                     group: str = "certified", n_targets: int = 32, smoothed: bool = True, n_attack: int = 8,
                     temperature: float = 1.0, steps: int = 20, restarts: int = 2, step_size: float = 0.25,
                     beta: float | None | str = "auto", seed: int = DEFAULT_SAMPLING.seed, eval_n: int = 1000,
                     eval_seed: int | None = None,
                     eval_alpha: float | None = None, image_id: str = "", chunk_size: int = DEFAULT_SAMPLING.chunk_size,
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
    method, layer = check_method_and_layer(method, layer)
    ks = check_ks(ks)
    k = ks[0] if k is None else float(check_ks([k])[0])
    if k not in ks:
        raise CertattrError(f"k={k:g} is not allowed: it must be one of the certified ks {list(ks)}")
    sigma = check_sigma(sigma)
    # the clean certificate's settings, validated
    sampling = SamplingConfig(n=n, seed=seed, chunk_size=chunk_size)
    cert_config = CertConfig(n0=n0, tau=tau, alpha=alpha, correction=correction, ks=ks)
    check_fits(sampling, cert_config)
    n, chunk_size = sampling.n, sampling.chunk_size
    n0, tau, alpha = cert_config.n0, cert_config.tau, cert_config.alpha
    group = check_choice("group", group, TARGET_GROUPS)
    n_targets = check_positive_int("n_targets", n_targets)
    n_attack = check_positive_int("n_attack", n_attack)
    temperature = check_finite_number("temperature", temperature)
    if temperature <= 0:
        raise CertattrError(f"temperature={temperature!r} is not allowed: it must be > 0")
    eval_n = check_positive_int("eval_n", eval_n, 2)
    eval_seed = evaluation_seed(seed) if eval_seed is None else check_positive_int("eval_seed", eval_seed, 0)
    if eval_seed == seed:
        raise CertattrError(f"eval_seed={eval_seed} is not allowed: it must differ from seed={seed} "
                            f"(the evaluation needs fresh noise)")
    eval_alpha = alpha if eval_alpha is None else check_alpha(eval_alpha)
    if isinstance(beta, str) and beta == "auto":
        beta = None if first_order(model, method, layer) else 10.0
    att = AttackLoop(model, image, eps=eps, steps=steps, restarts=restarts, step_size=step_size, seed=seed,
                     image_id=image_id, beta=beta, max_backtracks=max_backtracks, init_tries=init_tries,
                     progress=progress, desc=f"certified-pixel attack {image_id}", momentum=momentum, decay=decay)
    label = att.label
    target = torch.tensor([label])
    size = tuple(att.x.shape[1:])

    if clean is None:
        engine = SmoothedAttribution(model, method, layer, sigma, sampling, cert_config, cache=cache,
                                     progress=progress)
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
        reference = reference_labels(clean, k, targets)
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
            noise = attack_noise(x_adv.shape, sigma, seed, image_id, restart, step, n_attack).to(x_adv.device)
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
