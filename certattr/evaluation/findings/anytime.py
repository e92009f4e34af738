"""The claims of the certificates beyond the paper (one claim for every K; anytime sampling), checked against the
"Fewer samples" runs of the method chapter (:func:`certattr.evaluation.sequential_runs.fixed_and_sequential`, one
result per photo) with stated criteria, as the paper's claims are in :mod:`.claims`. The
anytime rows judge the default bound and report every bound the runs measured beside it.
"""
from __future__ import annotations

import numpy as np

from .claims import Finding, Verdict

__all__ = ["ANYTIME_FINDINGS", "TARGET_SHARE", "BUDGET_SLACK", "check_band_superset", "check_anytime_reaches_fixed",
           "check_anytime_equal_budget", "sequential_verdicts"]

TARGET_SHARE = 0.5  #: the target: the fixed n_max result at no more than 50% of its samples on average
BUDGET_SLACK = 1.0  #: the target at equal budgets: at most this many points below the fixed n

ANYTIME_FINDINGS: dict[str, Finding] = {f.id: f for f in [
    Finding("band_superset", "The band certificate certifies at least the per-K certificates at α/m",
            "One certificate for the whole K ladder at one α must certify at least as many pixels at every K as the "
            "paper's per-K certificates at α/m each (the same total guarantee).", "this companion, the band certificate",
            "In every photo, at every n and every K, every pixel the per-K certificate at α/m certifies is certified "
            "by the band certificate with the same label: agrees; any exception: disagrees."),
    Finding("anytime_reaches_fixed", "Anytime sampling reaches the fixed-n result with fewer samples",
            "Target: the n = n_max result (%certified within one point) at no more than 50% of its samples on "
            "average.", "this companion, its target for anytime sampling",
            "Samples the anytime run (default bound) needs to come within one point of the fixed n_max %certified, "
            "over n_max, mean over photos (a photo never within one point counts as n_max, so the mean is then a "
            "lower bound). Agrees if every photo comes within one point and the mean is at most 50%; disagrees if "
            "the mean (or its lower bound) exceeds 50%; otherwise inconclusive. The other bounds are reported "
            "beside it."),
    Finding("anytime_equal_budget", "At an equal budget, anytime certifies within one point of a fixed n",
            "Sampling can stop as soon as the map is decided, instead of spending a fixed n on every map; the "
            "target is to lose at most one point to a fixed n at the same number of samples.",
            "this companion, anytime sampling",
            "Per photo and budget B < n_max: %certified of the anytime run (default bound) after B samples minus "
            "that of the fixed-n certificate at n = B. Agrees if it is >= -1 point for every photo and budget, "
            "disagrees if < -1 for every one, otherwise inconclusive. The other bounds are reported beside it."),
]}


def check_band_superset(runs: dict) -> Verdict:
    """``runs``: {photo id: fixed_and_sequential result}."""
    finding = ANYTIME_FINDINGS["band_superset"]
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


def _bound_of(res: dict) -> str:
    return res.get("bound", "mixture")


def _reach_share(res: dict, name: str | None = None) -> float:
    """Samples to reach within one point / n_max for one photo (n_max if never), for the bound ``name``
    (None: the default)."""
    reach = res["reach"] if name is None else res["bounds"][name]["reach"]
    return (reach if reach is not None else res["n_max"]) / res["n_max"]


def _others(runs: dict, text) -> str:
    """'; other bounds: name x, ...' for every other bound the runs measured (text(name) -> str)."""
    first = next(iter(runs.values()))
    names = [b for b in first.get("bounds", {}) if b != _bound_of(first)]
    return f"; other bounds: {', '.join(f'{b} {text(b)}' for b in names)}" if names else ""


def check_anytime_reaches_fixed(runs: dict) -> Verdict:
    finding = ANYTIME_FINDINGS["anytime_reaches_fixed"]
    if not runs:
        return Verdict(finding, "not tested", "no photo", "the run certified no photo")
    n_max = next(iter(runs.values()))["n_max"]
    reach = [res["reach"] for res in runs.values()]
    mean = float(np.mean([_reach_share(res) for res in runs.values()]))
    gaps = [100 * (res["fixed"][-1]["certified"] - res["anytime_certified"]) for res in runs.values()]

    def other(name):
        missed = any(res["bounds"][name]["reach"] is None for res in runs.values())
        return f"{'≥ ' if missed else ''}{100 * np.mean([_reach_share(res, name) for res in runs.values()]):.0f}%"

    measured = (f"with the {_bound_of(next(iter(runs.values())))!r} anytime bound: {sum(r is not None for r in reach)} of {len(reach)} "
                f"photos within one point by n_max = {n_max}; samples needed / n_max, mean "
                f"{'at least ' if None in reach else ''}{100 * mean:.0f}%; at n_max the anytime run certifies "
                f"{np.mean(gaps):.2f} points less than the fixed n (mean over photos){_others(runs, other)}")
    limit = f"{100 * TARGET_SHARE:.0f}%"
    if None not in reach and mean <= TARGET_SHARE:
        return Verdict(finding, "agrees", measured, f"every photo is reached, at {100 * mean:.0f}% <= {limit} of n_max")
    if mean > TARGET_SHARE:
        return Verdict(finding, "disagrees", measured, f"the mean share of samples needed is {'at least ' if None in reach else ''}"
                                                       f"{100 * mean:.0f}% > {limit}")
    return Verdict(finding, "inconclusive", measured, f"some photo is not reached, yet the lower bound is <= {limit}")


def _budget_diffs(runs: dict, name: str | None = None):
    """(differences in points, budgets): anytime minus fixed %certified at each budget below n_max."""
    diffs, budgets = [], set()
    for res in runs.values():
        history = res["history"] if name is None else res["bounds"][name]["history"]
        for row in res["fixed"]:
            if row["n"] >= res["n_max"]:
                continue
            at = next((share for t, share, _ in history if t >= row["n"]), None)
            if at is not None:
                diffs.append(100 * (at - row["certified"]))
                budgets.add(row["n"])
    return diffs, budgets


def check_anytime_equal_budget(runs: dict) -> Verdict:
    finding = ANYTIME_FINDINGS["anytime_equal_budget"]
    diffs, budgets = _budget_diffs(runs)
    if not diffs:
        return Verdict(finding, "not tested", "no budget below n_max", "the run has no fixed n below n_max")

    def other(name):
        d = _budget_diffs(runs, name)[0]
        return f"{np.mean(d):+.2f} (worst {min(d):+.2f})"

    measured = (f"with the {_bound_of(next(iter(runs.values())))!r} anytime bound: anytime minus fixed at n = "
                f"{', '.join(map(str, sorted(budgets)))}: mean {np.mean(diffs):+.2f} points (from {min(diffs):+.2f} "
                f"to {max(diffs):+.2f}) over {len(runs)} photos{_others(runs, other)}")
    if min(diffs) >= -BUDGET_SLACK:
        return Verdict(finding, "agrees", measured, "the anytime run is within one point of the fixed n at every budget")
    if max(diffs) < -BUDGET_SLACK:
        return Verdict(finding, "disagrees", measured, "the anytime run certifies more than one point less at every "
                                                       "budget and photo: its bounds, valid at every n, are wider "
                                                       "than a fixed-n bound at the same n")
    return Verdict(finding, "inconclusive", measured, "within one point at some budgets or photos, not at others")


def sequential_verdicts(runs: dict) -> list[Verdict]:
    return [check_band_superset(runs), check_anytime_reaches_fixed(runs), check_anytime_equal_budget(runs)]
