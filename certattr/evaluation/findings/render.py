"""The findings as the book shows them: a chapter's rows (HTML), the saved verdicts (JSON in the results folder)
and the introduction's table assembled from every chapter's file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...engine.files import atomic_write_bytes
from .claims import CHAPTER_ORDER, FINDINGS, Verdict
from .stats import CONFIDENCE, TEST_LEVEL

__all__ = ["findings_frame", "write_findings", "read_findings", "summary_markdown", "findings_html"]


def findings_frame(verdicts: Sequence[Verdict]):
    """A DataFrame for display: claim, the paper's words, source, this run, verdict, why, not counted, criterion."""
    import pandas as pd

    return pd.DataFrame([{"claim": v.finding.title, "the paper reported": v.finding.paper, "source": v.finding.source,
                          "this run measured": v.measured, "verdict": v.verdict, "why": v.why,
                          "not counted as evidence": v.excluded, "criterion": v.finding.criterion} for v in verdicts])


def write_findings(verdicts: Sequence[Verdict], results_dir, chapter: str) -> Path:
    path = Path(results_dir) / f"findings_{chapter}.json"
    atomic_write_bytes(path, json.dumps([v.to_dict() for v in verdicts], indent=1, default=_jsonable).encode())
    return path


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def read_findings(results_dir) -> dict[str, dict]:
    """Every chapter's saved verdicts, by claim id."""
    out = {}
    for path in sorted(Path(results_dir).glob("findings_*.json")):
        for row in json.loads(path.read_text()):
            out[row["id"]] = row
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(findings, saved: dict) -> list[str]:
    lines = ["```{div} full-width", "", "| claim (chapter) | the paper reported | this run measured | verdict: why |",
             "|---|---|---|---|"]
    for finding in findings:
        row = saved.get(finding.id)
        name = f"**{_cell(finding.title)}** ({{doc}}`{finding.chapter} <chapters/{finding.chapter}>`)"
        paper = f"{_cell(finding.paper)} ({_cell(finding.source)})"
        if row is None:
            lines.append(f"| {name} | {paper} | the chapter was not executed in this build | **not tested**: the "
                         f"chapter was not executed. |")
            continue
        why = row["why"] + (f" {row['excluded']}" if row.get("excluded") else "")
        lines.append(f"| {name} | {paper} | {_cell(row['measured'])} | **{row['verdict']}**: {_cell(why)} |")
    return lines + ["", "```"]


def _tally(findings, saved: dict) -> str:
    counts: dict[str, int] = {}
    for finding in findings:
        verdict = saved[finding.id]["verdict"] if finding.id in saved else "not tested"
        counts[verdict] = counts.get(verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def summary_markdown(results_dir, profile: str, related: Sequence = ()) -> str:
    """The introduction's findings table (MyST Markdown) from the chapters' saved verdicts: one row per claim of
    the paper and its rebuttal (:data:`FINDINGS`), then one per ``related`` claim (:class:`Finding` of Levine et
    al.'s defenses or of the certificates beyond the paper), each a row whether its chapter ran or not."""
    saved = read_findings(results_dir)
    ordered = sorted(FINDINGS.values(), key=lambda f: CHAPTER_ORDER.index(f.chapter) if f.chapter in CHAPTER_ORDER
                     else len(CHAPTER_ORDER))
    lines = [f"Profile **{profile}**: {len(FINDINGS)} claims of the paper and its rebuttal "
             f"({_tally(ordered, saved)}). Each verdict is computed in the chapter named in the first column from "
             f"that run's numbers, with the criterion stated there (intervals at {CONFIDENCE:.0%}, tests at level "
             f"{TEST_LEVEL}); methods and settings that cannot carry a verdict are named in the row.", ""]
    lines += _table(ordered, saved)
    if related:
        lines += ["", f"**Beyond the paper.** {len(related)} claims of the related certificates and defenses "
                  f"(Levine et al.'s adversarial training and Sparsified SmoothGrad) and of this project's own "
                  f"extensions (one certificate for every K, anytime sampling), checked by the same rules "
                  f"({_tally(related, saved)}):", ""]
        lines += _table(related, saved)
    return "\n".join(lines) + "\n"


def findings_html(verdicts: Sequence[Verdict], caption: str = "Claims checked in this chapter"):
    """The chapter's rows of the findings table as HTML (IPython ``HTML``): claim, what the paper reported (and
    where), what this run measured, the verdict with its reason, and under each row what was not counted as
    evidence and the criterion that decided it."""
    from html import escape

    from IPython.display import HTML

    rows = []
    for v in verdicts:
        rows.append(f"<tr><td><b>{escape(v.finding.title)}</b></td><td>{escape(v.finding.paper)} "
                    f"<span class='certattr-source'>({escape(v.finding.source)})</span></td>"
                    f"<td>{escape(v.measured)}</td><td><b>{escape(v.verdict)}</b>: {escape(v.why)}</td></tr>")
        extra = (f"<i>Not counted as evidence:</i> {escape(v.excluded.removeprefix('Not counted as evidence: '))} "
                 if v.excluded else "")
        rows.append(f"<tr class='certattr-criterion'><td colspan='4'>{extra}<i>Criterion:</i> "
                    f"{escape(v.finding.criterion)}</td></tr>")
    return HTML(f"<table class='certattr-findings'><caption>{escape(caption)}</caption><thead><tr><th>claim</th>"
                f"<th>the paper reported</th><th>this run measured</th><th>verdict: why</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")
