"""Checks on the faithfulness chapter's tables: deletion rows (one per image x method x layer x step; see
:func:`certattr.evaluation.metrics.deletion_rows`) and flip rows (one per curve: did the top-1 class change after
the first step; :func:`certattr.evaluation.deletion_runs.deletion_results`)."""
from __future__ import annotations

from dataclasses import replace


from ..metrics import faithfulness_scores
from ..names import method_title
from .claims import FINDINGS, Verdict
from .common import Measure, count, not_tested, rank_verdict
from .evidence import MAX_EMPTY_SHARE, RunSettings, admissible, empty_methods, notes, unavailable
from .localization import CHANCE, gridpg_long
from .stats import CONFIDENCE, TEST_LEVEL, fmt_p, proportion_interval, spearman_permutation
from .units import collapse_identical, group_title, identical_groups

__all__ = ["check_deletion_input_leaders", "check_gradcam_least_faithful_input",
           "check_final_flip", "check_localization_faithfulness", "check_gradgb_final_faithful_vgg"]


_DROP = Measure("faithfulness", "confidence drop at the first deletion step, 1 - p₁/p₀ (one minus the faithfulness "
                                "table's relative probability), at the Input layer", "image", conditions=(),
                empty="nothing_removed", empty_what="nothing removed at the first step")


def _first_step(faith, settings):
    ev = admissible(faith, settings)
    scores = faithfulness_scores(ev.frame)
    return ev, scores[scores.layer == "input"], identical_groups(ev.frame)


