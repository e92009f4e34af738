"""What the book shows under an exercise's check cell: the check of the stub, not of the folded solution.

A chapter executes the stub, then its solution (folded in the book), then ``check("label", fn)``, so the
executed check passes. The reader sees the stub above the check, so the book replaces that output with what the
check prints for the stub ("not yet: ... is still the stub"), the same message a student gets before writing
any code. The student notebooks are not touched: they have no solutions and run the real check.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..course.checks import STUB
from ..engine.validation import CertattrError
from ..course.exercises import exercise

__all__ = ["CHECK_CALL", "stub_message", "show_stub_checks"]

#: a check cell: ``check("label", function_name)`` and nothing else
CHECK_CALL = re.compile(r'^\s*check\(\s*"([^"]+)"\s*,\s*[A-Za-z_][A-Za-z_0-9]*\s*\)\s*$')


def stub_message(label: str) -> str:
    """The line :func:`certattr.course.check` prints for the exercise ``label`` while its function is the stub."""
    ex = exercise(label)
    return (f"not yet: `{ex.answer}` is still the stub (it raises NotImplementedError): replace `{STUB[0]}` and "
            f"`{STUB[1]}` in the cell above with your code.")


def _check_passed(label: str, outputs: list, path: Path) -> None:
    """The executed check (of the folded solution) passed, else a one-line error: a chapter whose solution fails
    its own check is a defect of the chapter, and hiding its output must not hide that."""
    texts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream"]
    texts += [str(o.get("data", {}).get("text/html", "")) for o in outputs if "data" in o]
    if not any("certattr-score-pass" in t or t.startswith("correct:") for t in texts):
        shown = " ".join(t.strip() for t in texts if t.strip())[:300] or "no output"
        raise CertattrError(f"{path.name}: the check of exercise {label!r} fails on its own solution ({shown})")


def show_stub_checks(path) -> int:
    """Rewrite the executed notebook ``path`` so that every check cell shows the stub's check; returns how many.
    Every check must have passed on the chapter's solution (:class:`CertattrError` otherwise)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        match = CHECK_CALL.match(cell.source) if cell.cell_type == "code" else None
        if match:
            _check_passed(match.group(1), cell.outputs, path)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stub_message(match.group(1)) + "\n")]
            count += 1
    if count:
        nbformat.write(nb, path)
    return count
