"""Levine, Singla and Feizi's claims about their second defense (adversarial training for interpretation) and
their Fig. 1(b), checked against a run of the ``levine`` chapter with stated criteria.

The checks take the chapter's tidy tables (pandas DataFrames):

* ``attacks``: one row per (lam, eps, image) with the attacked top-k overlap ``attack`` (and ``random``);
* ``correct``: one row per (lam, image) of the whole test set with ``correct`` (bool);
* ``scaled``: one row per (image, method, eps) with ``certified_overlap`` (Levine's Fig. 1(b));
* for the question beyond both papers, any table with ``lam``, ``image`` and a value column (:func:`lambda_trend`).

Intervals are percentile bootstraps over images (seeded), as in :mod:`certattr.evaluation.findings`.
"""
from __future__ import annotations

import numpy as np

from .claims import Finding, Verdict
from .stats import CONFIDENCE, MIN_CLUSTERS, bootstrap_interval

__all__ = ["LEVINE_FINDINGS", "ACCURACY_DROP", "VACUOUS", "lambda_trend", "check_robustness_rises",
           "check_accuracy_drops_little", "check_sparsified_beats_scaled"]

ACCURACY_DROP = 0.03  #: "little": a test-accuracy drop of at most 3 percentage points from the smallest to the largest lam
VACUOUS = 0.05  #: a certified top-k overlap of at most 5% of k counts as (near) vacuous

LEVINE_FINDINGS: dict[str, Finding] = {f.id: f for f in [
    Finding("levine_robustness_rises", "Robustness of gradient maps rises with λ",
            "Increasing the regularization parameter in the proposed adversarial training optimization (Equation 4.1) "
            "significantly increases the robustness of gradient-based saliency maps.",
            "Levine et al., Sec. 4 and Figure 6",
            "Per test digit, the top-k overlap of the gradient map under their attack, averaged over the attack sizes "
            "ε; difference largest λ minus λ = 0 (the same digits). Agrees if the 95% bootstrap interval (digits "
            "resampled) of the mean difference lies above 0, disagrees if below 0, otherwise inconclusive."),
    Finding("levine_accuracy_drops_little", "Accuracy drops little",
            "Even for very large value of λ, only a slight reduction in classification accuracy occurs due to the "
            "added regularization term.", "Levine et al., Sec. 4 and Figure 6",
            f"Test accuracy at λ = 0 minus at the largest λ, paired over the test digits. Agrees if the upper end "
            f"of its 95% bootstrap interval is at most {ACCURACY_DROP:.0%} (3 points), disagrees if the lower end "
            f"exceeds {ACCURACY_DROP:.0%}, otherwise inconclusive."),
    Finding("levine_sparsified_vs_scaled", "Sparsified SmoothGrad certifies far more top-k overlap than scaled SmoothGrad",
            "Evaluating the robustness certificate for the scaled SmoothGrad method on ImageNet samples produced "
            "vacuous bounds; Sparsified SmoothGrad obtains a considerably large value of the robustness certificate.",
            "Levine et al., Sec. 1 and Figure 1(b)",
            f"Certified top-k overlap (share of k) from the same noisy samples, mean over the ε of the run; per "
            f"photo Sparsified minus scaled. Agrees if the 95% bootstrap interval (photos resampled) lies above 0, "
            f"scaled SmoothGrad's mean certified overlap is at most {VACUOUS:.0%} of k at every ε (vacuous) and "
            f"Sparsified SmoothGrad's exceeds {VACUOUS:.0%} of k at the smallest ε (not vacuous); disagrees if the "
            f"interval lies below 0; otherwise inconclusive."),
]}


def _interval_text(est, low, high) -> str:
    return f"{est:+.3f} (95% CI {low:+.3f} to {high:+.3f})"


def lambda_trend(frame, value: str, *, seed: int = 0) -> dict:
    """Largest lam minus smallest lam of ``value`` (mean per image first, then over images), paired over the images
    both have: {"low_lam", "high_lam", "estimate", "low", "high", "answer"} where answer is "rises" (interval above
    0), "falls" (below 0) or "undecided"; ``n`` images. Needs two lam values."""
    lams = sorted(frame["lam"].unique())
    if len(lams) < 2:
        return {"answer": "undecided", "estimate": float("nan"), "low": float("nan"), "high": float("nan"),
                "low_lam": lams[0] if lams else None, "high_lam": None, "n": 0}
    per = frame.groupby(["lam", "image"])[value].mean().unstack("lam")[[lams[0], lams[-1]]].dropna()
    diff = (per[lams[-1]] - per[lams[0]]).to_numpy()
    if len(diff) < MIN_CLUSTERS:  # too few images for an interval
        return {"answer": "undecided", "estimate": float(diff.mean()) if len(diff) else float("nan"), "low": None,
                "high": None, "low_lam": float(lams[0]), "high_lam": float(lams[-1]), "n": int(len(diff))}
    est, low, high = bootstrap_interval(diff, np.mean, seed=seed)
    answer = "rises" if low > 0 else "falls" if high < 0 else "undecided"
    return {"answer": answer, "estimate": est, "low": low, "high": high, "low_lam": float(lams[0]),
            "high_lam": float(lams[-1]), "n": int(len(diff))}


