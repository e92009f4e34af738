"""One function per claim: its counts, means and the side of its interval, recomputed from the CSV tables."""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from .plain import EMPTY, NAMED, _boot, _counts, _drop_copies, _rank, _same_groups, _side

__all__ = ["sigma_trend", "tau_trend", "r_trend_every_model", "k_trend_every_model", "gradient_input", "input_robust_leaders", "input_small_k_balance", "input_localization_leaders", "deletion_input_leaders", "gradcam_least_faithful_input", "final_flip", "localization_faithfulness", "gradgb_final", "rise_lrp_balance", "rise_best_balance", "RECHECKED"]


# --- one function per claim: {quantity: value}, read from the CSVs --------------------------------------------
def _trend(df, by, value, k=None):
    if df is None or df[by].nunique() < 2:
        return None
    df = _counts(df)
    if k is not None:
        df = df[df.k == k]
    lo, hi = df[by].min(), df[by].max()
    on = [c for c in ("model", "image_id", "method", "layer", "sigma", "tau", "k") if c != by]
    m = df[df[by] == lo].merge(df[df[by] == hi], on=on, suffixes=("_a", "_b"))
    d = (m[f"{value}_a"] - m[f"{value}_b"]).to_numpy(float)
    return {"units": len(m), "positive": int((d > 0).sum()), "negative": int((d < 0).sum()), "mean": d.mean(),
            "clusters": m.image_id.nunique(), "side": _side(_boot(m.image_id, lambda i: d[i].mean()))}


def sigma_trend(t):
    rob = t["robustness"]
    return _trend(rob, "sigma", "robustness", rob.k.max()) if rob is not None else None


def tau_trend(t):
    rob = t["robustness_tau"]
    return _trend(rob, "tau", "robustness", rob.k.max()) if rob is not None else None


def _per_model(t, by, value):
    rob = t["robustness"]
    if rob is None:
        return None
    out = {}
    for model, part in _counts(rob).groupby("model"):
        title = part.model_title.iloc[0] if "model_title" in part else model
        if by == "sigma":
            got = _trend(part, "sigma", value, part.k.max())
        else:
            part = part[part.sigma == part.sigma.min()]
            part = part.assign(k_neg=-part.k)  # the larger K first: certified-'1' share at large K minus small K
            got = _trend(part.drop(columns="k").rename(columns={"k_neg": "k"}), "k", value)
        if got:
            out[title] = got
    return out


def r_trend_every_model(t):
    return _per_model(t, "sigma", "robustness")


def k_trend_every_model(t):
    return _per_model(t, "k", "certified_1")


def gradient_input(t):
    rob = t["robustness"]
    if rob is None:
        return None
    df = _counts(rob)
    df = df[(df.layer == "input") & (df.sigma == rob.sigma.min()) & (df.k == rob.k.max())]
    out = {}
    for m in ("grad", "gb", "ixg", "intgrad"):
        g = df[df.method == m]
        if len(g):
            c1, px = g.n_certified_1.to_numpy(float), g.n_pixels.to_numpy(float)
            budget = rob.k.max() / 100
            ci = _boot(g.image_id, lambda i: c1[i].sum() / px[i].sum() / budget)
            out[m] = {"share": c1.sum() / px.sum() / budget, "images": g.image_id.nunique(),
                      "side": _side(ci, 0.10)}
    return out


def _rank_out(got):
    if got is None:
        return None
    margin, ci, units, clusters, means = got
    return {"margin": margin, "units": units, "clusters": clusters, "side": _side(ci), "means": means}


def input_robust_leaders(t):
    rob = t["robustness"]
    df = _counts(rob)
    df = df[df.layer == "input"]
    df = _drop_copies(df, _same_groups(df, ["n_certified_1", "n_certified_0", "n_abstain"]), NAMED)
    return _rank_out(_rank(df, "robustness", ["sigma", "k"]))


def input_small_k_balance(t):
    rob = t["robustness"]
    df = _counts(rob)
    df = df[(df.layer == "input") & (df.sigma == rob.sigma.min()) & (df.k == rob.k.min())]
    df = df.assign(share=df.n_certified_1 / (df.n_pixels * rob.k.min() / 100))
    return _rank_out(_rank(df, "share", []))


