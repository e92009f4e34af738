"""The book pipeline: the smoke profile builds with warnings as errors; failures name the chapter and cell."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from html.parser import HTMLParser

import pytest

from certattr.book.build import ROOT, chapter_parameters, run_chapter
from certattr.book.chapters import PROFILE_NAMES as PROFILES, chapter_names, course as book_course, get as get_chapter

CHAPTERS = chapter_names()
from certattr.engine.validation import CertattrError


def _copy_book(dst: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "README.md"):  # book/instructors.md includes the README's section
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "notebooks", dst / "notebooks")
    shutil.copytree(ROOT / "_static", dst / "_static")
    (dst / "book").mkdir()
    for path in (ROOT / "book").iterdir():  # the pages, references.bib, ...; not the generated book/chapters/
        if path.is_file():
            shutil.copy(path, dst / "book" / path.name)
        elif path.is_dir() and path.name != "chapters":
            shutil.copytree(path, dst / "book" / path.name)
    return dst


def _certattr(*args, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "certattr.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=3000)


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The smoke book, built once (cold) for every test of this module that needs it: (root, cold run)."""
    root = _copy_book(tmp_path_factory.mktemp("smoke_book"))
    cold = _certattr("book", "--profile", "smoke", "--root", str(root))
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
    return root, cold


