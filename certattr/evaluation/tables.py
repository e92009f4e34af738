"""The summary tables and rankings the evaluation chapters show, assembled from their tidy result rows
(:func:`certattr.evaluation.rows.robustness_rows`, ``localization_rows``, ``deletion_rows``).

Shares are fractions of all pixels in [0, 1] unless a column says "%"; K is in percent. Every function
takes the rows and returns a table (or a small Python value), so a chapter only calls, formats and shows.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .findings.stats import bootstrap_interval
from .names import k_text, layer_title, method_title

__all__ = ["LAYER_RANK", "ranked_means", "ranked_deletion_auc", "pooled_outcome_table",
           "gridpg_trend", "gridpg_summary_table", "method_layer_table", "deletion_summary",
           "per_k_outcome_table", "degenerate_cells", "budget_shares", "overlay_pairs", "pooled",
           "gridpg_intervals", "flagged"]

LAYER_RANK = {"input": 0, "final": 1}  #: the order in which tables list the layers


def ranked_means(frame, value: str, *, by: str = "method_title", ascending: bool = False):
    """The mean of column ``value`` per ``by`` (a method), sorted (largest first unless ``ascending``): a
    Series indexed by ``by``. Ties keep the order pandas' default sort gives them."""
    return frame.groupby(by)[value].mean().sort_values(ascending=ascending)


def pooled_outcome_table(pooled_rows, layers: Sequence[str], model_titles: Mapping[str, str], undefined_pairs):
    """The robustness chapter's table: one row per (model, method), the pooled percentages certified '1',
    certified '0' and abstained at each layer, formatted with one decimal (the book's rule for percentages); an
    empty cell reads "not defined" when (method title, layer) is in ``undefined_pairs`` and "not run" otherwise.
    Headers carry the unit: "certified '1', Input layer (%)".

    ``pooled_rows``: :func:`certattr.evaluation.tables.pooled` rows of one sigma and one K (columns
    model, method_title, layer, certified_1, certified_0, abstain); ``layers``: the layers in column order
    (those without rows are left out); ``model_titles``: model id -> display name.
    """
    import pandas as pd

    wide = pooled_rows.assign(c1=100 * pooled_rows.certified_1, c0=100 * pooled_rows.certified_0,
                              ab=100 * pooled_rows.abstain)
    shown = wide.pivot_table(index=["model", "method_title"], columns="layer", values=["c1", "c0", "ab"], sort=False)
    shown = shown.reindex(columns=pd.MultiIndex.from_product([["c1", "c0", "ab"],
                                                               [l for l in layers if l in set(wide.layer)]]))
    names = {"c1": "certified '1'", "c0": "certified '0'", "ab": "abstain"}
    shown.columns = [f"{names[a]}, {layer_title(b)} layer (%)" for a, b in shown.columns]
    shown = shown.rename(index=model_titles, level=0).rename_axis(index=["model", "method"])
    formatted = shown.map(lambda v: f"{v:.1f}" if pd.notna(v) else "")
    degenerate = set()
    if "degenerate" in pooled_rows:  # every certificate a constant map: no number that would read as a measurement
        hit = pooled_rows[pooled_rows.degenerate.astype(bool)]
        degenerate = {(model_titles.get(m, m), t, l) for m, t, l in zip(hit.model, hit.method_title, hit.layer)}
    for (model, method) in formatted.index:
        for col in formatted.columns:
            layer = "input" if "Input" in col else "final"
            if (model, method, layer) in degenerate:
                formatted.loc[(model, method), col] = DEGENERATE
            elif formatted.loc[(model, method), col] == "":
                formatted.loc[(model, method), col] = NOT_DEFINED if (method, layer) in undefined_pairs else NOT_RUN
    return formatted


NOT_DEFINED, NOT_RUN = "not defined", "not run"  #: the two kinds of empty cell of a table
DEGENERATE = "degenerate"  #: a cell whose every certificate is of a constant map (see the table's note)


