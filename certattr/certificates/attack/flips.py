"""Which targets a perturbation flipped (with and without a one-sided binomial test), and the control: a
random direction of the same norm."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import binom

from ...engine.noise import numpy_generator
from ...engine.validation import check_image
from ..checks import check_eps

__all__ = ["target_flips", "flip_counts", "random_perturbation"]


def flip_counts(agree_count: np.ndarray, n_eval: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """(flipped, confidently flipped) for agree counts out of n_eval: flipped = the estimate no longer keeps
    the label (at most half of the samples agree); confident = a one-sided binomial test rejects
    P(agree) >= 1/2 at ``level`` (P(Bin(n_eval, 1/2) <= agree) <= level)."""
    flipped = 2 * agree_count <= n_eval
    confident = binom.cdf(agree_count, n_eval, 0.5) <= level
    return flipped, confident


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
    flipped, confident = flip_counts(agree, n_eval, eval_alpha / max(len(targets), 1))
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
