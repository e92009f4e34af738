"""How an exercise's check is declared: as data, run by the one loop of :mod:`certattr.course.checks`.

An :class:`Exercise` holds one or more :class:`Cases`. Each :class:`Cases` is

* ``inputs``: a function giving the argument tuples for the student's function (literal, or built from a seed;
  a generator may hold a resource open, e.g. a temporary sample cache, while its cases run);
* ``oracle``: the answer for the same arguments, computed independently of any solution (brute force over
  pixels, exact rational or binomial arithmetic, a closed form). Its parameter names are the student function's,
  and they name the arguments in the messages;
* ``compare``: the rule that compares the student's result with the oracle's answer (:class:`Close` within a
  tolerance, :class:`Integer`, :class:`Equal`, :class:`Mask`, :class:`Array`, :class:`Pair` of two rules, ...).
  A rule returns ``None`` when the result is right, else the complaint: the rest of one readable sentence
  after the case's name ("returned 0.5, which is not ...").

An oracle may also answer :class:`Raises`: the student's function must raise that exception on the case.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["Exercise", "Cases", "Case", "Raises", "ModelCalls", "Close", "Integer", "Equal", "Mask", "CountedMask", "Array",
           "Pair", "UniformDraws", "short", "brief", "call_once"]


# --- how values are named in a message ---------------------------------------------------------------------------
def short(value) -> str:
    """``repr(value)``, cut to under 80 characters."""
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def brief(value) -> str:
    """A few words for an argument in a message: a number or string as itself, an array by its shape."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"an array {tuple(shape)}"
    if hasattr(value, "columns") and hasattr(value, "__len__"):  # a pandas DataFrame
        return f"a table of {len(value)} rows"
    return short(value)


def _explain(why, got, expected, fields) -> str:
    """``why`` as text: a template formatted with the arguments' names and ``expected``, or a function."""
    if callable(why):
        return why(got, expected, fields)
    return why.format(**fields, expected=expected) if why else ""


def _returned(got, why, expected, fields, shown: str | None = None) -> str:
    text = f"returned {short(got) if shown is None else shown}"
    reason = _explain(why, got, expected, fields)
    return f"{text}, {reason}" if reason else text


def _real(value) -> float | None:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- the rules ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Close:
    """A real number within ``tol`` of the answer, relative to ``max(1, |answer|)``; NaN only where the answer is
    NaN. ``name`` prefixes the returned value in the complaint (e.g. ``"R = "``)."""

    tol: float = 1e-9
    why: str | Callable = ""
    name: str = ""

    def __call__(self, got, expected, fields) -> str | None:
        value = _real(got)
        expected = float(expected)
        if value is not None:
            if math.isnan(expected) and math.isnan(value):
                return None
            if abs(value - expected) <= self.tol * max(1.0, abs(expected)):
                return None
        return _returned(got, self.why, expected, fields, self.name + short(got))


@dataclass(frozen=True)
class Integer:
    """An ``int`` (a NumPy integer too, not a bool) equal to the answer."""

    why: str | Callable = ""

    def __call__(self, got, expected, fields) -> str | None:
        if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, np.integer)):
            return f"returned {short(got)}: give an integer"
        if int(got) == int(expected):
            return None
        return _returned(got, self.why, expected, fields)


@dataclass(frozen=True)
class Equal:
    """Equal to the answer after ``normalise`` (e.g. keys as strings); ``what`` names the expected kind of value
    when ``normalise`` cannot read the result. ``message`` replaces the whole complaint when given."""

    normalise: Callable = staticmethod(lambda value: value)
    what: str = ""
    why: str | Callable = ""
    message: str = ""

    def __call__(self, got, expected, fields) -> str | None:
        try:
            value = self.normalise(got)
        except (TypeError, ValueError, AttributeError):
            return f"should return {self.what}, it returned {short(got)}"
        if value == expected:
            return None
        return self.message.format(**fields) if self.message else _returned(got, self.why, expected, fields)


@dataclass(frozen=True)
class Mask:
    """A boolean array of the answer's shape, equal to it pixel for pixel."""

    def __call__(self, got, expected, fields) -> str | None:
        mask = np.asarray(got)
        if mask.shape != expected.shape:
            return f"returned shape {mask.shape}"
        if mask.dtype != bool:
            return f"returned dtype {mask.dtype}: give a boolean mask"
        if not np.array_equal(mask, expected):
            return f"selects {int(mask.sum())} pixel(s), and not the right ones"
        return None


@dataclass(frozen=True)
class CountedMask:
    """A boolean mask of the answer's shape ``(H, W)`` with the answer's number of ``True`` pixels: the answer is
    ``((H, W), count)`` (for random masks, whose pixels no oracle can predict)."""

    def __call__(self, got, expected, fields) -> str | None:
        shape, count = expected
        mask = np.asarray(got)
        if mask.shape != tuple(shape) or mask.dtype != bool:
            return f"returned shape {mask.shape}, dtype {mask.dtype}: give a boolean {tuple(shape)} mask"
        if int(mask.sum()) != count:
            return f"selects {int(mask.sum())} pixels instead of {count}"
        return None


