"""Checks on the localization chapter's tables (Certified GridPG rows, one per grid target x method x layer x σ
x K; see :func:`certattr.evaluation.experiments.localization_rows`)."""
from __future__ import annotations

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import count, not_tested, rank_verdict, select
from .evidence import MAX_EMPTY_SHARE, RunSettings, admissible, listing, unavailable
from .stats import CONFIDENCE, bootstrap_interval

__all__ = ["check_gradgb_final", "check_input_localization_leaders", "gridpg_matrix", "CHANCE_BAND"]

CHANCE_BAND = (0.15, 0.35)  #: Certified GridPG of a 2x2 grid at chance (0.25) +- 0.10
ROBUST = 0.9


def gridpg_matrix(loc, layer: str):
    """(grid targets x methods mean Certified GridPG over K, {method: share of rows with nothing certified '1'})
    at the smallest σ."""
    part = select(loc, sigma=float(loc.sigma.min()), layer=layer)
    values = part.groupby(["grid_id", "target_cell", "method"]).certified_gridpg.mean().unstack()
    if "no_certified" not in part:
        return values, {}
    # a grid target is empty when nothing is certified '1' at any K: its mean GridPG is 0 by emptiness
    unit_empty = part.groupby(["grid_id", "target_cell", "method"]).no_certified.all()
    return values, {m: float(s) for m, s in unit_empty.groupby(level="method").mean().items()}


def check_input_localization_leaders(loc, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "input_localization_leaders"
    if loc is None or not len(loc) or not (loc.layer == "input").any():
        return not_tested(fid, "the Input layer was not run on the grids")
    ev = admissible(loc, settings, source="grids")
    values, empty = gridpg_matrix(ev.frame, "input")
    ks = sorted(select(ev.frame, layer="input").k.unique(), reverse=True)
    return rank_verdict(fid, values, ("lrp", "rise"),
                        measure=f"Certified GridPG at the Input layer, mean over K = {listing([f'{k:g}' for k in ks])}% "
                                f"(not the K = {ks[0]:g}% value of the localization figures)",
                        unit="grid target", unavailable=unavailable(("lrp", "rise"), loc, ev, "input", settings),
                        empty=empty, empty_what="nothing certified '1'", evidence=(ev,), seed=seed)


def check_gradgb_final(loc, rob=None, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    """From localization rows and, for robustness, robustness rows on single images (else the grids' own)."""
    fid = "gradgb_final"
    if loc is None or not len(loc):
        return not_tested(fid, "no localization rows")
    ev = admissible(loc, settings, source="grids", keep_degenerate=True)  # the claim is about their constant maps
    sigma0, k = float(loc.sigma.min()), float(loc.k.max())
    part = select(ev.frame, sigma=sigma0, k=k, layer="final")
    missing = unavailable(("grad", "gb"), loc, ev, "final", settings)
    methods = [m for m in ("grad", "gb") if m not in missing]
    if not methods:
        return not_tested(fid, "neither Grad nor GB counts as evidence at the Final layer: " + listing(
            [f"{method_title(m)} ({w})" for m, w in missing.items()]), excluded=ev.note())
    texts, stats = [], {}
    robust_ok, chance_ok, outside, artefact = True, True, [], []
    for m in methods:
        rows = part[part.method == m]
        g = rows.certified_gridpg.to_numpy(float)
        mean, low, high = bootstrap_interval(g, np.mean, seed=seed)
        empty = float(rows.no_certified.mean()) if "no_certified" in rows else 0.0
        if rob is not None and len(rob) and len(select(rob, sigma=float(rob.sigma.min()), k=float(rob.k.max()),
                                                        layer="final", method=m)):
            r = select(rob, sigma=float(rob.sigma.min()), k=float(rob.k.max()), layer="final", method=m)
            robustness, where = 1 - r.n_abstain.sum() / r.n_pixels.sum(), "on the photos"
        else:
            robustness, where = float(rows.robustness.mean()), "on the grids"
        robust_ok &= robustness >= ROBUST
        inside = CHANCE_BAND[0] <= low and high <= CHANCE_BAND[1]
        chance_ok &= inside
        if high < CHANCE_BAND[0] or low > CHANCE_BAND[1]:
            (artefact if empty > MAX_EMPTY_SHARE and high < CHANCE_BAND[0] else outside).append(m)
        stats[m] = {"robustness": float(robustness), "gridpg": mean, "ci_low": low, "ci_high": high,
                    "targets": len(g), "no_certified": empty}
        texts.append(f"{method_title(m)}: robustness {100 * robustness:.0f}% ({where}), Certified GridPG at K = "
                     f"{k:g}% {mean:.2f} ({CONFIDENCE:.0%} CI {low:.2f} to {high:.2f}, "
                     f"{count(len(g), 'grid target')}; nothing certified '1' in {100 * empty:.0f}% of them)")
    measured = "; ".join(texts)
    if not robust_ok:
        verdict, why = "disagrees", f"Robustness is below {ROBUST:.0%} for " + listing(
            [method_title(m) for m in methods if stats[m]["robustness"] < ROBUST]) + "."
    elif outside:
        verdict, why = "disagrees", (f"{listing([method_title(m) for m in outside])}: the GridPG interval lies wholly "
                                     f"outside the chance band {CHANCE_BAND[0]:.2f}-{CHANCE_BAND[1]:.2f} with "
                                     f"something certified.")
    elif artefact:
        verdict = "inconclusive"
        why = (f"{listing([method_title(m) for m in artefact])}: the low score is an empty-certificate artefact "
               f"(a near-constant map certifies nothing '1' in most targets and an empty certificate scores 0), "
               f"not evidence of localization either way.")
    elif chance_ok and not missing:
        verdict, why = "agrees", ("Their Final-layer maps of a GAP->linear head are constant up to float rounding, so "
                                  "they are stable under noise and carry no information about the target cell.")
    elif chance_ok:
        verdict, why = "inconclusive", (f"{listing([method_title(m) for m in methods])} agree{'s' if len(methods) == 1 else ''}, but "
                                        + listing([f"{method_title(m)} ({w})" for m, w in missing.items()]) + ".")
    else:
        verdict, why = "inconclusive", "The GridPG interval is too wide to place inside the chance band."
    stats["missing"] = missing
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=ev.note())