def gridpg_trend(means, k: float) -> tuple[int, int] | None:
    """How Certified GridPG moves with the radius: among the (model, method, layer) combinations of
    ``means`` (:func:`certattr.evaluation.tables.gridpg_intervals` rows with columns model, method,
    layer, sigma, k, value) run at every sigma at K = ``k``, (how many have a lower mean at the largest sigma
    than at the smallest, by more than 1e-12; how many there are). None when fewer than two sigmas or no
    combination has every sigma.
    """
    wide = means[means.k == k].pivot_table(index=["model", "method", "layer"], columns="sigma", values="value")
    wide = wide.dropna()
    if wide.shape[1] <= 1 or not len(wide):
        return None
    return int((wide.iloc[:, -1] < wide.iloc[:, 0] - 1e-12).sum()), int(len(wide))


def gridpg_summary_table(means, sigma: float, k_ref: float, model_titles: Mapping[str, str]):
    """The localization chapter's table at noise ``sigma``: one row per (model, method, layer), the mean
    Certified GridPG at each K (columns "Certified GridPG, K = 50%", ..., largest K first), the uncertified GridPG
    and the percentage of targets with nothing certified '1' ("empty certificates, K = 50% (%)"), both at K =
    ``k_ref``. NaN where not run.
    ``means``: :func:`certattr.evaluation.tables.gridpg_intervals` rows by (model, method, method_title,
    layer, sigma, R, k)."""

    at_sigma = means[means.sigma == sigma]
    summary = at_sigma.pivot_table(index=["model", "method_title", "layer"], columns="k", values="value", sort=False)
    summary = summary[sorted(summary.columns, reverse=True)]
    summary.columns = [f"Certified GridPG, K = {k_text(k)}%" for k in summary.columns]
    extra = means[(means.sigma == sigma) & (means.k == k_ref)].set_index(["model", "method_title", "layer"])
    summary[f"uncertified GridPG, K = {k_text(k_ref)}%"] = extra.gridpg.reindex(summary.index)
    summary[f"empty certificates, K = {k_text(k_ref)}% (%)"] = 100 * extra.no_certified.reindex(summary.index)
    if "degenerate" in at_sigma:  # every certificate a constant map: "degenerate", not numbers that read as data
        flags = at_sigma.groupby(["model", "method_title", "layer"], sort=False).degenerate.all()
        hit = [i for i in summary.index if bool(flags.get(i, False))]
        if hit:
            summary = summary.astype(object)
            summary.loc[hit, :] = DEGENERATE
    summary = summary.rename(index=model_titles, level=0).rename(index=layer_title, level=2)
    return summary.rename_axis(index=["model", "method", "layer"])


def method_layer_table(frame, columns: Sequence[str], names: Mapping[str, str], *, input_first: bool):
    """Rows of ``frame`` (one per model, method, layer; columns model_title, method_title, layer and
    ``columns``) sorted for display: by model, then method, then layer (Input before Final), indexed by
    (method, layer), with the model in front when there is more than one; ``columns`` renamed by ``names``.

    Methods are listed in the order they first appear in ``frame``, or, with ``input_first``, first appear
    once the rows are stably sorted Input layer first (a method run only at the Final layer comes last).
    """
    if input_first:
        ranked = frame.sort_values("layer", key=lambda c: c.map(LAYER_RANK), kind="stable")["method_title"]
    else:
        ranked = frame["method_title"]
    order = {m: i for i, m in enumerate(dict.fromkeys(ranked))}
    index = ["method_title", "layer"] if frame["model_title"].nunique() == 1 else ["model_title", "method_title", "layer"]

    def key(column):
        if column.name == "method_title":
            return column.map(order)
        if column.name == "layer":
            return column.map(LAYER_RANK)
        return column

    shown = frame.sort_values(["model_title", "method_title", "layer"], key=key, kind="stable")
    shown = shown.assign(layer=shown["layer"].map(layer_title)).set_index(index)[list(columns)].rename(columns=names)
    return shown.rename_axis(index={"model_title": "model", "method_title": "method"})


