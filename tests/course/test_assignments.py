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

from certattr.course import (BEGIN, END, STUB, Score, build_assignments, chapter_exercises, check,
                             clear_solutions, exercise)
from certattr.book.build import ROOT, chapter_parameters
from certattr.book.chapters import chapter_names, course as book_course
from certattr.book.chapters.declaration import PAPER_DOMAIN

COURSE = book_course()
CHAPTERS = chapter_names(PAPER_DOMAIN.name)  # the course uses the chapters on the paper's domain
EXERCISES = {c: list(COURSE.exercises(c)) for c in COURSE.stems()}
CHAPTER_OF = {ex.label: c for c, exs in EXERCISES.items() for ex in exs}
from certattr.engine.validation import CertattrError

LABELS = [ex.label for exs in EXERCISES.values() for ex in exs]


def _chapter(chapter):
    return jupytext.read(ROOT / "notebooks" / f"{chapter}.md")


def _namespace(nb):
    """The chapter's imports (what a solution may use), without running the chapter."""
    from certattr.course.layout import exercises_start

    ns, lines = {}, []
    for cell in nb.cells[:exercises_start(nb)]:
        if cell.cell_type == "code":
            lines += [ast.unparse(n) for n in ast.parse(cell.source).body
                      if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec("\n".join(lines), ns)
    return ns


def _functions(label):
    """(stub, solution) functions of one exercise, defined from the chapter's own cells."""
    ex = exercise(label)
    nb = _chapter(CHAPTER_OF[label])
    cells = next(c for c in chapter_exercises(nb, CHAPTER_OF[label], COURSE) if c.exercise.label == label)
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
    # the check's engine settings (certattr/course/exercises.py), but no cache: the samples are drawn again
    fresh = SmoothedAttribution(engine.model, "grad", "input", 0.25, n=60, n0=10, seed=0, chunk_size=20, cache=None,
                                progress=False)
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
    "levine-overlap": lambda clean, perturbed, k: len(set(np.argsort(np.ravel(clean), kind="stable")[::-1][:k])
                                                      & set(np.argsort(np.ravel(perturbed), kind="stable")[::-1][:k])) / k,  # ties: higher index first
    "levine-control": lambda x, u, r: r / float(np.linalg.norm(u)),  # ignores what clipping stops
}


def test_every_chapter_has_registered_numbered_labelled_exercises():
    assert list(EXERCISES) == CHAPTERS and set(WRONG) == set(LABELS)  # declared in book order: the numbering
    assert len(LABELS) == len(set(LABELS))
    for chapter in CHAPTERS:
        text = (ROOT / "notebooks" / f"{chapter}.md").read_text()
        found = chapter_exercises(_chapter(chapter), chapter, COURSE)  # validates the layout against the declaration
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


