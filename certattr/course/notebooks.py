"""The course edition's notebooks: each chapter as a student and an instructor (nbgrader) notebook.

:func:`build_assignments` turns each chapter (``notebooks/<chapter>.md``) into

* ``<chapter>-student.ipynb``: the chapter on small settings (the parameters its caller gives, e.g. the book's
  ``smoke`` profile, written into the parameters cell), each exercise's stub and check kept, solutions removed;
* ``<chapter>-instructor.ipynb``: the same with every solution inside its stub, between nbgrader's
  ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers, and nbgrader cell metadata (solution, grade and
  locked cells with ``grade_id`` and ``points``). nbgrader's ``ClearSolutions`` turns it into the student
  notebook, cell for cell;
* with ``nbgrader=True``, an nbgrader course folder ``nbgrader/`` (``nbgrader_config.py`` and
  ``source/<chapter>/<chapter>-student.ipynb``, the instructor version under the student file's name, so
  that submissions of the downloaded student notebook match it).

The course sits below the book: the caller (``certattr book``, ``certattr assignments``) passes the chapters in
book order with their parameters and the repository root.
"""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Mapping

from ..engine.validation import CertattrError
from .catalogue import Course
from .exercises import exercise
from .layout import EXERCISE_RE, chapter_exercises, exercises_start, merge_solution

__all__ = ["student_notebook", "instructor_notebook", "build_assignments", "NBGRADER_CONFIG"]


# --- student and instructor notebooks -----------------------------------------------------------------------------
def _parameters_source(source: str, values: dict) -> str:
    """The parameters cell with each assigned name's value replaced by ``values[name]`` (comments kept)."""
    out, seen = [], set()
    for line in source.split("\n"):
        try:
            tree = ast.parse(line)
        except SyntaxError:
            out.append(line)
            continue
        node = tree.body[0] if tree.body else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in values:
            name = node.targets[0].id
            new = line[:node.value.col_offset] + repr(values[name]) + line[node.value.end_col_offset:]
            out.append(new)
            seen.add(name)
        else:
            out.append(line)
    out += [f"{name} = {value!r}" for name, value in values.items() if name not in seen]
    return "\n".join(out)


def _nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _strip_links(text: str, course: Course) -> str:
    """Plain Markdown for Jupyter: drop the paragraphs with a download link (it only works in the built book) and
    write a cross-reference to an exercise as "Exercise N (title)"."""
    def ref(match):
        label = match.group(2)
        try:
            return f"Exercise {course.number(label)} ({exercise(label).title})"
        except CertattrError:  # a label that is not an exercise
            return f"`{label}`"

    paragraphs = [p for p in re.split(r"\n\s*\n", text) if "{download}" not in p]
    return re.sub(r"\{(ref|numref)\}`([\w-]+)`", ref, "\n\n".join(paragraphs))


def _header(chapter: str, profile: str, course: Course) -> str:
    """The note at the top of both versions (the same text, so that nbgrader's release of the instructor
    notebook is the student notebook; it must not name nbgrader's solution delimiters, which its
    ClearSolutions looks for in every cell)."""
    exs = course.exercises(chapter)
    total, minutes = sum(e.points for e in exs), course.chapter(chapter).minutes
    if profile == "smoke" and minutes:
        cost = (f"about {minutes} minute{'s' if minutes != 1 else ''} from top to bottom on a laptop CPU with the "
                f"offline default model (EfficientNet-Lite0) and bundled photos")
    else:
        cost = "longer than on the `smoke` settings (see the README's \"For instructors\")"
    return "\n".join([
        f"**Course edition** of the chapter `{chapter}`, made by `certattr assignments` from `notebooks/{chapter}.md`. "
        f"It runs on the `{profile}` settings (written into the parameters cell below): {cost}; the other chapters "
        f"reuse the noisy samples in `cache_dir`.",
        "",
        f"{len(exs)} exercises at the end ({total} points): "
        + "; ".join(f"{course.number(e.label)}. {e.title} ({e.minutes} min, {e.points} point"
                    f"{'s' if e.points > 1 else ''})" for e in exs)
        + ". Write each function where it says `# YOUR CODE HERE`; the cell after it checks your function on "
          "inputs of its own and prints what is still wrong (it never raises, so the notebook always runs to the "
          "end). Numbers in the text appear as `{glue:text}` placeholders here; the book shows them. (In the "
          "instructor version each solution sits inside its stub, between nbgrader's two `###` marker lines.)"])


def _chapter_notebook(chapter: str, root: Path):
    import jupytext

    path = Path(root) / "notebooks" / f"{chapter}.md"
    if not path.exists():
        raise CertattrError(f"no notebook for chapter {chapter!r}: {path} does not exist")
    return jupytext.read(path)


