"""Checks on the localization chapter's tables (Certified GridPG rows, one per model x grid target x method x layer
x σ x K; see :func:`certattr.evaluation.rows.localization_rows`), with the robustness rows on photos for
the Final-layer claim about Grad and GB."""
from __future__ import annotations

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import Measure, absent_text, count, fmt_interval, not_tested, rank_verdict, select, too_few
from .evidence import RunSettings, admissible, listing, not_measured, share_percent, unavailable
from .stats import MIN_CLUSTERS, cluster_bootstrap
from .units import cluster_labels, identical_groups

__all__ = ["check_gradgb_final", "check_input_localization_leaders", "gridpg_long", "CHANCE", "CONSTANT_SHARE"]

CHANCE = 0.25  #: Certified GridPG of a 2x2 grid at chance
CONSTANT_SHARE = 0.9  #: "almost constant": at least this share of a method's certificates flagged degenerate


def gridpg_long(loc, layer: str):
    """The Certified GridPG rows at ``layer`` and the smallest σ (one per model, grid target, method and K)."""
    return select(loc, sigma=float(loc.sigma.min()), layer=layer)


def check_input_localization_leaders(loc, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "input_localization_leaders"
    if loc is None or not len(loc) or not (loc.layer == "input").any():
        return not_tested(fid, "the Input layer was not run on the grids")
    ev = admissible(loc, settings, source="grids")
    part = gridpg_long(ev.frame, "input")
    ks = sorted(part.k.unique(), reverse=True)
    measure = Measure("certified_gridpg", f"Certified GridPG at the Input layer, per K = "
                                          f"{listing([f'{k:g}' for k in ks])}%", "grid target",
                      empty="no_certified" if "no_certified" in part else None, empty_what="nothing certified '1'")
    return rank_verdict(fid, part, ("lrp", "rise"), measure,
                        unavailable=unavailable(("lrp", "rise"), loc, ev, "input", settings),
                        groups=identical_groups(ev.frame), evidence=(ev,), seed=seed)


def _robustness_at_final(rob, loc, sigma_rob):
    """({method: per-unit robustness, a Series indexed by the unit (model, image or grid target)}, where) at the
    Final layer, mean over K: on the single images when the robustness rows have the Final layer, else on the
    grids."""
    if rob is not None and len(rob) and (rob.layer == "final").any():
        part = select(rob, sigma=float(rob.sigma.min()), layer="final")
        where = "on the single images"
    else:
        part, where = select(loc, sigma=sigma_rob, layer="final"), "on the grids"
    units = [c for c in ("model", "image_id", "grid_id", "target_cell") if c in part]
    per = part.groupby(units + ["method"]).robustness.mean()
    return {m: g.droplevel("method") for m, g in per.groupby(level="method")}, where


def _paired_lead(mine, theirs, seed):
    """Mean of ``mine - theirs`` over the units both have (paired on the whole unit), its bootstrap interval
    resampling clusters (None below MIN_CLUSTERS), the number of units and of clusters."""
    common = mine.index.intersection(theirs.index)
    diff = (mine.loc[common] - theirs.loc[common]).to_numpy(float)
    if not len(diff):
        return None, None, 0, 0
    labels = cluster_labels(common.to_frame(index=False))
    clusters = len(set(labels))
    ci = cluster_bootstrap(labels, lambda i: diff[i].mean(), seed=seed)[1:] if clusters >= MIN_CLUSTERS else None
    return float(diff.mean()), ci, len(diff), clusters


def check_gradgb_final(loc, rob=None, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """Grad and GB at the Final layer of a CNN "seem the most robust ... localize very poorly ... grid-like almost
    constant attributions": three parts, each measured. Their degenerate maps are the evidence here."""
    fid = "gradgb_final"
    if loc is None or not len(loc):
        return not_tested(fid, "no localization rows")
    ev = admissible(loc, settings, source="grids", keep_degenerate=True)  # the claim is about their constant maps
    missing = unavailable(("grad", "gb"), loc, ev, "final", settings)
    if not_measured(missing):
        return not_tested(fid, absent_text(missing) + ", which the claim names", excluded=ev.note())
    sigma0, k = float(loc.sigma.min()), float(loc.k.max())
    grids = select(ev.frame, sigma=sigma0, layer="final")
    rob_ev = admissible(rob, settings, keep_degenerate=True).frame if rob is not None and len(rob) else None
    robust, where = _robustness_at_final(rob_ev, grids, sigma0)
    others = sorted(m for m in robust if m not in ("grad", "gb"))
    # the other methods' rows that count as evidence (degenerate ones are excluded there as everywhere)
    if rob is not None and len(rob):
        kept_others = set(select(admissible(rob, settings).frame, layer="final").method)
        others = [m for m in others if m in kept_others]
    stats, texts, parts = {}, [], {"constant": [], "robust": [], "poor": []}
    for m in ("grad", "gb"):
        flagged = grids[grids.method == m]
        source = rob_ev[(rob_ev.layer == "final") & (rob_ev.method == m)] if rob_ev is not None else flagged
        constant = float(source.degenerate.fillna("").astype(str).str.strip().isin(["", "False", "0", "false"])
                          .__invert__().mean()) if "degenerate" in source and len(source) else 0.0
        g_rows = flagged[np.isclose(flagged.k, k)]
        g = g_rows.certified_gridpg.to_numpy(float)
        labels = cluster_labels(g_rows)
        n_targets = len(set(labels))
        g_mean = float(g.mean()) if len(g) else float("nan")
        g_ci = cluster_bootstrap(labels, lambda i: g[i].mean(), seed=seed)[1:] if n_targets >= MIN_CLUSTERS else None
        r_m = robust.get(m)
        # every comparison on the units both methods have (a model one of them did not run is left out)
        leads = {o: _paired_lead(r_m, robust[o], seed) for o in others} if r_m is not None and len(r_m) else {}
        leads = {o: v for o, v in leads.items() if v[0] is not None}
        best_other = min(leads, key=lambda o: leads[o][0]) if leads else None
        margin, ci, n_units, n_clusters = leads[best_other] if best_other else (None, None, 0, 0)
        if best_other:
            common = r_m.index.intersection(robust[best_other].index)
            mine, theirs = float(r_m.loc[common].mean()), float(robust[best_other].loc[common].mean())
        empty = float(g_rows.no_certified.mean()) if "no_certified" in g_rows and len(g_rows) else 0.0
        stats[m] = {"constant_share": constant, "robustness": float(r_m.mean()) if r_m is not None and len(r_m) else None,
                    "best_other": best_other,
                    "robust_margin": margin, "robust_ci": ci, "gridpg": g_mean, "gridpg_ci": g_ci,
                    "targets": n_targets, "no_certified": empty}
        parts["constant"].append(constant >= CONSTANT_SHARE)
        parts["robust"].append(None if ci is None else (True if ci[0] >= 0 else False if ci[1] < 0 else None))
        parts["poor"].append(None if g_ci is None else (True if g_ci[1] < CHANCE else False if g_ci[0] > CHANCE
                                                        else None))
        models = sorted(set(r_m.index.get_level_values("model"))) if r_m is not None and len(r_m) else []
        robust_text = (f"robustness {100 * mine:.1f}% {where} (mean over K) against {100 * theirs:.1f}% for the "
                       f"closest other method, {method_title(best_other)}, on the {count(n_units, 'unit')} both have: "
                       f"difference {100 * margin:+.1f} points"
                       + (f" ({fmt_interval(100 * ci[0], 100 * ci[1], '{:+.1f}')})" if ci else
                          f" ({too_few(n_clusters, 'image')})")
                       if best_other else f"robustness {100 * r_m.mean():.1f}% {where}" if models else
                       "robustness not measured")
        texts.append(f"{method_title(m)}: {100 * constant:.0f}% of its certificates flagged as constant maps; "
                     f"{robust_text}; Certified GridPG at K = {k:g}% {g_mean:.2f}"
                     + (f" ({fmt_interval(*g_ci, fmt='{:.2f}')}" if g_ci else f" ({too_few(n_targets, 'grid target')}")
                     + f", {count(n_targets, 'grid target')}, nothing certified '1' in {share_percent(empty)} of them)")
    measured = "; ".join(texts)
    failed = [name for name, vals in (("almost constant", parts["constant"]), ("the most robust", parts["robust"]),
                                      ("below chance", parts["poor"])) if any(v is False for v in vals)]
    undecided = [name for name, vals in (("almost constant", parts["constant"]), ("the most robust", parts["robust"]),
                                         ("below chance", parts["poor"])) if any(v is None for v in vals)]
    if failed:
        verdict, why = "disagrees", f"Not {listing(failed)}: an interval lies on the other side."
    elif undecided:
        verdict, why = "inconclusive", f"This run cannot decide whether they are {listing(undecided)}."
    else:
        verdict = "agrees"
        g_text = listing([f"{method_title(m)} {stats[m]['gridpg']:.2f}" for m in ("grad", "gb")])
        why = (f"Their Final-layer maps are constant up to float rounding (a GAP→linear head passes the same "
               f"gradient to every position), so noise barely moves them: each is more robust than every other "
               f"method on the units both have, and their Certified GridPG at K = {k:g}% ({g_text}) lies below "
               f"chance ({CHANCE:.2f}), with nothing certified '1' in "
               + listing([f"{share_percent(stats[m]['no_certified'])} of {method_title(m)}'s grid targets"
                          for m in ("grad", "gb")]) + ".")
    stats.update({"k": k, "chance": CHANCE, "constant_threshold": CONSTANT_SHARE,
                  "missing": {m: str(w) for m, w in missing.items()}})
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=ev.note())