def input_localization_leaders(t):
    loc = t["localization"]
    if loc is None:
        return None
    df = _counts(loc)
    df = df[(df.layer == "input") & (df.sigma == loc.sigma.min())]
    df = _drop_copies(df, _same_groups(df, ["certified_gridpg", "n_certified_1", "n_certified_1_inside"]), NAMED)
    return _rank_out(_rank(df, "certified_gridpg", ["k"], empty="no_certified"))


def _drop(t):
    faith = t["faithfulness"]
    if faith is None:
        return None
    df = _counts(faith)
    groups = _same_groups(df, ["relative_probability", "n_removed"])
    first = df[(df.step == 1) & (df.layer == "input")]
    first = first.assign(drop=1 - first.relative_probability, empty=first.n_removed == 0)
    return first, groups


def deletion_input_leaders(t):
    got = _drop(t)
    return _rank_out(_rank(_drop_copies(got[0], got[1], NAMED), "drop", [], empty="empty")) if got else None


def gradcam_least_faithful_input(t):
    got = _drop(t)
    return _rank_out(_rank(_drop_copies(got[0], got[1], ["gradcam"]), "drop", [], highest=False, empty="empty",
                           named=["gradcam"])) if got else None


def final_flip(t):
    flips, faith = t["faithfulness_flips"], t["faithfulness"]
    if flips is None or faith is None:
        return None
    ev = _counts(faith)
    groups = _same_groups(ev[ev.layer == "final"], ["relative_probability", "n_removed"])
    first = faith[(faith.step == 1)][["model", "image_id", "method", "layer", "n_removed"]]
    f = flips[flips.layer == "final"].merge(first, on=["model", "image_id", "method", "layer"], how="left")
    f = f[f.n_removed.fillna(1) > 0]
    f = f.merge(ev[["model", "image_id", "method", "layer"]].drop_duplicates(), how="inner")  # counted curves only
    f = _drop_copies(f, groups)
    per = f.groupby("method").flipped.agg(["sum", "count"])
    flip = keep = 0
    for _, r in per.iterrows():
        ci = binomtest(int(r["sum"]), int(r["count"])).proportion_ci(0.95, method="exact")
        flip += ci.low > 0.5
        keep += ci.high < 0.5
    return {"methods": len(per), "flipping": int(flip), "keeping": int(keep), "curves": int(per["count"].sum())}


def localization_faithfulness(t):
    loc, got = t["localization"], _drop(t)
    if loc is None or got is None:
        return None
    g = _counts(loc)
    g = g[(g.layer == "input") & (g.sigma == loc.sigma.min())]
    g = _drop_copies(g, _same_groups(g, ["certified_gridpg", "n_certified_1", "n_certified_1_inside"]))
    f = _drop_copies(got[0], got[1])
    f_empty = f.groupby("method").empty.mean()
    empty_k = g.groupby(["method", "k"]).no_certified.mean().unstack()
    methods = sorted((set(g.method) & set(f.method)) - set(f_empty[f_empty > EMPTY].index))
    methods = [m for m in methods if (empty_k.loc[m] <= EMPTY).any()]
    ks = [k for k in empty_k.columns if all(empty_k.loc[m, k] <= EMPTY for m in methods)]
    if len(methods) < 4 or not ks:
        return {"methods": len(methods)}
    gm = g[g.k.isin(ks)].groupby("method").certified_gridpg.mean()[methods]
    fm = f.groupby("method").drop.mean()[methods]
    return {"methods": len(methods), "rho": float(gm.rank().corr(fm.rank()))}


