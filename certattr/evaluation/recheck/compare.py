"""The recomputed quantities beside the ones the findings files saved, and the command's report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import RECHECKED
from .plain import _read, _side

__all__ = ["recheck_frame", "recheck"]


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
        if not s:  # neither side has a setting to measure (e.g. nothing ranked): the same empty row
            return [(claim, "measured settings", "none", "none")]
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
                for q in ("gridpg", "targets", "constant_share", "robustness", "best_other", "robust_margin"):
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


def result_folders(results_dir) -> list[Path]:
    """The folder and each subfolder of it that holds findings files (a further domain's results, and the rows
    that join every domain's models), in name order."""
    folder = Path(results_dir)
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("findings_*.json"))) \
        if folder.is_dir() else []
    return [folder, *subs]


def recheck(results_dir) -> int:
    """Print the comparison for the folder and each of its subfolders with findings (:func:`result_folders`) and
    return the number of quantities that differ (0: every row agrees)."""
    base = Path(results_dir)
    frames = []
    for folder in result_folders(base):
        part = recheck_frame(folder)
        part.insert(0, "folder", "." if folder == base else folder.name)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True) if frames else recheck_frame(base)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string(index=False))
    bad = int((~frame.agree).sum())
    print(f"\n{len(frame)} quantities of {frame.claim.nunique()} claims recomputed from the CSV tables; "
          f"{bad} differ." if len(frame) else "no findings rows to recompute")
    return bad