def check_robustness_rises(attacks, *, seed: int = 0) -> Verdict:
    finding = LEVINE_FINDINGS["levine_robustness_rises"]
    trend = lambda_trend(attacks, "attack", seed=seed)
    if trend["high_lam"] is None:
        return Verdict(finding, "not tested", "one λ only", "the run trained a single λ, so no trend can be seen")
    means = attacks.groupby("lam")["attack"].mean()
    diff_text = (_interval_text(trend['estimate'], trend['low'], trend['high']) if trend["low"] is not None else
                 f"{trend['estimate']:+.3f} (too few digits for an interval, {MIN_CLUSTERS} needed)")
    measured = ("attacked top-k overlap (mean over digits and ε) " + ", ".join(f"λ={l:g}: {m:.3f}" for l, m in means.items())
                + f"; λ={trend['high_lam']:g} minus λ={trend['low_lam']:g}: {diff_text} over {trend['n']} digits")
    verdict = {"rises": "agrees", "falls": "disagrees", "undecided": "inconclusive"}[trend["answer"]]
    why = {"agrees": "the interval of the paired difference lies above 0",
           "disagrees": "the interval of the paired difference lies below 0",
           "inconclusive": "the interval of the paired difference contains 0" if trend["low"] is not None else
           f"only {trend['n']} digits: too few for an interval"}[verdict]
    return Verdict(finding, verdict, measured, why, {**trend, "confidence": CONFIDENCE})


def check_accuracy_drops_little(correct, *, seed: int = 0) -> Verdict:
    finding = LEVINE_FINDINGS["levine_accuracy_drops_little"]
    lams = sorted(correct["lam"].unique())
    if len(lams) < 2:
        return Verdict(finding, "not tested", "one λ only", "the run trained a single λ")
    table = correct.pivot(index="image", columns="lam", values="correct").astype(float)
    drop = (table[lams[0]] - table[lams[-1]]).to_numpy()
    est, low, high = bootstrap_interval(drop, np.mean, seed=seed)
    acc = table.mean()
    measured = ("test accuracy " + ", ".join(f"λ={l:g}: {a:.1%}" for l, a in acc.items())
                + f"; drop λ={lams[0]:g} to λ={lams[-1]:g}: {est:+.1%} (95% CI {low:+.1%} to {high:+.1%}) "
                f"over {len(drop)} test digits")
    if high <= ACCURACY_DROP:
        verdict, why = "agrees", f"even the interval's upper end is at most {ACCURACY_DROP:.0%}"
    elif low > ACCURACY_DROP:
        verdict, why = "disagrees", f"the interval's lower end exceeds {ACCURACY_DROP:.0%}"
    else:
        verdict, why = "inconclusive", f"the interval contains {ACCURACY_DROP:.0%}"
    return Verdict(finding, verdict, measured, why, {"estimate": est, "low": low, "high": high,
                                                     "threshold": ACCURACY_DROP, "n": int(len(drop))})


def check_sparsified_beats_scaled(scaled, *, seed: int = 0) -> Verdict:
    finding = LEVINE_FINDINGS["levine_sparsified_vs_scaled"]
    per = scaled.groupby(["image", "method"])["certified_overlap"].mean().unstack("method")
    needed = {"Sparsified SmoothGrad", "scaled SmoothGrad"}
    if not needed <= set(per.columns) or per.empty:
        return Verdict(finding, "not tested", "no photo", "the run certified no photo with both methods")
    diff = (per["Sparsified SmoothGrad"] - per["scaled SmoothGrad"]).to_numpy()
    few = len(diff) < MIN_CLUSTERS  # no interval from fewer photos
    est, low, high = (float(diff.mean()), None, None) if few else bootstrap_interval(diff, np.mean, seed=seed)
    by_eps = scaled.groupby(["method", "eps"])["certified_overlap"].mean()
    worst_scaled = float(by_eps["scaled SmoothGrad"].max())
    diff_text = (f"{est:+.3f} (only {len(diff)} photo{'s' if len(diff) != 1 else ''}: too few for an interval, "
                 f"{MIN_CLUSTERS} needed)" if few else _interval_text(est, low, high))
    measured = ("certified top-k overlap (share of k, mean over photos) " + "; ".join(
        f"ε={e:g}: Sparsified {by_eps['Sparsified SmoothGrad'][e]:.3f}, scaled {by_eps['scaled SmoothGrad'][e]:.3f}"
        for e in sorted(scaled["eps"].unique())) + f"; Sparsified minus scaled {diff_text}"
        + ("" if few else f" over {len(diff)} photos"))
    best_sparse = float(by_eps["Sparsified SmoothGrad"][min(scaled["eps"])])
    if few:
        verdict = "inconclusive"
        why = (f"Sparsified minus scaled is {est:+.3f}, but {len(diff)} photos are too few for an interval "
               f"({MIN_CLUSTERS} needed)")
    elif low > 0 and worst_scaled <= VACUOUS < best_sparse:
        verdict, why = "agrees", (f"the interval lies above 0, scaled SmoothGrad certifies at most {worst_scaled:.1%} "
                                  f"of k and Sparsified SmoothGrad {best_sparse:.1%} at the smallest ε")
    elif high < 0:
        verdict, why = "disagrees", "the interval lies below 0: scaled SmoothGrad certifies more"
    else:
        verdict = "inconclusive"
        why = ("the interval contains 0" if low <= 0 else
               f"scaled SmoothGrad is not vacuous (up to {worst_scaled:.1%} of k certified)" if worst_scaled > VACUOUS
               else f"Sparsified SmoothGrad is larger but also near vacuous at this n ({best_sparse:.1%} of k at the "
                    f"smallest ε): the Hoeffding term of a small n leaves both certificates almost empty")
    return Verdict(finding, verdict, measured, why, {"estimate": est, "low": low, "high": high,
                                                     "worst_scaled": worst_scaled, "best_sparse": best_sparse,
                                                     "n": int(len(diff))})