def deletion_summary(rows):
    """One row per (model_title, method_title, layer) of deletion rows
    (:func:`certattr.evaluation.metrics.deletion_rows`): ``auc`` (mean over images of the area under the
    deletion curve), ``p_clean`` (the first row's probability), ``drop1`` (mean p after step 1 / p clean)
    and ``removed1`` (mean fraction of the pixels removed at step 1), in order of first appearance; ``degenerate``:
    every curve of the group comes from a degenerate certificate (the rows' ``degenerate`` column; a table shows
    such a group's scores as :func:`degenerate_cells`)."""
    keys = ["model_title", "method_title", "layer"]
    auc = rows.groupby(keys, sort=False).agg(auc=("auc", "mean"), p_clean=("probability", "first")).reset_index()
    step1 = rows[rows.step == 1].groupby(keys, sort=False).agg(
        drop1=("relative_probability", "mean"), removed1=("removed_fraction", "mean")).reset_index()
    summary = auc.merge(step1, on=keys)
    every = flagged(rows).groupby([rows[k] for k in keys], sort=False).all().rename("degenerate").reset_index()
    summary = summary.merge(every, on=keys, how="left")
    return summary.assign(degenerate=summary.degenerate.fillna(False).astype(bool))


def degenerate_cells(frame, mask, columns):
    """``frame`` with ``columns`` reading :data:`DEGENERATE` in the rows of ``mask`` (a boolean Series)."""
    frame = frame.copy()
    for c in columns:
        frame[c] = frame[c].astype(object).where(~mask.to_numpy(), DEGENERATE)
    return frame


def ranked_deletion_auc(rows, layer: str, *, max_empty: float = 0.5):
    """The deletion AUC per method at ``layer``, most faithful (lowest) first, over the methods that are
    measured, and {method title: share of curves} for those that are not.

    ``rows``: deletion rows (:func:`certattr.evaluation.metrics.deletion_rows`, columns model, image_id,
    method_title, layer, step, auc, removed_fraction). A method whose first deletion step removed no pixel on
    more than ``max_empty`` of its curves (it certified nothing '1') keeps a high curve because nothing was
    deleted: its AUC measures the empty certificate, not faithfulness, so it is returned apart, not ranked
    (the findings' rule, :data:`certattr.evaluation.findings.evidence.MAX_EMPTY_SHARE`). Curves of degenerate
    certificates (the ``degenerate`` column) are left out of both. Returns (Series indexed by method title,
    dict)."""
    part = rows[(rows.layer == layer) & ~flagged(rows)]  # a degenerate certificate's curve is no evidence
    first = part[part.step == 1]
    empty = (first.removed_fraction == 0).groupby(first.method_title).mean()
    not_ranked = {m: float(s) for m, s in empty.items() if s > max_empty}
    curves = part.groupby(["model", "image_id", "method_title"], sort=False).auc.first().reset_index()
    ranked = ranked_means(curves[~curves.method_title.isin(list(not_ranked))], "auc", ascending=True)
    return ranked, not_ranked


def per_k_outcome_table(rows):
    """The method chapter's table: one row per (method, layer) with display names, the percentages of the
    pixels certified '1' and abstained at each K (largest K first; NaN where not run), headed "certified '1', K =
    50% (%)". ``rows``:
    :func:`certattr.evaluation.metrics.certificate_rows` of one image (columns method, layer, k,
    certified_1, abstain; with ``degenerate``, a (method, layer) whose every certificate is flagged reads
    :data:`DEGENERATE` in every column)."""
    import pandas as pd

    shown = rows.assign(method=rows.method.map(method_title), layer=rows.layer.map(layer_title),
                        c1=100 * rows.certified_1, ab=100 * rows.abstain, flagged=flagged(rows))
    pivot = shown.pivot_table(index=["method", "layer"], columns="k", values=["c1", "ab"], sort=False)
    pivot = pivot.reindex(columns=pd.MultiIndex.from_product([["c1", "ab"], sorted(rows.k.unique(), reverse=True)]))
    what = {"c1": "certified '1'", "ab": "abstain"}
    pivot.columns = [f"{what[a]}, K = {k_text(k)}% (%)" for a, k in pivot.columns]
    degenerate = shown.groupby(["method", "layer"], sort=False).flagged.all().reindex(pivot.index).fillna(False)
    return degenerate_cells(pivot, degenerate.astype(bool), list(pivot.columns)) if degenerate.any() else pivot


