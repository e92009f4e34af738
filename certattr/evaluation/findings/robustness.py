"""Checks on the robustness chapter's tables (tidy %certified rows, one per model x image x method x layer x σ x K;
see :func:`certattr.evaluation.rows.robustness_rows`). Every pairing joins on the whole identity of a
measurement (:mod:`.units`); every interval resamples images."""
from __future__ import annotations

import math

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import Measure, absent_text, count, fmt_interval, not_tested, rank_verdict, select, titles, too_few
from .evidence import RunSettings, admissible, listing, not_measured, unavailable
from .stats import CONFIDENCE, MIN_CLUSTERS, cluster_bootstrap, direction_verdict, fmt_p
from .units import cluster_labels, identical_groups, paired

__all__ = ["GRADIENT_METHODS", "check_gradient_input", "check_sigma_trend", "check_tau_trend",
           "check_r_trend_every_model", "check_k_trend_every_model", "check_input_robust_leaders",
           "check_input_small_k_balance", "check_small_k_detail", "trend_units"]

GRADIENT_METHODS = ("grad", "gb", "ixg", "intgrad")
BUDGET_THRESHOLD = 0.10  #: 'almost nothing' = below this share of the top-K budget


def check_gradient_input(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """Per named gradient method: the share of the top-K budget certified '1' at the Input layer, pooled over the
    (model, image) measurements, with an interval resampling images."""
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
                          + absent_text(missing), excluded=ev.note())
    budget = k / 100.0
    stats, texts = {}, []
    for m in present:
        rows = part[part.method == m]
        c1, px = rows.n_certified_1.to_numpy(float), rows.n_pixels.to_numpy(float)
        labels = cluster_labels(rows)
        share = float(c1.sum() / px.sum() / budget)
        n_img = len(set(labels))
        low = high = None
        if n_img >= MIN_CLUSTERS:
            _, low, high = cluster_bootstrap(labels, lambda i: c1[i].sum() / px[i].sum() / budget, seed=seed)
        stats[m] = {"share": share, "ci_low": low, "ci_high": high, "units": int(len(rows)), "images": n_img,
                    "models": sorted(set(rows.model))}
        texts.append(f"{method_title(m)} {100 * share:.1f}%" + (f" ({CONFIDENCE:.0%} CI {100 * low:.1f} to "
                                                                f"{100 * high:.1f}%)" if low is not None else "")
                     + f" over {count(len(rows), '(model, image) measurement')} of {count(n_img, 'image')}")
    measured = (f"share of the top-{k:g}% budget certified '1' at the Input layer, σ = {sigma0:g}: " + "; ".join(texts))
    decided = [m for m in present if stats[m]["ci_low"] is not None]
    above = [m for m in decided if stats[m]["ci_low"] > BUDGET_THRESHOLD]
    below = [m for m in decided if stats[m]["ci_high"] < BUDGET_THRESHOLD]
    few = [m for m in present if m not in decided]
    if above:
        verdict = "disagrees"
        why = (f"{titles(above)} certif{'ies' if len(above) == 1 else 'y'} more than a tenth of the budget (the whole "
               f"interval lies above 10%).")
    elif not_measured(missing):
        verdict = "not tested"
        why = (f"{absent_text(missing)}, which the claim names"
               + (f"; {titles(below)} certif{'ies' if len(below) == 1 else 'y'} less than a tenth of the budget"
                  if below else "") + ".")
    elif few:
        verdict = "inconclusive"
        why = f"{titles(few)}: {too_few(min(stats[m]['images'] for m in few), 'image')}."
    elif len(below) == len(present) and not missing:
        verdict, why = "agrees", "Every interval lies below a tenth of the budget."
    elif len(below) == len(present):
        verdict = "inconclusive"
        why = (f"{titles(below)} certif{'ies' if len(below) == 1 else 'y'} less than a tenth of the budget, but "
               f"{absent_text(missing)}, which the claim names, {'is' if len(missing) == 1 else 'are'} not evidence.")
    else:
        verdict, why = "inconclusive", (f"The interval of {titles([m for m in present if m not in below])} straddles "
                                        f"a tenth of the budget.")
    stats.update({"k": k, "sigma": sigma0, "threshold": BUDGET_THRESHOLD,
                  "missing": {m: str(w) for m, w in missing.items()}})
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=ev.note())