def gradgb_final(t):
    loc, rob = t["localization"], t["robustness"]
    if loc is None:
        return None
    grids = loc[(loc.layer == "final") & (loc.sigma == loc.sigma.min()) & (loc.k == loc.k.max())]
    out = {}
    if rob is not None:
        rob = rob[rob.model.isin(set(loc.model))]
    for m in ("grad", "gb"):
        rows = grids[grids.method == m]
        g = rows.certified_gridpg.to_numpy(float)
        labels = rows.grid_id.astype(str) + "|" + rows.target_cell.astype(str)
        entry = {"gridpg": g.mean(), "targets": labels.nunique(),
                 "gridpg_side": _side(_boot(labels, lambda i: g[i].mean()), 0.25)}
        if rob is not None and len(rob):
            final = rob[(rob.layer == "final") & (rob.sigma == rob.sigma.min())]
            mine = final[final.method == m]
            entry["constant_share"] = float((~mine.degenerate.fillna("").astype(str).str.strip().isin(
                ["", "False", "0", "false"])).mean())
            per_unit = mine.groupby(["model", "image_id"]).robustness.mean()
            entry["robustness"] = per_unit.mean()
            others = _counts(final)
            others = others[~others.method.isin(["grad", "gb"])]
            # the lead over each other method on the (model, image) units both have; the closest one is named
            gaps = {o: (per_unit - g.groupby(["model", "image_id"]).robustness.mean()).dropna().mean()
                    for o, g in others.groupby("method")}
            gaps = {o: v for o, v in gaps.items() if v == v}
            entry["best_other"] = min(gaps, key=gaps.get)
            entry["robust_margin"] = gaps[entry["best_other"]]
        out[m] = entry
    return out


def _balance(t, layer, with_faith):
    rob, loc = _counts(t["robustness"]), _counts(t["localization"])
    if rob is None or loc is None:
        return None
    r = rob[(rob.layer == layer) & (rob.sigma == rob.sigma.min())]
    g = loc[(loc.layer == layer) & (loc.sigma == loc.sigma.min())]
    r = _drop_copies(r, _same_groups(rob, ["n_certified_1", "n_certified_0", "n_abstain"]), ["rise", "lrp"])
    g = _drop_copies(g, _same_groups(loc, ["certified_gridpg", "n_certified_1", "n_certified_1_inside"]),
                     ["rise", "lrp"])
    methods = set(r.method) & set(g.method)
    fm = None
    if with_faith:
        got = _drop(t) if layer == "input" else None
        if got is None:
            return None
        f = _drop_copies(got[0], got[1], ["rise", "lrp"])
        e = f.groupby("method").empty.mean()
        methods = (methods & set(f.method)) - set(e[e > EMPTY].index)
        fm = f.groupby("method").drop.mean()
    models = set(r.model) & set(g.model)
    for m in ("rise", "lrp"):
        if m in methods:
            models &= set(r[r.method == m].model) & set(g[g.method == m].model)
    r, g = r[r.model.isin(models)], g[g.model.isin(models)]
    ks = sorted(set(r.k) & set(g.k), reverse=True)
    basis = set(r.method) & set(g.method)  # the K are the two-way comparison's, with or without the drop
    ranked = {}
    for k in ks:
        empty = g[g.k == k].groupby("method").no_certified.mean()
        ranked[k] = [m for m in basis if empty.get(m, 0) <= EMPTY]
    keep = [m for m in sorted(basis) if any(m in v for v in ranked.values())]
    while keep and not [k for k in ks if set(keep) <= set(ranked[k])]:
        keep.remove(min(keep, key=lambda m: (m in ("rise", "lrp"), sum(m in v for v in ranked.values()))))
    shared = [k for k in ks if keep and set(keep) <= set(ranked[k])]
    keep = [m for m in keep if m in methods]
    out = {}
    for k in shared:
        rk = r[r.k == k].groupby(["method", "model", "image_id"]).robustness.mean().groupby("method").mean()
        gm = g[g.k == k].groupby("method").certified_gridpg.mean()
        for m in keep:
            parts = [max(rk[m], 0), max(gm[m], 0)] + ([max(fm[m], 0)] if fm is not None else [])
            out.setdefault(m, []).append(float(np.prod(parts) ** (1 / len(parts))))
    return {m: float(np.mean(v)) for m, v in out.items()}


def rise_lrp_balance(t):
    if t["faithfulness"] is None:
        return None
    return {"balance": _balance(t, "input", True)}


def rise_best_balance(t):
    return {layer: {"balance": _balance(t, layer, False)} for layer in ("input", "final")}


RECHECKED = {f.__name__: f for f in (sigma_trend, tau_trend, r_trend_every_model, k_trend_every_model, gradient_input,
                                      input_robust_leaders, input_small_k_balance, input_localization_leaders,
                                      deletion_input_leaders, gradcam_least_faithful_input, final_flip,
                                      localization_faithfulness, gradgb_final, rise_lrp_balance, rise_best_balance)}
