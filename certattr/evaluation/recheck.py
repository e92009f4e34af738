"""A second, plain computation of the findings rows, for checking them: ``certattr findings-check RESULTS_DIR``.

Each function below recomputes one claim's counts, means and the side of its interval directly from the CSV
tables a built profile wrote (``robustness.csv``, ``robustness_tau.csv``, ``localization.csv``,
``faithfulness.csv``, ``faithfulness_flips.csv``) with a few lines of pandas, reading the definitions stated in
the rows' criteria, and compares them with the numbers saved in ``findings_<chapter>.json``. It deliberately
imports nothing from :mod:`certattr.evaluation.findings`: a selection, pairing or aggregation that the findings
code gets wrong shows up as a difference here. The bootstrap is re-implemented with the same seeded draws
(clusters: images, or grid targets), so its endpoints are expected to agree to rounding.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["recheck", "recheck_frame", "RECHECKED"]

MIN_CLUSTERS, N_BOOT, EMPTY = 8, 2000, 0.5
NAMED = ["lrp", "rise"]
PAPER_OCCLUSION = {"input": (16, 8), "final": (5, 2)}


# --- plain helpers -------------------------------------------------------------------------------------------
def _read(folder: Path, name: str):
    path = folder / name
    return pd.read_csv(path) if path.exists() else None


def _counts(df):
    """Rows that count as evidence: not flagged degenerate, RISE with >= 100 masks, Occlusion not coarser than the
    paper's window and stride (from the ``method_params`` JSON each row records)."""
    if df is None or not len(df):
        return df
    ok = pd.Series(True, index=df.index)
    if "degenerate" in df:
        ok &= df.degenerate.fillna("").astype(str).str.strip().isin(["", "False", "0", "false"])
    if "method_params" in df:
        for i, (method, layer, text) in enumerate(zip(df.method, df.layer, df.method_params)):
            params = json.loads(text) if isinstance(text, str) and text.strip() else {}
            params = {k: v for k, v in (params or {}).items() if v is not None}
            if method == "rise" and "n_masks" in params and int(params["n_masks"]) < 100:
                ok.iloc[i] = False
            if method == "occlusion" and layer in PAPER_OCCLUSION:
                w, s = PAPER_OCCLUSION[layer]
                if int(params.get("window", w)) > w or int(params.get("stride", s)) > s:
                    ok.iloc[i] = False
    return df[ok]


def _boot(labels, stat):
    """Percentile 95% interval of stat(unit indices) over clusters drawn with replacement (seed 0, PCG64)."""
    labels = np.asarray(labels).astype(str)
    keys = np.unique(labels)
    if len(keys) < MIN_CLUSTERS:
        return None
    members = [np.flatnonzero(labels == key) for key in keys]
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0)))
    vals = []
    for _ in range(N_BOOT):
        pick = rng.integers(0, len(keys), len(keys))
        vals.append(stat(np.concatenate([members[j] for j in pick])))
    return tuple(np.nanquantile(vals, [0.025, 0.975]))


def _side(ci, threshold=0.0):
    if ci is None or ci[0] is None:
        return "no interval"
    return "above" if ci[0] > threshold else "below" if ci[1] < threshold else "contains"


def _same_groups(df, cols):
    """{(model, layer): {method: representative}} for methods whose ``cols`` are equal wherever both ran."""
    out = {}
    keys = [c for c in ("image_id", "grid_id", "target_cell", "sigma", "tau", "k", "step") if c in df]
    for (model, layer), part in df.groupby(["model", "layer"]):
        rep = {}
        tables = {m: g.set_index(keys)[cols].sort_index() for m, g in part.groupby("method")}
        for m in sorted(tables):
            for r in sorted(set(rep.values())):
                common = tables[m].index.intersection(tables[r].index)
                if len(common) and np.array_equal(tables[m].loc[common].to_numpy(float),
                                                  tables[r].loc[common].to_numpy(float)):
                    rep[m] = r
                    break
            else:
                rep[m] = m
        out[(model, layer)] = rep
    return out


def _drop_copies(df, groups, prefer=()):
    keep = []
    for (model, layer, method) in zip(df.model, df.layer, df.method):
        rep = groups.get((model, layer), {})
        members = [m for m, r in rep.items() if r == rep.get(method, method)]
        lead = next((p for p in prefer if p in members), min(members) if members else method)
        keep.append(method == lead)
    return df[np.array(keep, dtype=bool)]


