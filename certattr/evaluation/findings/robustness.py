"""Checks on the robustness chapter's tables (tidy %certified rows, one per image x method x layer x σ x K;
see :func:`certattr.evaluation.experiments.robustness_rows`)."""
from __future__ import annotations

import math

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import count, fmt_interval, not_tested, rank_verdict, select, titles
from .evidence import RunSettings, admissible, listing, unavailable
from .stats import CONFIDENCE, bootstrap_interval, direction_verdict, fmt_p

__all__ = ["GRADIENT_METHODS", "check_gradient_input", "check_sigma_trend", "check_tau_trend",
           "check_r_trend_every_model", "check_k_trend_every_model", "check_input_robust_leaders",
           "check_input_small_k_balance", "check_small_k_detail"]

GRADIENT_METHODS = ("grad", "gb", "ixg", "intgrad")
BUDGET_THRESHOLD = 0.10  #: 'almost nothing' = below this share of the top-K budget


def check_gradient_input(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """Per named gradient method: the share of the top-K budget certified '1' at the Input layer."""
    fid = "gradient_input"
    if rob is None or not len(rob):
        return not_tested(fid, "no robustness rows")
    ev = admissible(rob, settings)
    sigma0, k = float(rob.sigma.min()), float(rob.k.max())
    part = select(ev.frame, sigma=sigma0, k=k, layer="input")
    missing = unavailable(GRADIENT_METHODS, rob, ev, "input", settings)
    present = [m for m in GRADIENT_METHODS if m not in missing]
    if not present:
        return not_tested(fid, "no gradient method (Grad, GB, IxG, IntGrad) counts as evidence at the Input layer: "
                          + listing([f"{method_title(m)} ({w})" for m, w in missing.items()]), excluded=ev.note())
    budget = k / 100.0
    stats, texts = {}, []
    for m in present:
        per_image = part[part.method == m].groupby("image_id")[["n_certified_1", "n_pixels"]].sum()
        c1, px = per_image.n_certified_1.to_numpy(float), per_image.n_pixels.to_numpy(float)
        share, low, high = bootstrap_interval(np.arange(len(c1)), lambda i: c1[i].sum() / px[i].sum() / budget,
                                              seed=seed)
        stats[m] = {"share": share, "ci_low": low, "ci_high": high, "images": int(len(c1))}
        texts.append(f"{method_title(m)} {100 * share:.1f}% ({CONFIDENCE:.0%} CI {100 * low:.1f} to {100 * high:.1f}%)")
    images = max(s["images"] for s in stats.values())
    measured = (f"share of the top-{k:g}% budget certified '1' at the Input layer, σ = {sigma0:g}, over "
                f"{count(images, 'image')}: " + "; ".join(texts))
    above = [m for m in present if stats[m]["ci_low"] > BUDGET_THRESHOLD]
    below = [m for m in present if stats[m]["ci_high"] < BUDGET_THRESHOLD]
    if above:
        verdict, why = "disagrees", f"{titles(above)} certif{'ies' if len(above) == 1 else 'y'} more than a tenth of the budget (the whole interval lies above 10%)."
    elif len(below) == len(present) and not missing:
        verdict, why = "agrees", "Every interval lies below a tenth of the budget."
    elif len(below) == len(present):
        verdict = "inconclusive"
        why = (f"{titles(below)} certif{'ies' if len(below) == 1 else 'y'} less than a tenth of the budget, but "
               f"{listing([f'{method_title(m)} ({w})' for m, w in missing.items()])}, which the claim names, "
               f"{'is' if len(missing) == 1 else 'are'} not evidence.")
    else:
        verdict, why = "inconclusive", (f"The interval of {titles([m for m in present if m not in below])} straddles "
                                        f"a tenth of the budget.")
    stats.update({"k": k, "sigma": sigma0, "threshold": BUDGET_THRESHOLD, "missing": missing})
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=ev.note())


def _paired(frame, by: str, small, large, value: str, *, k: float | None, group=("image_id", "method", "layer")):
    part = frame if k is None else select(frame, k=k)
    a = select(part, **{by: float(small)}).set_index(list(group))[value]
    b = select(part, **{by: float(large)}).set_index(list(group))[value]
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner")
    return (joined.a - joined.b).to_numpy(float), joined


