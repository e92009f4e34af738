"""The course edition: a graded check per chapter exercise, and the student / instructor (nbgrader) notebooks.

The chapters' check cells run ``from certattr.course import check``. The modules, one job each:

* :mod:`~certattr.course.cases`: how a check is declared (inputs, oracle, comparison rule);
* :mod:`~certattr.course.oracles`: the independently computed answers;
* :mod:`~certattr.course.exercises`: every exercise, declared as data, in the book's order;
* :mod:`~certattr.course.checks`: ``check(label, fn)``, the one loop that runs them, and its :class:`Score`;
* :mod:`~certattr.course.layout`: reading and validating a chapter's exercise cells;
* :mod:`~certattr.course.notebooks`: the student and instructor notebooks, ``build_assignments``.

The course imports nothing from the book, the sweeps or the command line: they call it.
"""
from .cases import Exercise
from .checks import STUB, Score, check
from .exercises import EXERCISES, exercise, exercise_number
from .layout import BEGIN, END, ExerciseCells, chapter_exercises, clear_solutions
from .notebooks import STUDENT_MINUTES, build_assignments, instructor_notebook, student_notebook

__all__ = ["Exercise", "EXERCISES", "Score", "check", "exercise", "exercise_number", "chapter_exercises",
           "ExerciseCells", "student_notebook", "instructor_notebook", "build_assignments", "clear_solutions",
           "STUDENT_MINUTES", "STUB", "BEGIN", "END"]