def _assignment(chapter: str, *, instructor: bool, parameters: Mapping, root: Path, course: Course,
                profile: str = "smoke", cache_dir: str = "certattr-cache", results_dir: str = "results"):
    import nbformat

    nb = _chapter_notebook(chapter, root)
    exercises = chapter_exercises(nb, chapter, course)
    start = exercises_start(nb)
    params = {**parameters, "cache_dir": cache_dir, "results_dir": results_dir}
    by_text = {e.text: e for e in exercises}
    skip = {i for e in exercises for i in (e.solution_start, e.solution, e.solution_end)}
    cells, setup = [], 0
    for i, cell in enumerate(nb.cells):
        if i in skip:
            continue
        cell = copy.deepcopy(cell)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):
                cell.source = _parameters_source(cell.source, params)
        if i < start:
            cells.append(cell)
            continue
        if i == start:
            cell.source = _strip_links(cell.source, course)
            cells.append(cell)
            continue
        if i in by_text:
            e = by_text[i]
            before = cell.source[:EXERCISE_RE.search(cell.source).start()].strip()
            after = cell.source[EXERCISE_RE.search(cell.source).end():].strip()
            if before or after:
                raise CertattrError(f"{chapter}: the cell of exercise {e.exercise.label!r} must hold only the "
                                    f"exercise directive (separate cells with +++)")
            cell.source = f"### Exercise {e.number}: {e.title}\n\n{_strip_links(e.body, course)}"
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-text", locked=True)
        elif any(i == e.stub for e in exercises):
            e = next(e for e in exercises if e.stub == i)
            if instructor:
                cell.source = merge_solution(cell.source, nb.cells[e.solution].source, f"{chapter}: {e.exercise.label}")
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-answer", solution=True)
        elif any(i == e.check for e in exercises):
            e = next(e for e in exercises if e.check == i)
            cell.metadata["nbgrader"] = _nbgrader(f"{e.exercise.label}-check", grade=True, locked=True,
                                                  points=e.exercise.points)
        elif cell.cell_type == "code":
            setup += 1
            cell.metadata["nbgrader"] = _nbgrader(f"{chapter}-setup{setup if setup > 1 else ''}", locked=True)
        if cell.cell_type == "markdown" and not cell.source.strip():
            continue
        cells.append(cell)
    header = nbformat.v4.new_markdown_cell(_header(chapter, profile, course))
    cells.insert(1, header)
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                    "language_info": {"name": "python"}}
    for cell in out.cells:
        cell.metadata.pop("jupytext", None)
        grader = cell.metadata.get("nbgrader")
        if grader:  # what nbgrader's LockCells does: nothing graded can be deleted, nothing locked edited
            cell.metadata["deletable"] = False
            if grader["locked"]:
                cell.metadata["editable"] = False
    nbformat.validate(out)
    return out


def student_notebook(chapter: str, *, parameters: Mapping, root: Path, course: Course, **kwargs):
    """The student notebook of ``chapter`` (an ``nbformat`` notebook): stubs and checks, no solution.

    ``parameters``: the values written into the chapter's parameters cell ({name: value}); ``root``: the folder
    with ``notebooks/<chapter>.md``; ``course``: the book's :class:`Course` (the chapter's exercises and their
    numbers); ``profile`` (the settings' name, shown in the header), ``cache_dir`` and
    ``results_dir`` (written into the parameters cell, relative to where the notebook runs) as keywords.
    """
    return _assignment(chapter, instructor=False, parameters=parameters, root=Path(root), course=course, **kwargs)


def instructor_notebook(chapter: str, *, parameters: Mapping, root: Path, course: Course, **kwargs):
    """The instructor (nbgrader source) notebook of ``chapter``: every solution between BEGIN/END SOLUTION;
    the arguments as for :func:`student_notebook`."""
    return _assignment(chapter, instructor=True, parameters=parameters, root=Path(root), course=course, **kwargs)


NBGRADER_CONFIG = '''# nbgrader course configuration written by `certattr assignments` (README: "For instructors").
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
# the chapters compute noisy attribution maps: give each cell time (the default is 30 s)
c.Execute.timeout = 1800
c.Execute.kernel_name = "python3"
'''


def build_assignments(out, *, chapters: Mapping[str, Mapping], root: Path, course: Course, profile: str = "smoke",
                      cache_dir: str = "certattr-cache", nbgrader: bool = True) -> list[Path]:
    """Write ``<chapter>-student.ipynb`` and ``<chapter>-instructor.ipynb`` for every chapter into ``out``; return
    the paths written.

    ``chapters``: {chapter: the parameters written into its parameters cell}, e.g. the book's ``smoke`` profile
    (minutes on a laptop CPU), in book order; ``root``: the repository (``notebooks/<chapter>.md``);
    ``profile``: the name of those settings, shown in each notebook's header; ``cache_dir``: the sample cache the
    notebooks use (relative to the folder they run in, or absolute); ``course``: the book's :class:`Course`. With
    ``nbgrader=True`` also an nbgrader course folder ``out/nbgrader`` (see the module docstring).
    """
    import nbformat

    if not chapters:
        raise CertattrError("build_assignments needs at least one chapter")
    unknown = [c for c in chapters if c not in course.stems()]
    if unknown:
        raise CertattrError(f"chapters {unknown} have no exercises; the chapters are {', '.join(course.stems())}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter, parameters in chapters.items():
        kw = dict(parameters=parameters, root=root, course=course, profile=profile, cache_dir=cache_dir)
        student, instructor = student_notebook(chapter, **kw), instructor_notebook(chapter, **kw)
        for nb, name in [(student, f"{chapter}-student.ipynb"), (instructor, f"{chapter}-instructor.ipynb")]:
            path = out / name
            nbformat.write(nb, path)
            written.append(path)
        if nbgrader:
            source = out / "nbgrader" / "source" / chapter
            source.mkdir(parents=True, exist_ok=True)
            nbformat.write(instructor, source / f"{chapter}-student.ipynb")
            written.append(source / f"{chapter}-student.ipynb")
    if nbgrader:
        config = out / "nbgrader" / "nbgrader_config.py"
        config.write_text(NBGRADER_CONFIG)
        written.append(config)
    return written
