"""A chapter is one declaration: a chapter declared in one place (certattr.book.chapters) is in the book's table of
contents and build, in the sweep's plan, in the course edition and in the findings table; its parameters cell is
written from it; nothing else lists the chapters."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from certattr.book import chapters as book_chapters
from certattr.book.build import (book_plan, chapter_parameters, check_overrides, parameters_cell_in_step, run_chapter,
                                 write_findings_page)
from certattr.book.chapters import Chapter, Param, chapter_names, course, get, registered, toc_yaml
from certattr.book.chapters.common import CHUNK_SIZE, DEVICE, N, PROFILE, SEED, WEIGHTS
from certattr.book.plans import RunSpec, photo_jobs_for
from certattr.course.cases import Exercise
from certattr.engine.validation import CertattrError
from certattr.evaluation.findings import Finding, Verdict, write_findings

ROOT = Path(__file__).resolve().parents[2]

TOY_CLAIM = Finding("toy_claim", "A toy claim holds", "Toys hold.", "a toy source", "It is checked on toys.")
TOY_EXERCISE = Exercise("toy-ex", "A toy exercise", "toy_answer", 1, 5, "think of a toy.")


def toy_plan(b):
    """One photo, Grad at the Final layer: the toy chapter's sampling."""
    net = b.model(b.p["model"])
    photo = b.image_set(b.p["photo"], None, 1)
    b.add(net, photo_jobs_for(net, photo), RunSpec(["grad"], ["final"], [b.p["sigma"]]))


def toy() -> Chapter:
    return Chapter("toy", "A toy chapter", (
        PROFILE, Param("model", "efficientnet_lite0"), WEIGHTS, DEVICE,
        Param("photo", "coffee", note="a bundled photo"), Param("sigma", 0.25, profiles={"smoke": 0.15}),
        Param("ks", [50]), N, Param("n0", 10), Param("tau", 0.75), Param("alpha", 0.001),
        Param("correction", "bonferroni"), SEED, CHUNK_SIZE,
        Param("cache_dir", "../../.cache/samples"), Param("results_dir", "results")),
        plan=toy_plan, findings=(TOY_CLAIM,), exercises=(TOY_EXERCISE,), student_minutes=3)


def _toy_notebook(root: Path, chapter: Chapter) -> None:
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    (root / "notebooks" / "toy.md").write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\nkernelspec:\n"
        "  display_name: Python 3\n  language: python\n  name: python3\n---\n\n# A toy chapter\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = \"stale\"\n```\n\n"
        "```{code-cell} ipython3\nprint(profile, sigma, photo)\n```\n")


def test_a_chapter_declared_in_one_place_is_in_the_toc_plan_course_and_findings_table(tmp_path):
    before = chapter_names()
    with registered(toy()) as chapter:
        # the build: its toc and its parameters (and the -p check knows them)
        assert chapter_names() == before + ["toy"] and "      - file: book/chapters/toy\n" in toc_yaml()
        params = chapter_parameters("smoke", "toy", root=tmp_path)
        assert params["sigma"] == 0.15 and chapter_parameters("cpu", "toy", root=tmp_path)["sigma"] == 0.25
        assert check_overrides({"photo": "chelsea"}, "smoke", ["toy"]) == {"photo": "chelsea"}
        with pytest.raises(CertattrError, match="no such parameter"):
            check_overrides({"nope": 1}, "smoke", ["toy"])
        # the sweep's plan: the toy's one work, merged into the book's plan
        plan = book_plan("smoke", ["toy"], {"cache_dir": str(tmp_path / "cache")}, root=tmp_path)
        assert [(w.method, w.layer, w.sigma, w.image_id) for w in plan.works] == [("grad", "final", 0.15, "coffee")]
        assert plan.works[0].chapters == ("toy",)
        # the course: the toy's exercise, numbered after every other chapter's
        c = course()
        assert c.stems()[-1] == "toy" and c.number("toy-ex") == sum(len(ch.exercises) for ch in c.chapters)
        assert c.chapter("toy").minutes == 3
        # the findings table: its claim, with a link to the toy chapter
        results = tmp_path / "book" / "chapters" / "results" / "cpu"
        write_findings([Verdict(TOY_CLAIM, "agrees", "toys measured", "because toys")], results, "toy")
        page = write_findings_page("cpu", root=tmp_path).read_text()
        assert "**A toy claim holds** ({doc}`toy <chapters/toy>`)" in page and "**agrees**: because toys" in page
        # the notebook's parameters cell is written from the declaration
        _toy_notebook(tmp_path, chapter)
        assert not parameters_cell_in_step("toy", tmp_path, write=False)
        assert not parameters_cell_in_step("toy", tmp_path) and parameters_cell_in_step("toy", tmp_path)
        cell = re.search(r":tags: \[parameters\]\n(.*?)```", (tmp_path / "notebooks" / "toy.md").read_text(), re.S)
        assert 'sigma = 0.25\n' in cell.group(1) and 'photo = "coffee"  # a bundled photo\n' in cell.group(1)
        # and the build executes it with the profile's parameters
        executed = run_chapter("toy", {**params, "photo": "chelsea"}, root=tmp_path).read_text()
        assert "smoke 0.15 chelsea" in executed
    assert chapter_names() == before and "toy" not in toc_yaml()  # gone with the block
    with pytest.raises(CertattrError, match="chapter='toy' is unknown"):
        get("toy")


def test_a_declaration_refuses_a_parameter_twice_or_an_unknown_profile():
    with pytest.raises(CertattrError, match=r"declares the parameters \['n'\] twice"):
        Chapter("bad", "Bad", (N, N))
    with pytest.raises(CertattrError, match="unknown profiles"):
        Chapter("bad", "Bad", (Param("n", 1, profiles={"gpu": 2}),))
    with pytest.raises(CertattrError, match="registered already"):
        book_chapters.register(Chapter("robustness", "Another", ()))


def test_each_parameters_cell_evaluates_to_its_cpu_profile():
    """The cell a notebook runs under plain papermill is the cpu profile: executing the rendered cell gives exactly
    the declaration's cpu values (types included)."""
    for chapter in book_chapters.chapters():
        namespace: dict = {}
        exec(chapter.parameters_cell(), namespace)  # noqa: S102 - our own rendered literals
        values = {k: v for k, v in namespace.items() if not k.startswith("__")}
        assert values == chapter.params("cpu") and list(values) == [p.name for p in chapter.parameters]
        assert all(type(values[k]) is type(v) for k, v in chapter.params("cpu").items())


def test_every_claim_of_every_family_is_checked_by_exactly_one_chapter():
    """One registry of claim families: each claim is declared by one chapter, so it has one row in the table."""
    from certattr.book.chapters import chapters
    from certattr.book.chapters.declaration import PAPER_DOMAIN
    from certattr.evaluation.findings.families import FAMILIES, claims, family_of

    declared = [f.id for ch in chapters(PAPER_DOMAIN.name) for f in ch.findings]
    every = [i for family in FAMILIES.values() for i in family]
    assert sorted(declared) == sorted(every) and len(set(declared)) == len(declared)
    assert family_of("band_superset") == "anytime" and family_of("levine_robustness_rises") == "levine"
    assert [f.id for f in claims("sigma_trend", "final_flip")] == ["sigma_trend", "final_flip"]
    with pytest.raises(CertattrError, match="claim 'nope' is unknown: the families paper, levine, anytime"):
        claims("nope")
