"""The findings as the book shows them: a chapter's rows (HTML), the saved verdicts (JSON in the results folder)
and the introduction's table assembled from every chapter's file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ...engine.files import atomic_write_bytes
from ..names import layer_title, method_title
from .claims import FINDINGS, Verdict
from .common import LABEL_RULE
from .evidence import listing
from .stats import CONFIDENCE, TEST_LEVEL
from .units import identical_groups

__all__ = ["findings_frame", "write_findings", "read_findings", "summary_markdown", "findings_html", "bottom_line",
           "exclusion_items", "table_exclusions",
           "identical_maps_text"]


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


# --- what a table does not count, said once under it ------------------------------------------------------------
_NOT_COUNTED = "Not counted as evidence: "
_NOT_RANKED = "Not ranked, their score is zero by emptiness: "


def exclusion_items(excluded: str) -> tuple[dict, dict]:
    """The two parts of a verdict's ``excluded`` sentence (:func:`~.evidence.notes`) as ({"RISE at the Input
    layer": reason}, {"Grad": why not ranked}); empty dicts for an empty sentence."""
    import re

    counted, ranked = {}, {}
    text = str(excluded or "").strip()
    first, _, rest = text.partition(_NOT_RANKED)
    first = first.strip()
    if first.startswith(_NOT_COUNTED):
        body = first[len(_NOT_COUNTED):].rstrip().rstrip(".")
        for item in re.split(r"; (?=[A-Z][\w+\-]* at the (?:Input|Final) layer \()", body):
            name, reason = _name_and_reason(item)
            counted[name] = reason
    if rest:
        body = rest.rstrip().rstrip(".")
        for item in re.split(r"; (?=[A-Z][\w+\-]*(?: \(=[^)]*\))? \()", body):
            name, why = _name_and_reason(item)
            ranked[name] = why
    return counted, ranked


def _name_and_reason(item: str) -> tuple[str, str]:
    """"LRP (= IxG) (nothing certified '1' ...)" -> ("LRP (= IxG)", "nothing certified '1' ...")."""
    import re

    match = re.match(r"^(.+?(?: \(=[^)]*\))?) \((.*)\)$", item.strip(), flags=re.S)
    return (match.group(1), match.group(2)) if match else (item.strip(), "")


def _short_names(names) -> str:
    """"RISE and Occlusion at the Input layer, Grad at the Final layer": the pairs grouped by layer."""
    by_layer: dict = {}
    other = []
    for name in names:
        method, sep, layer = name.partition(" at the ")
        (by_layer.setdefault(layer, []) if sep else other).append(method if sep else name)
    return ", ".join([f"{listing(ms)} at the {layer}" for layer, ms in by_layer.items()] + other)


def table_exclusions(excluded_texts) -> tuple[str, list[str]]:
    """For the rows of one table (their ``excluded`` sentences): the note said once under the table (every pair
    not counted, with its reason, and every method not ranked, with why) and, per row, the short mention of the
    pairs and methods that concern that row ("" where none does)."""
    counted, ranked = _collect(excluded_texts)
    rows = []
    for text in excluded_texts:
        c, r = exclusion_items(text)
        mention = []
        if c:
            mention.append(f"Not counted: {_short_names(c)}.")
        if r:
            mention.append(f"Not ranked (zero by emptiness): {listing(list(r))}.")
        rows.append(" ".join(mention))
    note = []
    if counted:
        note.append("Not counted as evidence in this table: " + "; ".join(
            f"{name} ({_merged_reasons(reasons)})" for name, reasons in counted.items()) + ".")
    if ranked:
        note.append("Not ranked where a row says so, their score being zero because nothing was certified or "
                    "removed: " + "; ".join(f"{name} ({_merged_whys(whys)})" for name, whys in ranked.items()) + ".")
    return " ".join(note), rows


def _collect(texts) -> tuple[dict, dict]:
    """({pair: [its distinct reasons]}, {method: [its distinct whys]}) over several ``excluded`` sentences."""
    counted, ranked = {}, {}
    for text in texts:
        c, r = exclusion_items(text)
        for into, items in ((counted, c), (ranked, r)):
            for name, reason in items.items():
                if reason not in into.setdefault(name, []):
                    into[name].append(reason)
    return counted, ranked


