"""The course edition: a graded check per chapter exercise, and the student / instructor (nbgrader) notebooks.

The chapters' check cells run ``from certattr.course import check``. The modules, one job each:

* :mod:`~certattr.course.cases`: how a check is declared (inputs, oracle, comparison rule);
* :mod:`~certattr.course.oracles`: the independently computed answers;
* :mod:`~certattr.course.exercises`: every exercise, declared as data, one list per chapter;
* :mod:`~certattr.course.catalogue`: the :class:`Course` the book lays out from its chapters (order, numbers, times);
* :mod:`~certattr.course.checks`: ``check(label, fn)``, the one loop that runs them, and its :class:`Score`;
* :mod:`~certattr.course.layout`: reading and validating a chapter's exercise cells;
* :mod:`~certattr.course.notebooks`: the student and instructor notebooks, ``build_assignments``.

The course imports nothing from the book, the sweeps or the command line: they call it.
"""
from .cases import Exercise
from .checks import STUB, Score, check
from .catalogue import Course, CourseChapter
from .exercises import exercise
from .layout import BEGIN, END, ExerciseCells, chapter_exercises, clear_solutions
from .notebooks import build_assignments, instructor_notebook, student_notebook

__all__ = ["Exercise", "Course", "CourseChapter", "Score", "check", "exercise", "chapter_exercises", "ExerciseCells",
           "student_notebook", "instructor_notebook", "build_assignments", "clear_solutions", "STUB", "BEGIN", "END"]