@dataclass(frozen=True)
class Array:
    """An array (a ``torch.Tensor`` if ``tensor``) of the answer's shape, within ``atol + rtol * |answer|``
    element by element; the complaint names the first wrong element."""

    rtol: float = 0.0
    atol: float = 1e-6
    tensor: bool = False

    def __call__(self, got, expected, fields) -> str | None:
        expected = np.asarray(expected, dtype=np.float64)
        if self.tensor and not _is_tensor(got):
            return f"returned {short(getattr(got, 'shape', got))}: give a tensor of shape {expected.shape}"
        value = np.asarray(got.detach().cpu() if _is_tensor(got) else got, dtype=np.float64)
        if value.shape != expected.shape:
            return f"returned shape {value.shape}" + (f": give a tensor of shape {expected.shape}" if self.tensor
                                                       else "")
        wrong = np.argwhere(~(np.abs(value - expected) <= self.atol + self.rtol * np.abs(expected)))
        if wrong.size:
            at = tuple(int(i) for i in wrong[0])
            return (f"returned wrong values: at index {at} it holds {value[at]:.4f} where {expected[at]:.4f} "
                    f"was expected")
        return None


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


@dataclass(frozen=True)
class Pair:
    """A pair (tuple or list of two) whose items pass ``first`` and ``second`` against the answer's two items."""

    first: Callable
    second: Callable
    what: str = "a pair"

    def __call__(self, got, expected, fields) -> str | None:
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            return f"should return {self.what}, it returned {short(got)}"
        return self.first(got[0], expected[0], fields) or self.second(got[1], expected[1], fields)


@dataclass(frozen=True)
class UniformDraws:
    """Random masks (draws, H, W), one per seed, that differ across seeds (at least ``distinct`` of the draws)
    and remove each pixel about as often as the answer's (H, W) frequencies say (within ``atol``)."""

    distinct: float = 0.75
    atol: float = 0.12

    def __call__(self, got, expected, fields) -> str | None:
        draws = len(got)
        if len({m.tobytes() for m in got}) < self.distinct * draws:
            return f"gives the same few masks for {draws} different seeds"
        freq = got.mean(axis=0)
        if np.abs(freq - expected).max() > self.atol:
            h, w = expected.shape
            return (f"does not pick pixels uniformly: over {draws} seeds some pixels of a {h}x{w} image were "
                    f"removed {freq.max():.2f} of the time and others {freq.min():.2f} (expected about "
                    f"{float(expected.mean()):.2f} each)")
        return None


@dataclass(frozen=True)
class Raises:
    """The oracle's answer where the student's function must raise ``error``; ``why`` says why (a template)."""

    error: type
    why: str = ""


# --- watching the student's call ----------------------------------------------------------------------------------
class ModelCalls:
    """Counts the convolution calls of ``model`` while the student's function runs (a context manager): a
    function that should read the engine's sample cache must not run the model."""

    def __init__(self, model):
        self.model, self.calls, self._hooks = model, 0, []

    def __enter__(self):
        import torch

        self.calls = 0
        self._hooks = [m.register_forward_pre_hook(self._count) for m in self.model.modules()
                       if isinstance(m, torch.nn.Conv2d)]
        return self

    def _count(self, *_):
        self.calls += 1

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        return False

    def complaint(self) -> str | None:
        if not self.calls:
            return None
        return (f"ran the model ({self.calls} convolution calls), although the engine's cache holds the samples: "
                f"certify with the engine, do not resample")


# --- the declarations ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One call of the student's function: its arguments, and optionally its name in a message and the
    watches entered around the call (each with ``complaint() -> str | None``)."""

    args: tuple
    about: str = ""
    watch: tuple = ()


def call_once(fn, *args):
    """The default probe: the student's function called once with the case's arguments."""
    return fn(*args)


@dataclass(frozen=True)
class Cases:
    """Inputs, their independently computed answers and the comparison rule (see the module docstring).

    ``probe(fn, *args)`` says how the student's function ``fn`` is exercised on a case (default: one call; a
    probe may call it several times, e.g. once per seed, and return what the rule compares). ``unchanged``:
    the positions of arguments the student's function must not modify in place.
    """

    inputs: Callable[[], Iterable[tuple | Case]]
    oracle: Callable[..., Any]
    compare: Callable
    probe: Callable = call_once
    unchanged: tuple = ()

    def names(self) -> list[str]:
        """The arguments' names: the oracle's parameters (the student function's)."""
        return list(inspect.signature(self.oracle).parameters)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter: what the book and the notebooks show about it, and its check."""

    label: str  #: sphinx-exercise label, nbgrader grade_id prefix, and the first argument of ``check``
    title: str
    answer: str  #: the name of the function the student writes
    points: int
    minutes: int  #: the estimated time stated in the exercise
    hint: str
    cases: tuple = field(default=())  #: the :class:`Cases` of its check, run in order
    secrets: tuple = ()  #: answer values that must not appear in the student notebook's exercise section
