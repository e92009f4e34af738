"""The course edition: every exercise check fails the stub and a wrong answer and passes the solution; the
student notebooks hold no solution and run from top to bottom with polite checks; nbgrader accepts the
instructor notebooks and grades them."""
import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch

from certattr.course.assignments import (BEGIN, END, EXERCISES, STUB, Score, build_assignments, chapter_exercises, check,
                                  clear_solutions, exercise)
from certattr.book.build import CHAPTERS, ROOT, chapter_parameters
from certattr.engine.validation import CertattrError

LABELS = [ex.label for exs in EXERCISES.values() for ex in exs]


def _chapter(chapter):
    return jupytext.read(ROOT / "notebooks" / f"{chapter}.md")


def _namespace(nb):
    """The chapter's imports (what a solution may use), without running the chapter."""
    from certattr.course.assignments import _exercises_start

    ns, lines = {}, []
    for cell in nb.cells[:_exercises_start(nb)]:
        if cell.cell_type == "code":
            lines += [ast.unparse(n) for n in ast.parse(cell.source).body
                      if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec("\n".join(lines), ns)
    return ns


def _functions(label):
    """(stub, solution) functions of one exercise, defined from the chapter's own cells."""
    ex = exercise(label)
    nb = _chapter(ex.chapter)
    cells = next(c for c in chapter_exercises(nb, ex.chapter) if c.exercise.label == label)
    stub_ns, sol_ns = _namespace(nb), _namespace(nb)
    exec(nb.cells[cells.stub].source, stub_ns)
    exec(nb.cells[cells.solution].source, sol_ns)
    return stub_ns[ex.answer], sol_ns[ex.answer]


# --- deliberately wrong answers, one per exercise (each a plausible mistake) ---------------------------------------
def _w_method_tau(samples, k, sigma, tau, n0, alpha):
    import certattr
    c = certattr.certify_maps(samples, [k], sigma=sigma, n0=n0, tau=0.75, alpha=alpha)  # ignores tau
    return certattr.certified_radius(sigma, tau), c.fractions()[float(k)]["abstain"]


def _w_method_count(n_test, tau, alpha, n_pixels):
    from scipy.stats import binom
    tails = binom.sf(np.arange(n_test + 1) - 1, n_test, tau)
    ok = np.flatnonzero(tails <= alpha)  # forgets the Bonferroni correction
    return int(ok[0]) if ok.size else n_test + 1


def _w_recertify_resample(engine, image, image_id, target, k, tau, alpha):
    from certattr.engine.smoothing import SmoothedAttribution
    fresh = SmoothedAttribution(engine.model, engine.method, engine.layer, engine.sigma, n=engine.n, n0=engine.n0,
                                seed=engine.seed, chunk_size=engine.chunk_size, cache=None, progress=False)
    return fresh.certify(image, image_id, target, ks=[k], tau=tau, alpha=alpha).fractions()[float(k)]["abstain"]


def _w_recertify_tau(engine, image, image_id, target, k, tau, alpha):
    return engine.certify(image, image_id, target, ks=[k], alpha=alpha).fractions()[float(k)]["abstain"]


def _w_gridpg(labels, cell):
    labels = np.asarray(labels)
    counted = labels != 0  # counts abstained pixels as certified
    h, w = labels.shape[0] // 2, labels.shape[1] // 2
    r, c = divmod(cell, 2)
    return float(counted[r * h:(r + 1) * h, c * w:(c + 1) * w].sum() / max(counted.sum(), 1))


def _w_strict(attribution, k):
    a = np.abs(np.asarray(attribution, dtype=float))
    return a >= np.percentile(a, 100 - k)  # '>=' selects ties at the threshold


def _w_harmonic(points):
    geo = np.sqrt(points.robustness * points.certified_gridpg)  # the geometric mean, not the harmonic one
    means = points.assign(s=geo).groupby(["layer", "method_title"]).s.mean()
    return {layer: means[layer].idxmax() for layer in means.index.get_level_values(0).unique()}


def _w_pearson(x, y):
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))  # Spearman's rank correlation
    return float(np.corrcoef(rx, ry)[0, 1]) if len(x) > 1 else float("nan")