# --- the data-driven runner cannot pass everything ------------------------------------------------------------------
def _perturb(value):
    """The value slightly wrong: a number moved by 1e-3 (relative), an integer by one, a flag flipped, the first
    element of an array or tensor changed, every item of a pair or dict perturbed, NaN made a number."""
    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, (int, np.integer)):
        return value + 1
    if isinstance(value, (float, np.floating)):
        return 0.5 if math.isnan(value) else value + 1e-3 * max(1.0, abs(value))
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (tuple, list)):
        return type(value)(_perturb(v) for v in value)
    if isinstance(value, dict):
        return {k: _perturb(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        out = value.clone()
        out.view(-1)[0] += 1e-2 * max(1.0, float(out.view(-1)[0].abs()))
        return out
    if isinstance(value, np.ndarray):
        out = value.copy()
        flat = out.reshape(-1)
        flat[0] = (not flat[0]) if out.dtype == bool else flat[0] + 1e-2 * max(1.0, abs(float(flat[0])))
        return out
    raise AssertionError(f"no perturbation for {type(value).__name__}")


@pytest.mark.parametrize("label", LABELS)
def test_every_declared_check_passes_the_solution_and_fails_it_perturbed_or_constant(label, capsys):
    """Each exercise's cases, oracle and rule, run by the one loop: the reference solution passes, and the same
    solution with its result slightly changed fails, as does a function returning a constant; each message is
    one line naming a case."""
    ex = exercise(label)
    _, solution = _functions(label)
    assert check(label, solution).passed, capsys.readouterr().out
    capsys.readouterr()
    perturbed = lambda *args: _perturb(solution(*args))  # noqa: E731
    for wrong in (perturbed, lambda *args: 0, lambda *args: None):
        score = check(label, wrong)
        out = capsys.readouterr().out
        assert float(score) == 0 and out.startswith("not yet:") and out.count("\n") == 1, out
        assert ex.answer in out and f"Hint: {ex.hint}" in out, out  # names the function (and the case), and hints


def _toy(*cases) -> "Exercise":
    from certattr.course.cases import Exercise

    return Exercise("toy-exercise", "A toy", "double", 1, 5, "multiply by two.", tuple(cases))


def test_the_runner_reports_the_first_mismatch_in_one_line_and_honours_each_rule():
    from certattr.course.cases import Case, Cases, Close, Equal, Integer, Raises
    from certattr.course.checks import first_mismatch

    def double(x):
        return 2 * x

    def oracle(x):  # the answer by repeated addition, or Raises for a negative x
        return Raises(ValueError, "x = {x} is negative") if x < 0 else x + x

    ex = _toy(Cases(lambda: [(1,), Case((2.5,), about="double of two and a half"), (-1,)], oracle, Close()))
    assert first_mismatch(ex, lambda x: (_ for _ in ()).throw(ValueError("negative")) if x < 0 else 2 * x) is None
    assert first_mismatch(ex, double) == "double(x=-1) returned -2: x = -1 is negative"  # should have raised
    assert first_mismatch(ex, lambda x: 2 * x if x == 1 else 0) == "double of two and a half returned 0"
    # the cases run in order: the first wrong one is reported, and later cases are not even built
    built = []

    def inputs():
        for x in (1, 2, 3):
            built.append(x)
            yield (x,)

    assert first_mismatch(_toy(Cases(inputs, lambda x: 2 * x, Integer())), lambda x: 2 * x + (x == 2)) \
        == "double(x=2) returned 5" and built == [1, 2]
    assert first_mismatch(_toy(Cases(inputs, lambda x: 2 * x, Integer())), lambda x: 2.0 * x) \
        == "double(x=1) returned 2.0: give an integer"
    # NaN answers match only NaN; a tolerance is relative to max(1, |answer|)
    nan_ex = _toy(Cases(lambda: [(0.0,)], lambda x: math.nan, Close(1e-6)))
    assert first_mismatch(nan_ex, lambda x: math.nan) is None and first_mismatch(nan_ex, lambda x: 0.0)
    near = _toy(Cases(lambda: [(1e6,)], lambda x: x, Close(1e-6)))
    assert first_mismatch(near, lambda x: x + 0.5) is None and first_mismatch(near, lambda x: x + 2)
    # equality after normalising, with the kind of value asked for when the result cannot be read
    keys = _toy(Cases(lambda: [(1,)], lambda x: {"a": x}, Equal(lambda d: {str(k): v for k, v in d.items()},
                                                                 what="a dict")))
    assert first_mismatch(keys, lambda x: {"a": 1}) is None
    assert first_mismatch(keys, lambda x: [1]) == "double(x=1) should return a dict, it returned [1]"


def test_the_runner_gives_fresh_inputs_and_catches_a_function_that_modifies_them():
    from certattr.course.cases import Cases, Mask
    from certattr.course.checks import first_mismatch

    source = np.array([True, False, True])
    ex = _toy(Cases(lambda: [(source,)], lambda a: ~a, Mask(), unchanged=(0,)))
    assert first_mismatch(ex, lambda a: ~a) is None

    def in_place(a):
        a[:] = ~a
        return a

    assert first_mismatch(ex, in_place) == "double(a=an array (3,)) changed the a it was given: return a modified copy"
    assert source.tolist() == [True, False, True]  # the oracle's input was never the student's
    assert first_mismatch(ex, lambda a: a) == "double(a=an array (3,)) selects 2 pixel(s), and not the right ones"


def test_the_course_imports_nothing_above_it_and_the_oracles_no_certattr_code():
    """The course (layer 5) imports from the engine, the models and itself, never from the book, the sweeps, the
    command line or the certattr facade, at any depth; the oracles compute with no certattr code."""
    import certattr.course

    folder = Path(certattr.course.__file__).parent
    seen = {}
    for path in sorted(folder.glob("*.py")):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ("certattr.course." if node.level == 1 else "certattr." if node.level == 2 else "") \
                    + (node.module or "")
                targets |= {base.rstrip(".")} if node.module else {f"{base}{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        seen[path.stem] = {t for t in targets if t == "certattr" or t.startswith("certattr.")}
    allowed = ("certattr.engine", "certattr.models", "certattr.course")
    for module, targets in seen.items():
        assert all(t.startswith(allowed) for t in targets), (module, targets)
    assert seen["oracles"] == {"certattr.course.cases"}
    assert "certattr.engine.smoothing" in seen["exercises"] and "certattr.engine.validation" in seen["layout"]


def _smoke(chapters, root=ROOT) -> dict:
    """{chapter: its smoke parameters}: what the book and the command line pass to build_assignments."""
    return {chapter: chapter_parameters("smoke", chapter, root=root) for chapter in chapters}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    build_assignments(out, chapters=_smoke(CHAPTERS), root=ROOT, course=COURSE)
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


def test_the_cli_writes_the_notebooks_build_assignments_writes(tmp_path, built):
    """`certattr assignments --only gallery vit` writes exactly those chapters' notebooks, and each is the one
    build_assignments wrote with the smoke parameters (cell for cell; only the cells' random ids differ)."""
    run = subprocess.run([sys.executable, "-m", "certattr.cli", "assignments", "--out", str(tmp_path), "--only",
                          "gallery", "vit", "--no-course"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    names = ["gallery-instructor.ipynb", "gallery-student.ipynb", "vit-instructor.ipynb", "vit-student.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name in names:
        written, reference = _read(tmp_path / name), _read(built / name)
        assert written.metadata == reference.metadata, name
        assert [(c.cell_type, c.source, c.metadata) for c in written.cells] == \
            [(c.cell_type, c.source, c.metadata) for c in reference.cells], name


def test_a_broken_exercise_layout_is_reported(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    text = (ROOT / "notebooks" / "gallery.md").read_text()
    (tmp_path / "notebooks" / "gallery.md").write_text(text.replace(":class: dropdown\n", "", 1))
    with pytest.raises(CertattrError, match="dropdown"):
        build_assignments(tmp_path / "out", chapters=_smoke(["gallery"], tmp_path), root=tmp_path, course=COURSE)
    (tmp_path / "notebooks" / "gallery.md").write_text(text.replace('    """The smallest SS among', '    """Smallest SS', 1))
    with pytest.raises(CertattrError, match="must start with the stub's lines"):
        build_assignments(tmp_path / "out", chapters=_smoke(["gallery"], tmp_path), root=tmp_path, course=COURSE)


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
#: chapters run at the smoke settings in tests/book/test_build.py), because each run costs one to several minutes
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
    build_assignments(course / "built", chapters=_smoke([chapter]), root=ROOT, course=COURSE, cache_dir=str(cache))
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
