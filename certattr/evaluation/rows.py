"""Tidy rows from certificates: one row per (model, image or grid target, method, layer, sigma, K) with the
certificate's outcome counts, Certified GridPG or deletion step; what every chapter writes to its CSV tables."""
from __future__ import annotations

import json as _json
import math
from typing import Iterable, Sequence

from ..engine.certificate import ABSTAIN, Certificate
from ..engine.sparsify import upsample_maps
from ..engine.validation import CertattrError
from ..methods import get_method
from ..models.registry import LoadedModel
from .grids import _check_layout
from ..models.labelled import model_class_names
from .jobs import method_for
from .metrics import DeletionCurve, certificate_gridpg, certified_components, gridpg, label_counts

__all__ = ["certificate_rows", "gridpg_rows", "deletion_rows", "to_frame", "robustness_rows", "localization_rows", "certificate_subset"]


def _clean_row(row: dict) -> dict:
    """CSV-friendly: dict/list values (e.g. method_params) as JSON text."""
    return {k: (_json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v) for k, v in row.items()}


def robustness_rows(model: LoadedModel, certificates: dict) -> list[dict]:
    """Tidy %certified rows (one per image x method x layer x sigma x K) from certificates keyed (image id, method,
    layer, sigma) (:meth:`certattr.book.plans.Certified.of` on photos);
    ``degenerate`` holds the certificate's degenerate-map reason ("" when not flagged)."""
    rows = []
    for (key, name, layer, sigma), cert in certificates.items():
        rows.extend(_clean_row(r) for r in certificate_rows(
            cert, image_id=str(key), model=model.name, model_title=model.spec.title, method=name,
            method_title=get_method(name).title, layer=layer, degenerate=cert.degenerate))
    return rows


def localization_rows(model: LoadedModel, certificates: dict, grids, *, method_overrides: dict | None = None,
                      raw_gridpg: bool = True, seed: int = 0, class_names: dict | Sequence | None = None) -> list[dict]:
    """Tidy Certified GridPG rows (one per grid x target cell x method x layer x sigma x K) from
    certificates keyed ((grid id, cell), method, layer, sigma) of :func:`grid_jobs`; with ``raw_gridpg`` also the uncertified GridPG of the
    clean grid's raw attribution map for the same target (one extra attribution per (grid, cell, method, layer)).
    ``class_names``: the target classes' names ({index: name} or one per class; default the model's own names,
    :func:`certattr.models.labelled.model_class_names`, else the index as text)."""

    by_id = {g.grid_id: g for g in grids}
    names = class_names if class_names is not None else (model_class_names(model) or ())
    if not isinstance(names, dict):
        names = dict(enumerate(names))
    raw_cache: dict = {}
    rows = []
    for ((grid_id, cell), name, layer, sigma), cert in certificates.items():
        grid = by_id[grid_id]
        target = grid.target_class(cell)
        raw = None
        if raw_gridpg:
            rk = (grid_id, cell, name, layer)
            if rk not in raw_cache:
                method = method_for(name, layer, method_overrides)
                amap = method.attribute(model, grid.tensor[None], target, layer, seed=seed, image_id=grid_id)
                raw_cache[rk] = upsample_maps(amap.cpu(), grid.tensor.shape[1:])[0].numpy()
            raw = raw_cache[rk]
        rows.extend(_clean_row(r) for r in gridpg_rows(
            cert, int(cell), grid.layout, attribution=raw, grid_id=grid_id, model=model.name,
            model_title=model.spec.title, method=name, method_title=get_method(name).title, layer=layer,
            degenerate=cert.degenerate, target_class=int(target), target_name=str(names.get(int(target), target)),
            cell_image=grid.image_ids[cell]))
    return rows


def certificate_subset(cert, ks: Sequence[float]):
    """The same Certificate restricted to some of its K values (e.g. to overlay K = 30/20/10 only)."""
    import dataclasses

    idx = [cert.index(k) for k in ks]
    return dataclasses.replace(cert, labels=cert.labels[idx], majority=cert.majority[idx], counts=cert.counts[idx],
                               pvalues=cert.pvalues[idx], mean_sparsified=cert.mean_sparsified[idx],
                               ks=tuple(float(cert.ks[i]) for i in idx))


# --- tidy rows -------------------------------------------------------------------------------------------------------
def _merge(base: dict, metadata: dict, computed: dict) -> dict:
    row = {**base, **metadata}
    clash = sorted(set(row) & set(computed))
    if clash:
        raise CertattrError(f"metadata keys {clash} clash with computed columns: rename them")
    row.update(computed)
    return row


def _cert_params(cert: Certificate) -> dict:
    return {"sigma": cert.sigma, "tau": cert.tau, "alpha": cert.alpha, "n": cert.n, "n0": cert.n0,
            "correction": cert.correction, "radius": cert.radius}


