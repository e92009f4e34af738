"""The claims of issue 23 (one claim for every K; anytime sampling), checked against the "Fewer samples" runs of
the method chapter (:func:`certattr.evaluation.sequential_runs.fixed_and_sequential`, one result per photo) with
stated criteria, as the paper's claims are in :mod:`certattr.evaluation.findings`.
"""
from __future__ import annotations

import numpy as np

from .findings import Finding, Verdict

__all__ = ["SEQUENTIAL_FINDINGS", "TARGET_SHARE", "check_band_superset", "check_anytime_reaches_fixed",
           "check_anytime_equal_budget", "sequential_verdicts"]

TARGET_SHARE = 0.4  #: the issue's target: the fixed n_max result at no more than 40% of its samples on average

SEQUENTIAL_FINDINGS: dict[str, Finding] = {f.id: f for f in [
    Finding("band_superset", "The band certificate certifies at least the per-K certificates at α/m",
            "One certificate for the whole K ladder at one α must certify at least as many pixels at every K as the "
            "paper's per-K certificates at α/m each (the same total guarantee).", "this companion, the band certificate",
            "In every photo, at every n and every K, every pixel the per-K certificate at α/m certifies is certified "
            "by the band certificate with the same label: agrees; any exception: disagrees."),
    Finding("anytime_reaches_fixed", "Anytime sampling reaches the fixed-n result with fewer samples",
            "Target: the n = n_max result (%certified within one point) at no more than 40% of its samples on "
            "average.", "this companion, its target for anytime sampling",
            "Samples the anytime run needs to come within one point of the fixed n_max %certified, over n_max, mean "
            "over photos (a photo never within one point counts as n_max, so the mean is then a lower bound). "
            "Agrees if every photo comes within one point and the mean is at most 40%; disagrees if the mean "
            "(or its lower bound) exceeds 40%; otherwise inconclusive."),
    Finding("anytime_equal_budget", "At an equal budget, anytime certifies at least as much as a fixed n",
            "Sampling can stop as soon as the map is decided, instead of spending a fixed n on every map.",
            "this companion, anytime sampling",
            "Per photo and budget B < n_max: %certified of the anytime run after B samples minus that of the fixed-n "
            "certificate at n = B. Agrees if it is >= 0 for every photo and budget, disagrees if < 0 for every one, "
            "otherwise inconclusive."),
]}


def check_band_superset(runs: dict) -> Verdict:
    """``runs``: {photo id: fixed_and_sequential result}."""
    finding = SEQUENTIAL_FINDINGS["band_superset"]
    if not runs:
        return Verdict(finding, "not tested", "no photo", "the run certified no photo")
    rows = [r for res in runs.values() for r in res["fixed"]]
    last = [res["fixed"][-1] for res in runs.values()]
    measured = (f"at n = {last[0]['n']}, mean over {len(runs)} photos: band {100 * np.mean([r['band_certified'] for r in last]):.2f}% "
                f"of (K, pixel) pairs certified vs per-K at α/m {100 * np.mean([r['per_k_alpha_over_m'] for r in last]):.2f}%; "
                f"the band certifies {sum(r['band_gain'] for r in rows)} more (K, pixel) pairs over every n and photo")
    if all(r["band_superset"] for r in rows):
        return Verdict(finding, "agrees", measured, "every pixel certified at α/m per K is band-certified, same label")
    return Verdict(finding, "disagrees", measured, "some pixel certified at α/m per K is not band-certified")


def check_anytime_reaches_fixed(runs: dict) -> Verdict:
    finding = SEQUENTIAL_FINDINGS["anytime_reaches_fixed"]
    if not runs:
        return Verdict(finding, "not tested", "no photo", "the run certified no photo")
    n_max = next(iter(runs.values()))["n_max"]
    reach = [res["reach"] for res in runs.values()]
    ratios = [(r if r is not None else n_max) / n_max for r in reach]
    mean = float(np.mean(ratios))
    gaps = [100 * (res["fixed"][-1]["certified"] - res["anytime_certified"]) for res in runs.values()]
    measured = (f"{sum(r is not None for r in reach)} of {len(reach)} photos within one point by n_max = {n_max}; "
                f"samples needed / n_max, mean {'at least ' if None in reach else ''}{100 * mean:.0f}%; at n_max the "
                f"anytime run certifies {np.mean(gaps):.2f} points less than the fixed n (mean over photos)")
    if None not in reach and mean <= TARGET_SHARE:
        return Verdict(finding, "agrees", measured, f"every photo is reached, at {100 * mean:.0f}% <= 40% of n_max")
    if mean > TARGET_SHARE:
        return Verdict(finding, "disagrees", measured, f"the mean share of samples needed is {'at least ' if None in reach else ''}"
                                                       f"{100 * mean:.0f}% > 40%")
    return Verdict(finding, "inconclusive", measured, "some photo is not reached, yet the lower bound is <= 40%")


def check_anytime_equal_budget(runs: dict) -> Verdict:
    finding = SEQUENTIAL_FINDINGS["anytime_equal_budget"]
    diffs, budgets = [], set()
    for res in runs.values():
        for row in res["fixed"]:
            if row["n"] >= res["n_max"]:
                continue
            at = next((share for t, share, _ in res["history"] if t >= row["n"]), None)
            if at is not None:
                diffs.append(100 * (at - row["certified"]))
                budgets.add(row["n"])
    if not diffs:
        return Verdict(finding, "not tested", "no budget below n_max", "the run has no fixed n below n_max")
    measured = (f"anytime minus fixed at n = {', '.join(map(str, sorted(budgets)))}: mean {np.mean(diffs):+.2f} points "
                f"(from {min(diffs):+.2f} to {max(diffs):+.2f}) over {len(runs)} photos")
    if min(diffs) >= 0:
        return Verdict(finding, "agrees", measured, "the anytime run certifies at least as much at every budget")
    if max(diffs) < 0:
        return Verdict(finding, "disagrees", measured, "the anytime run certifies less at every budget and photo: its "
                                                       "time-uniform bounds are wider than a fixed-n bound at the same n")
    return Verdict(finding, "inconclusive", measured, "the sign differs between photos or budgets")


def sequential_verdicts(runs: dict) -> list[Verdict]:
    return [check_band_superset(runs), check_anytime_reaches_fixed(runs), check_anytime_equal_budget(runs)]
