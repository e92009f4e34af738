"""``check(label, fn)``: the one loop that grades every exercise, and the :class:`Score` it returns.

The loop runs each of the exercise's :class:`~certattr.course.cases.Cases` in order: for every case it asks the
oracle for the answer, calls the student's function on fresh copies of the arguments (its prints and warnings
kept out of the check's output), and lets the rule compare. It stops at the first mismatch and prints it in one
line ("not yet: <the case> returned ..., which ... Hint: ..."), or prints "correct". It never raises because
of the student's function (the stub, a wrong value, an exception, a function of the wrong arity, something
that is not a function): it returns a :class:`Score`, the points earned, which nbgrader reads from the check
cell's output as partial credit (0 when not yet right, the exercise's points when right).
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings

import numpy as np

from .cases import Case, Cases, Exercise, Raises, brief, short
from .exercises import exercise

__all__ = ["Score", "check", "first_mismatch", "STUB"]

#: the two lines of every exercise's stub, which the student replaces
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")


class Score(float):
    """The points a check gave (a float: nbgrader reads a check cell's ``text/plain`` output as partial credit)."""

    def __new__(cls, points: float, max_points: float, label: str, message: str):
        self = super().__new__(cls, points)
        self.max_points, self.label, self.message = float(max_points), label, message
        return self

    @property
    def passed(self) -> bool:
        return float(self) == self.max_points

    def __repr__(self) -> str:  # what nbgrader parses: a bare number
        return repr(float(self))

    def _repr_html_(self) -> str:
        state = "passed" if self.passed else "not yet"
        return (f'<p class="certattr-score certattr-score-{"pass" if self.passed else "fail"}">'
                f"Exercise <code>{self.label}</code>: {state}, {float(self):g} of {self.max_points:g} "
                f"point{'s' if self.max_points != 1 else ''}</p>")


def check(label: str, answer) -> Score:
    """Check the answer to the exercise ``label`` (e.g. ``check("method-count", smallest_count)``).

    Prints "correct" or what is still wrong in one line and returns the :class:`Score`. An unknown ``label`` (a
    mistake in the chapter, not the student's) raises :class:`~certattr.engine.validation.CertattrError`.
    """
    ex = exercise(label)
    problem = _problem(ex, answer)
    if problem is None:
        score = Score(ex.points, ex.points, label, f"correct: `{ex.answer}` passes every case of the check.")
    else:
        score = Score(0.0, ex.points, label, f"not yet: {problem}")
    print(score.message)
    return score


def _problem(ex: Exercise, answer) -> str | None:
    """What is wrong with ``answer`` (the text after "not yet: "), or None when it passes every case."""
    if answer is Ellipsis:
        return f"`{ex.answer}` is still `...`; write it in the cell above."
    if not callable(answer):
        return f"`{ex.answer}` should be a function, but it is a {type(answer).__name__}."
    try:
        wrong = first_mismatch(ex, answer)
    except _StudentError as failure:
        err = failure.error
        if isinstance(err, NotImplementedError):
            return (f"`{ex.answer}` is still the stub (it raises NotImplementedError): replace `{STUB[0]}` and "
                    f"`{STUB[1]}` in the cell above with your code.")
        if isinstance(err, RecursionError):
            return f"`{ex.answer}` recursed without end."
        return f"calling {failure.about} raised {type(err).__name__}: {err}. Hint: {ex.hint}"
    return None if wrong is None else f"{wrong}. Hint: {ex.hint}"


class _StudentError(Exception):
    """The student's function raised ``error`` on the case named ``about``."""

    def __init__(self, error: BaseException, about: str):
        super().__init__(str(error))
        self.error, self.about = error, about


def first_mismatch(ex: Exercise, fn) -> str | None:
    """The first case on which ``fn`` disagrees with the oracle, as "<the case> <complaint>", or None.

    Raises :class:`_StudentError` when ``fn`` itself raises (other than where the oracle answers :class:`Raises`
    with that exception).
    """
    for cases in ex.cases:
        names = cases.names()
        # a generator of inputs may hold a resource (a temporary sample cache): closing it releases that early
        with contextlib.closing(_iterate(cases)) as each:
            for case in each:
                complaint = _compare_one(ex, cases, case, names, fn)
                if complaint is not None:
                    return complaint
    return None


def _iterate(cases: Cases):
    inputs = cases.inputs()
    try:
        for case in inputs:
            yield case if isinstance(case, Case) else Case(tuple(case))
    finally:
        if hasattr(inputs, "close"):
            inputs.close()


def _compare_one(ex: Exercise, cases: Cases, case: Case, names: list[str], fn) -> str | None:
    fields = dict(zip(names, case.args))
    about = case.about or f"{ex.answer}({', '.join(f'{n}={brief(v)}' for n, v in fields.items())})"
    args = tuple(_fresh(a) for a in case.args)  # the student's copies: case.args stay as the oracle reads them
    kept = {i: _fresh(args[i]) for i in cases.unchanged}
    try:
        with contextlib.ExitStack() as stack:
            for watch in case.watch:
                stack.enter_context(watch)
            got = cases.probe(_quiet(fn), *args)
    except Exception as err:  # the student's function raised
        expected = cases.oracle(*case.args)
        if isinstance(expected, Raises) and isinstance(err, expected.error):
            return None
        raise _StudentError(err, about) from err
    expected = cases.oracle(*case.args)
    complaints = [w.complaint() for w in case.watch]
    complaints += [f"changed the {names[i]} it was given: return a modified copy" for i in cases.unchanged
                   if not _same(args[i], kept[i])]
    if isinstance(expected, Raises):
        complaints.append(f"returned {short(got)}: {expected.why.format(**fields)}")
    else:
        complaints.append(cases.compare(got, expected, fields))
    first = next((c for c in complaints if c), None)
    return None if first is None else f"{about} {first}"


def _quiet(fn):
    """``fn`` with its prints and warnings kept out of the check's output."""
    def call(*args, **kwargs):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    return call


def _fresh(value):
    """A copy of an array, tensor or table (so that the student's function cannot spoil the next case or the
    oracle's input); other values as they are (an engine is shared on purpose)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if hasattr(value, "clone") and hasattr(value, "detach"):  # a torch.Tensor
        return value.clone()
    if hasattr(value, "columns") and hasattr(value, "copy"):  # a pandas DataFrame
        return value.copy()
    if isinstance(value, (list, dict)):
        return copy.deepcopy(value)
    return value


def _same(a, b) -> bool:
    if hasattr(a, "equal") and hasattr(a, "detach"):  # torch.Tensor
        return bool(a.equal(b))
    if hasattr(a, "equals"):  # pandas
        return bool(a.equals(b))
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
