"""The plain helpers of the second computation: reading a table, the evidence rule, the cluster bootstrap, which
methods coincide, and the ranking criterion, each in a few lines of pandas and numpy."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["NAMED", "PAPER_OCCLUSION"]

MIN_CLUSTERS, N_BOOT, EMPTY = 8, 2000, 0.5  #: as the findings' rules: fewer images, no interval; draws; empty share


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
