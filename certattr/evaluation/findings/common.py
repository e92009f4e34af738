"""Helpers shared by the checks: row selection, the ranking criterion (do the named methods lead, or trail,
a per-method measure?) and the 'not tested' verdict. Every verdict's text is formatted here or in the check
from the same numbers that decide it."""
from __future__ import annotations

import warnings

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .evidence import MAX_EMPTY_SHARE, empty_methods, listing, notes
from .stats import CONFIDENCE, bootstrap_interval

__all__ = ["select", "not_tested", "count", "titles", "rank_verdict", "fmt_interval"]


def select(frame, **equal):
    """Rows whose columns equal the given values (floats compared with np.isclose)."""
    keep = np.ones(len(frame), dtype=bool)
    for col, value in equal.items():
        keep &= np.isclose(frame[col].to_numpy(dtype=float), value) if isinstance(value, float) else (
            frame[col].to_numpy() == value)
    return frame[keep]


def not_tested(finding_id: str, reason: str, *, verdict: str = "not tested", excluded: str = "") -> Verdict:
    return Verdict(FINDINGS[finding_id], verdict, f"not measured: {reason}", reason[0].upper() + reason[1:] + ".",
                   excluded=excluded)


def count(n: int, noun: str) -> str:
    """"1 image", "9 images"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def titles(methods) -> str:
    return listing([method_title(m) for m in methods])


def fmt_interval(low: float, high: float, fmt: str = "{:+.2f}") -> str:
    return f"{CONFIDENCE:.0%} CI {fmt.format(low)} to {fmt.format(high)}"


def rank_verdict(fid: str, values, named, *, measure: str, unit: str, highest: bool = True,
                 unavailable: dict | None = None, empty: dict | None = None, empty_what: str = "",
                 evidence=(), fmt: str = "{:.2f}", seed: int = 0) -> Verdict:
    """Do the ``named`` methods lead (``highest``) or trail a per-method measure?

    ``values``: DataFrame, one row per unit (image or grid target), one column per method counted as evidence
    (NaN where a unit has no value); ``evidence``: the Evidence objects the values came from (for the note of
    what was excluded). ``unavailable``: {named method: why it is not evidence}. ``empty``:
    {method: share of its units whose metric is zero because nothing was certified or removed}; a method above
    MAX_EMPTY_SHARE is reported, not ranked. The margin is min(named) - max(others) (``highest``) or
    min(others) - max(named), with a bootstrap interval over the units."""
    unavailable = dict(unavailable or {})
    empty = empty or {}
    not_ranked = sorted(m for m in values.columns if empty.get(m, 0.0) > MAX_EMPTY_SHARE)
    for m in named:
        if m in not_ranked:
            unavailable[m] = f"{empty_what} in {100 * empty[m]:.0f}% of its units"
        elif m not in values.columns and m not in unavailable:
            unavailable[m] = "not run"
    note = notes(*evidence, not_ranked={m: w for m, w in empty_methods(empty, empty_what).items() if m in not_ranked})
    cols = [m for m in values.columns if m not in not_ranked and values[m].notna().any()]
    present = [m for m in named if m in cols]
    others = [m for m in cols if m not in named]
    if not present or not others:
        missing = listing([f"{method_title(m)} ({why})" for m, why in unavailable.items()])
        reason = (f"no method the claim names counts as evidence: {missing}" if not present
                  else f"no other method counts as evidence to compare {titles(present)} with")
        return not_tested(fid, reason, excluded=note)
    matrix = values[cols].to_numpy(float)
    i_named = [cols.index(m) for m in present]
    i_other = [cols.index(m) for m in others]
    sign = 1.0 if highest else -1.0

    def margin(idx):
        means = np.nanmean(matrix[idx], axis=0)
        if highest:
            return np.nanmin(means[i_named]) - np.nanmax(means[i_other])
        return np.nanmin(means[i_other]) - np.nanmax(means[i_named])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est, low, high = bootstrap_interval(np.arange(len(matrix)), margin, seed=seed)
        means = np.nanmean(matrix, axis=0)
    order = sorted(range(len(cols)), key=lambda j: -sign * means[j])
    rival = max(i_other, key=lambda j: sign * means[j])
    weakest = min(i_named, key=lambda j: sign * means[j])
    ranking = ", ".join(f"{method_title(cols[j])} {fmt.format(means[j])}" for j in order)
    rel = "min({}) - max(others)" if highest else "min(others) - max({})"
    measured = (f"{measure}, {'highest' if highest else 'lowest'} first: {ranking}; {rel.format(titles(present))} "
                f"= {est:+.2f} ({fmt_interval(low, high)}, {count(len(matrix), unit)})")
    place = "ahead of" if highest else "below"
    if low > 0:
        verdict = "agrees"
        why = (f"{titles(present)} {'is' if len(present) == 1 else 'are'} {place} every other method counted: the "
               f"interval lies above 0.")
    elif high < 0:
        verdict = "disagrees"
        why = (f"{method_title(cols[rival])} is {place} {method_title(cols[weakest])}: the interval lies below 0.")
    else:
        verdict, why = "inconclusive", "The margin's interval contains 0: this run cannot separate them."
    if unavailable and verdict == "agrees":
        verdict = "inconclusive"
        why = (f"{titles(present)} {'leads' if len(present) == 1 and highest else 'lead' if highest else 'trails' if len(present) == 1 else 'trail'}, but {listing([f'{method_title(m)} ({w})' for m, w in unavailable.items()])}, "
               f"which the claim names, does not count as evidence.")
    elif unavailable:
        why += " Not evidence: " + listing([f"{method_title(m)} ({w})" for m, w in unavailable.items()]) + "."
    stats = {"margin": est, "ci_low": low, "ci_high": high, "units": int(len(matrix)),
             "means": {c: float(v) for c, v in zip(cols, means)}, "not_ranked": not_ranked,
             "unavailable": unavailable, "confidence": CONFIDENCE}
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=note)
