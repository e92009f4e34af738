"""The book's chapters, each declared once (:mod:`.declaration`), registered in book order by the imports below, and
the two functions that turn a chapter's declaration into its sampling plan: :func:`chapter_plan` (what the
chapter's notebook certifies, and what a sweep of it computes) and :func:`book_plan` (every chapter, merged).

    from certattr.book import chapters
    chapters.get("robustness").params("cpu")      # its parameters under a profile
    [c.stem for c in chapters.chapters()]          # book order
"""

from __future__ import annotations

from ...course.catalogue import Course, CourseChapter
from ..plans import ModelPool, Plan, PlanBuilder, merge
from .declaration import PROFILE_NAMES, Chapter, Param, chapter_names, chapters, get, register, registered, toc_yaml

# the book's order: each module registers its chapter when imported
from . import (
    method,
    robustness,
    localization,
    faithfulness,
    tradeoff,
    vit,
    gallery,
    certificates,
    levine,
    digits,
)  # noqa: E402,F401,I001

__all__ = [
    "PROFILE_NAMES",
    "Chapter",
    "Param",
    "register",
    "registered",
    "chapters",
    "chapter_names",
    "get",
    "toc_yaml",
    "chapter_plan",
    "plan_chapters",
    "course",
]


def course() -> Course:
    """The course edition's layout: the chapters with exercises, in book order, with their student times."""
    return Course(
        tuple(CourseChapter(c.stem, tuple(c.exercises), c.student_minutes) for c in chapters() if c.exercises)
    )


def chapter_plan(stem: str, params: dict, *, pool: ModelPool | None = None, placeholders: bool = False) -> Plan:
    """The sampling work of chapter ``stem`` run with ``params`` (its declared parameters under a profile, with the
    run's overrides): the plan its notebook certifies and a sweep computes.

    ``pool`` shares loaded models between chapters; ``placeholders`` lets a dry run of the paper profile count
    its work without the ImageNet folder (then nothing may be computed from the plan)."""
    chapter = get(stem)
    profile = params.get("profile", "cpu")
    # a direct papermill run may name its own profile: its parameters are all given, the defaults are the cpu ones
    params = {**chapter.params(profile if profile in PROFILE_NAMES else "cpu"), **params}
    builder = PlanBuilder(stem, params, pool or ModelPool(params.get("device", "cpu")), placeholders)
    if chapter.plan is not None:
        chapter.plan(builder)
    return builder.plan()


def plan_chapters(params: dict[str, dict], *, pool: ModelPool | None = None, placeholders: bool = False) -> Plan:
    """The merged plan of several chapters: ``params`` = {stem: its parameters}, in book order."""
    pool = pool or ModelPool(next(iter(params.values())).get("device", "cpu") if params else "cpu")
    return merge(chapter_plan(stem, p, pool=pool, placeholders=placeholders) for stem, p in params.items())
