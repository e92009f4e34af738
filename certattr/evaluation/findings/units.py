"""What one measurement is, what an independent replicate is, and which methods are one method on a model.

* A row of a chapter's table is one **measurement**. Its identity is every column of :data:`IDENTITY` it has:
  the model, the image (or the grid and its target cell), the method, the layer and the settings it was
  measured at (σ, τ, K, deletion step). A pairing (the same measurement at two σ) joins on the whole identity
  but the column that varies, so a model's measurement is never paired with another model's.
* An interval resamples **clusters**, the independent replicates: an image with every measurement made on it
  (by every model, method and layer: they share the image, and the same image id draws the same noise), or a
  grid target (a grid's four targets share the grid's noise; each is scored against its own cell).
* Methods whose certificates coincide on a model and layer (on a GAP->linear head IxG, IntGrad, LRP and Cam,
  and GradCam after its ReLU, give one map at the Final layer; Grad and GB a constant one) are **one method** in
  any method-level statistic: :func:`identical_groups` finds them from the measurements themselves.
"""
from __future__ import annotations

import numpy as np

from ..names import method_title

__all__ = ["IDENTITY", "PHOTO_CLUSTER", "GRID_CLUSTER", "SIGNATURES", "identity", "unit_columns", "cluster_labels",
           "paired", "identical_groups", "group_title", "collapse_identical"]

IDENTITY = ("model", "image_id", "grid_id", "target_cell", "method", "layer", "sigma", "tau", "k", "step")
PHOTO_CLUSTER = ("image_id",)
GRID_CLUSTER = ("grid_id", "target_cell")
#: the measured columns that identify a method's output: equal everywhere = the same certificate / curve
SIGNATURES = ("n_certified_1", "n_certified_0", "n_abstain", "certified_gridpg", "n_certified_1_inside",
              "relative_probability", "n_removed")


def identity(frame, vary=()) -> list[str]:
    """The identity columns of ``frame`` (:data:`IDENTITY`, those it has) without ``vary``."""
    return [c for c in IDENTITY if c in frame.columns and c not in set(vary)]


def unit_columns(frame) -> list[str]:
    """The columns of a unit of a method-level comparison: the model and the image, or the model and the grid
    target."""
    return ["model", *cluster_columns(frame)]


def cluster_columns(frame) -> list[str]:
    return list(GRID_CLUSTER if "grid_id" in frame.columns else PHOTO_CLUSTER)


def cluster_labels(frame) -> np.ndarray:
    """One label per row: its independent cluster (the image id, or "grid|cell")."""
    cols = cluster_columns(frame)
    if len(cols) == 1:
        return frame[cols[0]].astype(str).to_numpy()
    return (frame[cols[0]].astype(str) + "|" + frame[cols[1]].astype(str)).to_numpy()


def paired(frame, by: str, first: float, second: float, value: str):
    """The measurements of ``frame`` at ``by`` = ``first`` and ``by`` = ``second`` joined on their whole identity
    but ``by``: a DataFrame with the identity columns, ``a`` (the value at ``first``), ``b`` (at ``second``),
    ``diff`` = a - b and ``cluster``. A measurement without its partner is left out."""
    keys = identity(frame, vary=[by])
    a = frame[np.isclose(frame[by].to_numpy(float), first)].set_index(keys)[value]
    b = frame[np.isclose(frame[by].to_numpy(float), second)].set_index(keys)[value]
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError(f"rows are not unique on their identity {keys}: a pairing would mix measurements")
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner").reset_index()
    joined["diff"] = joined.a - joined.b
    joined["cluster"] = cluster_labels(joined) if len(joined) else np.array([], dtype=str)
    return joined


def identical_groups(frame) -> dict[tuple[str, str], list[list[str]]]:
    """{(model, layer): [[method, ...], ...]}: groups of two or more methods whose measurements are equal in every
    :data:`SIGNATURES` column the frame has, on every identity they share (and they share at least one). Equal
    outcome counts over whole images at every σ and K, or equal deletion curves, do not happen by chance: such
    methods produced the same certificates."""
    cols = [c for c in SIGNATURES if c in frame.columns]
    out: dict = {}
    if not cols or not len(frame):
        return out
    for (model, layer), part in frame.groupby(["model", "layer"], sort=True):
        keys = identity(part, vary=["model", "layer", "method"])
        series = {m: g.set_index(keys)[cols].sort_index() for m, g in part.groupby("method", sort=False)}
        methods = list(series)
        parent = {m: m for m in methods}

        def root(m):
            while parent[m] != m:
                m = parent[m]
            return m

        for i, m1 in enumerate(methods):
            for m2 in methods[i + 1:]:
                common = series[m1].index.intersection(series[m2].index)
                if len(common) and np.array_equal(series[m1].loc[common].to_numpy(float),
                                                  series[m2].loc[common].to_numpy(float), equal_nan=True):
                    parent[root(m2)] = root(m1)
        groups: dict = {}
        for m in methods:
            groups.setdefault(root(m), []).append(m)
        found = [g for g in groups.values() if len(g) > 1]
        if found:
            out[(model, layer)] = found
    return out


def group_title(methods, first=None) -> str:
    """"LRP (= IxG = Cam)": the group's representative first, the others in brackets."""
    methods = list(methods)
    lead = first if first in methods else methods[0]
    rest = [m for m in methods if m != lead]
    return method_title(lead) + (f" (= {' = '.join(method_title(m) for m in rest)})" if rest else "")


def collapse_identical(frame, groups: dict, prefer=()) -> tuple[object, dict[str, list[str]]]:
    """``frame`` with one method kept per identical group on each (model, layer) (a method of ``prefer`` if the
    group has one, else the first), and {kept method: [it, the methods it stands for]} for the text.

    A method is named as standing for another only where all of the other's rows were dropped: one identical to
    the kept method on one model or layer but measured apart on another keeps its own rows and is listed with
    its own value, not named in the kept method's title."""
    if not groups or not len(frame):
        return frame, {}
    drop = np.zeros(len(frame), dtype=bool)
    stands_for: dict = {}
    models, layers, methods = (frame[c].to_numpy() for c in ("model", "layer", "method"))
    for (model, layer), found in groups.items():
        here = (models == model) & (layers == layer)
        for group in found:
            present = [m for m in group if (here & (methods == m)).any()]
            if len(present) < 2:
                continue
            lead = next((m for m in prefer if m in present), present[0])
            for m in present:
                if m != lead:
                    drop |= here & (methods == m)
                    stands_for.setdefault(lead, []).append(m)
    kept_frame = frame[~drop]
    remaining = set(kept_frame.method)
    kept = {}
    for lead, others in stands_for.items():
        others = [m for m in dict.fromkeys(others) if m not in remaining]
        if others:
            kept[lead] = [lead, *others]
    return kept_frame, kept