def _rank(long, value, cond, highest=True, empty=None, named=NAMED):
    """Plain version of the ranking criterion: (margin, interval, units, clusters, {method: mean})."""
    present = [m for m in named if m in set(long.method)]
    if not present:
        return None
    models = set.intersection(*[set(long[long.method == m].model) for m in present])
    long = long[long.model.isin(models)]
    unit = ["model", "grid_id", "target_cell"] if "grid_id" in long else ["model", "image_id"]
    has = long.groupby(unit).method.nunique()
    n_methods = long.method.nunique()
    full = has[has == n_methods].index
    long = long.set_index(unit).loc[full].reset_index()
    units = long[unit].drop_duplicates().sort_values(unit).reset_index(drop=True)
    units["u"] = range(len(units))
    long = long.merge(units, on=unit)
    methods = sorted(long.method.unique())
    mats, ranked = {}, {}
    for c, g in long.groupby(cond) if cond else [((), long)]:
        mats[c] = g.pivot_table(index="u", columns="method", values=value).reindex(index=units.u, columns=methods)
        share = g.groupby("method")[empty].mean() if empty else pd.Series(dtype=float)
        ranked[c] = [m for m in methods if share.get(m, 0) <= EMPTY and mats[c][m].notna().any()]
    keep = [m for m in methods if any(m in r for r in ranked.values())]
    while keep and not [c for c, r in ranked.items() if set(keep) <= set(r)]:
        keep.remove(min(keep, key=lambda m: (m in named, sum(m in r for r in ranked.values()))))
    shared = [c for c, r in ranked.items() if keep and set(keep) <= set(r)]
    blocks = [(mats[c].to_numpy(float), [methods.index(m) for m in keep]) for c in shared]
    if not any(m in named for m in keep) or not any(m not in named for m in keep):
        blocks = []

    def margin(idx):
        out = []
        for mat, ok in blocks:
            mean = np.nanmean(mat[idx], axis=0)
            a = [mean[j] for j in ok if methods[j] in named]
            b = [mean[j] for j in ok if methods[j] not in named]
            out.append(min(a) - max(b) if highest else min(b) - max(a))
        return float(np.mean(out))

    if not blocks:
        return None
    labels = (units.grid_id.astype(str) + "|" + units.target_cell.astype(str)) if "grid_id" in units else units.image_id
    labels = labels.astype(str).to_numpy()
    means = {m: float(np.mean([np.nanmean(mat[:, j]) for mat, ok in blocks if j in ok]))
             for j, m in enumerate(methods) if any(j in ok for _, ok in blocks)}
    return margin(np.arange(len(units))), _boot(labels, margin), len(units), len(set(labels)), means


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
    f = f[f.method.isin(set(ev[ev.layer == "final"].method))]
    f = _drop_copies(f, groups)
    per = f.groupby("method").flipped.agg(["sum", "count"])
    from scipy.stats import binomtest
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
            entry["robustness"] = mine.groupby(["model", "image_id"]).robustness.mean().mean()
            others = _counts(final)
            others = others[~others.method.isin(["grad", "gb"])]
            per = others.groupby(["method", "model", "image_id"]).robustness.mean().groupby("method").mean()
            entry["best_other"] = per.idxmax()
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
    ranked = {}
    for k in ks:
        empty = g[g.k == k].groupby("method").no_certified.mean()
        ranked[k] = [m for m in methods if empty.get(m, 0) <= EMPTY]
    keep = [m for m in sorted(methods) if any(m in v for v in ranked.values())]
    while keep and not [k for k in ks if set(keep) <= set(ranked[k])]:
        keep.remove(min(keep, key=lambda m: (m in ("rise", "lrp"), sum(m in v for v in ranked.values()))))
    out = {}
    for k in [k for k in ks if keep and set(keep) <= set(ranked[k])]:
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


# --- comparison with the saved rows ----------------------------------------------------------------------------
def _saved_side(stats, low="ci_low", high="ci_high", threshold=0.0):
    lo, hi = stats.get(low), stats.get(high)
    return _side(None if lo is None else (lo, hi), threshold)