def budget_shares(rows, k: float, layer: str, methods: Sequence[str], *, among: bool = True):
    """The share of the top-K budget certified '1' (certified_1 / (K / 100), in [0, 1]) per row of
    ``rows`` at K = ``k`` and ``layer``, for the methods in ``methods`` (``among``) or those not in it:
    a Series indexed by method id, in row order."""
    at = rows[(rows.k == k) & (rows.layer == layer)]
    chosen = at.method.isin(list(methods))
    at = at[chosen if among else ~chosen]
    return (at.certified_1 / (at.k / 100)).set_axis(at.method.to_list())


def overlay_pairs(computed, layers: Sequence[str], per_layer: Mapping[str, Sequence[str]], chosen=None, *,
                  limit: int = 3, preferred=(("lrp", "input"), ("rise", "input"), ("gradcam", "final"),
                                             ("gradcam", "input"), ("rise", "final"), ("grad", "input"))):
    """The (method, layer) rows of an overlay figure: at most ``limit`` pairs for which ``computed(method,
    layer)`` is true. With ``chosen`` (method ids), those methods at every layer of ``layers``, layer by
    layer; otherwise the ``preferred`` pairs first (the ones the paper discusses first), then every other
    pair run (``per_layer``: {layer: [method ids]}), without repeats."""
    if chosen:
        pairs = [(m, layer) for layer in layers for m in chosen]
    else:
        pairs = list(dict.fromkeys(list(preferred) + [(m, layer) for layer in layers for m in per_layer[layer]]))
    return [p for p in pairs if computed(*p)][:limit]


def pooled(frame, by: Sequence[str]):
    """%certified pooled over images: sums the pixel counts of tidy :func:`robustness_rows` per group ``by``,
    then divides (columns certified_1, certified_0, abstain, robustness, n_images, and ``degenerate``: every row
    of the group flagged degenerate, when the rows say)."""
    counts = ["n_pixels", "n_certified_1", "n_certified_0", "n_abstain"]
    out = frame.groupby(list(by), sort=False, dropna=False)[counts].sum().reset_index()
    out["n_images"] = frame.groupby(list(by), sort=False, dropna=False).size().values
    if "degenerate" in frame:
        out["degenerate"] = _all_flagged(frame, by)
    for col in ("certified_1", "certified_0", "abstain"):
        out[col] = out[f"n_{col}"] / out["n_pixels"]
    out["robustness"] = 1.0 - out["abstain"]
    return out


def flagged(frame):
    """A boolean Series: the rows whose ``degenerate`` column says their certificate is degenerate (all False
    where the frame has no such column)."""
    import pandas as pd

    if "degenerate" not in frame:
        return pd.Series(False, index=frame.index)
    return ~frame.degenerate.fillna("").astype(str).str.strip().isin(["", "False", "0", "false"])


def _all_flagged(frame, by) -> list:
    return frame.assign(_flag=flagged(frame)).groupby(list(by), sort=False, dropna=False)._flag.all().to_list()


def gridpg_intervals(frame, by: Sequence[str], *, n_boot: int = 1000, seed: int = 0):
    """Mean Certified GridPG per group of localization rows, with a percentile bootstrap interval over the
    rows (grid targets) of the group: columns ``by`` + value, low, high, targets, gridpg (uncertified mean,
    NaN where not computed) and no_certified (share of targets with nothing certified '1')."""
    import pandas as pd

    out = []
    for key, g in frame.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high = bootstrap_interval(g.certified_gridpg.to_numpy(float), np.mean, n_boot=n_boot, seed=seed)
        out.append({**dict(zip(by, key)), "value": mean, "low": low, "high": high, "targets": int(len(g)),
                    "gridpg": float(g.gridpg.mean()) if "gridpg" in g else float("nan"),
                    "no_certified": float(g.no_certified.mean()) if "no_certified" in g else float("nan"),
                    "degenerate": bool(flagged(g).all()) if "degenerate" in g else False})
    return pd.DataFrame(out)
