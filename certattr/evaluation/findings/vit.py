"""Checks on the ViT chapter's table (robustness rows of ViT-B/16) against the CNN's robustness rows. The
claims are about ViT-B/16 with its ImageNet weights; a run with random weights cannot test them."""
from __future__ import annotations

import numpy as np

from ..names import layer_title, method_title
from .claims import FINDINGS, Verdict
from .common import fmt_interval, not_tested, select
from .evidence import RunSettings, admissible
from .robustness import GRADIENT_METHODS
from .stats import bootstrap_interval

__all__ = ["check_vit_gradient_weak", "check_vit_rise_robust", "check_vit_activation_weak_final",
           "ACTIVATION_METHODS"]

ACTIVATION_METHODS = ("cam", "gradcam", "gradcampp", "layercam", "ablationcam")
SAME = 0.10  #: 'comparable' robustness: within this many points (fraction) of each other


def _offline(fid: str, vit):
    if vit is None or not len(vit):
        return not_tested(fid, "the ViT chapter did not run")
    weights = set(vit.weights) if "weights" in vit else {"pretrained"}
    if weights != {"pretrained"}:
        return not_tested(fid, "ViT-B/16 ran with " + ", ".join(sorted(weights)) + " weights: its ImageNet weights "
                          "cannot be installed offline, and a claim about trained attributions says nothing about a "
                          "random network", verdict="cannot test offline")
    return None


def _robustness(frame, methods, layer):
    part = select(frame, sigma=float(frame.sigma.min()), layer=layer)
    part = part[part.method.isin(methods)]
    return part.groupby("image_id").robustness.mean().to_numpy(float)


def _compare(fid, vit, rob, methods, layer, settings, seed, *, want: str) -> Verdict:
    """ViT minus CNN robustness of ``methods`` at ``layer``: want 'same' (|diff| < SAME) or 'lower'."""
    stop = _offline(fid, vit)
    if stop:
        return stop
    v = _robustness(admissible(vit, settings).frame, methods, layer)
    c = _robustness(admissible(rob, settings).frame, methods, layer) if rob is not None and len(rob) else np.array([])
    if not len(v) or not len(c):
        return not_tested(fid, f"the methods did not run at the {layer_title(layer)} layer of both models")
    est, low, high = bootstrap_interval([v, c], lambda a, b: a.mean() - b.mean(), seed=seed)
    measured = (f"{layer_title(layer)} layer, robustness ViT minus CNN = {est:+.2f} ({fmt_interval(low, high)})")
    if want == "same":
        verdict = "agrees" if -SAME < low and high < SAME else ("disagrees" if low > SAME or high < -SAME else
                                                                "inconclusive")
    else:
        verdict = "agrees" if high < 0 else ("disagrees" if low > 0 else "inconclusive")
    return Verdict(FINDINGS[fid], verdict, measured, f"The interval is {fmt_interval(low, high)}.", {
        "diff": est, "ci_low": low, "ci_high": high})


def check_vit_gradient_weak(vit, rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    return _compare("vit_gradient_weak", vit, rob, GRADIENT_METHODS, "input", settings, seed, want="same")


def check_vit_activation_weak_final(vit, rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    return _compare("vit_activation_weak_final", vit, rob, ACTIVATION_METHODS, "final", settings, seed, want="lower")


def check_vit_rise_robust(vit, *, settings: RunSettings | None = None) -> Verdict:
    fid = "vit_rise_robust"
    stop = _offline(fid, vit)
    if stop:
        return stop
    part = select(admissible(vit, settings).frame, sigma=float(vit.sigma.min()), layer="final")
    means = part.groupby("method").robustness.mean()
    if "rise" not in means or len(means) < 2:
        return not_tested(fid, "RISE and another method did not both run at ViT's Final layer")
    best = means.idxmax()
    verdict = "agrees" if best == "rise" else "disagrees"
    measured = "Final layer robustness: " + ", ".join(f"{method_title(m)} {v:.2f}" for m, v in
                                                        means.sort_values(ascending=False).items())
    return Verdict(FINDINGS[fid], verdict, measured, f"{method_title(best)} is the most robust.", {})