def _w_fill(image, mask, fill):
    image[:, torch.as_tensor(mask)] = torch.as_tensor(fill, dtype=image.dtype).reshape(-1, 1)  # modifies the input
    return image


def _w_random(height, width, n_removed, seed):
    mask = np.zeros(height * width, dtype=bool)
    mask[:n_removed] = True  # the first pixels, not random ones
    return mask.reshape(height, width)


def _w_softmax(logits, index):
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.exp(z[index]) / np.exp(z).sum())  # overflows for large logits


WRONG = {
    "method-tau": _w_method_tau,
    "method-count": _w_method_count,
    "robustness-pooled": lambda rows: (float(rows.abstain.mean()), float(rows.abstain.mean())),
    "robustness-radii": lambda radius, tau: radius * __import__("scipy.stats").stats.norm.ppf(tau),
    "robustness-recertify": _w_recertify_resample,
    "localization-gridpg": _w_gridpg,
    "localization-empty": lambda rows, drop_empty: float(rows.certified_gridpg.mean()),  # ignores drop_empty
    "localization-hardest": lambda rows, sigma, k: int(rows[(rows.sigma == sigma) & (rows.k == k)]
                                                         .groupby("target_cell").certified_gridpg.mean().idxmax()),
    "tradeoff-constant": _w_strict,
    "tradeoff-harmonic": _w_harmonic,
    "tradeoff-correlation": _w_pearson,
    "faithfulness-fill": _w_fill,
    "faithfulness-auc": lambda p: float(np.sum((np.asarray(p)[1:] + np.asarray(p)[:-1]) / 2)),  # steps not scaled
    "faithfulness-random": _w_random,
    "vit-patches": lambda size, patch: (size // patch, (size // patch) ** 2),  # swapped
    "vit-softmax": _w_softmax,
    "vit-tokens": lambda patches, reduce: patches.sum(dim=0).abs() if reduce == "l1" else patches.sum(dim=0),
    "gallery-ss": lambda ss, labels: float(np.asarray(ss)[np.asarray(labels) != -1].min()),  # counts certified '0'
    "gallery-union": lambda alpha, m: (1 - alpha) ** m,  # assumes independence
    "certificates-topk-n": lambda d, tau, eta: math.ceil(math.log(d / (1 - eta)) / (2 * (1 - tau) ** 2)),  # d, not 2d
    "certificates-tangent": lambda h, a: h / math.sqrt(h * h + a * a),  # the printed Theorem 1
    "certificates-mc": lambda alpha, ratio: int(((1 + math.sqrt(2 * math.log(1 / alpha))) / ratio) ** 2),  # floor
}


def test_every_chapter_has_registered_numbered_labelled_exercises():
    assert set(EXERCISES) == set(CHAPTERS) and set(WRONG) == set(LABELS)
    assert len(LABELS) == len(set(LABELS))
    for chapter in CHAPTERS:
        text = (ROOT / "notebooks" / f"{chapter}.md").read_text()
        found = chapter_exercises(_chapter(chapter), chapter)  # validates the layout against the registry
        first = sum(len(EXERCISES[c]) for c in CHAPTERS[:CHAPTERS.index(chapter)]) + 1  # one sequence in the book
        assert [f.number for f in found] == list(range(first, first + len(found))) and len(found) >= 2
        assert f"assignments/{chapter}-student.ipynb" in text  # the download link
        assert "hide-cell" not in text[text.index("\n## Exercises\n"):]  # no old hidden solutions


@pytest.mark.parametrize("label", LABELS)
def test_check_fails_the_stub_and_a_wrong_answer_and_passes_the_solution(label, capsys):
    ex = exercise(label)
    stub, solution = _functions(label)
    score = check(label, stub)
    assert isinstance(score, Score) and float(score) == 0 and not score.passed
    assert "still the stub" in capsys.readouterr().out
    score = check(label, WRONG[label])
    out = capsys.readouterr().out
    assert float(score) == 0 and out.startswith("not yet:") and "Hint:" in out, out
    score = check(label, solution)
    assert float(score) == ex.points and score.passed and capsys.readouterr().out.startswith("correct")
    assert repr(score) == repr(float(ex.points))  # nbgrader reads the text/plain output as the points


def test_checks_fail_politely_on_anything():
    def broken(*args, **kwargs):
        raise ValueError("oops")

    for label in ("method-count", "robustness-recertify", "vit-tokens"):
        for answer in (Ellipsis, 42, None, broken, lambda: 0):
            assert float(check(label, answer)) == 0
    assert float(check("robustness-recertify", _w_recertify_tau)) == 0
    with pytest.raises(CertattrError, match="unknown"):
        check("no-such-exercise", broken)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    build_assignments(out)
    return out


def _read(path):
    import nbformat

    return nbformat.read(path, as_version=4)


def _exercise_section(nb) -> str:
    """The text from the '## Exercises' heading to the end (the chapter's findings may share its first cell)."""
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in c.source)
    first = nb.cells[start].source
    return "\n".join([first[first.index("## Exercises"):]] + [c.source for c in nb.cells[start + 1:]])


