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
    "Domain",
    "DOMAINS",
    "register_domain",
    "domain",
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
class Domain:
    """A data domain the book's chapters run on: ``name`` (its key, and the subfolder of the results folder where
    its chapters write, except for the paper's own domain), ``title`` (a column heading, e.g. "ImageNet photos"),
    ``about`` (the sentence that opens each of its pages: what the data and the model are, and that it is not the
    paper's setting), ``prepare``: ``prepare(root, profile) -> {parameter: value}``, run before its chapters under
    a repository ``root`` and a profile (writes what its chapters read, e.g. a labelled folder, and returns where; cheap when it
    is there already), and ``note``: ``note() -> str`` facts measured when the book is built (e.g. a model's
    test accuracy), appended to ``about``."""

    name: str
    title: str
    about: str = ""
    prepare: Callable | None = None
    note: Callable | None = None

    def opening(self) -> str:
        return " ".join(t for t in (self.about, self.note() if self.note else "") if t)


#: the domain of the paper: ImageNet photos (the bundled photos offline, an ImageNet folder on the paper profile)
PAPER_DOMAIN = Domain("imagenet", "ImageNet photos")
DOMAINS: dict[str, Domain] = {PAPER_DOMAIN.name: PAPER_DOMAIN}


def register_domain(d: Domain) -> Domain:
    """Add the domain ``d`` (its chapters are declared with ``Chapter.on_domain``)."""
    if d.name in DOMAINS and DOMAINS[d.name] is not d:
        raise CertattrError(f"a domain {d.name!r} is registered already")
    DOMAINS[d.name] = d
    return d


def domain(name: str) -> Domain:
    try:
        return DOMAINS[name]
    except KeyError:
        raise CertattrError(f"domain={name!r} is unknown: the domains are {', '.join(DOMAINS)}") from None


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book, everything about it in one place.

    ``stem``: ``notebooks/<stem>.md`` runs into ``book/chapters/<stem>.ipynb``; ``title``: its heading;
    ``parameters``: its :class:`Param` values; ``plan``: ``plan(builder)`` adds the sample-cache entries the chapter
    reads to a :class:`certattr.book.plans.PlanBuilder` (None: it samples nothing through the cache), the same
    function the notebook calls before it certifies; ``findings``: the claims it checks
    (:class:`certattr.evaluation.findings.Finding` values, in the order of the findings table); ``exercises``: its :class:`certattr.course.cases.Exercise` values in order;
    ``student_minutes``: the measured time of its student notebook on the smoke settings; ``notebook``: the
    notebook it runs when that is another chapter's (a chapter on a second ``domain``, see :meth:`on_domain`);
    ``domain``: the name of its :class:`Domain`."""

    stem: str
    title: str
    parameters: tuple
    plan: Callable | None = None
    findings: tuple = ()
    exercises: tuple = ()
    student_minutes: float | None = None
    notebook: str = ""
    domain: str = PAPER_DOMAIN.name

    @property
    def source(self) -> str:
        """The stem of the notebook it runs (``notebooks/<source>.md``)."""
        return self.notebook or self.stem

    def on_domain(self, d: Domain, values: Mapping, *, stem: str | None = None, title: str | None = None) -> "Chapter":
        """The same chapter (notebook, plan, claims) on the domain ``d``: ``values`` = {parameter: value, or
        {profile: value}} replace its parameters' values (a plain value for every profile); no exercises (the
        course uses the chapter on the paper's domain). ``stem`` defaults to ``<stem>-<domain>``."""
        unknown = sorted(set(values) - {p.name for p in self.parameters})
        if unknown:
            raise CertattrError(f"chapter {self.stem!r} has no parameters {unknown} to set on the domain {d.name!r}")
        params = []
        for p in self.parameters:
            if p.name in values:
                v = values[p.name]
                given = v if isinstance(v, Mapping) and set(v) <= set(PROFILE_NAMES) and v else None
                p = Param(p.name, given.get("cpu", p.value) if given else v, p.note,
                          {k: x for k, x in given.items() if k != "cpu"} if given else {}, p.heading)
            params.append(p)
        return Chapter(stem or f"{self.stem}-{d.name}", title or f"{self.title} ({d.title})", tuple(params),
                       self.plan, self.findings, (), None, self.source, d.name)

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


def chapters(domain: str | None = None) -> list[Chapter]:
    """The book's chapters in book order (``domain``: only those on that domain, e.g. the paper's)."""
    return [c for c in _REGISTRY.values() if domain is None or c.domain == domain]


def chapter_names(domain: str | None = None) -> list[str]:
    """The stems of :func:`chapters`."""
    return [c.stem for c in chapters(domain)]


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
    """``_toc.yml`` with the registered chapters (or ``stems``) as the part "Chapters (executed with papermill)",
    and the chapters on each further domain as a part of their own."""
    stems = chapter_names() if stems is None else list(stems)
    of = {s: (_REGISTRY[s].domain if s in _REGISTRY else PAPER_DOMAIN.name) for s in stems}
    parts = [*_BEFORE, ("Chapters (executed with papermill)",
                        tuple(f"book/chapters/{s}" for s in stems if of[s] == PAPER_DOMAIN.name))]
    for name, d in DOMAINS.items():
        own = tuple(f"book/chapters/{s}" for s in stems if of[s] == name)
        if name != PAPER_DOMAIN.name and own:
            parts.append((f"A second domain ({d.title})", own))
    parts += list(_AFTER)
    lines = ["format: jb-book", "root: book/intro", "parts:"]
    for caption, files in parts:
        lines += [f"  - caption: {caption}", "    chapters:"] + [f"      - file: {f}" for f in files]
    return "\n".join(lines) + "\n"
