"""The book's tables, one helper for all of them: a numbered caption ("Table 3. ..."), one header row with the unit
of each column, one rounding rule per quantity (:data:`QUANTITIES`), Unicode symbols (→, √, ×, ≥), "not defined"
(the method does not exist there) kept apart from "not run" (left out of this run), what the table leaves out said
once in a note under it, and the paper's own numbers, where it prints one, in columns marked as the paper's.

A chapter shows a table with ``display(book_table(frame, "caption", columns={...}))``; tables are numbered in the
order a chapter shows them (:func:`reset_numbering` starts a chapter at Table 1).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html import escape

__all__ = ["NOT_DEFINED", "NOT_RUN", "NOT_RANKED", "DEGENERATE", "QUANTITIES", "Column", "BookTable", "book_table", "reset_numbering",
           "next_number", "numbered_caption", "unicode_text", "format_value", "drop_single_levels"]

NOT_DEFINED = "not defined"  #: the method is not defined for this model or layer (e.g. Cam at the Input layer)
NOT_RUN = "not run"  #: the method could run here but this run left it out
NOT_RANKED = "not ranked"  #: the method ran, but a rule leaves its value out (zero by emptiness)
DEGENERATE = "degenerate"  #: every certificate behind the cell is of a constant map: no number that reads as data

#: quantity -> (unit written in the header, decimals): every table of the book rounds a quantity the same way
QUANTITIES = {
    "percent": ("%", 1),  # shares of pixels or of cases, in percent
    "share": ("", 2),  # a fraction in [0, 1]: robustness, Certified GridPG, an overlap, a balance
    "probability": ("", 3),  # a softmax probability, a deletion AUC or a ratio of probabilities
    "radius": ("ℓ2, [0, 1] pixel units", 3),  # a certified radius or a perturbation size
    "noise": ("[0, 1] pixel units", 2),  # the smoothing noise σ
    "seconds": ("s", 1),
    "count": ("", 0),
    "ratio": ("", 2),  # a ratio or a factor
    "statistic": ("", 4),  # a bound or a cosine where the fourth decimal matters
    "text": ("", None),
}


@dataclass(frozen=True)
class Column:
    """How one column is shown: ``title`` (default: the frame's column name), ``quantity`` (a key of
    :data:`QUANTITIES`; default "text" for text and "share" for numbers), ``unit`` (default: the quantity's) and
    ``paper`` (the column holds the paper's numbers: marked as such in its header and cells)."""

    title: str | None = None
    quantity: str | None = None
    unit: str | None = None
    paper: bool = False

    def header(self, name: str) -> str:
        title = unicode_text(self.title if self.title is not None else str(name))
        unit = self.unit if self.unit is not None else QUANTITIES[self.quantity or "text"][0]
        if unit and f"({unit})" not in title:
            title = f"{title} ({unit})"
        return title


_counter = [0]


def reset_numbering() -> None:
    """The next table is Table 1 (each chapter's setup calls this)."""
    _counter[0] = 0


def next_number() -> int:
    _counter[0] += 1
    return _counter[0]


def numbered_caption(caption: str) -> tuple[int, str]:
    """(number, "Table N. caption") for the next table of the chapter (a table not drawn by :func:`book_table`,
    e.g. the findings, takes its number here)."""
    number = next_number()
    return number, f"Table {number}. {unicode_text(caption).rstrip()}"


_REPLACEMENTS = [
    (re.compile(r"\s*->\s*"), " → "), (re.compile(r"\s*<-\s*"), " ← "), (re.compile(r">="), "≥"),
    (re.compile(r"<="), "≤"), (re.compile(r"!="), "≠"), (re.compile(r"\+/-|\+-"), "±"),
    (re.compile(r"\bsqrt\("), "√("), (re.compile(r"(?<=\d)x(?=\d)"), "×"), (re.compile(r"(?<=[\w)]) x (?=[\w(])"), " × "),
    (re.compile(r"\balpha\b"), "α"), (re.compile(r"\bsigma\b"), "σ"), (re.compile(r"\btau\b"), "τ"),
    (re.compile(r"\beps\b"), "ε"),
]


def unicode_text(text) -> str:
    """ASCII notation as the book prints it: "->" → "→", ">=" → "≥", "sqrt(" → "√(", "3x3" → "3×3", "a x b" →
    "a × b", "+-" → "±", and the Greek names alpha, sigma, tau, eps as letters."""
    out = str(text)
    for pattern, replacement in _REPLACEMENTS:
        out = pattern.sub(replacement, out)
    return out


def format_value(value, quantity: str) -> str | None:
    """A number as its quantity is rounded everywhere in the book; None for a missing value (NaN or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if quantity == "text" or isinstance(value, str):
        return unicode_text(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    decimals = QUANTITIES[quantity][1]
    value = float(value)
    if decimals == 0:
        return f"{int(round(value)):d}"
    return f"{value:.{decimals}f}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class BookTable:
    """A table ready to show (``_repr_html_``): ``number``, ``caption`` ("Table N. ..."), ``frame`` (the cells as
    the reader sees them, strings, with the headers), ``note`` (said once, under the table) and which columns
    are the paper's."""

    def __init__(self, frame, caption: str, number: int, note: str = "", paper_columns=(), text_columns=()):
        self.frame, self.caption, self.number, self.note = frame, caption, number, note
        self.paper_columns, self.text_columns = set(paper_columns), set(text_columns)

    def to_html(self) -> str:
        head = "".join(f"<th class='{self._class(c)}'>{escape(str(c))}</th>" for c in self.frame.columns)
        body = []
        for _, row in self.frame.iterrows():
            cells = []
            for c in self.frame.columns:
                value = str(row[c])
                missing = value in (NOT_DEFINED, NOT_RUN, NOT_RANKED, DEGENERATE, "–")
                css = self._class(c) + (" certattr-missing" if missing else "")
                cells.append(f"<td class='{css.strip()}'>{escape(value)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        note = f"<p class='certattr-table-note'>{escape(self.note)}</p>" if self.note else ""
        return (f"<table class='certattr-table'><caption>{escape(self.caption)}</caption><thead><tr>{head}</tr>"
                f"</thead><tbody>{''.join(body)}</tbody></table>{note}")

    def _class(self, column) -> str:
        return " ".join(filter(None, ["certattr-text" if column in self.text_columns else "certattr-number",
                                      "certattr-paper" if column in self.paper_columns else ""]))

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.frame.to_string(index=False)}" + (f"\n{self.note}" if self.note else "")


def book_table(frame, caption: str, *, columns: dict | None = None, undefined=None, note: str = "",
               missing=NOT_RUN, index: bool = True) -> BookTable:
    """The book's table of ``frame`` with the next number of the chapter.

    ``columns``: {column name: :class:`Column`, or a quantity name} (columns not named: text, or "share" when
    numeric); the frame's index becomes its first columns (``index=False``: dropped), and a column MultiIndex is
    joined into one header row ("certified '1' (%), Input layer"). A missing value reads ``missing`` ("not run"; or
    a function (row, column name) -> the words, e.g. "not ranked" for a method that ran but is left out by a
    rule), or "not defined" where ``undefined`` says so: a boolean frame of the same shape, or a function (row, column
    name) -> bool. String cells are kept (in Unicode notation). ``note``: what the table leaves out, said once
    under it."""
    import pandas as pd

    frame = frame.copy()
    if index:
        names = [n for n in frame.index.names if n is not None]
        frame = frame.reset_index() if names else frame.reset_index(drop=True)
    else:
        frame = frame.reset_index(drop=True)
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [", ".join(str(p) for p in parts if str(p)) for parts in frame.columns]
    specs = {}
    for name in frame.columns:
        spec = (columns or {}).get(name)
        if isinstance(spec, str):
            spec = Column(quantity=spec)
        if spec is None or spec.quantity is None:
            numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
            spec = Column(title=spec.title if spec else None, quantity="share" if numeric else "text",
                          unit=spec.unit if spec else None, paper=spec.paper if spec else False)
        if spec.quantity not in QUANTITIES:
            raise ValueError(f"quantity={spec.quantity!r} is not one of {', '.join(QUANTITIES)}")
        specs[name] = spec
    is_undefined = undefined if callable(undefined) else (
        (lambda r, c: bool(undefined.iloc[r][c])) if undefined is not None else (lambda r, c: False))
    shown = {}
    for name, spec in specs.items():
        values = []
        for r, value in enumerate(frame[name].tolist()):
            text = format_value(value, spec.quantity if _is_number(value) else "text")
            if text is None:
                text = NOT_DEFINED if is_undefined(r, name) else missing(r, name) if callable(missing) else missing
            values.append(text)
        shown[spec.header(name)] = values
    out = pd.DataFrame(shown)
    number, text = numbered_caption(caption)
    headers = {name: spec.header(name) for name, spec in specs.items()}
    return BookTable(out, text, number, unicode_text(note) if note else "",
                     paper_columns=[headers[n] for n, s in specs.items() if s.paper],
                     text_columns=[c for c in out.columns if not all(map(_reads_as_number, out[c]))])


def _reads_as_number(cell: str) -> bool:
    """A cell that holds a number (aligned right) or says why it has none."""
    if cell in (NOT_DEFINED, NOT_RUN, NOT_RANKED, DEGENERATE, "–", ""):
        return True
    try:
        float(cell.replace("−", "-").replace("%", ""))
        return True
    except ValueError:
        return False


def drop_single_levels(frame):
    """``(frame, dropped)``: the index levels that hold one value only are dropped (while more than one level is
    left) and returned, to be named once in the caption (e.g. the one model of a run) instead of in every row."""
    dropped = []
    while getattr(frame.index, "nlevels", 1) > 1 and frame.index.get_level_values(0).nunique() == 1:
        dropped.append(str(frame.index.get_level_values(0)[0]))
        frame = frame.droplevel(0)
    return frame, dropped