def merge_notes(texts) -> str:
    """Several verdicts' ``excluded`` sentences (:func:`~.evidence.notes`) as one such sentence: each pair and each
    method once, with its reasons merged (:func:`_merged_reasons`, :func:`_merged_whys`)."""
    counted, ranked = _collect(texts)
    parts = []
    if counted:
        parts.append(_NOT_COUNTED + "; ".join(f"{n} ({_merged_reasons(r)})" for n, r in counted.items()) + ".")
    if ranked:
        parts.append(_NOT_RANKED + "; ".join(f"{n} ({_merged_whys(w)})" for n, w in ranked.items()) + ".")
    return " ".join(parts)


def _merged_reasons(reasons: list[str]) -> str:
    """One pair's exclusion reasons from several rows in one phrase: degenerate-row counts from different tables
    become "every row flagged degenerate" (or the largest share), other reasons are said once."""
    import re

    flagged = [re.match(r"^(?:all (\d+)|(\d+) of (\d+)) rows flagged degenerate$", r) for r in reasons]
    shares = [1.0 if m.group(1) else int(m.group(2)) / int(m.group(3)) for m in flagged if m]
    rest = [r for r, m in zip(reasons, flagged) if not m]
    if shares:
        low, high = min(shares), max(shares)
        rest.insert(0, "every row flagged degenerate" if low == 1.0 else
                    f"{100 * low:.0f}% of its rows flagged degenerate" if low == high else
                    f"{100 * low:.0f} to {100 * high:.0f}% of its rows flagged degenerate, by table")
    return "; ".join(dict.fromkeys(rest))


def _merged_whys(whys: list[str]) -> str:
    """Why a method is not ranked, from several rows: one phrase per kind ("nothing certified '1'", "nothing
    removed at the first step"), the one with a number preferred over "in most units"."""
    kinds: dict = {}
    for why in whys:
        kind = why.split(" in ")[0]
        if kind not in kinds or ("most units" in kinds[kind] and "most units" not in why):
            kinds[kind] = why
    return "; ".join(kinds.values())


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _other_cell(finding, where: dict, other) -> str:
    """The cell of ``finding`` on a further domain: ``other`` = (title, {chapter stem: page stem}, saved, joined)."""
    title, pages, saved, joined = other
    page = pages.get(where[finding.id])
    if page is None:
        return "—"
    row = saved.get(finding.id)
    link = f"({{doc}}`{page} <chapters/{page}>`)"
    if row is None:
        return f"**not tested**: the chapter was not executed on the {title} {link}"
    text = f"**{row['verdict']}**: {_cell(row['measured'])} {link}"
    both = joined.get(finding.id)
    if both is not None:
        text += f" *Every model of both domains:* **{both['verdict']}**: {_cell(both['measured'])}. {_cell(both['why'])}"
    return text


def _table(findings, saved: dict, where: dict, other=None, *, caption: str) -> list[str]:
    """The rows of ``findings`` as a numbered MyST table with ``caption`` (full width), the exclusions said once
    under it."""
    head = "| claim (chapter) | the paper reported | this run measured | verdict: why |"
    rule = "|---|---|---|---|"
    if other is not None:
        head, rule = head + f" on the {other[0]} |", rule + "---|"
    lines = ["````{div} full-width", "", f"```{{table}} {caption}", "", head, rule]
    note, mentions = table_exclusions([(saved.get(f.id) or {}).get("excluded", "") for f in findings])
    for finding, mention in zip(findings, mentions):
        row = saved.get(finding.id)
        name = f"**{_cell(finding.title)}** ({{doc}}`{where[finding.id]} <chapters/{where[finding.id]}>`)"
        paper = f"{_cell(finding.paper)} ({_cell(finding.source)})"
        extra = f" {_other_cell(finding, where, other)} |" if other is not None else ""
        if row is None:
            lines.append(f"| {name} | {paper} | the chapter was not executed in this build | **not tested**: the "
                         f"chapter was not executed. |{extra}")
            continue
        why = row["why"] + (f" *{mention}*" if mention else "")
        lines.append(f"| {name} | {paper} | {_cell(row['measured'])} | **{row['verdict']}**: {_cell(why)} |{extra}")
    return lines + ["```", "", f"{note}" if note else "", "````"]


def _tally(findings, saved: dict) -> str:
    counts: dict[str, int] = {}
    for finding in findings:
        verdict = saved[finding.id]["verdict"] if finding.id in saved else "not tested"
        counts[verdict] = counts.get(verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())


