"""The book shows, under each exercise's check, what the check prints for the stub the reader sees above it."""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import nbformat
import pytest

from certattr.book.exercise_outputs import CHECK_CALL, show_stub_checks, stub_message
from certattr.course import check
from certattr.course.checks import STUB
from certattr.engine.validation import CertattrError


def _stub(*args, **kwargs):
    raise NotImplementedError()


def test_stub_message_is_what_check_prints_for_the_stub():
    out = io.StringIO()
    with redirect_stdout(out):
        score = check("robustness-pooled", _stub)
    assert score == 0 and out.getvalue().strip() == stub_message("robustness-pooled")
    assert STUB[1] in stub_message("robustness-pooled")


def test_check_cells_of_an_executed_notebook_show_the_stub_check(tmp_path):
    nb = nbformat.v4.new_notebook()
    solved = nbformat.v4.new_output("stream", name="stdout", text="correct: `f` passes every case of the check.\n")
    nb.cells = [nbformat.v4.new_code_cell('check("robustness-pooled", pooled_and_mean_abstain)', outputs=[solved]),
                nbformat.v4.new_code_cell("print(check)", outputs=[solved]),
                nbformat.v4.new_markdown_cell('check("robustness-pooled", f)')]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    assert show_stub_checks(path) == 1
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].outputs[0]["text"].startswith("not yet:") and "correct" not in cells[0].outputs[0]["text"]
    assert cells[1].outputs[0]["text"].startswith("correct")  # not a check cell: untouched
    assert CHECK_CALL.match('check("a-b", fn)') and not CHECK_CALL.match('score = check("a-b", fn)')


def test_a_check_that_fails_on_the_solution_stops_the_chapter(tmp_path):
    failed = nbformat.v4.new_output("stream", name="stdout", text="not yet: the count is off by one.\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('check("robustness-pooled", pooled_and_mean_abstain)', outputs=[failed])]
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CertattrError, match="robustness-pooled.*fails on its own solution.*off by one"):
        show_stub_checks(path)
    assert "off by one" in nbformat.read(path, as_version=4).cells[0].outputs[0]["text"]  # left as it was