def certificate_rows(certificate: Certificate, **metadata) -> list[dict]:
    """One row per K (largest K first) for a data frame of %certified.

    Columns: the certificate's own ``metadata`` entries, then the keyword ``metadata`` (e.g. image_id,
    model, method, layer; keywords override the certificate's entries), then
    ``k``, ``sigma``, ``tau``, ``alpha``, ``n``, ``n0``, ``correction``, ``radius`` (R = sigma*Phi^-1(tau)),
    ``height``, ``width``, ``n_pixels``, ``n_certified_1``, ``n_certified_0``, ``n_abstain`` (counts),
    ``certified_1``, ``certified_0``, ``abstain`` (fractions of this image, summing to 1) and
    ``robustness`` = 1 - abstain, ``n_components_1`` and ``mean_component_px_1`` (the certified-'1'
    components, :func:`certified_components`). To pool over images, sum the ``n_*`` columns before dividing.
    """
    if not isinstance(certificate, Certificate):
        raise CertattrError(f"certificate of type {type(certificate).__name__} is not allowed: give a Certificate")
    h, w = certificate.labels.shape[1:]
    rows = []
    for k in certificate.ks:
        c = label_counts(certificate.label_map(k))
        computed = {"k": float(k), **_cert_params(certificate), "height": int(h), "width": int(w), **c,
                    "certified_1": c["n_certified_1"] / c["n_pixels"], "certified_0": c["n_certified_0"] / c["n_pixels"],
                    "abstain": c["n_abstain"] / c["n_pixels"]}
        computed["robustness"] = 1.0 - computed["abstain"]
        computed.update(certified_components(certificate.label_map(k)))
        rows.append(_merge(dict(certificate.metadata), metadata, computed))
    return rows


def gridpg_rows(certificate: Certificate, cell: int, layout=(2, 2), attribution=None, **metadata) -> list[dict]:
    """One row per K (largest first) of Certified GridPG for a grid certificate with target ``cell``.

    Columns: metadata as in :func:`certificate_rows`, then ``k``, ``sigma``, ``tau``, ``alpha``, ``n``, ``n0``,
    ``correction``, ``radius``, ``target_cell``, ``rows``, ``cols``, ``certified_gridpg`` (0 when none
    certified), ``n_certified_1_inside``, ``n_certified_1``, ``no_certified`` (bool), ``robustness``
    (1 - abstain fraction, for trade-off plots), and, when a raw ``attribution`` (H, W) is given,
    ``gridpg`` and ``gridpg_empty`` (the uncertified GridPG, the same on every row).
    """
    if not isinstance(certificate, Certificate):
        raise CertattrError(f"certificate of type {type(certificate).__name__} is not allowed: give a Certificate")
    rows_, cols_ = _check_layout(layout)
    raw = gridpg(attribution, cell, layout) if attribution is not None else None
    rows = []
    for k, g in certificate_gridpg(certificate, cell, layout).items():
        lab = certificate.label_map(k)
        computed = {"k": k, **_cert_params(certificate), "target_cell": int(cell), "rows": int(rows_),
                    "cols": int(cols_), "certified_gridpg": g.value, "n_certified_1_inside": int(g.inside),
                    "n_certified_1": int(g.total), "no_certified": bool(g.empty),
                    "robustness": float((lab != ABSTAIN).mean())}
        if raw is not None:
            computed.update(gridpg=raw.value, gridpg_empty=bool(raw.empty))
        rows.append(_merge(dict(certificate.metadata), metadata, computed))
    return rows


def deletion_rows(curve: DeletionCurve, **metadata) -> list[dict]:
    """One row per point of a deletion curve (step 0 = clean image).

    Columns: keyword metadata, then ``step``, ``k`` (the K added at this step; NaN at step 0),
    ``n_removed``, ``removed_fraction``, ``probability``, ``relative_probability`` (p / p_clean),
    ``target``, ``fill`` (the fill spec, e.g. "mean"), ``fill_rgb`` (tuple) and ``auc`` (normalized-step AUC,
    the same on every row of the curve).
    """
    if not isinstance(curve, DeletionCurve):
        raise CertattrError(f"curve of type {type(curve).__name__} is not allowed: give a DeletionCurve")
    auc, rel = curve.auc, curve.relative
    rows = []
    for j in range(len(curve.ks) + 1):
        computed = {"step": j, "k": math.nan if j == 0 else float(curve.ks[j - 1]), "n_removed": int(curve.n_removed[j]),
                    "removed_fraction": float(curve.removed_fraction[j]), "probability": float(curve.probabilities[j]),
                    "relative_probability": float(rel[j]), "target": curve.target, "fill": curve.fill_spec,
                    "fill_rgb": curve.fill, "auc": auc}
        rows.append(_merge({}, metadata, computed))
    return rows


def to_frame(rows: Iterable[dict]):
    """A pandas DataFrame of rows (pandas is imported only here)."""
    import pandas as pd

    return pd.DataFrame(list(rows))
