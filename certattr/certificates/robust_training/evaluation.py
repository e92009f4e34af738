"""What the chapter measures on the trained networks, as tidy rows (one dict per measurement).

* :func:`attack_rows`: their Fig. 6 as measured: per test digit and eps, the top-k overlap of the gradient map
  under their attack and under a random perturbation of the same l2 norm (the control);
* :func:`paper_certificate_rows`: the paper's certificate of Grad at the Input layer through the engine
  (:class:`certattr.engine.smoothing.SmoothedAttribution`), per digit and K: certified '1', '0', abstain;
* :func:`sparsified_rows`: Sparsified SmoothGrad's certified top-k overlap per digit and eps;
* :func:`scaled_vs_sparsified_rows`: Levine's Fig. 1(b): the certified top-k overlap of Sparsified SmoothGrad
  and of scaled SmoothGrad (each sample's |map| divided by its maximum, so in [0, 1]; the same Hoeffding term
  and the same population bound, :func:`certattr.certificates.sparsified_smoothgrad.certified_overlap`) from the
  **same** noisy samples of one image.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ...engine.config import CertConfig, SamplingConfig
from ...engine.encodings import BoundedSum, TopKSet
from ...engine.noise import Gaussian
from ...engine.smoothing import SmoothedAttribution
from ...engine.sparsify import topk_count
from ...engine.validation import CertattrError, check_positive_int
from ..checks import check_eps, check_settings
from ..settings import SparsifiedSmoothing
from ..sparsified_smoothgrad import certified_overlap, hoeffding_term
from .data import DigitSplits
from .network import digit_model, one_thread
from .saliency_attack import SaliencyAttackSettings, predicted, random_perturbation, saliency_attack
from .training import TrainedNetwork

__all__ = ["ScaledSum", "attack_rows", "paper_certificate_rows", "sparsified_rows", "scaled_vs_sparsified_rows",
           "evaluation_digits"]


def _digit_work(function):
    """Run a measurement of the digit networks on one torch thread (:func:`.network.one_thread`)."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        with one_thread():
            return function(*args, **kwargs)
    return run


def evaluation_digits(data: DigitSplits, count: int) -> tuple[torch.Tensor, list[str]]:
    """The first ``count`` test digits (the same for every network) and their ids ``digit<i>``."""
    count = min(check_positive_int("count", count), len(data.test_images))
    return data.test_images[:count], [f"digit{i}" for i in range(count)]


@_digit_work
def attack_rows(trained: TrainedNetwork, data: DigitSplits, *, eps_list, k: int, n_images: int,
                attack: SaliencyAttackSettings, seed: int = 0) -> list[dict]:
    """Per digit and eps: ``attack`` and ``random`` top-k overlaps (the random control has the attack's norm per
    digit), ``norm`` and whether the digit is correctly classified. The map explains the predicted class; the
    attack (:func:`.saliency_attack.saliency_attack` with ``attack``'s settings) and its control draw their
    directions from one generator of ``seed`` per eps."""
    check_settings("attack", attack, SaliencyAttackSettings)
    net = trained.net
    x, ids = evaluation_digits(data, n_images)
    labels = data.test_labels[:len(x)]
    y = predicted(net, x)
    rows = []
    for eps in eps_list:
        eps = check_eps(eps)
        gen = torch.Generator().manual_seed(seed)
        att = saliency_attack(net, x, y, eps=eps, k=k, attack=attack, generator=gen)
        ctl = random_perturbation(net, x, y, att.norm, k=k, generator=gen)
        for i, image_id in enumerate(ids):
            rows.append({"lam": trained.settings.lam, "eps": eps, "image": image_id, "attack": float(att.overlap[i]),
                         "random": float(ctl.overlap[i]), "norm": float(att.norm[i]),
                         "correct": bool(y[i] == labels[i]), "start_found": bool(att.found[i])})
    return rows


@_digit_work
def paper_certificate_rows(trained: TrainedNetwork, data: DigitSplits, *, sigma: float, n_images: int,
                           sampling: SamplingConfig, cert: CertConfig, cache=None) -> list[dict]:
    """Per digit and K: the paper's certificate of Grad at the Input layer of the trained network (the engine,
    its noise and its sample cache; the network's weights are part of every cache key)."""
    model = digit_model(trained.net)
    engine = SmoothedAttribution(model, "grad", "input", Gaussian(sigma), sampling, cert, cache=cache, progress=False)
    x, ids = evaluation_digits(data, n_images)
    rows = []
    for image, image_id in zip(x, ids):
        certificate = engine.certify(image, image_id)
        for k, share in certificate.fractions().items():
            rows.append({"lam": trained.settings.lam, "image": image_id, "K": k, **share,
                         "certified": 1 - share["abstain"], "degenerate": bool(certificate.degenerate)})
    return rows