def trend_units(frame, by: str, small: float, large: float, value: str, k: float | None):
    """The paired measurements of a trend: ``value`` at ``by`` = small minus at ``by`` = large (at K = ``k``,
    or every K when None), joined on the whole identity (model, image, method, layer, the other settings)."""
    part = frame if k is None else select(frame, k=float(k))
    return paired(part, by, small, large, value)


def _trend_text(stats, units, what: str) -> str:
    interval = (f" ({fmt_interval(100 * stats['ci_low'], 100 * stats['ci_high'], '{:.1f}')} over images)"
                if stats["ci_low"] is not None else f" ({too_few(stats['clusters'], 'image')})")
    sign = (f"; sign test over the {count(stats['clusters'], 'image')}' mean differences: {stats['clusters_positive']} "
            f"fall, {stats['clusters_negative']} rise, p = {fmt_p(stats['sign_test_p'])}")
    return (f"{what} falls in {stats['positive']} and rises in {stats['negative']} of {len(units)} (model, image, "
            f"method, layer) units ({count(units.model.nunique(), 'model')}, {count(units.image_id.nunique(), 'image')}"
            f", {count(units.method.nunique(), 'method')}); mean drop {100 * stats['mean']:.1f} points{interval}{sign}")


def _trend(fid: str, frame, by: str, symbol: str, whys: dict, *, settings=None, note: str = "", seed: int = 0) -> Verdict:
    """Paired trend of certified robustness from the smallest to the largest value of column ``by``."""
    if frame is None or not len(frame) or frame[by].nunique() < 2:
        return not_tested(fid, f"the run certified at one {symbol} only")
    ev = admissible(frame, settings)
    small, large, k = float(frame[by].min()), float(frame[by].max()), float(frame.k.max())
    units = trend_units(ev.frame, by, small, large, "robustness", k)
    if not len(units):
        return not_tested(fid, f"no (model, image, method, layer) unit was certified at both {symbol}",
                          excluded=ev.note())
    verdict, stats = direction_verdict(units["diff"].to_numpy(float), units.cluster.to_numpy(), seed=seed)
    r_small = float(frame[np.isclose(frame[by], small)].radius.iloc[0])
    r_large = float(frame[np.isclose(frame[by], large)].radius.iloc[0])
    measured = (f"R {r_small:.2f} → {r_large:.2f} ({symbol} {small:g} → {large:g}{note}); "
                + _trend_text(stats, units, f"certified robustness at K = {k:g}%"))
    if stats["ci_low"] is None:
        why = f"The mean drop is {100 * stats['mean']:.1f} points, but {too_few(stats['clusters'], 'image')}."
    else:
        why = whys[verdict].format(low=100 * stats["ci_low"], high=100 * stats["ci_high"])
    return Verdict(FINDINGS[fid], verdict, measured, why, {**stats, f"{by}_small": small, f"{by}_large": large,
                                                           "k": k}, excluded=ev.note())


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
    few = [m for m, (_, s, _) in per_model.items() if s["ci_low"] is None]
    if any(v == "disagrees" for v in verdicts.values()):
        bad = [m for m, v in verdicts.items() if v == "disagrees"]
        verdict, why = "disagrees", f"On {listing(bad)} {what} goes the other way (interval below 0)."
    elif all(v == "agrees" for v in verdicts.values()) and len(verdicts) > 1:
        verdict, why = "agrees", f"On each of the {len(verdicts)} models run the interval lies above 0."
    elif all(v == "agrees" for v in verdicts.values()):
        verdict = "inconclusive"
        why = (f"It holds on {listing(list(verdicts))}, the only model run here; 'every model' needs more than one "
               f"(the introduction's table also checks it on the models of every domain together).")
    else:
        undecided = [m for m, v in verdicts.items() if v != "agrees" and m not in few]
        parts = []
        if few:
            parts.append(f"{listing(few)} ran on too few images for an interval ({MIN_CLUSTERS} needed)")
        if undecided:
            parts.append(f"on {listing(undecided)} the interval contains 0")
        agreeing = [m for m, v in verdicts.items() if v == "agrees"]
        verdict = "inconclusive"
        why = ((f"It holds on {listing(agreeing)}, but " if agreeing else "") + "; ".join(parts) + ".")
        why = why[0].upper() + why[1:]
    return Verdict(FINDINGS[fid], verdict, measured, why, {m: s for m, (_, s, _) in per_model.items()})


