"""Checks on the trade-off between robustness, localization and faithfulness (the trade-off chapter's tables:
robustness rows on photos, Certified GridPG rows on grids, deletion rows on photos)."""
from __future__ import annotations

import warnings

import numpy as np

from ..names import layer_title, method_title
from .claims import FINDINGS, Verdict
from .common import fmt_interval, not_tested, select, titles
from .evidence import RunSettings, admissible, empty_methods, listing, notes, unavailable
from .faithfulness import faithfulness_scores
from .localization import gridpg_matrix
from .stats import bootstrap_interval

__all__ = ["check_rise_lrp_balance", "check_rise_best_balance"]


def _matrices(rob, loc, faith, layer: str, settings, grid_settings):
    """(methods, images x methods robustness, targets x methods GridPG, images x methods faithfulness or None,
    exclusion note, {method: why not evidence})."""
    ev_r, ev_l = admissible(rob, settings), admissible(loc, grid_settings or settings, source="grids")
    r = select(ev_r.frame, sigma=float(rob.sigma.min()), layer=layer)
    l = select(ev_l.frame, sigma=float(loc.sigma.min()), layer=layer)
    evidences = [ev_r, ev_l]
    methods = set(r.method) & set(l.method)
    _, g_empty = gridpg_matrix(l, layer)
    empty = empty_methods(g_empty, "nothing certified '1'")
    fa_m = None
    if faith is not None:
        ev_f = admissible(faith, settings)
        evidences.append(ev_f)
        f = faithfulness_scores(ev_f.frame)
        f = f[f.layer == layer]
        methods &= set(f.method)
        f_empty = f.groupby("method").nothing_removed.mean().astype(float).to_dict()
        empty = {**empty_methods(f_empty, "nothing removed at the first step"), **empty}
    methods = sorted(methods - set(empty))
    images = sorted(set(r.image_id) & (set(f.image_id) if faith is not None else set(r.image_id)))
    targets = sorted(set(zip(l.grid_id, l.target_cell)))
    rob_m = r.groupby(["image_id", "method"]).robustness.mean().unstack().reindex(index=images, columns=methods)
    loc_m = l.groupby(["grid_id", "target_cell", "method"]).certified_gridpg.mean().unstack()
    loc_m = loc_m.reindex(columns=methods).loc[targets]
    if faith is not None:
        fa_m = f.groupby(["image_id", "method"]).faithfulness.mean().unstack().reindex(index=images, columns=methods)
        fa_m = fa_m.to_numpy(float)
    note = notes(*evidences, not_ranked=empty)
    missing_empty = {f"{method_title(m)} at the {layer_title(layer)} layer": why for m, why in empty.items()}
    missing = {}
    for m in ("rise", "lrp"):
        for ev, raw in ((ev_r, rob), (ev_l, loc)):
            missing.update({k: v for k, v in unavailable((m,), raw, ev, layer, settings).items() if k not in missing})
        if m in empty:
            missing[m] = empty[m]
    return (methods, rob_m.to_numpy(float), loc_m.to_numpy(float), fa_m, note, missing, images, targets,
            (evidences, missing_empty))


def _balance(rob_m, loc_m, fa_m):
    def balance(img_idx, tgt_idx):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rb = np.clip(np.nanmean(rob_m[img_idx], axis=0), 0, None)
            lc = np.clip(np.nanmean(loc_m[tgt_idx], axis=0), 0, None)
            if fa_m is None:
                return np.sqrt(rb * lc)
            return np.cbrt(rb * lc * np.clip(np.nanmean(fa_m[img_idx], axis=0), 0, None))
    return balance