def _hard(smoothing: SparsifiedSmoothing) -> SparsifiedSmoothing:
    """``smoothing`` when it is the hard estimate (what Levine's certificate of these rows reads), else one line."""
    check_settings("smoothing", smoothing, SparsifiedSmoothing)
    if smoothing.gamma_frac is not None:
        raise CertattrError(f"gamma_frac={smoothing.gamma_frac!r} is not allowed here: these rows certify the hard "
                            f"top-k sets; give gamma_frac=None")
    return smoothing


@_digit_work
def sparsified_rows(trained: TrainedNetwork, data: DigitSplits, *, smoothing: SparsifiedSmoothing,
                    sampling: SamplingConfig, eta: float, k: int, eps_list, n_images: int, cache=None) -> list[dict]:
    """Per digit and eps: Sparsified SmoothGrad's certified top-k overlap (share of k) of Grad at the Input layer,
    from ``sampling``'s n samples (its seed and chunk size) at ``smoothing``'s sigma and tau_frac, at confidence
    ``eta``."""
    sigma, tau_frac = _hard(smoothing).sigma, smoothing.tau_frac
    n = check_settings("sampling", sampling, SamplingConfig).n
    model = digit_model(trained.net)
    engine = SmoothedAttribution(model, "grad", "input", Gaussian(sigma), sampling, cache=cache, progress=False)
    encoding = TopKSet(tau_frac)
    x, ids = evaluation_digits(data, n_images)
    rows = []
    for image, image_id in zip(x, ids):
        target = engine.resolve_target(image, None)
        s_hat = sum(encoding.decode(chunk).sum(axis=0) for chunk in engine.chunks(image, image_id, target, encoding)) / n
        c = hoeffding_term(n, s_hat.size, eta)
        for eps in eps_list:
            rows.append({"lam": trained.settings.lam, "image": image_id, "eps": float(eps), "k": k,
                         "certified_overlap": certified_overlap(s_hat, k, eps, sigma, c) / k})
    return rows


class ScaledSum(BoundedSum):
    """Per chunk, the sum of the samples' |maps| each divided by its own maximum (a map of zeros stays zero):
    scaled SmoothGrad's terms, in [0, 1]. Float64 (h, w), stored in the sample cache beside the top-k sets; read,
    checked and sized as the cosine certificate's bounded sums are (:class:`certattr.engine.encodings.BoundedSum`)."""

    def __init__(self):
        self.spec, self.tag = "scaled-sum", "scaledsum"

    def encode(self, maps, size):
        a = np.abs(np.asarray(maps, dtype=np.float64))
        peak = a.reshape(len(a), -1).max(axis=1)
        scaled = a / np.where(peak > 0, peak, 1.0)[:, None, None]
        return {"sum": scaled.sum(axis=0), "count": np.array(len(a))}


def scaled_vs_sparsified_rows(model, image: torch.Tensor, image_id: str, *, smoothing: SparsifiedSmoothing,
                              sampling: SamplingConfig, eta: float, k_frac: float, eps_list, cache=None,
                              progress: bool = False) -> list[dict]:
    """Per eps: the certified top-k overlap (share of k = ceil(k_frac · d)) of Sparsified SmoothGrad (top
    tau_frac of each |map|, ``smoothing``) and of scaled SmoothGrad, Grad at the Input layer, from the same
    ``sampling.n`` noisy samples (Gaussian of ``smoothing.sigma``), at confidence ``eta``."""
    sigma, tau_frac = _hard(smoothing).sigma, smoothing.tau_frac
    n = check_settings("sampling", sampling, SamplingConfig).n
    scaled, topk = ScaledSum(), TopKSet(tau_frac)
    engine = SmoothedAttribution(model, "grad", "input", Gaussian(sigma), sampling, cache=cache, progress=progress,
                                 also_store=(scaled,))
    target = engine.resolve_target(image, None)
    s_sparse = sum(topk.decode(c).sum(axis=0) for c in engine.chunks(image, image_id, target, topk)) / n
    s_scaled = sum(scaled.decode(c) for c in engine.chunks(image, image_id, target, scaled)) / n
    d = s_sparse.size
    k = topk_count(d, k_frac)
    c = hoeffding_term(n, d, eta)
    rows = []
    for eps in eps_list:
        for name, s_hat in (("Sparsified SmoothGrad", s_sparse), ("scaled SmoothGrad", s_scaled)):
            rows.append({"image": image_id, "method": name, "eps": float(eps), "k": k, "c": c,
                         "certified_overlap": certified_overlap(s_hat, k, eps, sigma, c) / k,
                         "max_value": float(s_hat.max())})
    return rows
