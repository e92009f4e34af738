"""Checks on the trade-off between robustness, localization and faithfulness (the trade-off chapter's tables:
robustness rows on photos, Certified GridPG rows on grids, deletion rows on photos).

**Balance**, the one definition the chapter and the findings share (:func:`balance_parts`): at each K, per
method, the geometric mean of certified robustness (1 - abstain, mean over the photos), Certified GridPG (mean
over the grid targets) and, where the claim includes it, the first-step confidence drop of deletion (mean over
the photos); means below 0 count as 0. A method whose certificates are empty (nothing certified '1') in more
than half of the grid targets at a K is not ranked at that K, one whose first deletion step removed nothing in
more than half of the photos is not ranked at all. Every method is averaged over the same K, those at which
every method of the two-way comparison (robustness and GridPG) is ranked, with or without the drop (a method ranked
at too few K to share one with the others is left out, and named): the reported balance of a method is the mean
of its per-K balances over those K, and a margin between methods the mean of the per-K margins. Photos and grid
targets are resampled independently.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..metrics import faithfulness_scores
from ..names import layer_title, method_title
from .claims import FINDINGS, Verdict, _for_layers
from .common import absent_text, common_conditions, fmt_interval, not_tested, select, too_few
from .evidence import MAX_EMPTY_SHARE, RunSettings, admissible, empty_methods, listing, not_measured, notes, unavailable
from .stats import MIN_CLUSTERS, cluster_bootstrap
from .render import merge_notes, table_exclusions
from .units import collapse_identical, group_title, identical_groups

__all__ = ["check_rise_lrp_balance", "check_rise_best_balance", "BalanceParts", "balance_parts", "balance_table"]


@dataclass
class BalanceParts:
    """The per-K matrices of one layer: ``robustness[k]`` (photo units x methods), ``gridpg[k]`` (grid targets x
    methods), ``faithfulness`` (photo units x methods, or None), ``ranked[k]`` the method indices ranked at K;
    cluster labels of the photo units and of the grid targets."""

    methods: list
    ks: list
    robustness: dict
    gridpg: dict
    faithfulness: object
    ranked: dict
    photo_clusters: np.ndarray
    grid_clusters: np.ndarray
    identical: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    note: str = ""

    def balances(self, photo_idx=None, grid_idx=None) -> dict:
        """{k: per-method balance (NaN where not ranked)} on the given unit indices (all when None)."""
        photo_idx = np.arange(len(self.photo_clusters)) if photo_idx is None else photo_idx
        grid_idx = np.arange(len(self.grid_clusters)) if grid_idx is None else grid_idx
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for k in self.ks:
                rb = np.clip(np.nanmean(self.robustness[k][photo_idx], axis=0), 0, None)
                lc = np.clip(np.nanmean(self.gridpg[k][grid_idx], axis=0), 0, None)
                if self.faithfulness is None:
                    b = np.sqrt(rb * lc)
                else:
                    b = np.cbrt(rb * lc * np.clip(np.nanmean(self.faithfulness[photo_idx], axis=0), 0, None))
                mask = np.full(len(self.methods), np.nan)
                mask[self.ranked[k]] = 1.0
                out[k] = b * mask
        return out

    def mean_balance(self) -> dict:
        """{method: mean of its per-K balance over the K at which it is ranked}."""
        per_k = self.balances()
        stacked = np.array([per_k[k] for k in self.ks])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(stacked, axis=0)
        return {m: float(v) for m, v in zip(self.methods, means) if v == v}

    def title(self, m) -> str:
        return group_title(self.identical[m], m) if m in self.identical else method_title(m)

    def summary(self, *, intervals: bool = False, seed: int = 0) -> dict:
        """{method: {"robustness", "certified_gridpg", "faithfulness" (or None), "balance"}}: each the mean over the
        K the balance uses (robustness and GridPG over the units first, as in the balance). With ``intervals``, also
        "robustness_low"/"robustness_high" (95% bootstrap resampling the images) and "gridpg_low"/"gridpg_high"
        (resampling the grid targets), NaN below :data:`~.stats.MIN_CLUSTERS` clusters."""
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for j, m in enumerate(self.methods):
                def rob(idx=None, j=j):
                    return float(np.mean([np.nanmean(self.robustness[k][idx if idx is not None else slice(None), j])
                                          for k in self.ks]))

                def loc(idx=None, j=j):
                    return float(np.mean([np.nanmean(self.gridpg[k][idx if idx is not None else slice(None), j])
                                          for k in self.ks]))

                fa = None if self.faithfulness is None else float(np.nanmean(self.faithfulness[:, j]))
                out[m] = {"robustness": rob(), "certified_gridpg": loc(), "faithfulness": fa,
                          "balance": self.mean_balance().get(m, float("nan"))}
                if intervals:
                    for name, stat, clusters in (("robustness", rob, self.photo_clusters),
                                                 ("gridpg", loc, self.grid_clusters)):
                        low = high = float("nan")
                        if len(set(clusters)) >= MIN_CLUSTERS:
                            low, high = cluster_bootstrap(np.asarray(clusters), stat, seed=seed)[1:]
                        out[m][f"{name}_low"], out[m][f"{name}_high"] = low, high
        return out


def balance_table(rob, loc, faith, layers=("input", "final"), *, settings=None, grid_settings=None):
    """The trade-off chapter's table, from the same :func:`balance_parts` as the verdicts: one row per (layer,
    method counted) with robustness, Certified GridPG, the first-step confidence drop, ``balance`` = √(robustness
    × GridPG) (the rebuttal's two-way trade-off) and ``balance3`` (× the drop, the abstract's three-way one) where
    the deletion rows have the layer, each the mean over the K the balance uses, with the 95% bootstrap intervals
    of robustness (``robustness_low``, ``robustness_high``, resampling images) and of GridPG (``gridpg_low``,
    ``gridpg_high``, resampling grid targets; NaN below 8 clusters); and {layer: the sentence naming what was not
    counted}."""
    import pandas as pd

    rows, notes_ = [], {}
    for layer in layers:
        if rob is None or loc is None or not ((rob.layer == layer).any() and (loc.layer == layer).any()):
            continue
        two = balance_parts(rob, loc, None, layer, settings=settings, grid_settings=grid_settings)
        has_faith = faith is not None and len(faith) and (faith.layer == layer).any()
        three = (balance_parts(rob, loc, faith, layer, settings=settings, grid_settings=grid_settings)
                 if has_faith else None)
        drops = three.summary() if three else {}
        for m, v in two.summary(intervals=True).items():
            rows.append({"layer": layer, "method": m, "title": two.title(m), "robustness": v["robustness"],
                         "robustness_low": v["robustness_low"], "robustness_high": v["robustness_high"],
                         "certified_gridpg": v["certified_gridpg"], "gridpg_low": v["gridpg_low"],
                         "gridpg_high": v["gridpg_high"],
                         "faithfulness": drops.get(m, {}).get("faithfulness"), "balance": v["balance"],
                         "balance3": drops.get(m, {}).get("balance"), "ks": ", ".join(f"{k:g}" for k in two.ks),
                         "images": len(set(two.photo_clusters)), "targets": len(set(two.grid_clusters))})
        # said once, and only the pairs at this layer (the evidence covers both)
        notes_[layer] = table_exclusions([_for_layers(n, (layer,)) for n in (two.note, three.note if three else "")
                                          if n])[0]
    columns = ["layer", "method", "title", "robustness", "robustness_low", "robustness_high", "certified_gridpg",
               "gridpg_low", "gridpg_high", "faithfulness", "balance", "balance3", "ks", "images", "targets"]
    return pd.DataFrame(rows, columns=columns), notes_  # the same columns when no method is counted


def balance_parts(rob, loc, faith, layer: str, *, settings=None, grid_settings=None, named=("rise", "lrp")) -> BalanceParts:
    """The per-K parts of the balance at ``layer`` (smallest σ of each table), on the evidence rows, on the models
    on which the ``named`` methods that are evidence ran, identical methods once."""
    ev_r, ev_l = admissible(rob, settings), admissible(loc, grid_settings or settings, source="grids")
    evidences = [ev_r, ev_l]
    r = select(ev_r.frame, sigma=float(rob.sigma.min()), layer=layer)
    g = select(ev_l.frame, sigma=float(loc.sigma.min()), layer=layer)
    r, kept = collapse_identical(r, identical_groups(ev_r.frame), prefer=named)
    g, _ = collapse_identical(g, identical_groups(ev_l.frame), prefer=named)
    methods = set(r.method) & set(g.method)
    f = None
    f_empty = {}
    if faith is not None:
        ev_f = admissible(faith, settings)
        evidences.append(ev_f)
        f = faithfulness_scores(ev_f.frame)
        f = f[f.layer == layer]
        f, _ = collapse_identical(f, identical_groups(ev_f.frame), prefer=named)
        methods &= set(f.method)
        f_empty = f.groupby("method").nothing_removed.mean().astype(float).to_dict()
    missing = {}
    for m in named:
        for ev, raw, source in ((ev_r, rob, settings), (ev_l, loc, grid_settings or settings)) + (
                ((evidences[-1], faith, settings),) if faith is not None else ()):
            missing.update({k: v for k, v in unavailable((m,), raw, ev, layer, source).items() if k not in missing})
    present = [m for m in named if m in methods]
    models = set(r.model) & set(g.model)
    for m in present:
        models &= set(r[r.method == m].model) & set(g[g.method == m].model)
    r, g = r[r.model.isin(models)], g[g.model.isin(models)]
    empty_f = {m for m, s in f_empty.items() if s > MAX_EMPTY_SHARE}
    # the K are those of the two-way comparison (robustness and GridPG), with or without the drop, so that the
    # two-way and the three-way balance of a method are means over the same K
    basis = sorted(set(r.method) & set(g.method))
    methods = sorted(methods - empty_f)
    ks = sorted(set(r.k) & set(g.k), reverse=True)
    photo_units = sorted(set(zip(r.model, r.image_id)) & (set(zip(f.model, f.image_id)) if f is not None else
                                                           set(zip(r.model, r.image_id))))
    grid_units = sorted(set(zip(g.model, g.grid_id, g.target_cell)))
    rob_k, grid_k, ranked, not_ranked, basis_ranked = {}, {}, {}, {}, {}
    for k in ks:
        rk = select(r, k=float(k)).pivot_table(index=["model", "image_id"], columns="method", values="robustness")
        gk_rows = select(g, k=float(k))
        gk = gk_rows.pivot_table(index=["model", "grid_id", "target_cell"], columns="method", values="certified_gridpg")
        rob_k[k] = rk.reindex(index=photo_units, columns=methods).to_numpy(float)
        grid_k[k] = gk.reindex(index=grid_units, columns=methods).to_numpy(float)
        empty_share = (gk_rows.groupby("method").no_certified.mean().reindex(methods).fillna(0.0)
                       if "no_certified" in gk_rows else None)
        ranked[k] = [j for j, m in enumerate(methods) if empty_share is None or empty_share[m] <= MAX_EMPTY_SHARE]
        basis_share = (gk_rows.groupby("method").no_certified.mean().reindex(basis).fillna(0.0)
                       if "no_certified" in gk_rows else None)
        basis_ranked[k] = [m for m in basis if basis_share is None or basis_share[m] <= MAX_EMPTY_SHARE]
        for j, m in enumerate(methods):
            if j not in ranked[k]:
                not_ranked.setdefault(m, []).append((k, float(empty_share[m])))
    never = {m: "nothing certified '1' in most grid targets at every K" for m, v in not_ranked.items()
             if len(v) == len(ks)}
    # every method is averaged over the same K: those at which every method compared is ranked
    two_way = common_conditions(basis_ranked, basis, named)
    shared = next(iter(two_way.values()), [])
    compared = {m: shared for m in methods if m in two_way}
    never.update({m: "ranked at too few K to share one with the others" for m in methods
                  if m not in compared and m not in never})
    cols = [j for j, m in enumerate(methods) if m in compared]
    rob_k = {k: rob_k[k][:, cols] for k in shared}
    grid_k = {k: grid_k[k][:, cols] for k in shared}
    methods, ks = [methods[j] for j in cols], list(shared)
    ranked = {k: list(range(len(methods))) for k in ks}
    fa = None
    if f is not None:
        fa = (f.pivot_table(index=["model", "image_id"], columns="method", values="faithfulness")
              .reindex(index=photo_units, columns=methods).to_numpy(float))
    for m in named:
        if m in never:
            missing.setdefault(m, _EmptyAbsence(never[m]))
        if m in empty_f:
            missing.setdefault(m, _EmptyAbsence("nothing removed at the first step in most photos"))
    note = notes(*evidences, not_ranked={**empty_methods({m: f_empty[m] for m in empty_f},
                                                          "nothing removed at the first step"), **never})
    pc = np.array([str(i) for _, i in photo_units])
    gc = np.array([f"{gid}|{c}" for _, gid, c in grid_units])
    return BalanceParts(methods, ks, rob_k, grid_k, fa, ranked, pc, gc, kept, missing, note)


class _EmptyAbsence(str):
    kind = "empty"


def _margin_verdict(parts: BalanceParts, lead, against, seed: int):
    """(estimate, interval or None, used Ks): mean over K of min(b[lead]) - max(b[against]) where both are ranked."""
    idx = {m: j for j, m in enumerate(parts.methods)}
    lead_j = [idx[m] for m in lead if m in idx]
    against_j = [idx[m] for m in against if m in idx]
    used = [k for k in parts.ks if all(j in parts.ranked[k] for j in lead_j)
            and any(j in parts.ranked[k] for j in against_j)]

    def margin(pi, gi):
        b = parts.balances(pi, gi)
        return float(np.mean([min(b[k][j] for j in lead_j) - np.nanmax([b[k][j] for j in against_j]) for k in used]))

    if not used or not lead_j or not against_j:
        return None, None, used
    est = margin(None, None)
    n_img, n_tgt = len(set(parts.photo_clusters)), len(set(parts.grid_clusters))
    ci = (cluster_bootstrap([parts.photo_clusters, parts.grid_clusters], margin, seed=seed)[1:]
          if min(n_img, n_tgt) >= MIN_CLUSTERS else None)
    return est, ci, used


def _sizes(parts) -> str:
    return f"{len(set(parts.photo_clusters))} images, {len(set(parts.grid_clusters))} grid targets"


def _few(parts) -> str:
    n_img, n_tgt = len(set(parts.photo_clusters)), len(set(parts.grid_clusters))
    return too_few(min(n_img, n_tgt), "image" if n_img <= n_tgt else "grid target")


def check_rise_lrp_balance(rob, loc, faith, *, layer: str = "input", settings: RunSettings | None = None,
                           grid_settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """Balance of robustness, Certified GridPG and the first-step deletion drop; RISE and LRP against the rest."""
    fid = "rise_lrp_balance"
    if any(t is None or not len(t) for t in (rob, loc, faith)):
        return not_tested(fid, "the robustness, localization or faithfulness table is missing")
    parts = balance_parts(rob, loc, faith, layer, settings=settings, grid_settings=grid_settings)
    if not_measured(parts.missing):
        return not_tested(fid, absent_text(parts.missing) + f": not evidence at the {layer_title(layer)} layer",
                          excluded=parts.note)
    others = [m for m in parts.methods if m not in ("rise", "lrp")]
    means = parts.mean_balance()
    ranking = ", ".join(f"{parts.title(m)} {means[m]:.2f}" for m in sorted(means, key=lambda m: -means[m]))
    if not others:  # both measured: the data, not the profile, leave nothing to compare them with
        return Verdict(FINDINGS[fid], "inconclusive",
                       f"{layer_title(layer)} layer, three-way balance ∛(robustness × Certified GridPG × "
                       f"first-step drop): {ranking}; no other method is ranked on all three measures",
                       "RISE and LRP were measured, but every other method is left out of at least one of the three "
                       "measures (see the exclusions), so there is no third method to compare them with.",
                       {"balance": means}, excluded=parts.note)
    est, ci, used = _margin_verdict(parts, ("rise", "lrp"), others, seed)
    if est is None:
        return Verdict(FINDINGS[fid], "inconclusive",
                       f"{layer_title(layer)} layer, three-way balance ∛(robustness × Certified GridPG × "
                       f"first-step drop): {ranking}",
                       f"{absent_text(parts.missing)}: no K at which RISE and LRP and another method are all ranked.",
                       {"balance": means}, excluded=parts.note)
    measured = (f"{layer_title(layer)} layer, balance ∛(robustness × Certified GridPG × first-step drop), per K "
                f"then the mean over K: " + ranking + f"; min(RISE, LRP) - best other = {est:+.2f} ("
                + (f"{fmt_interval(*ci)}; " if ci else "") + f"{_sizes(parts)}; K = "
                + ", ".join(f"{k:g}" for k in used) + "%)")
    if ci is None:
        verdict, why = "inconclusive", f"The margin is {est:+.2f}, but {_few(parts)}."
    elif ci[0] > 0 and not parts.missing:
        verdict, why = "agrees", "The margin's interval lies above 0: RISE and LRP are ahead of every other method."
    elif ci[1] < 0:
        best_other = max(others, key=lambda m: means.get(m, -1))
        verdict, why = "disagrees", f"The margin's interval lies below 0: {parts.title(best_other)} balances the three better."
    elif ci[0] > 0:
        verdict, why = "inconclusive", f"They lead, but {absent_text(parts.missing)}."
    else:
        verdict, why = "inconclusive", "The margin's interval contains 0: the run cannot separate the leaders."
    return Verdict(FINDINGS[fid], verdict, measured, why, {"margin": est, "ci_low": ci[0] if ci else None,
                                                           "ci_high": ci[1] if ci else None, "ks": used,
                                                           "balance": means, "images": len(set(parts.photo_clusters)),
                                                           "targets": len(set(parts.grid_clusters))},
                   excluded=parts.note)


def check_rise_best_balance(rob, loc, *, settings: RunSettings | None = None, grid_settings: RunSettings | None = None,
                            seed: int = 0) -> Verdict:
    """Per layer: balance = sqrt(robustness x Certified GridPG); RISE first, and LRP second, ahead of the rest."""
    fid = "rise_best_balance"
    if rob is None or loc is None or not len(rob) or not len(loc):
        return not_tested(fid, "the robustness or localization table is missing")
    texts, stats, per_layer, all_notes = [], {}, {}, []
    for layer in ("input", "final"):
        if not ((rob.layer == layer).any() and (loc.layer == layer).any()):
            per_layer[layer] = "not run"
            texts.append(f"{layer_title(layer)} layer: not run")
            continue
        parts = balance_parts(rob, loc, None, layer, settings=settings, grid_settings=grid_settings)
        all_notes.append(parts.note)
        rest = [m for m in parts.methods if m not in ("rise", "lrp")]
        if parts.missing or not rest:
            per_layer[layer] = "not run" if not_measured(parts.missing) else "no evidence"
            texts.append(f"{layer_title(layer)} layer: " + (absent_text(parts.missing) if parts.missing
                                                           else "no third method"))
            continue
        m1 = _margin_verdict(parts, ("rise",), ["lrp"] + rest, seed)
        m2 = _margin_verdict(parts, ("lrp",), rest, seed)
        means = parts.mean_balance()
        order = sorted(means, key=lambda m: -means[m])

        def say(m):
            est, ci, _ = m
            return "n/a" if est is None else f"{est:+.2f}" + (f" ({fmt_interval(*ci)})" if ci else f" ({_few(parts)})")

        texts.append(f"{layer_title(layer)} layer, balance √(robustness × Certified GridPG): "
                     + ", ".join(f"{parts.title(m)} {means[m]:.2f}" for m in order)
                     + f"; RISE - best other {say(m1)}, LRP - best non-RISE {say(m2)}")
        stats[layer] = {"rise_margin": m1[:2], "lrp_margin": m2[:2], "balance": means,
                        "images": len(set(parts.photo_clusters)), "targets": len(set(parts.grid_clusters))}
        cis = [m1[1], m2[1]]
        per_layer[layer] = ("few" if any(c is None for c in cis) else
                            "disagrees" if any(c[1] < 0 for c in cis) else
                            "agrees" if all(c[0] > 0 for c in cis) else "inconclusive")
    measured = "balance √(robustness × Certified GridPG), per K then the mean over K; " + "; ".join(texts)
    states = set(per_layer.values())
    where = lambda s: listing([layer_title(l) for l, v in per_layer.items() if v == s])  # noqa: E731
    if "disagrees" in states:
        verdict, why = "disagrees", f"At the {where('disagrees')} layer a margin's interval lies below 0."
    elif "not run" in states:
        verdict = "not tested"
        why = f"RISE or LRP did not run (at settings the evidence rules accept) at the {where('not run')} layer, and the claim is about both."
    elif states == {"agrees"}:
        verdict, why = "agrees", "At both layers RISE leads and LRP is second: every interval lies above 0."
    elif "few" in states:
        verdict, why = "inconclusive", f"Too few images or grid targets for an interval at the {where('few')} layer."
    elif "no evidence" in states:
        verdict, why = "inconclusive", f"RISE or LRP does not count as evidence at the {where('no evidence')} layer."
    else:
        verdict, why = "inconclusive", "A margin's interval contains 0."
    return Verdict(FINDINGS[fid], verdict, measured, why, stats,
                   excluded=merge_notes(all_notes))