def _trend_text(stats, units, what: str) -> str:
    return (f"{what} falls in {stats['positive']} and rises in {stats['negative']} of {len(units)} (image, method, "
            f"layer) units ({count(units.image_id.nunique(), 'image')}, {count(units.method.nunique(), 'method')}); "
            f"mean drop {100 * stats['mean']:.1f} points ({fmt_interval(100 * stats['ci_low'], 100 * stats['ci_high'], '{:.1f}')}), "
            f"sign test p = {fmt_p(stats['sign_test_p'])}")


def _trend(fid: str, frame, by: str, symbol: str, whys: dict, *, settings=None, note: str = "", seed: int = 0) -> Verdict:
    """Paired trend of certified robustness from the smallest to the largest value of column ``by``."""
    if frame is None or not len(frame) or frame[by].nunique() < 2:
        return not_tested(fid, f"the run certified at one {symbol} only")
    ev = admissible(frame, settings)
    small, large, k = float(frame[by].min()), float(frame[by].max()), float(frame.k.max())
    diffs, joined = _paired(ev.frame, by, small, large, "robustness", k=k)
    if len(diffs) < 2:
        return not_tested(fid, f"fewer than two (image, method, layer) units were certified at both {symbol}",
                          excluded=ev.note())
    verdict, stats = direction_verdict(diffs, seed=seed)
    r_small = float(frame[np.isclose(frame[by], small)].radius.iloc[0])
    r_large = float(frame[np.isclose(frame[by], large)].radius.iloc[0])
    measured = (f"R {r_small:.2f} -> {r_large:.2f} ({symbol} {small:g} -> {large:g}{note}); "
                + _trend_text(stats, joined.reset_index(), f"certified robustness at K = {k:g}%"))
    why = whys[verdict].format(low=100 * stats["ci_low"], high=100 * stats["ci_high"])
    return Verdict(FINDINGS[fid], verdict, measured, why, {**stats, f"{by}_small": small, f"{by}_large": large},
                   excluded=ev.note())


_SIGMA_WHYS = {
    "agrees": "The mean drop's interval ({low:.1f} to {high:.1f} points) lies above 0: more noise makes each pixel's "
              "top-K membership less stable, so fewer pixels pass the test.",
    "disagrees": "The interval ({low:.1f} to {high:.1f} points) lies below 0: more pixels certify at the larger σ.",
    "inconclusive": "The interval of the mean drop ({low:.1f} to {high:.1f} points) contains 0."}