def _compare(claim: str, saved: dict, got) -> list[tuple]:
    """(claim, quantity, saved value, recomputed value) for every quantity both have."""
    s = saved.get("statistics") or {}
    rows = []

    def add(name, a, b):
        rows.append((claim, name, a, b))

    if got is None:
        return [(claim, "row", saved.get("verdict"), "no table to recompute from")]
    if claim in ("sigma_trend", "tau_trend"):
        for q in ("units", "positive", "negative", "mean", "clusters"):
            add(q, s.get(q), got[q])
        add("interval side", _saved_side(s), got["side"])
    elif claim in ("r_trend_every_model", "k_trend_every_model"):
        for model, g in got.items():
            m = s.get(model, {})
            for q in ("units", "positive", "negative", "mean", "clusters"):
                add(f"{model}: {q}", m.get(q), g[q])
            add(f"{model}: interval side", _saved_side(m), g["side"])
    elif claim == "gradient_input":
        for m, g in got.items():
            if m in s:
                add(f"{m}: share", s[m]["share"], g["share"])
                add(f"{m}: images", s[m]["images"], g["images"])
                add(f"{m}: interval side vs 0.10", _saved_side(s[m], threshold=0.10), g["side"])
    elif claim in ("input_robust_leaders", "input_small_k_balance", "input_localization_leaders",
                   "deletion_input_leaders", "gradcam_least_faithful_input"):
        if "margin" in s:
            for q in ("margin", "units", "clusters"):
                add(q, s[q], got[q])
            add("interval side", _saved_side(s), got["side"])
            for m, v in got["means"].items():
                add(f"mean {m}", s.get("means", {}).get(m), v)
    elif claim == "final_flip":
        if "methods" in s:
            add("methods", s["methods"], got["methods"])
            add("flipping", len(s["flipping"]), got["flipping"])
            add("keeping", len(s["keeping"]), got["keeping"])
            add("curves", s["curves"], got["curves"])
    elif claim == "localization_faithfulness":
        if "rho" in s:
            add("methods", len(s["methods"]), got["methods"])
            add("rho", s["rho"], got.get("rho"))
    elif claim == "gradgb_final":
        for m, g in got.items():
            if m in s:
                for q in ("gridpg", "targets", "constant_share", "robustness", "best_other"):
                    if q in g:
                        add(f"{m}: {q}", s[m].get(q), g[q])
                lo = s[m].get("gridpg_ci")
                add(f"{m}: GridPG interval side vs 0.25", _side(tuple(lo) if lo else None, 0.25), g["gridpg_side"])
    elif claim == "rise_lrp_balance":
        for m, v in (got["balance"] or {}).items():
            add(f"balance {m}", s.get("balance", {}).get(m), v)
    elif claim == "rise_best_balance":
        for layer, g in got.items():
            for m, v in (g["balance"] or {}).items():
                if layer in s:
                    add(f"{layer} balance {m}", s[layer].get("balance", {}).get(m), v)
    return rows


def _agree(a, b) -> bool:
    if isinstance(a, (int, float, np.floating, np.integer)) and isinstance(b, (int, float, np.floating, np.integer)):
        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-9))
    return a == b


def recheck_frame(results_dir) -> pd.DataFrame:
    """One row per recomputed quantity: claim, quantity, saved (the findings file), recomputed, agree."""
    folder = Path(results_dir)
    tables = {name: _read(folder, f"{name}.csv") for name in
              ("robustness", "robustness_tau", "localization", "faithfulness", "faithfulness_flips")}
    saved = {}
    for path in sorted(folder.glob("findings_*.json")):
        for row in json.loads(path.read_text()):
            saved[row["id"]] = row
    rows = []
    for claim, fn in RECHECKED.items():
        if claim not in saved or saved[claim]["verdict"] in ("not tested", "cannot test offline"):
            continue
        rows += _compare(claim, saved[claim], fn(tables))
    frame = pd.DataFrame(rows, columns=["claim", "quantity", "saved", "recomputed"])
    frame["agree"] = [_agree(a, b) for a, b in zip(frame.saved, frame.recomputed)]
    return frame


def recheck(results_dir) -> int:
    """Print the comparison and return the number of quantities that differ (0: every row agrees)."""
    frame = recheck_frame(results_dir)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string(index=False))
    bad = int((~frame.agree).sum())
    print(f"\n{len(frame)} quantities of {frame.claim.nunique()} claims recomputed from the CSV tables; "
          f"{bad} differ." if len(frame) else "no findings rows to recompute")
    return bad
