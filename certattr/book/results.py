"""Reading another chapter's results table: keep the rows of this run's configuration, and check which
(model, method, layer) combinations the table covers at every K, which are missing, and which the model
does not define (with the reason), so that a chapter knows whether it can read the table or must recompute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..methods import get_method

__all__ = ["read_results", "select_results", "results_coverage", "results_complete", "PRESENT", "MISSING",
           "UNDEFINED"]

PRESENT, MISSING, UNDEFINED = "present", "missing", "undefined"


def read_results(results_dir, name: str):
    """The CSV ``name`` of the results folder as a DataFrame, or None when it does not exist."""
    import pandas as pd

    path = Path(results_dir) / name
    return pd.read_csv(path) if path.exists() else None


def select_results(frame, *, models: Sequence[str], tau: float, n: int | None = None, sigma: float | None = None,
                   ks: Sequence[float] | None = None, layers: Sequence[str] | None = None, alpha: float | None = None,
                   per_layer: Mapping[str, Sequence[str]] | None = None):
    """The rows of a tidy results table (``robustness.csv``, ``localization.csv``, ``faithfulness.csv``)
    that belong to this run: model in ``models``, tau (and, where given, sigma and alpha) equal up to float
    rounding (:func:`numpy.isclose`), ``n`` equal, K in ``ks``, layer in ``layers`` and the method run at
    its layer (``per_layer``: {layer: [method ids]}). An argument left None does not filter; a table
    without a column that a given argument names raises KeyError. None or an empty table is returned as is.
    """
    if frame is None or not len(frame):
        return frame
    keep = frame.model.isin(list(models)) & np.isclose(frame.tau, tau)
    if sigma is not None:
        keep &= np.isclose(frame.sigma, sigma)
    if ks is not None:
        keep &= frame.k.isin(list(ks))
    if layers is not None:
        keep &= frame.layer.isin(list(layers))
    if alpha is not None:
        keep &= np.isclose(frame.alpha, alpha)
    if n is not None:
        keep &= frame.n == n
    if per_layer is not None:
        keep &= frame.apply(lambda r: r.method in per_layer.get(r.layer, ()), axis=1).astype(bool)
    return frame[keep]


def results_coverage(frame, models: Mapping[str, object], per_layer: Mapping[str, Sequence[str]],
                     ks: Sequence[float]):
    """One row per (model, layer, method) this run wants: ``status`` is "undefined" (the model does not
    define the method at that layer; ``why`` gives the registry's reason, and no row is expected),
    "present" (the table holds the combination at every K of ``ks``) or "missing" (``why`` lists the K
    values without a row). ``models``: model id -> loaded model, ``per_layer``: {layer: [method ids]}, in
    the order the rows are listed. ``frame`` may be None (everything defined is missing).
    """
    import pandas as pd

    rows = []
    for name_model, net in models.items():
        for layer, names in per_layer.items():
            for method in names:
                reason = get_method(method).undefined_reason(net, layer)
                if reason:
                    rows.append({"model": name_model, "method": method, "layer": layer, "status": UNDEFINED,
                                 "why": reason})
                    continue
                have = set() if frame is None or not len(frame) else set(
                    frame[(frame.model == name_model) & (frame.method == method) & (frame.layer == layer)].k.unique())
                lacking = [k for k in ks if k not in have]
                why = "no row at K = " + ", ".join(f"{float(k):g}" for k in lacking) + "%" if lacking else ""
                rows.append({"model": name_model, "method": method, "layer": layer,
                             "status": MISSING if lacking else PRESENT, "why": why})
    return pd.DataFrame(rows, columns=["model", "method", "layer", "status", "why"])


def results_complete(frame, models: Mapping[str, object], per_layer: Mapping[str, Sequence[str]],
                     ks: Sequence[float]) -> bool:
    """Can a chapter read ``frame`` instead of recomputing: is it non-empty and does it hold every
    combination of :func:`results_coverage` that the models define at every K?"""
    if frame is None or not len(frame):
        return False
    return not (results_coverage(frame, models, per_layer, ks).status == MISSING).any()