def check_sigma_trend(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    return _trend("sigma_trend", rob, "sigma", "σ", _SIGMA_WHYS, settings=settings, seed=seed)


def check_tau_trend(rob_tau, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """From rows with a ``tau`` column holding at least two τ for the same samples."""
    return _trend("tau_trend", rob_tau, "tau", "τ", {
        "agrees": "The mean drop's interval ({low:.1f} to {high:.1f} points) lies above 0: a larger τ asks more of "
                  "the samples to agree, and it never certifies a pixel the smaller τ did not.",
        "disagrees": "The interval ({low:.1f} to {high:.1f} points) lies below 0, which the test's monotonicity "
                     "forbids: a bug.",
        "inconclusive": "The interval of the mean drop ({low:.1f} to {high:.1f} points) contains 0: few pixels "
                        "change status between the two τ."}, settings=settings, note=", same samples", seed=seed)


def _every_model(fid: str, per_model: dict[str, tuple[str, dict, str]], what: str) -> Verdict:
    """Combine per-model verdicts {model title: (verdict, stats, text)} of a trend claimed for every model."""
    verdicts = {m: v for m, (v, _, _) in per_model.items()}
    measured = "; ".join(f"{m}: {text}" for m, (_, _, text) in per_model.items())
    if any(v == "disagrees" for v in verdicts.values()):
        bad = [m for m, v in verdicts.items() if v == "disagrees"]
        verdict, why = "disagrees", f"On {listing(bad)} {what} goes the other way (interval below 0)."
    elif all(v == "agrees" for v in verdicts.values()) and len(verdicts) > 1:
        verdict, why = "agrees", f"On each of the {len(verdicts)} models run the interval lies above 0."
    elif all(v == "agrees" for v in verdicts.values()):
        verdict = "inconclusive"
        why = (f"It holds on {listing(list(verdicts))}, the only model run; 'every model' needs more than one (the "
               f"paper's five pretrained models cannot be installed offline).")
    else:
        verdict, why = "inconclusive", "On " + listing([m for m, v in verdicts.items() if v != "agrees"]) + \
            " the interval contains 0."
    return Verdict(FINDINGS[fid], verdict, measured, why, {m: s for m, (_, s, _) in per_model.items()})


def _model_title(part) -> str:
    return str(part.model_title.iloc[0]) if "model_title" in part and len(part) else str(part.model.iloc[0])


def check_r_trend_every_model(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "r_trend_every_model"
    if rob is None or not len(rob) or rob.sigma.nunique() < 2:
        return not_tested(fid, "the run certified at one σ only")
    ev = admissible(rob, settings)
    per_model = {}
    for _, part in ev.frame.groupby("model", sort=True):
        small, large, k = float(part.sigma.min()), float(part.sigma.max()), float(part.k.max())
        diffs, joined = _paired(part, "sigma", small, large, "robustness", k=k)
        if len(diffs) < 2:
            continue
        verdict, stats = direction_verdict(diffs, seed=seed)
        per_model[_model_title(part)] = (verdict, stats, f"R {float(part[np.isclose(part.sigma, small)].radius.iloc[0]):.2f} -> "
                                         f"{float(part[np.isclose(part.sigma, large)].radius.iloc[0]):.2f}, " +
                                         _trend_text(stats, joined.reset_index(), f"certified robustness at K = {k:g}%"))
    if not per_model:
        return not_tested(fid, "no model has two units certified at two σ", excluded=ev.note())
    v = _every_model(fid, per_model, "the trend with R")
    v.excluded = ev.note()
    return v


def check_k_trend_every_model(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "k_trend_every_model"
    if rob is None or not len(rob) or rob.k.nunique() < 2:
        return not_tested(fid, "the run certified at one K only")
    ev = admissible(rob, settings)
    per_model = {}
    for _, part in ev.frame.groupby("model", sort=True):
        part = select(part, sigma=float(part.sigma.min()))
        k_small, k_large = float(part.k.min()), float(part.k.max())
        diffs, joined = _paired(part, "k", k_large, k_small, "certified_1", k=None)
        if len(diffs) < 2:
            continue
        verdict, stats = direction_verdict(diffs, seed=seed)
        units = joined.reset_index()
        per_model[_model_title(part)] = (verdict, stats, (
            f"certified-'1' share of all pixels from K = {k_large:g}% to K = {k_small:g}% falls in {stats['positive']} "
            f"and rises in {stats['negative']} of {len(units)} (image, method, layer) units; mean drop "
            f"{100 * stats['mean']:.1f} points ({fmt_interval(100 * stats['ci_low'], 100 * stats['ci_high'], '{:.1f}')})"))
    if not per_model:
        return not_tested(fid, "no model has two units certified at two K", excluded=ev.note())
    v = _every_model(fid, per_model, "the trend with K")
    v.excluded = ev.note()
    return v


def _per_image_matrix(frame, value: str):
    """Units (images) x methods: the mean of ``value`` over the rows of each (image, method)."""
    return frame.groupby(["image_id", "method"])[value].mean().unstack()


def check_input_robust_leaders(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "input_robust_leaders"
    if rob is None or not len(rob) or not (rob.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev = admissible(rob, settings)
    sigma0 = float(rob.sigma.min())
    part = select(ev.frame, sigma=sigma0, layer="input")
    return rank_verdict(fid, _per_image_matrix(part, "robustness"), ("lrp", "rise"),
                        measure=f"certified robustness (1 - abstain) at the Input layer, σ = {sigma0:g}, mean over "
                                f"K = {listing([f'{k:g}' for k in sorted(part.k.unique(), reverse=True)])}%",
                        unit="image", unavailable=unavailable(("lrp", "rise"), rob, ev, "input", settings),
                        evidence=(ev,), seed=seed)


def check_input_small_k_balance(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "input_small_k_balance"
    if rob is None or not len(rob) or not (rob.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev = admissible(rob, settings)
    sigma0, k = float(rob.sigma.min()), float(rob.k.min())
    part = select(ev.frame, sigma=sigma0, layer="input", k=k).copy()
    part["budget_share"] = part.n_certified_1 / (part.n_pixels * k / 100.0)
    return rank_verdict(fid, _per_image_matrix(part, "budget_share"), ("lrp", "rise"),
                        measure=f"share of the top-{k:g}% budget certified '1' at the Input layer, σ = {sigma0:g}",
                        unit="image", unavailable=unavailable(("lrp", "rise"), rob, ev, "input", settings),
                        evidence=(ev,), seed=seed)


def check_small_k_detail(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """From robustness rows with ``n_components_1`` and ``mean_component_px_1`` (certified-'1' components)."""
    fid = "small_k_detail"
    if rob is None or not len(rob) or "mean_component_px_1" not in rob:
        return not_tested(fid, "no component statistics in the robustness rows")
    if rob.k.nunique() < 2:
        return not_tested(fid, "the run certified at one K only")
    ev = admissible(rob, settings)
    sigma0, k_small, k_large = float(rob.sigma.min()), float(rob.k.min()), float(rob.k.max())
    part = select(ev.frame, sigma=sigma0, layer="input")
    if not len(part):
        return not_tested(fid, "no Input-layer rows count as evidence", excluded=ev.note())
    small = select(part, k=k_small).set_index(["image_id", "method"])
    large = select(part, k=k_large).set_index(["image_id", "method"])
    nonempty = float((small.n_certified_1 > 0).mean())
    both = small.merge(large, left_index=True, right_index=True, how="inner", suffixes=("_s", "_l"))
    both = both[(both.n_certified_1_s > 0) & (both.n_certified_1_l > 0)]
    base = (f"at K = {k_small:g}%, {100 * nonempty:.0f}% of the {len(small)} Input-layer (image, method) units "
            f"certify at least one pixel '1'")
    if len(both) < 2:
        return Verdict(FINDINGS[fid], "inconclusive", base + "; fewer than two units certify at both K",
                       "Sizes cannot be compared: a small K certifies nothing in almost every unit (an empty "
                       "certificate is not evidence either way).", {"nonempty_small_k": nonempty,
                                                                     "units": int(len(both))}, excluded=ev.note())
    log_ratio = np.log(both.mean_component_px_1_s.to_numpy(float)) - np.log(both.mean_component_px_1_l.to_numpy(float))
    verdict, stats = direction_verdict(-log_ratio, seed=seed)
    med_s, med_l = float(np.median(both.mean_component_px_1_s)), float(np.median(both.mean_component_px_1_l))
    ratio, r_low, r_high = math.exp(-stats["mean"]), math.exp(-stats["ci_high"]), math.exp(-stats["ci_low"])
    measured = (f"{base}; in the {len(both)} units that certify at both K, the median certified-'1' component is "
                f"{med_s:.0f} px at K = {k_small:g}% against {med_l:.0f} px at K = {k_large:g}% (smaller in "
                f"{stats['positive']} of {len(both)} units; geometric-mean size ratio {ratio:.2f}, "
                f"{fmt_interval(r_low, r_high, '{:.2f}')}; sign test p = {fmt_p(stats['sign_test_p'])})")
    why = {"agrees": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) lies below 1: what a small K certifies "
                     f"forms smaller structures.",
           "disagrees": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) lies above 1.",
           "inconclusive": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) contains 1."}[verdict]
    if nonempty < 0.5:
        why += f" Only {100 * nonempty:.0f}% of the units certify anything at K = {k_small:g}%."
    return Verdict(FINDINGS[fid], verdict, measured, why, {**stats, "nonempty_small_k": nonempty,
                                                           "median_px_small": med_s, "median_px_large": med_l},
                   excluded=ev.note())