def _model_title(part) -> str:
    return str(part.model_title.iloc[0]) if "model_title" in part and len(part) else str(part.model.iloc[0])


def _per_model_text(stats, units, what: str) -> str:
    interval = (fmt_interval(100 * stats['ci_low'], 100 * stats['ci_high'], '{:.1f}') if stats["ci_low"] is not None
                else too_few(stats["clusters"], "image"))
    return (f"{what} falls in {stats['positive']} and rises in {stats['negative']} of {len(units)} (image, method, "
            f"layer) units of {count(stats['clusters'], 'image')}; mean drop {100 * stats['mean']:.1f} points ({interval})")


def check_r_trend_every_model(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "r_trend_every_model"
    if rob is None or not len(rob) or rob.sigma.nunique() < 2:
        return not_tested(fid, "the run certified at one σ only")
    ev = admissible(rob, settings)
    per_model = {}
    for _, part in ev.frame.groupby("model", sort=True):
        small, large, k = float(part.sigma.min()), float(part.sigma.max()), float(part.k.max())
        units = trend_units(part, "sigma", small, large, "robustness", k)
        if not len(units):
            continue
        verdict, stats = direction_verdict(units["diff"].to_numpy(float), units.cluster.to_numpy(), seed=seed)
        r0 = float(part[np.isclose(part.sigma, small)].radius.iloc[0])
        r1 = float(part[np.isclose(part.sigma, large)].radius.iloc[0])
        per_model[_model_title(part)] = (verdict, stats, f"R {r0:.2f} → {r1:.2f}, " + _per_model_text(
            stats, units, f"certified robustness at K = {k:g}%"))
    if not per_model:
        return not_tested(fid, "no model has a unit certified at two σ", excluded=ev.note())
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
        units = trend_units(part, "k", k_large, k_small, "certified_1", None)
        if not len(units):
            continue
        verdict, stats = direction_verdict(units["diff"].to_numpy(float), units.cluster.to_numpy(), seed=seed)
        per_model[_model_title(part)] = (verdict, stats, _per_model_text(
            stats, units, f"certified-'1' share of all pixels from K = {k_large:g}% to K = {k_small:g}%"))
    if not per_model:
        return not_tested(fid, "no model has a unit certified at two K", excluded=ev.note())
    v = _every_model(fid, per_model, "the trend with K")
    v.excluded = ev.note()
    return v


def _input_long(rob, settings, value: str, *, k: float | None = None, sigma: float | None = None):
    ev = admissible(rob, settings)
    part = select(ev.frame, layer="input")
    if sigma is not None:
        part = select(part, sigma=float(sigma))
    if k is not None:
        part = select(part, k=float(k))
    return ev, part


def check_input_robust_leaders(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """LRP and RISE the most robust at the Input layer "across all three radii": the margin at every (σ, K) at
    which they and another method ran, averaged."""
    fid = "input_robust_leaders"
    if rob is None or not len(rob) or not (rob.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev, part = _input_long(rob, settings, "robustness")
    sigmas = sorted(set(part[part.method.isin(["lrp", "rise"])].sigma)) or sorted(set(part.sigma))
    measure = Measure("robustness", f"certified robustness (1 - abstain) at the Input layer, mean over K = "
                                    f"{listing([f'{k:g}' for k in sorted(part.k.unique(), reverse=True)])}% and over "
                                    f"σ = {listing([f'{s:g}' for s in sigmas])} (where LRP and RISE ran)", "image",
                      conditions=("sigma", "k"))
    return rank_verdict(fid, part, ("lrp", "rise"), measure,
                        unavailable=unavailable(("lrp", "rise"), rob, ev, "input", settings),
                        groups=identical_groups(ev.frame), evidence=(ev,), seed=seed)


def check_input_small_k_balance(rob, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "input_small_k_balance"
    if rob is None or not len(rob) or not (rob.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    sigma0, k = float(rob.sigma.min()), float(rob.k.min())
    ev, part = _input_long(rob, settings, "budget_share", k=k, sigma=sigma0)
    part = part.assign(budget_share=part.n_certified_1 / (part.n_pixels * k / 100.0))
    measure = Measure("budget_share", f"share of the top-{k:g}% budget certified '1' at the Input layer, "
                                      f"σ = {sigma0:g}", "image", conditions=())
    return rank_verdict(fid, part, ("lrp", "rise"), measure,
                        unavailable=unavailable(("lrp", "rise"), rob, ev, "input", settings),
                        groups=identical_groups(ev.frame), evidence=(ev,), seed=seed)


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
    small = select(part, k=k_small)
    nonempty = float((small.n_certified_1 > 0).mean())
    part = part.assign(log_size=np.log(part.mean_component_px_1.where(part.n_certified_1 > 0)))
    both = paired(part, "k", k_large, k_small, "log_size").dropna(subset=["a", "b"])
    base = (f"at K = {k_small:g}%, {100 * nonempty:.0f}% of the {len(small)} Input-layer (model, image, method) units "
            f"certify at least one pixel '1'")
    if not len(both):
        return Verdict(FINDINGS[fid], "inconclusive", base + "; no unit certifies at both K",
                       "Sizes cannot be compared: a small K certifies nothing in almost every unit (an empty "
                       "certificate is not evidence either way).", {"nonempty_small_k": nonempty, "units": 0,
                                                                     "clusters": 0}, excluded=ev.note())
    # diff = log size at the large K minus at the small K: positive when the small K's components are smaller
    verdict, stats = direction_verdict(both["diff"].to_numpy(float), both.cluster.to_numpy(), seed=seed)
    med_s, med_l = float(np.median(np.exp(both.b))), float(np.median(np.exp(both.a)))
    ratio = math.exp(-stats["mean"])
    interval = (f"{fmt_interval(math.exp(-stats['ci_high']), math.exp(-stats['ci_low']), '{:.2f}')} over images"
                if stats["ci_low"] is not None else too_few(stats["clusters"], "image"))
    measured = (f"{base}; in the {len(both)} units that certify at both K, the median certified-'1' component is "
                f"{med_s:.0f} px at K = {k_small:g}% against {med_l:.0f} px at K = {k_large:g}% (smaller in "
                f"{stats['positive']} of {len(both)} units; geometric-mean size ratio {ratio:.2f}, {interval}; sign "
                f"test over images p = {fmt_p(stats['sign_test_p'])})")
    if stats["ci_low"] is None:
        why = f"The size ratio is {ratio:.2f}, but {too_few(stats['clusters'], 'image')}."
    else:
        r_low, r_high = math.exp(-stats["ci_high"]), math.exp(-stats["ci_low"])
        why = {"agrees": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) lies below 1: what a small K "
                         f"certifies forms smaller structures.",
               "disagrees": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) lies above 1.",
               "inconclusive": f"The size ratio's interval ({r_low:.2f} to {r_high:.2f}) contains 1."}[verdict]
    if nonempty < 0.5:
        why += f" Only {100 * nonempty:.0f}% of the units certify anything at K = {k_small:g}%."
    return Verdict(FINDINGS[fid], verdict, measured, why, {**stats, "nonempty_small_k": nonempty,
                                                           "median_px_small": med_s, "median_px_large": med_l},
                   excluded=ev.note())
