"""Which rows of a run may count as evidence for a verdict, decided once for every check.

A (method, layer) pair never counts when it

* was not run, or is not defined at that layer (it has no rows; the verdict names it as missing);
* has a certificate flagged degenerate (its noisy maps are constant up to float rounding, so its top-K set is
  decided by rounding, not by the image; the ``degenerate`` column of the tidy rows);
* ran with a setting the chapters call inflating: RISE with fewer than :data:`MIN_RISE_MASKS` masks (few coarse
  masks give blocky maps whose top-K set barely changes under noise) or Occlusion with a window or stride
  coarser than the paper's (:data:`PAPER_OCCLUSION`), declared from the chapter's ``method_overrides``.

A metric that is zero because nothing was certified '1' (Certified GridPG of an empty certificate) or nothing
was removed (a deletion step that removes no pixel) is reported as such, not ranked: a method whose units are
empty in more than :data:`MAX_EMPTY_SHARE` of the cases is left out of rankings, and the row says so.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np

from ...methods.spec import MethodAt
from ..names import layer_title, method_title

__all__ = ["MIN_RISE_MASKS", "PAPER_OCCLUSION", "PAPER_RISE_MASKS", "MAX_EMPTY_SHARE", "RunSettings", "Evidence",
           "inflating_settings", "recorded_inflating", "admissible", "pair_text", "listing", "empty_methods", "notes"]

MIN_RISE_MASKS = 100  #: RISE with fewer masks than this is called inflating
PAPER_RISE_MASKS = 1000
#: the paper's Occlusion (window, stride) per layer, in pixels of that layer's map
PAPER_OCCLUSION = {"input": (16, 8), "final": (5, 2)}
MAX_EMPTY_SHARE = 0.5  #: a method empty in more than this share of its units is reported, not ranked


def pair_text(method: str, layer: str | None) -> str:
    """"RISE at the Input layer"; "RISE" when the layer is None (both layers)."""
    return method_title(method) + (f" at the {layer_title(layer)} layer" if layer else "")


def listing(items) -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _parse_key(key) -> tuple[str, str | None]:
    at = MethodAt.parse(key)
    return at.method, at.layer


def inflating_settings(method_overrides: dict | None) -> dict[tuple[str, str | None], str]:
    """{(method, layer or None): reason} for every override the evidence rules call inflating."""
    out = {}
    for key, params in (method_overrides or {}).items():
        name, layer = _parse_key(key)
        params = params or {}
        if name == "rise" and "n_masks" in params and int(params["n_masks"]) < MIN_RISE_MASKS:
            out[(name, layer)] = (f"{int(params['n_masks'])} masks: fewer than {MIN_RISE_MASKS} give blocky maps "
                                  f"that look robust; the paper uses {PAPER_RISE_MASKS}")
        if name == "occlusion" and ("window" in params or "stride" in params):
            for lay in ([layer] if layer else list(PAPER_OCCLUSION)):
                pw, ps = PAPER_OCCLUSION[lay]
                w, s = int(params.get("window", pw)), int(params.get("stride", ps))
                if w > pw or s > ps:
                    out[(name, lay)] = f"a {w}x{w} window, stride {s}: coarser than the paper's {pw}x{pw}, stride {ps}"
    return out


@dataclass(frozen=True)
class RunSettings:
    """What a run was configured with, as far as the evidence rules need it: the chapter's
    ``method_overrides`` for photos and for grids (None: the same as for photos), and the (method, layer)
    pairs the model does not define."""

    method_overrides: dict = field(default_factory=dict)
    grid_method_overrides: dict | None = None
    undefined: frozenset = frozenset()

    @classmethod
    def from_params(cls, params: dict | None, undefined=()) -> "RunSettings":
        """From a chapter's parameters (keys ``method_overrides``, ``grid_method_overrides``)."""
        params = params or {}
        return cls(dict(params.get("method_overrides") or {}), params.get("grid_method_overrides"),
                   frozenset((r["method"], r["layer"]) if isinstance(r, dict) else tuple(r) for r in undefined))

    def inflating(self, source: str = "photos") -> dict:
        overrides = self.method_overrides if source == "photos" or self.grid_method_overrides is None \
            else self.grid_method_overrides
        return inflating_settings(overrides)


def recorded_inflating(frame) -> dict[tuple[str, str | None], str]:
    """The inflating settings the rows record themselves (column ``method_params``, JSON per row, as the
    chapters' tables write it), so a table read back from disk carries its own evidence status."""
    if frame is None or "method_params" not in frame or not len(frame):
        return {}
    out = {}
    for (name, layer, text), _ in frame.groupby(["method", "layer", "method_params"], sort=False):
        try:
            params = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            continue
        params = {k: v for k, v in (params or {}).items() if v is not None}
        out.update(inflating_settings({MethodAt(name, layer): params}))
    return out


@dataclass
class Evidence:
    """The rows that count, and {"RISE at the Input layer": why not} for the pairs that do not."""

    frame: object
    excluded: dict = field(default_factory=dict)

    def methods(self, layer: str) -> list[str]:
        if self.frame is None or not len(self.frame):
            return []
        return sorted(set(self.frame[self.frame.layer == layer].method))

    def note(self) -> str:
        """"Not counted as evidence: ..." or ""."""
        return notes(self)


