"""Helpers shared by the checks: row selection, the labels, and the ranking criterion (do the named methods lead,
or trail, a per-method measure?). Every verdict's text is formatted here or in the check from the same numbers
that decide it.

The labels (:data:`LABEL_RULE`, stated on the introduction page):

* **not tested**: a method or setting the claim names did not run in this profile (or ran only at a setting the
  evidence rules do not accept); a claim about several methods that the run contradicts for one of them is still
  "disagrees";
* **inconclusive**: it was measured and the data do not decide: the interval contains the threshold, fewer than
  :data:`~.stats.MIN_CLUSTERS` images or grid targets (no interval is printed; the row says how many), or a named
  method's maps are degenerate or its certificates empty;
* **cannot test offline**: only for claims about weights or data that cannot be installed offline.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..names import method_title
from .claims import FINDINGS, Verdict
from .evidence import MAX_EMPTY_SHARE, listing, not_measured, notes, share_percent
from .stats import CONFIDENCE, MIN_CLUSTERS, cluster_bootstrap
from .units import cluster_labels, collapse_identical, group_title, identical_groups, unit_columns

__all__ = ["select", "not_tested", "count", "titles", "Measure", "rank_verdict", "fmt_interval", "too_few", "LABEL_RULE",
           "absent_text"]

LABEL_RULE = (f"**not tested** when a method or setting the claim names did not run in this profile; "
              f"**inconclusive** only when it was measured and the data do not decide (the interval contains the "
              f"threshold; or fewer than {MIN_CLUSTERS} images or grid targets, when no interval is printed and the "
              f"row says how many there were; or a named method's maps are degenerate or its certificates empty); "
              f"**cannot test offline** only for claims about weights or data that cannot be installed offline. "
              f"A claim about several methods that the run contradicts for one of them is **disagrees** even when "
              f"another did not run.")


def select(frame, **equal):
    """Rows whose columns equal the given values (floats compared with np.isclose)."""
    keep = np.ones(len(frame), dtype=bool)
    for col, value in equal.items():
        keep &= np.isclose(frame[col].to_numpy(dtype=float), value) if isinstance(value, float) else (
            frame[col].to_numpy() == value)
    return frame[keep]


def not_tested(finding_id: str, reason: str, *, verdict: str = "not tested", excluded: str = "") -> Verdict:
    """A row whose claim could not be decided: ``verdict`` "not tested" (what the claim names did not run: "not
    measured: ...") or "inconclusive" (it ran, but ``reason`` says why the data cannot decide)."""
    measured = f"not measured: {reason}" if verdict == "not tested" else reason[0].upper() + reason[1:]
    return Verdict(FINDINGS[finding_id], verdict, measured, reason[0].upper() + reason[1:] + ".", excluded=excluded)


def count(n: int, noun: str) -> str:
    """"1 image", "9 images"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def titles(methods) -> str:
    return listing([method_title(m) for m in methods])


def fmt_interval(low: float, high: float, fmt: str = "{:+.2f}") -> str:
    return f"{CONFIDENCE:.0%} CI {fmt.format(low)} to {fmt.format(high)}"


def signed_format(est: float, interval=None, decimals: int = 2) -> str:
    """"{:+.2f}", or with up to two more decimals where an estimate that differs from a bound of its interval
    would print equal to it ("-0.12 (CI -0.13 to -0.12)" reads as an estimate on the interval's edge)."""
    if interval:
        for d in range(decimals, decimals + 3):
            shown = {f"{v:+.{d}f}" for v in interval if v != est}
            if f"{est:+.{d}f}" not in shown:
                return f"{{:+.{d}f}}"
        return f"{{:+.{decimals + 2}f}}"
    return f"{{:+.{decimals}f}}"


def too_few(n: int, noun: str) -> str:
    """"only 3 images: too few for an interval (8 needed)"."""
    return f"only {count(n, noun)}: too few for an interval ({MIN_CLUSTERS} needed)"


def absent_text(absent: dict) -> str:
    return listing([f"{method_title(m)} ({w})" for m, w in absent.items()])


def _verb(methods, singular: str, plural: str) -> str:
    return singular if len(methods) == 1 else plural


@dataclass(frozen=True)
class Measure:
    """What a ranking compares: the column ``value`` of the rows, described as ``text`` (for the row), measured
    per ``unit`` ("image", "grid target") at each combination of the ``conditions`` columns (e.g. K); ``empty``
    names a boolean column that says the value is zero because nothing was certified or removed (``empty_what``
    says it in words); ``highest``: the named methods are claimed to lead (else to trail); ``fmt`` formats a
    mean."""

    value: str
    text: str
    unit: str
    conditions: tuple = ("k",)
    empty: str | None = None
    empty_what: str = ""
    highest: bool = True
    fmt: str = "{:.2f}"


def rank_verdict(fid: str, long, named, measure: Measure, *, unavailable: dict | None = None, evidence=(),
                 groups: dict | None = None, seed: int = 0) -> Verdict:
    """Do the ``named`` methods lead (``measure.highest``) or trail a per-method measure?

    ``long``: one row per measurement counted as evidence, with the unit's columns (model and image, or model and
    grid target), the measure's condition columns (e.g. K), ``method`` and the measure's value column. The
    comparison runs on the models on which every named method that is evidence ran, over the units where each
    compared method has a value.

    * At each condition a method whose measurement is empty in more than :data:`MAX_EMPTY_SHARE` of the units is
      not ranked there (the same rule for every method, K and measure).
    * Methods with identical certificates on a model (``groups``, :func:`~.units.identical_groups` of the full
      rows; None: found from ``long``'s own columns) count once.
    * The margin at a condition is min(named) - max(others) (``highest``) or min(others) - max(named), each a
      mean over the units; the statistic is the mean margin over the conditions where a named and another
      method are ranked, with a bootstrap interval resampling clusters (images or grid targets).
    """
    value, unit, highest, empty, empty_what, fmt = (measure.value, measure.unit, measure.highest, measure.empty,
                                                   measure.empty_what, measure.fmt)
    conditions = measure.conditions
    unavailable = dict(unavailable or {})
    long, kept = collapse_identical(long, identical_groups(long) if groups is None else groups, prefer=named)
    present = [m for m in named if m in set(long.method)]
    for m in named:
        if m not in present and m not in unavailable:
            unavailable[m] = "not run"
    units = unit_columns(long)
    if present:  # the models on which every present named method ran
        models = set.intersection(*(set(long[long.method == m].model) for m in present))
        long = long[long.model.isin(models)]
    methods = sorted(set(long.method), key=lambda m: (m not in named, m))
    others = [m for m in methods if m not in named]
    if not present or not others:
        reason = (f"no method the claim names counts as evidence: {absent_text(unavailable)}" if not present
                  else f"no other method counts as evidence to compare {titles(present)} with")
        return _absent_verdict(fid, reason, unavailable, evidence)
    cond_names = list(conditions)
    tuples = list(zip(*[long[c].to_numpy(float) for c in cond_names])) if cond_names else [()] * len(long)
    cond_values = sorted(set(tuples), reverse=True)  # largest K (σ) first
    code = {c: i for i, c in enumerate(cond_values)}
    long = long.assign(_cond=[code[t] for t in tuples])
    wide = long.pivot_table(index=units + ["_cond"], columns="method", values=value, aggfunc="mean")
    wide = wide.reindex(columns=methods)
    per_unit = wide.groupby(level=list(range(len(units)))).count()
    complete = per_unit.index[(per_unit > 0).all(axis=1)]  # units where every compared method has a value
    wide = wide[wide.index.droplevel("_cond").isin(complete)]
    flags = (long.pivot_table(index=units + ["_cond"], columns="method", values=empty, aggfunc="max")
             .reindex(index=wide.index, columns=methods).fillna(False).astype(bool) if empty else
             wide.isna() & False)
    unit_index = wide.index.droplevel("_cond").unique()
    n_units = len(unit_index)
    present_codes = set(wide.index.get_level_values("_cond"))
    cond_values = [c for c in cond_values if code[c] in present_codes]
    blocks, ranked, not_ranked = [], {}, {}
    for c in cond_values:
        block = wide.xs(code[c], level="_cond").reindex(unit_index)
        shares = flags.xs(code[c], level="_cond").reindex(unit_index).fillna(False).astype(float).mean()
        ok = [m for m in methods if shares.get(m, 0.0) <= MAX_EMPTY_SHARE and block[m].notna().any()]
        for m in methods:
            if m not in ok and block[m].notna().any():
                not_ranked.setdefault(m, []).append((c, float(shares[m])))
        blocks.append((c, block.to_numpy(float), [methods.index(m) for m in ok]))
        ranked[c] = ok
    compared = common_conditions(ranked, methods, named)
    shared = next(iter(compared.values()), [])
    used = [(c, mat, [j for j in ok if methods[j] in compared]) for c, mat, ok in blocks if c in shared]
    never = [m for m in present if m not in compared]
    for m in never:
        least = min(s for _, s in not_ranked.get(m, [(None, 1.0)]))  # its share at every shared condition is >= this
        several = len(cond_values) > 1
        unavailable[m] = _Empty(f"{empty_what} in {'at least ' if several else ''}{share_percent(least)} of its units"
                                + (f" at every {_cond_noun(cond_names)} it shares with the others" if several else ""))
    if not any(methods[j] in named for _, _, ok in used for j in ok) or \
            not any(methods[j] not in named for _, _, ok in used for j in ok):
        used = []
    if not used:
        return _absent_verdict(fid, f"no {_cond_noun(cond_names)} at which a named and another method are "
                                    f"both ranked", unavailable, evidence, not_ranked=not_ranked, empty_what=empty_what)
    sign = 1.0 if highest else -1.0

    def margin(idx):
        out = []
        for _, mat, ok in used:
            means = np.nanmean(mat[idx], axis=0)
            n_ = [means[j] for j in ok if methods[j] in named]
            o_ = [means[j] for j in ok if methods[j] not in named]
            out.append(min(n_) - max(o_) if highest else min(o_) - max(n_))
        return float(np.mean(out))

    labels = cluster_labels(unit_index.to_frame(index=False))
    n_clusters = len(set(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = margin(np.arange(n_units))
        interval = (cluster_bootstrap(labels, margin, seed=seed)[1:] if n_clusters >= MIN_CLUSTERS else None)
        means = {methods[j]: float(np.mean([np.nanmean(mat[:, j]) for _, mat, ok in used if j in ok]))
                 for j in range(len(methods)) if any(j in ok for _, _, ok in used)}
    order = sorted(means, key=lambda m: -sign * means[m])
    ranking = ", ".join(f"{_title(m, kept)} {fmt.format(means[m])}" for m in order)
    rel = "min({}) - max(others)" if highest else "min(others) - max({})"
    unit_noun = count(n_clusters, unit)
    where = f" on {listing(sorted(set(long.model)))}" if long.model.nunique() > 1 else ""
    cond_text = ""
    if len(cond_values) > 1:
        cond_text = (f"; the mean over {_conds_listing(cond_names, [c for c, _, _ in used])}, where every "
                     f"method compared is ranked")
    signed = signed_format(est, interval)
    interval_text = fmt_interval(*interval, fmt=signed) + ", " if interval else ""
    measured = (f"{measure.text}, {'highest' if highest else 'lowest'} first: {ranking}; {rel.format(titles(present))} "
                f"= {signed.format(est)} ({interval_text}{unit_noun}{where}{cond_text})")
    skipped = {m: v for m, v in not_ranked.items() if m not in never and m in compared}
    dropped = [m for m in methods if m not in compared and m not in never and m not in named]
    if skipped:
        measured += "; not ranked where its certificates are mostly empty: " + "; ".join(
            f"{method_title(m)} at {_conds_listing(cond_names, [c for c, _ in v])}" for m, v in skipped.items())
    if dropped:
        measured += ("; left out (ranked at too few " + _cond_noun(cond_names) + "s to share one with the others): "
                     + titles(dropped))
    place = "ahead of" if highest else "below"
    low, high = interval if interval else (None, None)
    if interval and high < 0:
        rival = max((m for m in means if m not in named), key=lambda m: sign * means[m])
        weakest = min((m for m in means if m in named), key=lambda m: sign * means[m])
        verdict, why = "disagrees", f"{method_title(rival)} is {place} {method_title(weakest)}: the interval lies below 0."
    elif not_measured(unavailable):
        verdict, why = "not tested", (f"{absent_text({m: w for m, w in unavailable.items()})}, which the claim names"
                                      + (f"; {titles(present)} alone: margin {est:+.2f}" +
                                         (f" ({fmt_interval(low, high)})" if interval else "") if present else "") + ".")
    elif not interval:
        verdict, why = "inconclusive", f"The margin is {est:+.2f}, but {too_few(n_clusters, unit)}."
    elif low > 0 and not unavailable:
        verdict = "agrees"
        why = f"{titles(present)} {_verb(present, 'is', 'are')} {place} every other method counted: the interval lies above 0."
    elif low > 0:
        verdict = "inconclusive"
        why = (f"{titles(present)} {_verb(present, 'leads' if highest else 'trails', 'lead' if highest else 'trail')}, "
               f"but {absent_text(unavailable)}, which the claim names, does not count as evidence.")
    else:
        verdict, why = "inconclusive", "The margin's interval contains 0: this run cannot separate them."
    stats = {"margin": est, "ci_low": low, "ci_high": high, "units": int(n_units), "clusters": int(n_clusters),
             "means": means, "conditions": [list(map(float, c)) for c, _, _ in used],
             "not_ranked": {m: [list(map(float, c)) for c, _ in v] for m, v in not_ranked.items()},
             "identical": {m: g for m, g in kept.items()}, "unavailable": {m: str(w) for m, w in unavailable.items()},
             "models": sorted(set(long.model)), "confidence": CONFIDENCE}
    several = len(cond_values) > 1  # the share at its best condition: it is at least that at every one
    note = notes(*evidence, not_ranked={
        m: f"{empty_what} in {'at least ' if several else ''}{share_percent(min(s for _, s in v))} of its units"
           + (f" at every {_cond_noun(cond_names)}" if several else "")
        for m, v in not_ranked.items() if m not in compared})
    return Verdict(FINDINGS[fid], verdict, measured, why, stats, excluded=note)


_SYMBOLS = {"k": "K", "sigma": "σ", "tau": "τ", "step": "step"}


def _cond_noun(names) -> str:
    return "(" + ", ".join(_SYMBOLS.get(n, n) for n in names) + ") setting" if len(names) > 1 else (
        f"{_SYMBOLS.get(names[0], names[0])}" if names else "setting")


def _cond_text(names, values) -> str:
    return ", ".join(f"{_SYMBOLS.get(n, n)} = {v:g}{'%' if n == 'k' else ''}" for n, v in zip(names, values))


def _conds_listing(names, settings) -> str:
    """Several settings in words, a value shared by all said once: "σ = 0.15, K = 50%, 30% and 10%" (not "σ = 0.15,
    K = 50%, σ = 0.15, K = 30% and ...")."""
    settings = [tuple(c) for c in settings]
    if not settings:
        return ""
    same = [i for i in range(len(names)) if len({c[i] for c in settings}) == 1]
    vary = [i for i in range(len(names)) if i not in same]
    fixed = _cond_text([names[i] for i in same], [settings[0][i] for i in same])
    if not vary:
        return fixed
    if len(vary) == 1:
        i = vary[0]
        unit = "%" if names[i] == "k" else ""
        varying = f"{_SYMBOLS.get(names[i], names[i])} = " + listing([f"{c[i]:g}{unit}" for c in settings])
    else:
        varying = listing([_cond_text([names[i] for i in vary], [c[i] for i in vary]) for c in settings])
    return f"{fixed}, {varying}" if fixed else varying


def common_conditions(ranked: dict, methods, named) -> dict:
    """{method: its conditions} for the methods compared: each method ranked at some condition, all of them at
    every condition used (the conditions where every compared method is ranked, so that every method is averaged
    over the same conditions). Where no condition has them all, the other method ranked at the fewest conditions
    is left out, then a named one, until one has."""
    keep = [m for m in methods if any(m in ok for ok in ranked.values())]
    while keep:
        common = [c for c, ok in ranked.items() if all(m in ok for m in keep)]
        if common:
            return {m: common for m in keep}
        fewest = sorted(keep, key=lambda m: (m in named, sum(m in ok for ok in ranked.values())))
        keep.remove(fewest[0])
    return {}


class _Empty(str):
    kind = "empty"
    text = property(str.__str__)


def _title(m, kept) -> str:
    return group_title(kept[m], m) if m in kept else method_title(m)


def _absent_verdict(fid, reason, unavailable, evidence, *, not_ranked=None, empty_what=""):
    verdict = "not tested" if not_measured(unavailable) else "inconclusive"
    note = notes(*evidence, not_ranked={m: f"{empty_what} in at least {share_percent(min(s for _, s in shares))} of "
                                           f"its units" if shares else f"{empty_what} in most units"
                                        for m, shares in (not_ranked or {}).items()})
    return not_tested(fid, reason, verdict=verdict, excluded=note)