_HEADLINE = "rise_lrp_balance"


def _titles(ids, saved, findings) -> str:
    return listing([f"“{findings[i].title}”" for i in ids])


def bottom_line(saved: dict, findings=None, *, profile: str = "", scope: str = "") -> str:
    """The introduction's "Does the paper hold up?" paragraph, generated from the verdicts ``saved`` ({claim id:
    saved row}): what holds, what does not, what this run could not decide and why, and the headline claim."""
    findings = findings or FINDINGS
    by: dict[str, list[str]] = {}
    for fid in findings:
        by.setdefault(saved[fid]["verdict"] if fid in saved else "not tested", []).append(fid)
    n = len(findings)
    parts = [f"Of the paper's {n} checked claims{f' ({scope})' if scope else ''}:"]
    if by.get("agrees"):
        parts.append(f"**{len(by['agrees'])} hold** on this run: {_titles(by['agrees'], saved, findings)}.")
    else:
        parts.append("**none is confirmed** by this run.")
    if by.get("disagrees"):
        parts.append(f"**{len(by['disagrees'])} {'does' if len(by['disagrees']) == 1 else 'do'} not hold**: "
                     + "; ".join(f"“{findings[i].title}” ({_first_sentence(saved[i]['why'])})" for i in by["disagrees"])
                     + ".")
    if by.get("inconclusive"):
        parts.append(f"**{len(by['inconclusive'])} {'is' if len(by['inconclusive']) == 1 else 'are'} measured but "
                     f"undecided**: " + "; ".join(f"“{findings[i].title}” ({_first_sentence(saved[i]['why'])})"
                                                  for i in by["inconclusive"]) + ".")
    if by.get("not tested"):
        parts.append(f"**{len(by['not tested'])} {'was' if len(by['not tested']) == 1 else 'were'} not tested** "
                     f"because what {'it names' if len(by['not tested']) == 1 else 'they name'} did not run in this "
                     f"profile: " + "; ".join(
                         f"“{findings[i].title}” ({_first_sentence(saved[i]['why']) if i in saved else 'its chapter did not run'})"
                         for i in by["not tested"]) + ".")
    if by.get("cannot test offline"):
        parts.append(f"**{len(by['cannot test offline'])} cannot be tested offline**: they are about VGG-11 and "
                     f"ViT-B/16 with their ImageNet weights, which no installable package ships "
                     f"({_titles(by['cannot test offline'], saved, findings)}).")
    head = saved.get(_HEADLINE)
    if head is not None:
        word = {"agrees": "holds", "disagrees": "does not hold", "inconclusive": "is not decided",
                "not tested": "was not tested", "cannot test offline": "cannot be tested offline"}[head["verdict"]]
        parts.append(f"The abstract's headline, that RISE and LRP balance robustness, localization and faithfulness "
                     f"best, **{word}** on this run: {head['measured']}.")
    return " ".join(parts)


def _first_sentence(text: str) -> str:
    text = str(text).strip()
    cut = text.find(". ")
    text = text if cut < 0 else text[:cut]
    text = text.rstrip(".")
    first = text.split(" ", 1)[0].strip(",:;")
    names = {"Grad", "Cam", "Occlusion", "EfficientNet-Lite0", "EfficientNet-Lite1", "EfficientNet-Lite2"}
    keep = first in names or first[1:] != first[1:].lower() or any(ch.isdigit() for ch in first)
    return text if keep or not text else text[0].lower() + text[1:]


def identical_maps_text(results_dir) -> str:
    """"On EfficientNet-Lite0 at the Final layer, IxG, IntGrad, LRP, Cam and GradCam give identical certificates
    (counted as one method); Grad and GB likewise.", from the run's robustness rows; "" when none coincide."""
    import pandas as pd

    path = Path(results_dir) / "robustness.csv"
    if not path.exists():
        return ""
    rows = pd.read_csv(path)
    titles = rows.groupby("model").model_title.first().to_dict() if "model_title" in rows else {}
    sentences = []
    for (model, layer), groups in identical_groups(rows).items():
        said = [listing([method_title(m) for m in g]) for g in groups]
        sentences.append(f"on {titles.get(model, model)} at the {layer_title(layer)} layer, "
                         + "; ".join(said))
    if not sentences:
        return ""
    return ("Methods whose certificates are identical on a model (equal outcome counts on every image, σ and K) "
            "count as one method in every method-level statistic: " + "; ".join(sentences) + ".")