def notes(*evidences: Evidence, not_ranked: dict | None = None) -> str:
    """One sentence naming every (method, layer) pair the evidences exclude (a pair excluded in two tables for
    different reasons lists both), and one naming the methods left out of rankings ({method: why}); "" if none."""
    merged: dict[str, list[str]] = {}
    for ev in evidences:
        for pair, reason in ev.excluded.items():
            if reason not in merged.setdefault(pair, []):
                merged[pair].append(reason)
    parts = []
    if merged:
        parts.append("Not counted as evidence: " + "; ".join(f"{pair} ({_reasons(r)})" for pair, r in merged.items())
                     + ".")
    if not_ranked:
        parts.append("Not ranked, their score is zero by emptiness: " + "; ".join(
            f"{method_title(m)} ({why})" for m, why in sorted(not_ranked.items())) + ".")
    return " ".join(parts)


_FLAGGED = re.compile(r"^(\d+) of (\d+) rows flagged degenerate$")


def _reasons(reasons: list[str]) -> str:
    """One pair's reasons from several tables, in one phrase: the degenerate-row counts added up ("all 504 rows
    flagged degenerate", "500 of 504 rows ..."), any other reason once."""
    counts = [tuple(map(int, m.groups())) for m in map(_FLAGGED.match, reasons) if m]
    rest = list(dict.fromkeys(r for r in reasons if not _FLAGGED.match(r)))
    if counts:
        flagged, total = (sum(c[i] for c in counts) for i in (0, 1))
        rest.insert(0, f"all {total} rows flagged degenerate" if flagged == total else
                    f"{flagged} of {total} rows flagged degenerate")
    return "; ".join(rest)


def admissible(frame, settings: RunSettings | None = None, *, source: str = "photos",
               keep_degenerate: bool = False) -> Evidence:
    """The rows of ``frame`` (tidy rows with ``method`` and ``layer``) that may count as evidence; with
    ``keep_degenerate`` flagged rows stay (for a claim about the degenerate maps themselves)."""
    settings = settings or RunSettings()
    if frame is None or not len(frame):
        return Evidence(frame, {})
    keep = np.ones(len(frame), dtype=bool)
    excluded = {}
    methods, layers = frame.method.to_numpy(), frame.layer.to_numpy()
    for (name, layer), reason in {**settings.inflating(source), **recorded_inflating(frame)}.items():
        hit = (methods == name) & ((layers == layer) if layer else True)
        if hit.any():
            keep &= ~hit
            for lay in sorted(set(layers[hit])):
                excluded[pair_text(name, lay)] = reason
    if "degenerate" in frame and not keep_degenerate:
        flags = frame.degenerate.fillna("").astype(str).str.strip().isin(["", "False", "0", "false"]).to_numpy()
        flagged = ~flags
        for (name, layer) in sorted(set(zip(methods[flagged], layers[flagged]))):
            # the flagged rows (units) are left out, the method's other rows still count: a method is not dropped
            # for a few constant maps (Cam on 3 of 72 grid targets), and one whose every map is constant is gone
            pair = (methods == name) & (layers == layer)
            keep &= ~(pair & flagged)
            n_flagged, n_rows = int((flagged & pair).sum()), int(pair.sum())
            excluded.setdefault(pair_text(name, layer), f"{n_flagged} of {n_rows} rows flagged degenerate"
                                if n_flagged == n_rows else
                                f"{n_flagged} of its {n_rows} rows, flagged degenerate; the other "
                                f"{n_rows - n_flagged} count")
    return Evidence(frame[keep], excluded)


def empty_methods(empty: dict, what: str) -> dict[str, str]:
    """{method: "nothing certified '1' in 90% of its units"} for the methods whose metric is zero because nothing
    was certified or removed in more than MAX_EMPTY_SHARE of their units (``empty``: {method: share})."""
    return {m: f"{what} in {share_percent(s)} of its units" for m, s in empty.items() if s > MAX_EMPTY_SHARE}


def share_percent(share: float) -> str:
    """A share as a whole percentage that says "100%" or "0%" only when it is exactly that (">99%", "<1%")."""
    pct = 100 * float(share)
    if 99.5 <= pct < 100:
        return ">99%"
    if 0 < pct < 0.5:
        return "<1%"
    return f"{pct:.0f}%"


@dataclass(frozen=True)
class Absence:
    """Why a method a claim names is not evidence: ``kind`` decides the label (:data:`NOT_RUN_KINDS` make a claim
    "not tested", the others "inconclusive"), ``text`` says it in words."""

    kind: str  #: "not run", "not defined", "inflating", "degenerate" or "empty"
    text: str

    def __str__(self) -> str:
        return self.text


#: a named method absent for one of these reasons was not measured: the claim is "not tested"
NOT_RUN_KINDS = ("not run", "not defined", "inflating")


def unavailable(named, raw, evidence: Evidence, layer: str, settings: RunSettings | None = None) -> dict[str, Absence]:
    """{named method: why it is not evidence at ``layer``}: not run, not defined, or excluded by a rule above."""
    settings = settings or RunSettings()
    out = {}
    kept = set(evidence.methods(layer))
    ran = set() if raw is None or not len(raw) else set(raw[raw.layer == layer].method)
    for m in named:
        if m in kept:
            continue
        if m in ran:
            why = evidence.excluded.get(pair_text(m, layer), "not counted")
            out[m] = Absence("degenerate" if "degenerate" in why else "inflating", why)
        elif (m, layer) in settings.undefined:
            out[m] = Absence("not defined", f"not defined at the {layer_title(layer)} layer")
        else:
            out[m] = Absence("not run", f"not run at the {layer_title(layer)} layer")
    return out


def not_measured(absent: dict) -> bool:
    """Did a named method not run (or not run at settings the rules accept)? Then the claim is "not tested"."""
    return any(getattr(a, "kind", "not run") in NOT_RUN_KINDS for a in absent.values())


__all__ += ["unavailable", "Absence", "NOT_RUN_KINDS", "not_measured", "share_percent"]
