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

import numpy as np
import torch
import torch.nn.functional as F

from ...engine.certificate import Certificate
from ...engine.config import SamplingConfig
from ...engine.smoothing import SmoothedAttribution
from ...engine.sparsify import upsample_maps
from ...engine.validation import CertattrError
from ...models.registry import LoadedModel
from ..checks import check_settings
from ..settings import MethodAtLayer, PixelCertificateSettings
from .flips import random_perturbation, target_flips
from .loop import AttackLoop, AttackResult, attack_noise
from .membership import plain_membership, smoothed_membership
from .settings import DEFAULT_ATTACKED_CERTIFICATE, PixelAttackSettings, TargetSettings
from .surrogate import check_method_and_layer, differentiable_maps
from .targets import attacked_k, choose_targets, evaluation_of, reference_labels, selection_agreement

__all__ = ["attack_certified"]


def attack_certified(model: LoadedModel, image, *, eps: float,
                     certificate: PixelCertificateSettings = DEFAULT_ATTACKED_CERTIFICATE,
                     attack: PixelAttackSettings = PixelAttackSettings(), targets: TargetSettings = TargetSettings(),
                     image_id: str = "", cache=None, clean: Certificate | None = None,
                     progress: bool = True) -> AttackResult:
    """Attack the top-K labels of the pixels nearest their decision boundary of ``image`` (3, H, W) in [0,1] within
    an l2 ball of radius ``eps`` ([0,1] pixel units), and measure what flipped.

    1. The clean certificate at x, made with ``certificate`` (method at layer, sigma, sampling, certification;
       :meth:`certattr.engine.smoothing.SmoothedAttribution.certify`, through ``cache``), or ``clean``, a
       certificate those settings made. Targets (``targets``, :class:`.settings.TargetSettings`; or
       ``targets.pixels``): the ``n_targets`` pixels of ``group`` at K = ``targets.k`` (default: the largest of
       the certificate's ks), the certified ones ranked by their agreeing samples, with ``select_n`` > 0 also
       counted on that many fresh samples of their own seed (:func:`.targets.select_seed`); reference labels: the
       certificate's label (the majority m_p for uncertified pixels).
    2. Attack (``attack``, :class:`.settings.PixelAttackSettings`; ``smoothed=True``): maximise the smoothed soft
       top-K disagreement at the targets. At every step ``n_attack`` **fresh** noisy copies
       x + delta + sigma eps (streams "attack-noise|restart|step": an expectation over the smoothing noise); per
       copy the margin m_p = +-(|a_p| - t_K) / std|a| (+ for label 1; t_K the linear (100-K)-th percentile of the
       copy's map), and the loss is the mean over copies and targets of T softplus(m_p / T + 1),
       T = ``temperature`` (a soft hinge: it keeps pushing a target until its margin is about -T in every copy).
       Normalised gradient steps of ``step_size`` * eps with ``momentum`` (a running sum of the normalised noisy
       gradients), ``decay`` (the step shrinks as 1/(1 + t/2)) off by default, ``restarts`` random starts on the
       eps-sphere, projection on the eps-ball and the [0,1] box, the real model's class kept (backtracking); the
       returned restart has the lowest final surrogate loss (chosen without the evaluation noise). The gradient
       is taken through the model itself when the map is first-order in the input (IxG at the Final layer of a
       GAP->linear head: ``beta="auto"``), else through the softplus surrogate (``beta``). ``smoothed=False``
       attacks the plain map instead (one copy, no noise; reference = the plain map's labels at x; default
       targets: the pixels nearest the plain map's threshold).
    3. Evaluation with fresh noise (seed ``targets.eval_seed``, default the certificate's seed + 1000;
       ``eval_n`` samples, more than the certification used): the fraction of the eval copies of x + delta
       agreeing with the reference label at each target. A target is **flipped** when at most half agree (the
       estimate of the smoothed label no longer gives the label), **confidently flipped** when a one-sided
       binomial test rejects P(agree) >= 1/2 at level ``eval_alpha`` / (number of targets) (default
       eval_alpha = alpha). With ``random_control``, the same for x + a random direction of the same norm
       (projected on the box); with ``eval_clean``, the same at x itself (``before``; NaN otherwise).

    What is guaranteed (certified group, ``smoothed=True``): if the clean certificate is right (probability
    >= 1 - alpha), every certified target has P(agree) > 1/2 at every x + delta with ||delta||_2 < R_p
    (>= R, Bonferroni), and >= 1/2 at ||delta||_2 = R_p; so for eps <= R, P(any confidently flipped certified
    target) <= alpha + eval_alpha (``details["failure_probability"]``). "Flipped" without confidence can
    also come from the evaluation's sampling error for a target whose probability is near 1/2. Nothing is
    guaranteed for uncertified pixels, for the plain map, or beyond R_p.
    """
    check_settings("certificate", certificate, PixelCertificateSettings)
    check_settings("attack", attack, PixelAttackSettings)
    check_settings("targets", targets, TargetSettings)
    method, layer = check_method_and_layer(certificate.attribution.method, certificate.attribution.layer)
    attribution = MethodAtLayer(method, layer)
    sampling, cert_config, sigma = certificate.sampling, certificate.cert, certificate.sigma
    ks = cert_config.ks
    k = attacked_k(targets, ks)
    n, seed, chunk_size = sampling.n, sampling.seed, sampling.chunk_size
    n0, tau, alpha = cert_config.n0, cert_config.tau, cert_config.alpha
    group, n_targets, select_n, smoothed = targets.group, targets.n_targets, targets.select_n, attack.smoothed
    n_attack, temperature, eval_n = attack.n_attack, attack.temperature, targets.eval_n
    eval_seed, eval_alpha = evaluation_of(targets, seed, alpha)
    if clean is not None:
        certificate.check_describes(clean)
    att = AttackLoop(model, image, eps=eps, settings=attack, attribution=attribution, seed=seed, image_id=image_id,
                     progress=progress, desc=f"certified-pixel attack {image_id}")
    label = att.label
    target = torch.tensor([label])
    size = tuple(att.x.shape[1:])

    if clean is None:
        engine = SmoothedAttribution(model, method, layer, sigma, sampling, cert_config, cache=cache,
                                     progress=progress)
        clean = engine.certify(att.x.cpu(), image_id, label)  # at the config's ks, tau, alpha and correction
    i = clean.index(k)
    chosen = targets.pixels
    if chosen is not None:
        chosen = np.asarray(chosen, dtype=np.int64).ravel()
        if chosen.size and chosen.max() >= clean.n_pixels:
            raise CertattrError(f"pixels are not allowed outside 0..{clean.n_pixels - 1}: give flat pixel indices")
    if smoothed:
        if chosen is None:
            extra = None
            if select_n:
                extra = selection_agreement(model, att.x, label, clean, k, certificate=certificate, n=select_n,
                                            image_id=image_id, cache=cache)
            chosen = choose_targets(clean, k, group, n_targets, seed, image_id, extra, select_n)
        reference = reference_labels(clean, k, chosen)
    else:  # default targets: the plain map's own boundary, the pixels nearest its threshold t_K
        member, margin = plain_membership(model, att.x.cpu(), label, attribution=attribution, k=k, margins=True)
        if chosen is None:
            chosen = np.argsort(np.abs(margin.ravel()), kind="stable")[:n_targets]
        reference = member.ravel()[chosen].astype(np.int64)
    want_one = torch.from_numpy(reference == 1).float()
    index = torch.from_numpy(chosen)
    q = torch.tensor([(100.0 - k) / 100.0], dtype=torch.float32)

    def loss_fn(x_adv, restart, step):
        if len(chosen) == 0:
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
    evaluation = SamplingConfig(n=eval_n, seed=eval_seed, chunk_size=chunk_size)  # fresh noise, no cache

    def measure(x_eval) -> dict:
        if smoothed:
            member = smoothed_membership(model, x_eval, label, attribution=attribution, k=k, sigma=sigma,
                                         sampling=evaluation, image_id=image_id)
        else:
            member = plain_membership(model, x_eval, label, attribution=attribution, k=k)
        return target_flips(member, chosen, reference, n_eval, eval_alpha)

    attacked = measure(x_adv)
    details = {"method": method, "layer": layer, "k": k, "ks": ks, "sigma": sigma, "n": n, "n0": n0, "tau": tau,
               "alpha": alpha, "group": group, "smoothed": smoothed, "radius": clean.radius,
               "within_radius": att.eps <= clean.radius, "targets": chosen, "reference": reference,
               "target_counts": clean.counts[i].ravel()[chosen], "target_radii": clean.radii[i].ravel()[chosen],
               "eval_n": n_eval, "eval_seed": eval_seed, "eval_alpha": eval_alpha,
               "failure_probability": alpha + eval_alpha, "clean_certificate": clean, "attacked": attacked}
    if targets.random_control:
        x_rand = random_perturbation(att.x.cpu(), att.eps, seed, image_id).to(att.x.device)
        details["random"] = {**measure(x_rand), "delta_norm": float((x_rand.double() - att.x64).norm()),
                             "class_kept": att.keeps_class(x_rand)}
    before = math.nan
    if targets.eval_clean:
        details["clean"] = measure(att.x)
        before = details["clean"]["fraction_flipped"]
    name = "flipped fraction of targeted pixels" + ("" if smoothed else " (plain map)")
    return att.result(name, x_adv, before, attacked["fraction_flipped"], scores, history, details)