def test_student_notebooks_hold_no_solution_and_instructor_notebooks_clear_to_them(built):
    for chapter in CHAPTERS:
        student, instructor = _read(built / f"{chapter}-student.ipynb"), _read(built / f"{chapter}-instructor.ipynb")
        everything = "\n".join(c.source for c in student.cells)
        section = _exercise_section(student)
        assert BEGIN.split()[-2] not in everything and "{solution-start}" not in everything, chapter
        assert "{download}" not in section and "{ref}" not in section
        if chapter == "gallery":  # a cross-reference to another chapter's exercise, written out
            assert "(Exercise 2 (How many agreeing samples?))" in section
        assert len(student.cells) == len(instructor.cells)
        answers = 0
        for s, i in zip(student.cells, instructor.cells):
            grader = s.metadata.get("nbgrader")
            assert grader == i.metadata.get("nbgrader") and s.cell_type == i.cell_type
            if grader and grader["solution"]:
                answers += 1
                assert BEGIN in i.source and END in i.source and clear_solutions(i.source) == s.source
                assert s.source.rstrip().endswith("\n".join(" " * 4 + line for line in STUB))
                body = i.source[i.source.index(BEGIN) + len(BEGIN):i.source.index(END)]
                for line in (b.strip() for b in body.split("\n")):  # no line of a solution in the student notebook
                    if len(line) > 3 and line not in ("return out", "return n"):
                        assert line not in section, (chapter, line)
                        if len(line) >= 25 and not line.startswith(("import ", "from ")):  # nor above the exercises
                            assert line not in everything, (chapter, line)
            else:
                assert s.source == i.source
            if grader and grader["grade"]:
                ex = exercise(grader["grade_id"][:-len("-check")])
                assert s.source == f'check("{ex.label}", {ex.answer})' and grader["points"] == ex.points
        assert answers == len(EXERCISES[chapter])
        for ex in EXERCISES[chapter]:
            for secret in ex.secrets:
                assert not re.search(rf"(?<![\d.]){re.escape(secret)}(?!\d)", section), (chapter, secret)
        # the parameters cell holds the smoke settings, a relative sample cache and results folder
        params = next(c for c in student.cells if "parameters" in c.metadata.get("tags", []))
        ns = {}
        exec(params.source, ns)
        expected = {**chapter_parameters("smoke", chapter), "cache_dir": "certattr-cache", "results_dir": "results"}
        assert {k: ns[k] for k in expected} == expected
    course = built / "nbgrader"
    assert (course / "nbgrader_config.py").exists()
    for chapter in CHAPTERS:
        assert _read(course / "source" / chapter / f"{chapter}-student.ipynb") == _read(built / f"{chapter}-instructor.ipynb")


