"""Reading a chapter's exercises: the cells of each exercise in ``notebooks/<chapter>.md``, validated.

In the book (the chapter source), an exercise is a ``{exercise}`` directive with a label, the stub cell, the
solution cell between ``{solution-start}`` and ``{solution-end}`` (sphinx-exercise's gated directives) and
the check cell ``check("<label>", <name>)``, after the chapter's ``## Exercises`` heading.
:func:`chapter_exercises` finds them and checks them against the chapter's exercises in the
:class:`~certattr.course.catalogue.Course`;
:func:`merge_solution` writes a solution into its stub between nbgrader's markers and :func:`clear_solutions`
undoes that as nbgrader's ClearSolutions does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.validation import CertattrError
from .cases import Exercise
from .checks import STUB
from .catalogue import Course

__all__ = ["ExerciseCells", "chapter_exercises", "exercises_start", "merge_solution", "clear_solutions",
           "EXERCISE_RE", "BEGIN", "END"]

#: nbgrader's solution markers
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

EXERCISE_RE = re.compile(r"^:::\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<opts>(?::[\w-]+:[^\n]*\n)*)"
                          r"(?P<body>.*?)^:::[ \t]*$",
                          re.S | re.M)
_SOLUTION_START_RE = re.compile(r"^```\{solution-start\}[ \t]*(?P<label>[\w-]+)[ \t]*\n(?::[\w-]+:[^\n]*\n)*"
                                r"```[ \t]*$", re.M)
_SOLUTION_END_RE = re.compile(r"^```\{solution-end\}\s*\n```\s*$", re.M)
_CHECK_RE = re.compile(r"^check\(\"(?P<label>[\w-]+)\", (?P<name>\w+)\)$")


@dataclass
class ExerciseCells:
    """The cells of one exercise in a chapter notebook (indices into ``notebook.cells``)."""

    exercise: Exercise
    number: int
    title: str
    body: str
    text: int
    stub: int
    solution_start: int
    solution: int
    solution_end: int
    check: int


def exercises_start(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and re.search(r"^## Exercises\s*$", cell.source, re.M):
            return i
    raise CertattrError("the chapter has no '## Exercises' heading")


def chapter_exercises(nb, chapter: str, course: Course) -> list[ExerciseCells]:
    """Find and validate the exercises of a chapter notebook (read by jupytext from ``notebooks/<chapter>.md``).

    Each exercise is six cells: the ``{exercise}`` markdown, the stub, ``{solution-start}``, the solution,
    ``{solution-end}`` and the check ``check("<label>", <name>)``; they must match the chapter's exercises in
    ``course`` in order.
    """
    expected = course.exercises(chapter)
    start = exercises_start(nb)
    found = []
    cells = nb.cells
    for i in range(start, len(cells)):
        if cells[i].cell_type != "markdown":
            continue
        match = EXERCISE_RE.search(cells[i].source)
        if not match:
            continue
        opts = dict(re.findall(r"^:([\w-]+):\s*(.*)$", match.group("opts"), re.M))
        label = opts.get("label", "")
        where = f"{chapter}: exercise {label or match.group('title')!r}"
        kinds = [c.cell_type for c in cells[i + 1:i + 6]]
        if kinds != ["code", "markdown", "code", "markdown", "code"]:
            raise CertattrError(f"{where}: expected the stub, solution-start, solution, solution-end and check cells "
                                f"after the exercise text, found {kinds}")
        ss = _SOLUTION_START_RE.search(cells[i + 2].source)
        if not ss or ss.group("label") != label or not _SOLUTION_END_RE.search(cells[i + 4].source):
            raise CertattrError(f"{where}: the solution must sit between ```{{solution-start}} {label}``` and "
                                f"```{{solution-end}}```")
        if ":class: dropdown" not in cells[i + 2].source:
            raise CertattrError(f"{where}: the solution-start directive needs ':class: dropdown'")
        index = len(found)
        if index >= len(expected) or expected[index].label != label:
            wanted = expected[index].label if index < len(expected) else None
            raise CertattrError(f"{where}: expected exercise {wanted!r} here (the chapter's declaration lists its "
                                f"exercises in order)")
        ex = expected[index]
        check_match = _CHECK_RE.match(cells[i + 5].source.strip())
        if not check_match or check_match.group("label") != label or check_match.group("name") != ex.answer:
            raise CertattrError(f"{where}: the check cell must be exactly check({label!r}, {ex.answer})")
        stub = cells[i + 1].source
        if not re.search(rf"^def {ex.answer}\(", stub, re.M):
            raise CertattrError(f"{where}: the stub cell must define {ex.answer}()")
        merge_solution(stub, cells[i + 3].source, where)  # validates the stub against the solution
        for needle in ("**Learning objective:**", "**Estimated time:**"):
            if needle not in match.group("body"):
                raise CertattrError(f"{where}: the exercise text needs {needle}")
        if f"{ex.minutes} minutes" not in match.group("body"):
            raise CertattrError(f"{where}: the text must state the estimated time '{ex.minutes} minutes'")
        found.append(ExerciseCells(ex, course.number(label), match.group("title").strip(),
                                   match.group("body").strip(), i, i + 1, i + 2, i + 3, i + 4, i + 5))
    if [f.exercise.label for f in found] != [ex.label for ex in expected]:
        raise CertattrError(f"{chapter}: found exercises {[f.exercise.label for f in found]}, expected "
                            f"{[ex.label for ex in expected]}")
    return found


def merge_solution(stub: str, solution: str, where: str = "") -> str:
    """The nbgrader solution cell: the stub with its two stub lines replaced by the solution's body between
    ``### BEGIN SOLUTION`` / ``### END SOLUTION``. The stub's other lines (the ``def`` line and docstring)
    must open the solution unchanged."""
    lines, sol = stub.rstrip("\n").split("\n"), solution.rstrip("\n").split("\n")
    at = next((i for i in range(len(lines) - 1)
               if lines[i].strip() == STUB[0] and lines[i + 1].strip() == STUB[1]), None)
    if at is None:
        raise CertattrError(f"{where}: the stub cell must contain the lines '{STUB[0]}' and '{STUB[1]}'")
    prefix, suffix = lines[:at], lines[at + 2:]
    indent = re.match(r"\s*", lines[at]).group(0)
    if sol[:len(prefix)] != prefix or (suffix and sol[len(sol) - len(suffix):] != suffix):
        raise CertattrError(f"{where}: the solution cell must start with the stub's lines before '{STUB[0]}' "
                            f"(the def line and the docstring), unchanged")
    body = sol[len(prefix):len(sol) - len(suffix)]
    if not body or not all(not b.strip() or b.startswith(indent) for b in body):
        raise CertattrError(f"{where}: the solution's body must be indented like the stub's '{STUB[0]}'")
    return "\n".join(prefix + [indent + BEGIN] + body + [indent + END] + suffix)


def clear_solutions(source: str) -> str:
    """What nbgrader's ClearSolutions does to a code cell: each BEGIN/END SOLUTION region becomes the stub."""
    out, inside = [], False
    for line in source.split("\n"):
        if "BEGIN SOLUTION" in line:
            indent = re.match(r"\s*", line).group(0)
            out += [indent + s for s in STUB]
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)