def check_deletion_input_leaders(faith, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "deletion_input_leaders"
    if faith is None or not len(faith) or not (faith.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev, part, groups = _first_step(faith, settings)
    return rank_verdict(fid, part, ("lrp", "rise"), _DROP, unavailable=unavailable(("lrp", "rise"), faith, ev, "input",
                                                                                settings),
                        groups=groups, evidence=(ev,), seed=seed)


def check_gradcam_least_faithful_input(faith, *, settings: RunSettings | None = None, seed: int = 0) -> Verdict:
    fid = "gradcam_least_faithful_input"
    if faith is None or not len(faith) or not (faith.layer == "input").any():
        return not_tested(fid, "the Input layer was not run")
    ev, part, groups = _first_step(faith, settings)
    return rank_verdict(fid, part, ("gradcam",), replace(_DROP, highest=False),
                        unavailable=unavailable(("gradcam",), faith, ev, "input", settings), groups=groups,
                        evidence=(ev,), seed=seed)


def check_final_flip(flips, faith=None, *, settings: RunSettings | None = None) -> Verdict:
    """``flips``: rows (model, image_id, method, layer, flipped); with deletion rows ``faith``, curves whose first
    step removed nothing are left out (they cannot flip) and methods with identical deletion curves count once.
    Per method: the share of its curves whose top-1 changes, with an exact interval over its images; it flips if
    that interval lies above one half, does not if below. "Most methods" = more than half of the methods."""
    fid = "final_flip"
    if flips is None or not len(flips) or not (flips.layer == "final").any():
        return not_tested(fid, "no Final-layer deletion curves")
    ev = admissible(flips, settings)
    part = ev.frame[ev.frame.layer == "final"].copy()
    empty_note, kept, evidence = "", {}, (ev,)
    if faith is not None and len(faith):
        ev_f = admissible(faith, settings)
        evidence = (ev, ev_f)
        # a curve of a degenerate map (flagged in the deletion rows, which the flip rows do not repeat) is no evidence
        curve_id = ["model", "image_id", "method", "layer"]
        part = part.merge(ev_f.frame[curve_id].drop_duplicates(), on=curve_id, how="inner")
        groups = identical_groups(ev_f.frame[ev_f.frame.layer == "final"])
        part, kept = collapse_identical(part, groups)
        if "n_removed" in faith:
            removed = faithfulness_scores(faith).set_index(["model", "image_id", "method", "layer"]).nothing_removed
            nothing = part.set_index(["model", "image_id", "method", "layer"]).index.map(
                lambda key: bool(removed.get(key, False))).to_numpy(bool)
            if nothing.any():
                empty_note = f"; {count(int(nothing.sum()), 'curve')} removed nothing at the first step and are left out"
            part = part[~nothing]
    per = part.groupby("method").flipped.agg(["sum", "count"])
    if len(per) < 2:
        return not_tested(fid, "fewer than two methods have Final-layer curves that count", excluded=notes(*evidence))
    decided, texts = {}, []
    for m, row in per.sort_values("sum", ascending=False).iterrows():
        share, low, high = proportion_interval(int(row["sum"]), int(row["count"]))
        decided[m] = "flips" if low > 0.5 else "keeps" if high < 0.5 else "undecided"
        texts.append(f"{group_title(kept[m], m) if m in kept else method_title(m)} {int(row['sum'])}/{int(row['count'])}"
                     f" ({100 * low:.0f} to {100 * high:.0f}%)")
    n = len(decided)
    flipping = [m for m, d in decided.items() if d == "flips"]
    keeping = [m for m, d in decided.items() if d == "keeps"]
    curves = int(per["count"].sum())
    measured = (f"Final-layer curves whose top-1 class changes after the first step, per method (methods with identical "
                f"deletion curves counted once; exact {CONFIDENCE:.0%} interval of the share over its images): "
                + ", ".join(texts) + f"; {len(flipping)} of {n} methods flip in most of their curves, {len(keeping)} "
                f"do not, {n - len(flipping) - len(keeping)} undecided (denominator: the {count(curves, 'curve')} of "
                f"the {count(n, 'method')} that removed something{empty_note})")
    if len(flipping) > n / 2:
        verdict, why = "agrees", f"{len(flipping)} of {n} methods flip in most of their curves: more than half."
    elif len(keeping) >= n / 2:
        verdict, why = "disagrees", f"{len(keeping)} of {n} methods keep the prediction in most of their curves."
    else:
        verdict, why = "inconclusive", (f"{len(flipping)} of {n} methods flip and {len(keeping)} do not; the intervals "
                                        f"of the others contain one half.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {"methods": n, "flipping": flipping, "keeping": keeping,
                                                           "curves": curves, "identical": kept,
                                                           "per_method": {m: [int(r["sum"]), int(r["count"])]
                                                                          for m, r in per.iterrows()}},
                   excluded=notes(*evidence))


def check_localization_faithfulness(loc, faith, *, settings: RunSettings | None = None,
                                    grid_settings: RunSettings | None = None) -> Verdict:
    """Spearman's rho between Certified GridPG and the first-step confidence drop at the Input layer, over the
    methods counted as evidence in both tables (identical methods once). Each measure follows the empty rule:
    a method whose first step removed nothing in most images is left out; GridPG is the mean over the K at which
    every method left is non-empty in at least half the grid targets."""
    fid = "localization_faithfulness"
    if loc is None or faith is None or not len(loc) or not len(faith):
        return not_tested(fid, "the localization or the faithfulness table is missing")
    ev_l = admissible(loc, grid_settings or settings, source="grids")
    ev_f = admissible(faith, settings)
    grid = gridpg_long(ev_l.frame, "input")
    scores = faithfulness_scores(ev_f.frame)
    scores = scores[scores.layer == "input"]
    grid, kept_g = collapse_identical(grid, identical_groups(ev_l.frame))
    scores, kept_f = collapse_identical(scores, identical_groups(ev_f.frame))
    f_empty = scores.groupby("method").nothing_removed.mean().astype(float).to_dict()
    empty_k = grid.groupby(["method", "k"]).no_certified.mean().unstack() if "no_certified" in grid else None
    methods = sorted((set(grid.method) & set(scores.method)) - {m for m, s in f_empty.items() if s > MAX_EMPTY_SHARE})
    if empty_k is not None:
        methods = [m for m in methods if (empty_k.loc[m] <= MAX_EMPTY_SHARE).any()]
        ks = [k for k in empty_k.columns if all(empty_k.loc[m, k] <= MAX_EMPTY_SHARE for m in methods)]
    else:
        ks = sorted(set(grid.k))
    not_ranked = {**empty_methods(f_empty, "nothing removed at the first step"),
                  **{m: "nothing certified '1' in most grid targets at every K" for m in set(grid.method) - set(methods)
                     if empty_k is not None and m in empty_k.index and (empty_k.loc[m] > MAX_EMPTY_SHARE).all()}}
    note = notes(ev_l, ev_f, not_ranked=not_ranked)
    if len(methods) < 4 or not ks:
        return not_tested(fid, f"only {count(len(methods), 'method')} {'counts' if len(methods) == 1 else 'count'} as "
                               f"evidence for both measures at the Input layer (4 needed)" if ks else
                          "no K at which every method certifies something '1' in most grid targets",
                          verdict="inconclusive" if len(methods) else "not tested", excluded=note)
    g = grid[grid.k.isin(ks)].groupby("method").certified_gridpg.mean()
    f = scores.groupby("method").faithfulness.mean()
    x, y = g[methods].to_numpy(float), f[methods].to_numpy(float)
    rho, p_pos, p_neg = spearman_permutation(x, y)
    order = sorted(methods, key=lambda m: -g[m])
    kept = {**kept_g, **kept_f}
    measured = (f"Spearman rho = {rho:.2f} over {len(methods)} Input-layer methods (one-sided permutation p = "
                f"{fmt_p(p_pos)}); Certified GridPG (mean over K = {', '.join(f'{k:g}' for k in sorted(ks, reverse=True))}%) "
                f"/ first-step confidence drop: " + ", ".join(
                    f"{group_title(kept[m], m) if m in kept else method_title(m)} {g[m]:.2f} / {f[m]:.2f}"
                    for m in order))
    if rho > 0 and p_pos < TEST_LEVEL:
        verdict, why = "agrees", f"rho = {rho:.2f} > 0 with p = {fmt_p(p_pos)} < {TEST_LEVEL}."
    elif rho < 0 and p_neg < TEST_LEVEL:
        verdict, why = "disagrees", f"rho = {rho:.2f} < 0 with p = {fmt_p(p_neg)} < {TEST_LEVEL}."
    else:
        verdict, why = "inconclusive", (f"rho = {rho:.2f} is not significant (p = {fmt_p(min(p_pos, p_neg))}) with "
                                        f"{len(methods)} methods.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {"rho": rho, "p_positive": p_pos, "p_negative": p_neg,
                                                           "methods": methods, "ks": [float(k) for k in ks],
                                                           "gridpg": {m: float(g[m]) for m in methods},
                                                           "drop": {m: float(f[m]) for m in methods}}, excluded=note)


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
    gridpg = gridpg_long(loc[loc.model == "vgg11"], "final").groupby("method").certified_gridpg.mean()
    named = [m for m in ("grad", "gb") if m in per_method.index and m in gridpg.index]
    if len(named) < 2:
        return not_tested(fid, "Grad or GB did not run at VGG-11's Final layer")
    faithful = all(per_method[m] > median for m in named)
    chance = all(abs(gridpg[m] - CHANCE) <= 0.10 for m in named)
    measured = "; ".join(f"{method_title(m)}: faithfulness {per_method[m]:.2f} (median method {median:.2f}), "
                         f"Certified GridPG {gridpg[m]:.2f}" for m in named)
    verdict = "agrees" if faithful and chance else "disagrees"
    why = ("Both are above the median method's faithfulness and localize within the chance band."
           if verdict == "agrees" else "At least one is not more faithful than the median method or localizes "
                                       "outside the chance band.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {"median": median})
