"""The course as the book lays it out: its chapters in book order, each with its exercises and the measured time of
its student notebook. The book builds it from the chapters' declarations (:func:`certattr.book.chapters.course`)
and passes it to the functions that number exercises or write the notebooks; the course keeps no chapter list."""
from __future__ import annotations

from dataclasses import dataclass

from ..engine.validation import CertattrError
from .cases import Exercise

__all__ = ["CourseChapter", "Course"]


@dataclass(frozen=True)
class CourseChapter:
    """One chapter of the course: its notebook ``stem``, its :class:`Exercise` values in order and ``minutes``, the
    measured time of its student notebook on the smoke settings (None: not measured)."""

    stem: str
    exercises: tuple
    minutes: float | None = None


@dataclass(frozen=True)
class Course:
    """The chapters that have exercises, in book order; exercises are numbered in one sequence over them (as
    sphinx-exercise numbers them in the built book)."""

    chapters: tuple

    def stems(self) -> list[str]:
        return [c.stem for c in self.chapters]

    def chapter(self, stem: str) -> CourseChapter:
        for c in self.chapters:
            if c.stem == stem:
                return c
        raise CertattrError(f"chapter {stem!r} has no exercises; the chapters with exercises are "
                            f"{', '.join(self.stems())}")

    def exercises(self, stem: str) -> tuple[Exercise, ...]:
        return tuple(self.chapter(stem).exercises)

    def number(self, label: str) -> int:
        """The exercise's number in the book, from 1."""
        n = 0
        for c in self.chapters:
            for ex in c.exercises:
                n += 1
                if ex.label == label:
                    return n
        raise CertattrError(f"exercise {label!r} is in no chapter of the course")
