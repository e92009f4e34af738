"""The book's table helper: numbered captions in order, units in the header, one rounding rule per quantity, Unicode
notation, "not defined" apart from "not run", one header row, the paper's columns marked."""
import numpy as np
import pandas as pd
import pytest

from certattr.book import table as tables
from certattr.book.table import NOT_DEFINED, NOT_RUN, Column, book_table, unicode_text


@pytest.fixture(autouse=True)
def fresh_numbering():
    tables.reset_numbering()
    yield
    tables.reset_numbering()


def test_tables_are_numbered_in_the_order_shown_and_restart_per_chapter():
    frame = pd.DataFrame({"a": [1.0]})
    assert [book_table(frame, f"t{i}").caption for i in range(3)] == ["Table 1. t0", "Table 2. t1", "Table 3. t2"]
    assert tables.numbered_caption("Claims checked here") == (4, "Table 4. Claims checked here")
    tables.reset_numbering()
    assert book_table(frame, "first again").number == 1


def test_units_rounding_and_missing_cells():
    frame = pd.DataFrame({"method": ["Cam", "Grad", "RISE"], "layer": ["Input", "Input", "Final"],
                          "certified": [np.nan, 12.345, 7.0], "GridPG": [np.nan, 0.256, np.nan],
                          "p": [0.12345, 0.5, 1.0], "seconds": [3.04, 12.0, 100.26]})
    shown = book_table(frame, "x", columns={"certified": Column("certified '1'", "percent"), "p": "probability",
                                            "seconds": Column("wall time", "seconds")},
                       undefined=lambda row, col: row == 0)
    f = shown.frame
    assert list(f.columns) == ["method", "layer", "certified '1' (%)", "GridPG", "p", "wall time (s)"]
    assert list(f["certified '1' (%)"]) == [NOT_DEFINED, "12.3", "7.0"]  # percent: one decimal
    assert list(f["GridPG"]) == [NOT_DEFINED, "0.26", NOT_RUN]  # a number without a quantity: a share, 2 decimals
    assert list(f["p"]) == ["0.123", "0.500", "1.000"]
    assert list(f["wall time (s)"]) == ["3.0", "12.0", "100.3"]
    html = shown.to_html()
    assert html.count("<tr>") == 4  # one header row, three rows
    assert "<th class='certattr-text'>method</th>" in html and "certattr-missing" in html


def test_missing_cells_can_say_why_per_cell():
    """A method that ran but is left out by a rule reads "not ranked", one the run left out "not run", one not
    defined "not defined": three different statements, not one."""
    frame = pd.DataFrame({"method": ["Cam", "Grad", "RISE"], "layer": ["Input", "Input", "Final"],
                          "drop": [np.nan, np.nan, np.nan]})
    shown = book_table(frame, "x", undefined=lambda row, col: row == 0,
                       missing=lambda row, col: "not ranked" if frame.layer[row] == "Input" else NOT_RUN)
    assert list(shown.frame["drop"]) == [NOT_DEFINED, "not ranked", NOT_RUN]
    assert html_cells_missing(shown.to_html()) == 3


def html_cells_missing(html: str) -> int:
    return html.count("certattr-missing")


def test_a_multiindex_becomes_one_header_row_and_the_index_its_first_columns():
    frame = pd.DataFrame([[1.0, 2.0]], columns=pd.MultiIndex.from_tuples([("% abstain", "Input layer"),
                                                                          ("% abstain", "Final layer")]),
                         index=pd.MultiIndex.from_tuples([("EfficientNet-Lite0", "LRP")], names=["model", "method"]))
    shown = book_table(frame, "x", columns={"% abstain, Input layer": "percent", "% abstain, Final layer": "percent"})
    assert list(shown.frame.columns) == ["model", "method", "% abstain, Input layer (%)", "% abstain, Final layer (%)"]
    assert shown.to_html().count("<tr>") == 2


def test_unicode_notation():
    assert unicode_text("GAP->linear, sqrt(r x g), a 3x3 window, p >= 0.5, +-1, alpha = 0.01") == \
        "GAP → linear, √(r × g), a 3×3 window, p ≥ 0.5, ±1, α = 0.01"
    assert unicode_text("index x, max, exact") == "index x, max, exact"  # words with x are left alone


def test_the_papers_columns_are_marked_and_the_note_is_said_once():
    frame = pd.DataFrame({"σ": [0.15, 0.25], "R (this run)": [0.101, 0.169], "R (paper)": [0.10, 0.17]})
    shown = book_table(frame, "radii", columns={"σ": "share", "R (this run)": "radius",
                                                "R (paper)": Column("R, the paper's", "radius", paper=True)},
                       note="Not counted: RISE at the Input layer (100 masks).")
    html = shown.to_html()
    assert "R, the paper&#x27;s (ℓ2, [0, 1] pixel units)" in html and html.count("certattr-paper") == 3
    assert html.count("Not counted") == 1 and list(shown.frame.iloc[:, 2]) == ["0.100", "0.170"]
    with pytest.raises(ValueError, match="quantity='furlongs'"):
        book_table(frame, "x", columns={"σ": "furlongs"})


def test_text_columns_align_left_and_number_columns_right_even_when_preformatted():
    frame = pd.DataFrame({"method": ["LRP", "Cam"], "certified '1', Input layer (%)": ["12.5", NOT_DEFINED]})
    html = book_table(frame, "x").to_html()
    assert "<td class='certattr-text'>LRP</td>" in html and "<td class='certattr-number'>12.5</td>" in html


def test_a_level_with_one_value_is_named_once():
    frame = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([("Lite0", "LRP"), ("Lite0", "RISE")]))
    shown, dropped = tables.drop_single_levels(frame)
    assert dropped == ["Lite0"] and list(shown.index) == ["LRP", "RISE"]
