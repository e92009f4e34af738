"""Checks on the faithfulness chapter's tables: deletion rows (one per image x method x layer x step; see
:func:`certattr.evaluation.metrics.deletion_rows`) and flip rows (one per curve: did the top-1 class change after
the first step; :func:`certattr.evaluation.deletion_runs.deletion_results`)."""
from __future__ import annotations

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import count, not_tested, rank_verdict, select, titles
from .evidence import RunSettings, admissible, empty_methods, notes, unavailable
from .localization import CHANCE_BAND, gridpg_matrix
from .stats import CONFIDENCE, TEST_LEVEL, fmt_p, proportion_interval, spearman_permutation

__all__ = ["faithfulness_scores", "check_deletion_input_leaders", "check_gradcam_least_faithful_input",
           "check_final_flip", "check_localization_faithfulness", "check_gradgb_final_faithful_vgg"]


def faithfulness_scores(faith):
    """Per (model, image, method, layer): ``faithfulness`` = 1 - p after the first deletion step / p clean,
    clipped to [0, 1], and ``nothing_removed`` (the first step removed no pixel, so the 0 is not a measurement)."""
    first = faith[faith.step == 1]
    out = first[["model", "image_id", "method", "layer", "relative_probability"]].copy()
    out["faithfulness"] = (1.0 - out.relative_probability).clip(0.0, 1.0)
    out["nothing_removed"] = (first.n_removed.to_numpy() == 0) if "n_removed" in first else False
    return out


def _faith_matrix(scores, layer: str):
    part = scores[scores.layer == layer]
    values = part.groupby(["model", "image_id", "method"]).faithfulness.mean().unstack()
    empty = part.groupby("method").nothing_removed.mean().astype(float).to_dict()
    return values, empty


_MEASURE = "deletion faithfulness (1 - p after the first step / p clean) at the Input layer"


