"""The book pipeline: the smoke profile builds with warnings as errors; failures name the chapter and cell."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certattr.book import CHAPTERS, PROFILES, ROOT, chapter_parameters, run_chapter
from certattr.validation import CertattrError


def _copy_book(dst: Path) -> Path:
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "notebooks", dst / "notebooks")
    (dst / "book").mkdir()
    for md in (ROOT / "book").glob("*.md"):
        shutil.copy(md, dst / "book" / md.name)
    return dst


def _certattr(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "certattr.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=3000)


@pytest.mark.slow
def test_smoke_book_builds_offline_with_warnings_as_errors_then_warm(tmp_path):
    root = _copy_book(tmp_path)
    cold = _certattr("book", "--profile", "smoke", "--root", str(root))
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
    html = root / "_build" / "html" / "book" / "chapters" / "method.html"
    text = html.read_text()
    for chapter in CHAPTERS:
        assert (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").exists()
    # the numbers in the text come from the run (glue): R for sigma = 0.15, tau = 0.75
    assert re.search(r"R = σ·Φ⁻¹\(τ\) = (<[^>]+>)*0\.101", text)
    assert "{glue" not in text and "{glue" not in (root / "_build" / "html" / "book" / "mathematics.html").read_text()
    warm = _certattr("book", "--profile", "smoke", "--root", str(root))
    assert warm.returncode == 0
    assert warm.stdout.count("up to date, not re-executed") == len(CHAPTERS)


def test_a_failing_chapter_stops_the_build_naming_chapter_and_cell(tmp_path):
    root = _copy_book(tmp_path)
    text = (root / "notebooks" / "method.md").read_text()
    cut = text.index("```", text.index(":tags: [parameters")) + 3  # right after the parameters cell
    broken = text[:cut] + "\n\n```{code-cell} ipython3\nraise RuntimeError('deliberately broken cell')\n```\n" + text[cut:]
    (root / "notebooks" / "method.md").write_text(broken)
    params = chapter_parameters("smoke", "method", {"methods": ["gradcam"], "layers": ["final"]}, root)
    with pytest.raises(CertattrError, match=r"chapter 'method' failed in cell \d+ \(RuntimeError: deliberately broken cell\)"):
        run_chapter("method", params, root=root)
    assert not (root / "book" / "chapters" / "method.ipynb").exists()
    run = _certattr("book", "--profile", "smoke", "--root", str(root), "--only", "method", "--no-build",
                    "-p", "methods", "[gradcam]", "-p", "layers", "[final]")
    assert run.returncode == 2 and "chapter 'method' failed in cell" in run.stderr


@pytest.mark.parametrize("profile", list(PROFILES))
def test_bad_chapter_parameters_are_rejected_before_running(profile, tmp_path):
    for name, value, message in [("sigma", -1, "sigma=-1"), ("tau", 0.3, "0.5 <= tau < 1"), ("n0", 500, "n0=500"),
                                 ("methods", ["nope"], "method='nope' is unknown"), ("ks", [0], "0 < K <= 100")]:
        params = chapter_parameters(profile, "method", {name: value}, tmp_path)
        with pytest.raises(CertattrError, match=re.escape(message)):
            run_chapter("method", params, root=tmp_path)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_papermill_reads_every_parameter_each_profile_passes(chapter, tmp_path):
    """papermill parses each chapter's parameters cell completely (``papermill --help-notebook`` lists them,
    and it warns "Passed unknown parameter" for a line it cannot parse, e.g. one with '=' in its comment),
    and every parameter a profile passes is one the chapter declares."""
    import jupytext
    import nbformat
    import papermill

    path = tmp_path / f"{chapter}.ipynb"
    nbformat.write(jupytext.read(ROOT / "notebooks" / f"{chapter}.md"), path)
    declared = papermill.inspect_notebook(str(path))
    for profile in PROFILES:
        assert set(chapter_parameters(profile, chapter)) <= set(declared), (profile, sorted(set(chapter_parameters(profile, chapter)) - set(declared)))