def summary_markdown(results_dir, profile: str, chapters: Sequence, *, other=None) -> str:
    """The introduction's findings table (MyST Markdown) from the chapters' saved verdicts.

    ``chapters``: ``[(chapter stem, its claims)]`` in book order (each claim a :class:`Finding`). The claims of the
    paper and its rebuttal (:data:`FINDINGS`) come first, one row each, then the claims beyond the paper (Levine
    et al.'s defenses, the certificates beyond it), each a row whether its chapter ran or not. ``other``: a
    further domain's column beside the paper's claims, (its title, {chapter stem: its page on that domain}, its
    saved verdicts, the verdicts of the "every model" claims on every domain's models together)."""
    saved = read_findings(results_dir)
    where = {f.id: stem for stem, claims in chapters for f in claims}
    claims = [f for _, group in chapters for f in group]
    paper = [f for f in claims if f.id in FINDINGS]
    related = [f for f in claims if f.id not in FINDINGS]
    same = identical_maps_text(results_dir)
    lines = [f"Profile **{profile}**: {len(paper)} claims of the paper and its rebuttal "
             f"({_tally(paper, saved)}). Each verdict is computed in the chapter named in the first column from "
             f"that run's numbers, with the criterion stated there (intervals at {CONFIDENCE:.0%}, resampling "
             f"images or grid targets; tests at level {TEST_LEVEL}); methods and settings that cannot carry a "
             f"verdict are named in the row.", "", f"**How a verdict is labelled.** {LABEL_RULE}", ""]
    if same:
        lines += [f"**Identical maps.** {same}", ""]
    if other is not None:
        pages = listing([f"{{doc}}`{page} <chapters/{page}>`" for page in other[1].values()])
        lines += [f"**A second domain.** The last column checks the same claim, by the same criterion, on the "
                  f"{other[0]} ({pages}): a second domain, not the paper's setting. “—”: the claim's chapter does "
                  f"not run on the {other[0]}.", ""]
    lines += _table(paper, saved, where, other,
                    caption="The claims of the paper and its rebuttal, with this run's verdicts"
                            + (f" on the photos and on the {other[0]}" if other is not None else ""))
    if related:
        lines += ["", f"**Beyond the paper.** {len(related)} claims of the related certificates and defenses "
                  f"(Levine et al.'s adversarial training and Sparsified SmoothGrad) and of this project's own "
                  f"extensions (one certificate for every K, anytime sampling), checked by the same rules "
                  f"({_tally(related, saved)}):", ""]
        lines += _table(related, saved, where, caption="Claims beyond the paper, with this run's verdicts")
    return "\n".join(lines) + "\n"


def findings_html(verdicts: Sequence[Verdict], caption: str = "Claims checked in this chapter"):
    """The chapter's rows of the findings table as HTML (IPython ``HTML``): claim, what the paper reported (and
    where), what this run measured, the verdict with its reason, and under each row the criterion that decided it
    and the methods or settings not counted that concern that row (named only); what they are and why they do not
    count is said once, under the table (:func:`table_exclusions`)."""
    from html import escape

    from IPython.display import HTML

    note, mentions = table_exclusions([v.excluded for v in verdicts])
    rows = []
    for v, mention in zip(verdicts, mentions):
        rows.append(f"<tr><td><b>{escape(v.finding.title)}</b></td><td>{escape(v.finding.paper)} "
                    f"<span class='certattr-source'>({escape(v.finding.source)})</span></td>"
                    f"<td>{escape(v.measured)}</td><td><b>{escape(v.verdict)}</b>: {escape(v.why)}</td></tr>")
        extra = f"<i>{escape(mention)}</i> " if mention else ""
        rows.append(f"<tr class='certattr-criterion'><td colspan='4'>{extra}<i>Criterion:</i> "
                    f"{escape(v.finding.criterion)}</td></tr>")
    below = f"<p class='certattr-table-note'>{escape(note)}</p>" if note else ""
    return HTML(f"<table class='certattr-findings'><caption>{escape(caption)}</caption><thead><tr><th>claim</th>"
                f"<th>the paper reported</th><th>this run measured</th><th>verdict: why</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>" + below)