def check_deletion_input_leaders(faith, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "deletion_input_leaders"
    if faith is None or not len(faith) or not (faith.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev = admissible(faith, settings)
    values, empty = _faith_matrix(faithfulness_scores(ev.frame), "input")
    return rank_verdict(fid, values, ("lrp", "rise"), measure=_MEASURE, unit="image",
                        unavailable=unavailable(("lrp", "rise"), faith, ev, "input", settings), empty=empty,
                        empty_what="nothing removed at the first step", evidence=(ev,), seed=seed)


def check_gradcam_least_faithful_input(faith, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "gradcam_least_faithful_input"
    if faith is None or not len(faith) or not (faith.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev = admissible(faith, settings)
    values, empty = _faith_matrix(faithfulness_scores(ev.frame), "input")
    return rank_verdict(fid, values, ("gradcam",), measure=_MEASURE, unit="image", highest=False,
                        unavailable=unavailable(("gradcam",), faith, ev, "input", settings), empty=empty,
                        empty_what="nothing removed at the first step", evidence=(ev,), seed=seed)


def check_final_flip(flips, faith=None, *, settings: RunSettings | None = None) -> Verdict:
    """``flips``: rows (model, image_id, method, layer, flipped); with deletion rows ``faith``, curves whose first
    step removed nothing are left out (they cannot flip)."""
    fid = "final_flip"
    if flips is None or not len(flips) or not (flips.layer == "final").any():
        return not_tested(fid, "no Final-layer deletion curves")
    ev = admissible(flips, settings)
    part = ev.frame[ev.frame.layer == "final"].copy()
    empty_note = ""
    if faith is not None and len(faith) and "n_removed" in faith:
        removed = faithfulness_scores(faith).set_index(["model", "image_id", "method", "layer"]).nothing_removed
        nothing = part.set_index(["model", "image_id", "method", "layer"]).index.map(
            lambda key: bool(removed.get(key, False))).to_numpy(bool)
        if nothing.any():
            empty_note = f"; {count(int(nothing.sum()), 'curve')} removed nothing at the first step and are left out"
        part = part[~nothing]
    share = part.groupby("method").flipped.mean()
    if len(share) < 2:
        return not_tested(fid, "fewer than two methods have Final-layer curves that count", excluded=ev.note())
    flipping = [m for m, s in share.items() if s > 0.5]
    frac, low, high = proportion_interval(len(flipping), len(share))
    curves = float(part.flipped.mean())
    measured = (f"share of Final-layer curves whose top-1 changes after the first step, per method: " + ", ".join(
        f"{method_title(m)} {100 * s:.0f}%" for m, s in share.sort_values(ascending=False).items())
        + f" ({100 * curves:.0f}% of all {len(part)} curves{empty_note}); {len(flipping)} of {len(share)} methods "
          f"flip in most of their curves ({CONFIDENCE:.0%} CI of the share of methods {low:.2f} to {high:.2f})")
    if low > 0.5:
        verdict, why = "agrees", "The interval of the share of flipping methods lies above one half."
    elif high < 0.5:
        verdict, why = "disagrees", (f"Only {len(flipping)} of {len(share)} methods flip most of their predictions: the "
                                     f"interval lies below one half.")
    else:
        verdict, why = "inconclusive", "The interval of the share of flipping methods contains one half."
    return Verdict(FINDINGS[fid], verdict, measured, why, {"methods": len(share), "flipping": flipping,
                                                           "share": frac, "ci_low": low, "ci_high": high,
                                                           "curves_flipped": curves}, excluded=ev.note())


def check_localization_faithfulness(loc, faith, *, settings: RunSettings | None = None,
                                    grid_settings: RunSettings | None = None) -> Verdict:
    """Spearman's rho between mean Certified GridPG and mean deletion faithfulness at the Input layer, over the
    methods counted as evidence in both tables and not left out of rankings for emptiness."""
    fid = "localization_faithfulness"
    if loc is None or faith is None or not len(loc) or not len(faith):
        return not_tested(fid, "the localization or the faithfulness table is missing")
    ev_l = admissible(loc, grid_settings or settings, source="grids")
    ev_f = admissible(faith, settings)
    g_values, g_empty = gridpg_matrix(ev_l.frame, "input")
    f_values, f_empty = _faith_matrix(faithfulness_scores(ev_f.frame), "input")
    not_ranked = {**empty_methods(f_empty, "nothing removed at the first step"),
                  **empty_methods(g_empty, "nothing certified '1'")}
    empty = sorted(not_ranked)
    note = notes(ev_l, ev_f, not_ranked=not_ranked)
    g, f = g_values.mean(), f_values.mean()
    common = sorted((set(g.dropna().index) & set(f.dropna().index)) - set(empty))
    if len(common) < 4:
        return not_tested(fid, f"{'no method counts' if not common else 'only ' + count(len(common), 'method') + (' counts' if len(common) == 1 else ' count')} as "
                          f"evidence for both measures at the Input layer (4 needed)", excluded=note)
    x, y = g[common].to_numpy(float), f[common].to_numpy(float)
    rho, p_pos, p_neg = spearman_permutation(x, y)
    order = sorted(common, key=lambda m: -g[m])
    measured = (f"Spearman rho = {rho:.2f} over {len(common)} Input-layer methods (one-sided permutation p = "
                f"{fmt_p(p_pos)}); Certified GridPG (mean over K) / faithfulness: " + ", ".join(
                    f"{method_title(m)} {g[m]:.2f} / {f[m]:.2f}" for m in order))
    if rho > 0 and p_pos < TEST_LEVEL:
        verdict, why = "agrees", f"rho = {rho:.2f} > 0 with p = {fmt_p(p_pos)} < {TEST_LEVEL}."
    elif rho < 0 and p_neg < TEST_LEVEL:
        verdict, why = "disagrees", f"rho = {rho:.2f} < 0 with p = {fmt_p(p_neg)} < {TEST_LEVEL}."
    else:
        verdict, why = "inconclusive", (f"rho = {rho:.2f} is not significant (p = {fmt_p(min(p_pos, p_neg))}) with "
                                        f"{len(common)} methods.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {"rho": rho, "p_positive": p_pos, "p_negative": p_neg,
                                                           "methods": common}, excluded=note)


def check_gradgb_final_faithful_vgg(faith, loc=None, *, settings: RunSettings | None = None) -> Verdict:
    """The claim is about VGG-11's Final layer: testable only where the run has VGG-11 with its ImageNet weights."""
    fid = "gradgb_final_faithful_vgg"
    if faith is None or not len(faith) or "vgg11" not in set(faith.model) or loc is None or \
            "vgg11" not in set(loc.model):
        return not_tested(fid, "the claim is about VGG-11, whose ImageNet weights cannot be installed offline; this "
                          "run has no VGG-11 rows", verdict="cannot test offline")
    scores = faithfulness_scores(admissible(faith, settings).frame)
    scores = scores[(scores.model == "vgg11") & (scores.layer == "final")]
    per_method = scores.groupby("method").faithfulness.mean()
    median = float(per_method.median())
    values, _ = gridpg_matrix(loc[loc.model == "vgg11"], "final")
    gridpg = values.mean()
    named = [m for m in ("grad", "gb") if m in per_method.index and m in gridpg.index]
    if len(named) < 2:
        return not_tested(fid, "Grad or GB did not run at VGG-11's Final layer")
    faithful = all(per_method[m] > median for m in named)
    chance = all(CHANCE_BAND[0] <= gridpg[m] <= CHANCE_BAND[1] for m in named)
    measured = "; ".join(f"{method_title(m)}: faithfulness {per_method[m]:.2f} (median method {median:.2f}), "
                         f"Certified GridPG {gridpg[m]:.2f}" for m in named)
    verdict = "agrees" if faithful and chance else "disagrees"
    why = ("Both are above the median method's faithfulness and localize within the chance band."
           if verdict == "agrees" else "At least one is not more faithful than the median method or localizes "
                                       "outside the chance band.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {"median": median})