def check_rise_lrp_balance(rob, loc, faith, *, layer: str = "input", settings: RunSettings | None = None,
                           grid_settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """Balance = geometric mean of robustness, Certified GridPG and faithfulness; images and grid targets are
    resampled independently in the bootstrap."""
    fid = "rise_lrp_balance"
    if any(t is None or not len(t) for t in (rob, loc, faith)):
        return not_tested(fid, "the robustness, localization or faithfulness table is missing")
    methods, rob_m, loc_m, fa_m, note, missing, images, targets, _ = _matrices(rob, loc, faith, layer, settings,
                                                                               grid_settings)
    if missing:
        return not_tested(fid, listing([f"{method_title(m)} ({w})" for m, w in missing.items()])
                          + f": not evidence at the {layer_title(layer)} layer", excluded=note)
    if len(methods) < 3:
        return not_tested(fid, "no third method to compare with", excluded=note)
    i_rise, i_lrp = methods.index("rise"), methods.index("lrp")
    others = [j for j in range(len(methods)) if j not in (i_rise, i_lrp)]
    balance = _balance(rob_m, loc_m, fa_m)

    def margin(img_idx, tgt_idx):
        b = balance(img_idx, tgt_idx)
        return min(b[i_rise], b[i_lrp]) - max(b[j] for j in others)

    est, low, high = bootstrap_interval([np.arange(len(images)), np.arange(len(targets))], margin, seed=seed)
    b = balance(np.arange(len(images)), np.arange(len(targets)))
    ranking = sorted(range(len(methods)), key=lambda j: -b[j])
    measured = (f"{layer_title(layer)} layer, balance (robustness x GridPG x faithfulness)^(1/3), all three means "
                f"over K: " + ", ".join(f"{method_title(methods[j])} {b[j]:.2f}" for j in ranking) +
                f"; min(RISE, LRP) - best other = {est:+.2f} ({fmt_interval(low, high)}; {len(images)} images, "
                f"{len(targets)} grid targets)")
    if low > 0:
        verdict, why = "agrees", "The margin's interval lies above 0: RISE and LRP are ahead of every other method."
    elif high < 0:
        best_other = method_title(methods[max(others, key=lambda j: b[j])])
        verdict, why = "disagrees", f"The margin's interval lies below 0: {best_other} balances the three better."
    else:
        verdict, why = "inconclusive", "The margin's interval contains 0: the run cannot separate the leaders."
    return Verdict(FINDINGS[fid], verdict, measured, why, {"margin": est, "ci_low": low, "ci_high": high,
                                                           "balance": dict(zip(methods, map(float, b)))}, excluded=note)


def check_rise_best_balance(rob, loc, *, settings: RunSettings | None = None, grid_settings: RunSettings | None = None,
                            seed: int = 0) -> Verdict:
    """Per layer: balance = sqrt(robustness x Certified GridPG); RISE first, LRP second among the others."""
    fid = "rise_best_balance"
    if rob is None or loc is None or not len(rob) or not len(loc):
        return not_tested(fid, "the robustness or localization table is missing")
    texts, stats, per_layer, all_evidence, all_empty = [], {}, {}, [], {}
    for layer in ("input", "final"):
        if not ((rob.layer == layer).any() and (loc.layer == layer).any()):
            per_layer[layer] = "missing"
            texts.append(f"{layer_title(layer)} layer: not run")
            continue
        methods, rob_m, loc_m, _, _, missing, images, targets, (evs, empty) = _matrices(rob, loc, None, layer,
                                                                                       settings, grid_settings)
        all_evidence += evs
        all_empty.update(empty)
        if missing or len(methods) < 3:
            per_layer[layer] = "missing"
            texts.append(f"{layer_title(layer)} layer: " + (listing([f"{method_title(m)} not evidence ({w})" for m, w in missing.items()])
                                                           if missing else "fewer than three methods"))
            continue
        balance = _balance(rob_m, loc_m, None)
        i_rise, i_lrp = methods.index("rise"), methods.index("lrp")
        rest = [j for j in range(len(methods)) if j not in (i_rise, i_lrp)]
        idx = [np.arange(len(images)), np.arange(len(targets))]
        m1 = bootstrap_interval(idx, lambda a, t: (lambda b: b[i_rise] - max(b[i_lrp], *(b[j] for j in rest)))(
            balance(a, t)), seed=seed)
        m2 = bootstrap_interval(idx, lambda a, t: (lambda b: b[i_lrp] - max(b[j] for j in rest))(balance(a, t)),
                                seed=seed)
        b = balance(*idx)
        order = sorted(range(len(methods)), key=lambda j: -b[j])
        texts.append(f"{layer_title(layer)} layer: " + ", ".join(f"{method_title(methods[j])} {b[j]:.2f}" for j in order)
                     + f"; RISE - best other {m1[0]:+.2f} ({fmt_interval(m1[1], m1[2])}), LRP - best non-RISE "
                       f"{m2[0]:+.2f} ({fmt_interval(m2[1], m2[2])})")
        stats[layer] = {"rise_margin": m1, "lrp_margin": m2, "balance": dict(zip(methods, map(float, b)))}
        per_layer[layer] = ("disagrees" if m1[2] < 0 or m2[2] < 0 else
                            "agrees" if m1[1] > 0 and m2[1] > 0 else "inconclusive")
    measured = "balance sqrt(robustness x Certified GridPG), both means over K; " + "; ".join(texts)
    states = set(per_layer.values())
    if "disagrees" in states:
        bad = [layer_title(l) for l, s in per_layer.items() if s == "disagrees"]
        verdict, why = "disagrees", f"At the {listing(bad)} layer a margin's interval lies below 0."
    elif states == {"agrees"}:
        verdict, why = "agrees", "At both layers RISE leads and LRP is second: every interval lies above 0."
    elif "missing" in states:
        verdict = "inconclusive" if "agrees" in states else "not tested"
        why = ("RISE or LRP does not count as evidence at the " + listing(
            [layer_title(l) for l, s in per_layer.items() if s == "missing"]) + " layer, and the claim is about both.")
    else:
        verdict, why = "inconclusive", "A margin's interval contains 0."
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=notes(*all_evidence, not_ranked=all_empty))