@pytest.mark.slow
def test_smoke_book_builds_offline_with_warnings_as_errors_then_warm(smoke_book):
    root, cold = smoke_book
    html = root / "_build" / "html" / "book" / "chapters" / "method.html"
    text = html.read_text()
    for chapter in CHAPTERS:
        assert (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").exists()
    # the numbers in the text come from the run (glue): R for sigma = 0.15, tau = 0.75
    assert re.search(r"R = σ·Φ⁻¹\(τ\) = (<[^>]+>)*0\.101", text)
    assert "{glue" not in text and "{glue" not in (root / "_build" / "html" / "book" / "mathematics.html").read_text()
    execution = (root / "_build" / "html" / "book" / "chapters" / "execution.html").read_text()
    assert execution.count("executed in this run on") == len(CHAPTERS), execution[-3000:]
    warm = _certattr("book", "--profile", "smoke", "--root", str(root))
    assert warm.returncode == 0
    assert warm.stdout.count("up to date, not re-executed") == len(CHAPTERS)
    execution = (root / "_build" / "html" / "book" / "chapters" / "execution.html").read_text()
    assert execution.count("up to date (executed on") == len(CHAPTERS), execution[-3000:]
    assert "executed in this run" not in execution


@pytest.mark.slow
def test_findings_check_recomputes_every_smoke_row_from_the_csvs(smoke_book):
    """`certattr findings-check` (a second, plain implementation) agrees with every findings row of the smoke build,
    and the execution page gives the machine's model speed beside each chapter's time."""
    root, _ = smoke_book
    run = _certattr("findings-check", str(root / "book" / "chapters" / "results" / "smoke"))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    found = re.search(r"(\d+) quantities of (\d+) claims recomputed from the CSV tables; 0 differ", run.stdout)
    assert found and int(found.group(1)) >= 5, run.stdout[-2000:]
    execution = (root / "book" / "chapters" / "execution.md").read_text()
    assert execution.count("EfficientNet-Lite0 at batch 8 on 2 threads:") == len(CHAPTERS)
    bottom = (root / "book" / "chapters" / "bottom_line.md").read_text()
    assert bottom.startswith("Of the paper's") and "{" not in bottom
    intro = (root / "_build" / "html" / "book" / "intro.html").read_text()
    assert "Does the paper hold up?" in intro and intro.index("Does the paper hold up?") < intro.index("How a verdict")
    # each chapter states the time the execution page records for it
    import json
    for chapter in ("robustness", "localization", "tradeoff"):
        seconds = json.loads((root / "book" / "chapters" / f".{chapter}.run.json").read_text())["seconds"]
        page = (root / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text()
        shown = re.search(r"This chapter took (?:<[^>]+>)*(\d+)", page)
        assert shown and int(shown.group(1)) == round(seconds), (chapter, seconds, shown and shown.group(1))
    assert "the others come from" not in execution
    # data to take away: each chapter links its tables, the introduction one archive with the execution record
    downloads = {path.name for path in (root / "_build" / "html" / "_downloads").rglob("*") if path.is_file()}
    assert {"robustness.csv", "findings_robustness.json", "results-smoke.zip"} <= downloads, sorted(downloads)
    assert "results-smoke.zip" in intro
    import zipfile
    names = zipfile.ZipFile(root / "book" / "chapters" / "results-smoke.zip").namelist()
    assert "results/robustness.csv" in names and "execution/execution.md" in names


@pytest.mark.slow
def test_the_built_pages_are_written_for_readers(smoke_book):
    """No issue numbers, no file paths of this repository and no "(s)" plurals in the text of any built page (the
    visible text, scripts and styles left out)."""
    root, _ = smoke_book
    pages = sorted((root / "_build" / "html").rglob("*.html"))
    assert len(pages) > len(CHAPTERS)
    bad = {"an issue number": re.compile(r"\b[Ii]ssues? #?\d+"),
           "a repository path": re.compile(r"\b(?:certattr|tests|benchmarks|notebooks|book)/[\w./-]+\.(?:py|md|json)\b"
                                           r"|\bREADME(?:\.md)?'s"),
           "an '(s)' plural": re.compile(r"\w\(s\)")}
    found = []
    for page in pages:
        html = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
        text = re.sub(r"<[^>]+>", " ", html)
        for what, pattern in bad.items():
            found += [f"{page.relative_to(root)}: {what}: {m.group(0)!r}" for m in pattern.finditer(text)]
        # the parameters cells (folded, but one click away) name no folder of the machine that built the book
        found += [f"{page.relative_to(root)}: the builder's folder" for _ in re.finditer(re.escape(str(root)), html)]
    assert not found, "\n".join(found[:30])


@pytest.mark.slow
def test_the_smoke_plan_is_exactly_what_the_smoke_chapters_sample(smoke_book):
    """certattr.book.plans lists every sample-cache entry and chunk the chapters wrote in the cold smoke build, and
    nothing else: a sweep of the plan fills the cache so that the chapters compute no chunk (and the sweep no
    chunk the chapters do not read)."""
    from certattr.book.build import book_plan
    from certattr.book.plans import compare_with_cache

    root, _ = smoke_book
    plan = book_plan("smoke", root=root)
    assert plan.cache_dir == str(root / ".cache" / "samples")
    missing, extra = compare_with_cache(plan)
    missing, extra = sorted(missing.items()), sorted(extra.items())
    assert not missing, f"planned but not sampled by the chapters: {missing[:5]}"
    assert not extra, f"sampled by the chapters but not planned: {extra[:5]}"


class _Assets(HTMLParser):
    """The script/link/img/... references of one HTML page, and the bodies of its inline scripts."""

    def __init__(self):
        super().__init__()
        self.refs, self.images, self.inline_scripts, self._in_script = [], [], [], False

    #: the tags whose references the browser loads (an <a href> is a link the reader may follow, not an asset)
    LOADED = {"script", "link", "img", "iframe", "source", "video", "audio", "embed", "object", "input"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.LOADED:
            self.refs += [(tag, name, attrs[name]) for name in ("src", "href", "data", "poster", "srcset")
                          if attrs.get(name)]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self._in_script = tag == "script" and not attrs.get("src")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


_REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


def _decodes(page: Path, src: str) -> str | None:
    """None if the image ``src`` of ``page`` is a readable, decodable image, else why not."""
    import base64
    import io
    from urllib.parse import unquote, urlsplit
    from xml.etree import ElementTree

    from PIL import Image

    if src.startswith("data:"):
        header, _, payload = src.partition(",")
        data = base64.b64decode(payload) if ";base64" in header else unquote(payload).encode()
        name = "inline." + header.split("/")[-1].split(";")[0]
    else:
        path = (page.parent / unquote(urlsplit(src).path)).resolve()
        if not path.is_file():
            return f"{src}: no such file {path}"
        data, name = path.read_bytes(), path.name
    try:
        if name.endswith(("svg", "svg+xml")):
            ElementTree.fromstring(data)
        else:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                assert image.size[0] > 0 and image.size[1] > 0
    except Exception as err:  # noqa: BLE001 - report which image and why
        return f"{src}: not a decodable image ({type(err).__name__}: {err})"
    return None


@pytest.mark.slow
def test_smoke_book_renders_math_offline_with_local_assets_only(smoke_book, tmp_path):
    """MathJax (served from _static, no CDN) typesets every formula in headless Chromium; no page loads a
    script, stylesheet or image from a remote host; every <img> is a file of the build that decodes."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed: `make test` installs it as root "
                    "(apt-get update && apt-get install -y chromium)")
    root, _ = smoke_book
    html = root / "_build" / "html"
    pages = sorted(html.rglob("*.html"))
    assert len(pages) > len(CHAPTERS)
    problems = []
    for page in pages:
        parser = _Assets()
        parser.feed(page.read_text())
        rel = page.relative_to(html)
        problems += [f"{rel}: <{tag} {name}={value!r}> is remote" for tag, name, value in parser.refs
                     if _REMOTE.match(value)]
        problems += [f"{rel}: an inline script names a remote URL: {body.strip()[:200]!r}"
                     for body in parser.inline_scripts if re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}/", body)]
        problems += [f"{rel}: {why}" for src in parser.images if (why := _decodes(page, src))]
    for css in html.rglob("*.css"):
        problems += [f"{css.relative_to(html)}: remote {ref}"
                     for ref in re.findall(r"(?:@import|url\()\s*['\"]?(?:https?:)?//[^)'\";]+", css.read_text())]
    assert not problems, "\n".join(problems[:50])

    math_page = html / "book" / "mathematics.html"
    static = math_page.read_text()
    assert "_static/mathjax/tex-chtml.js" in static and (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    n_math = len(re.findall(r'class="math notranslate nohighlight"', static))
    n_display = len(re.findall(r'<div class="math notranslate nohighlight"', static))
    assert n_display >= 8 and n_math > n_display  # the labelled equations and the inline formulas
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000", "--dump-dom",
           math_page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    typeset = len(re.findall(r"<mjx-container\b", dom))
    assert typeset >= n_math, (typeset, n_math, dom[-2000:])
    assert len(re.findall(r'<mjx-container\b[^>]*display="true"', dom)) >= n_display
    assert "<mjx-merror" not in dom  # no TeX error
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    assert not re.search(r"\\\(|\\\[|\$\$", text), "raw TeX left in the page"
    # the equation references and the citations resolved (-W -n would also have failed the build)
    assert 'href="#equation-eq-radius"' in static and 'href="bibliography.html#' in static


@pytest.mark.slow
def test_smoke_book_numbers_the_exercises_folds_the_solutions_and_links_the_student_notebooks(smoke_book):
    """sphinx-exercise numbers (in one sequence over the book, as the student notebooks do) and labels each
    chapter's exercises, folds each solution ("Solution to Exercise N", a dropdown), every check passes on the
    solution, and the chapter links its student notebook."""
    course = book_course()

    root, _ = smoke_book
    html = root / "_build" / "html"
    assert set(course.stems()) == {c for c in CHAPTERS if get_chapter(c).exercises}
    for chapter in CHAPTERS:
        text = (html / "book" / "chapters" / f"{chapter}.html").read_text()
        if chapter not in course.stems():  # a chapter run on a further domain: its exercises are on the photos' page
            source = get_chapter(chapter).source
            assert "solution dropdown" not in text and "is still the stub" not in text, chapter
            assert re.search(rf'exercises are on the photos.{{1,8}} page, <a class="reference internal" href="{source}\.html"', text), chapter
            continue
        exercises = course.exercises(chapter)
        for ex in exercises:
            number = course.number(ex.label)
            assert f'id="{ex.label}"' in text and f"Exercise {number}" in text, (chapter, ex.label)
            assert re.search(rf'Solution to<a class="reference internal" href="#{ex.label}">\s*Exercise {number} ', text)
        assert text.count('class="solution dropdown admonition"') == len(exercises), chapter
        # each check passed on the folded solution (the build stops otherwise) and shows what it says for the stub
        assert text.count("is still the stub") == len(exercises) and "certattr-score" not in text, chapter
        link = re.search(rf'href="(\.\./\.\./_downloads/[0-9a-f]+/{chapter}-student\.ipynb)"', text)
        assert link, chapter
        student = (html / "book" / "chapters" / link.group(1)).resolve().read_text()
        assert "BEGIN SOLUTION" not in student and "NotImplementedError" in student


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
    nbformat.write(jupytext.read(ROOT / "notebooks" / f"{get_chapter(chapter).source}.md"), path)
    declared = papermill.inspect_notebook(str(path))
    for profile in PROFILES:
        assert set(chapter_parameters(profile, chapter)) <= set(declared), (profile, sorted(set(chapter_parameters(profile, chapter)) - set(declared)))


def test_execution_page_reports_hardware_versions_and_each_chapters_run(tmp_path):
    from certattr.book.execution import PACKAGES, record_execution, write_execution_page

    out = tmp_path / "book" / "chapters"
    out.mkdir(parents=True)
    start = 1_800_000_000.0
    speed = {"forward": 147.2, "forward_gradient": 52.4, "batch": 8, "threads": 2}
    record_execution(out, "method", 53.24, profile="smoke", finished=start + 60, speed=speed)  # executed by this build
    record_execution(out, "robustness", 412.0, profile="smoke", finished=start - 3600)  # up to date, from before
    record_execution(out, "vit", 7.0, profile="cpu", finished=start - 60)              # not run by this build (--only)
    page = write_execution_page(tmp_path, "smoke", CHAPTERS, ran=["method", "robustness"], since=start,
                                overrides={"sigma": 0.25}, now=start + 100).read_text()
    assert page.startswith("# Execution of this build") and "2027-01-15 08:01 UTC" in page
    assert "profile **`smoke`**, with the overrides `sigma = 0.25`" in page
    for item in ("| CPU |", "| cores |", "| memory |", "| GPU |", "| Python |"):
        assert item in page
    for package in PACKAGES:
        assert f"| {package} |" in page
    from certattr.book.execution import machine
    here = machine()
    assert ("| {doc}`method` | executed in this run on 2027-01-15 08:01 UTC in 53 s, profile `smoke`, on " + here
            + "; EfficientNet-Lite0 at batch 8 on 2 threads: 147 images/s forward, 52 forward+gradient |") in page
    assert ("| {doc}`robustness` | up to date (executed on 2027-01-15 07:00 UTC in 412 s (6.9 min)), profile `smoke`, on "
            + here + "; machine speed not recorded |") in page
    assert "| {doc}`vit` | not run in this build (executed on 2027-01-15 07:59 UTC in 7 s), profile `cpu`, on " + here in page
    assert "| {doc}`gallery` | not executed |" in page
    assert page.count("| {doc}`") == len(CHAPTERS)
    # the total is that of every recorded run, and the share this build executed is said apart
    assert "took 472 s (7.9 min) to compute in all, on " + here in page
    assert "This build executed 1 of them in 53 s" in page