def test_the_cli_writes_the_notebooks(tmp_path):
    run = subprocess.run([sys.executable, "-m", "certattr.cli", "assignments", "--out", str(tmp_path), "--only",
                          "gallery", "vit", "--no-course"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery-instructor.ipynb", "gallery-student.ipynb",
                                                          "vit-instructor.ipynb", "vit-student.ipynb"]


def test_a_broken_exercise_layout_is_reported(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    text = (ROOT / "notebooks" / "gallery.md").read_text()
    (tmp_path / "notebooks" / "gallery.md").write_text(text.replace(":class: dropdown\n", "", 1))
    with pytest.raises(CertattrError, match="dropdown"):
        build_assignments(tmp_path / "out", chapters=["gallery"], root=tmp_path)
    (tmp_path / "notebooks" / "gallery.md").write_text(text.replace('    """The smallest SS among', '    """Smallest SS', 1))
    with pytest.raises(CertattrError, match="must start with the stub's lines"):
        build_assignments(tmp_path / "out", chapters=["gallery"], root=tmp_path)


# --- nbgrader itself -------------------------------------------------------------------------------------------------
def _nbgrader_env():
    pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[grading]' (make test does)")
    # nbgrader runs its database migrations with the `alembic` script of its own environment
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _nbgrader(args, course, env, timeout=600):
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_nbgrader_generates_the_student_notebooks_from_the_instructor_notebooks(built, tmp_path):
    """nbgrader's own generate_assignment (ClearSolutions, LockCells, checksums, the gradebook) accepts every
    instructor notebook, and its release is our student notebook, cell for cell."""
    env = _nbgrader_env()
    course = tmp_path / "course"
    shutil.copytree(built / "nbgrader", course)
    for chapter in CHAPTERS:
        _nbgrader(["generate_assignment", chapter], course, env)
        release = _read(course / "release" / chapter / f"{chapter}-student.ipynb")
        student = _read(built / f"{chapter}-student.ipynb")
        assert [c.source for c in release.cells] == [c.source for c in student.cells], chapter
        for r, s in zip(release.cells, student.cells):
            meta = json.loads(json.dumps(r.metadata))
            if "nbgrader" in meta:
                meta["nbgrader"] = {k: v for k, v in meta["nbgrader"].items() if k not in ("checksum", "cell_type")}
            assert meta == s.metadata, (chapter, r.source[:60])


# --- running the student notebooks -------------------------------------------------------------------------------
#: executed from top to bottom with the smoke parameters here; the others are checked statically above (and their
#: chapters run at the smoke settings in tests/test_book.py), because each run costs one to several minutes
EXECUTED = ["method", "gallery", "tradeoff"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("samples")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", EXECUTED)
def test_a_student_notebook_runs_top_to_bottom_with_polite_checks(chapter, built, cache, tmp_path):
    import papermill

    params = chapter_parameters("smoke", chapter, {"cache_dir": str(cache), "results_dir": str(tmp_path / "results")})
    out = tmp_path / f"{chapter}-student.out.ipynb"
    papermill.execute_notebook(str(built / f"{chapter}-student.ipynb"), str(out), parameters=params,
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    nb = _read(out)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(checks) == len(EXERCISES[chapter])
    for cell in checks:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert text.startswith("not yet:") and "still the stub" in text, text
        result = next(o for o in cell.outputs if o.output_type == "execute_result")
        assert result.data["text/plain"] == "0.0"
    try:
        from nbgrader.utils import determine_grade
    except ImportError:
        return
    assert all(determine_grade(cell)[0] == 0 for cell in checks)


@pytest.mark.slow
def test_nbgrader_autogrades_a_blank_and_a_solved_submission(built, cache, tmp_path):
    """The full nbgrader round trip on one chapter: generate the release, collect two submissions (the student
    notebook untouched, and with the solutions filled in), autograde them: 0 points and every point."""
    env = _nbgrader_env()
    chapter = "gallery"
    course = tmp_path / "course"
    course.mkdir()
    build_assignments(course / "built", chapters=[chapter], cache_dir=str(cache))
    shutil.copytree(course / "built" / "nbgrader", course, dirs_exist_ok=True)
    _nbgrader(["generate_assignment", chapter], course, env)
    name = f"{chapter}-student.ipynb"
    for student, source in [("blank", course / "release" / chapter / name), ("solved", course / "built" / f"{chapter}-instructor.ipynb")]:
        target = course / "submitted" / student / chapter
        target.mkdir(parents=True)
        shutil.copy(source, target / name)
    _nbgrader(["autograde", chapter], course, env, timeout=1800)
    from nbgrader.api import Gradebook

    total = sum(ex.points for ex in EXERCISES[chapter])
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert gb.find_submission(chapter, "blank").score == 0
        assert gb.find_submission(chapter, "solved").score == total
        assert gb.find_submission(chapter, "solved").max_score == total
