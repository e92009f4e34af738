"""What a chapter is, declared once: :class:`Chapter` (its notebook stem, title, parameters per profile, the sampling
plan it reads, the claims it checks, its exercises and student time) and the registry of the book's chapters in
book order. The book build, the sweep planner, the course edition and the findings table all read the registry;
no other list of chapter names exists.

A chapter's parameters are :class:`Param` values: the ``cpu`` profile's value is the parameters cell's default (so
a direct papermill run of the notebook costs what ``certattr book --profile cpu --only CHAPTER`` costs), and each
other profile's value is given where it differs. The parameters cell of ``notebooks/<stem>.md`` is written from
them (:meth:`Chapter.parameters_cell`, kept in step by ``certattr book``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from ...engine.validation import CertattrError

__all__ = [
    "PROFILE_NAMES",
    "Param",
    "Chapter",
    "register",
    "registered",
    "chapters",
    "chapter_names",
    "get",
    "toc_yaml",
]

#: the profiles every chapter declares: ``smoke`` (CI, minutes), ``cpu`` (the offline default), ``paper`` (a GPU)
PROFILE_NAMES = ("smoke", "cpu", "paper")


@dataclass(frozen=True)
class Param:
    """One parameter of a chapter: ``value`` is the ``cpu`` profile's (the parameters cell's default), ``profiles``
    the other profiles' values where they differ; ``note`` is the comment the parameters cell shows beside it and
    ``heading`` a comment line above it."""

    name: str
    value: object
    note: str = ""
    profiles: Mapping = field(default_factory=dict)
    heading: str = ""

    def at(self, profile: str) -> object:
        return self.profiles[profile] if profile in self.profiles else self.value

    def line(self) -> str:
        text = f"{self.name} = {literal(self.value)}"
        return text + (f"  # {self.note}" if self.note else "")


def literal(value) -> str:
    """``value`` as Python source on one line, strings in double quotes (the notebooks' style)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book, everything about it in one place.

    ``stem``: ``notebooks/<stem>.md`` runs into ``book/chapters/<stem>.ipynb``; ``title``: its heading;
    ``parameters``: its :class:`Param` values; ``plan``: ``plan(builder)`` adds the sample-cache entries the chapter
    reads to a :class:`certattr.book.plans.PlanBuilder` (None: it samples nothing through the cache), the same
    function the notebook calls before it certifies; ``findings``: the claims it checks
    (:class:`certattr.evaluation.findings.Finding` values, in the order of the findings table); ``exercises``: its :class:`certattr.course.cases.Exercise` values in order;
    ``student_minutes``: the measured time of its student notebook on the smoke settings."""

    stem: str
    title: str
    parameters: tuple
    plan: Callable | None = None
    findings: tuple = ()
    exercises: tuple = ()
    student_minutes: float | None = None

    def __post_init__(self):
        names = [p.name for p in self.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CertattrError(f"chapter {self.stem!r} declares the parameters {twice} twice")
        for p in self.parameters:
            unknown = set(p.profiles) - set(PROFILE_NAMES)
            if unknown:
                raise CertattrError(
                    f"chapter {self.stem!r}, parameter {p.name!r}: unknown profiles {sorted(unknown)}; "
                    f"the profiles are {', '.join(PROFILE_NAMES)}"
                )

    def params(self, profile: str) -> dict:
        """{name: value} of every parameter under ``profile``."""
        if profile not in PROFILE_NAMES:
            raise CertattrError(f"profile={profile!r} is unknown: the profiles are {', '.join(PROFILE_NAMES)}")
        return {p.name: p.at(profile) for p in self.parameters}

    def parameters_cell(self) -> str:
        """The source of the notebook's ``parameters`` cell: one line per parameter at the cpu profile's value."""
        lines = []
        for p in self.parameters:
            if p.heading:
                lines.append(f"# {p.heading}")
            lines.append(p.line())
        return "\n".join(lines) + "\n"


_REGISTRY: dict[str, Chapter] = {}


def register(chapter: Chapter) -> Chapter:
    """Add ``chapter`` to the book (after the chapters registered before it)."""
    if chapter.stem in _REGISTRY and _REGISTRY[chapter.stem] is not chapter:
        raise CertattrError(f"a chapter {chapter.stem!r} is registered already")
    _REGISTRY[chapter.stem] = chapter
    return chapter


@contextlib.contextmanager
def registered(chapter: Chapter) -> Iterator[Chapter]:
    """``chapter`` in the book for the duration of the block (for tests and for a user's own chapter)."""
    register(chapter)
    try:
        yield chapter
    finally:
        _REGISTRY.pop(chapter.stem, None)


def chapters() -> list[Chapter]:
    """The book's chapters in book order."""
    return list(_REGISTRY.values())


def chapter_names() -> list[str]:
    return list(_REGISTRY)


def get(stem: str) -> Chapter:
    """The chapter ``stem``; a one-line :class:`CertattrError` naming the chapters for an unknown stem."""
    try:
        return _REGISTRY[stem]
    except KeyError:
        raise CertattrError(f"chapter={stem!r} is unknown: the chapters are {', '.join(_REGISTRY)}") from None


#: the book's pages around the chapters (``_toc.yml``): parts before and after them
_BEFORE = (("Background", ("book/mathematics", "book/glossary")),)
_AFTER = (("Reference", ("book/bibliography", "book/instructors", "book/chapters/execution")),)


def toc_yaml(stems: Sequence[str] | None = None) -> str:
    """``_toc.yml`` with the registered chapters (or ``stems``) as the part "Chapters (executed with papermill)"."""
    stems = chapter_names() if stems is None else list(stems)
    parts = [*_BEFORE, ("Chapters (executed with papermill)", tuple(f"book/chapters/{s}" for s in stems)), *_AFTER]
    lines = ["format: jb-book", "root: book/intro", "parts:"]
    for caption, files in parts:
        lines += [f"  - caption: {caption}", "    chapters:"] + [f"      - file: {f}" for f in files]
    return "\n".join(lines) + "\n"
