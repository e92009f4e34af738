"""Project layout and metadata: environment.yml and pyproject.toml declare the same dependencies, the console script
is the CLI, CI runs the README's test command and lists its skips, and the texts cite only files of the repository."""
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert env_reqs == declared  # same names and the same version specifiers


def test_the_console_script_runs_the_clis_main_and_the_layout_is_there(capsys):
    """The installed ``certattr`` command is the entry point pyproject.toml declares, resolves to
    certattr.cli.main, and prints what main prints; the folders and files the README and CI name are there."""
    from certattr.cli import main

    for path in ("book", "certattr", "notebooks", "_config.yml", "_toc.yml", "environment.yml", "tests", "README.md",
                 "pyproject.toml", "Makefile", ".ci/run"):
        assert (ROOT / path).exists(), path
    assert os.access(ROOT / ".ci" / "run", os.X_OK)  # CI runs it as a command
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["certattr"] == "certattr.cli:main"
    (installed,) = entry_points(group="console_scripts", name="certattr")
    assert installed.value == "certattr.cli:main" and installed.load() is main
    assert main(["list"]) == 0
    expected = capsys.readouterr().out
    command = Path(sys.executable).parent / "certattr"
    run = subprocess.run([str(command), "list"], capture_output=True, text=True, timeout=300)
    assert (run.returncode, run.stdout) == (0, expected), run.stderr[-2000:]


def test_ci_runs_the_readme_test_command_fails_on_no_tests_and_lists_the_skips(tmp_path):
    """The README's commands are `make book` and `make test`; .ci/run runs `make test` and passes its exit status on,
    except pytest's 5 (no test collected), which fails; the pytest command of `make test`, with the project's
    configuration, lists every skip and expected failure with its reason."""
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "make").write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$FAKE_MAKE_ARGS"\nexit "$FAKE_MAKE_STATUS"\n')
    (fake / "make").chmod(0o755)
    for status, expected in [(0, 0), (1, 1), (2, 2), (5, 1)]:
        env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ.get('PATH', '')}",
               "FAKE_MAKE_ARGS": str(tmp_path / "args"), "FAKE_MAKE_STATUS": str(status)}
        run = subprocess.run([str(ROOT / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == expected, (status, run.returncode, run.stderr)
        assert (tmp_path / "args").read_text().split() == ["test"]
        assert ("pytest collected no tests (exit 5)" in run.stderr) == (status == 5)
    # the pytest line `make test` would run (make -n runs no recipe), on a folder with one skip and one xfail
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "test", "TEST_WORKERS=0"], capture_output=True, text=True,
                         timeout=60)
    (command,) = [shlex.split(line) for line in dry.stdout.splitlines() if " -m pytest" in line]
    assert command[1:3] == ["-m", "pytest"] and "--dist" in command, command
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "test_toy.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('why it skips')\n\n"
        "@pytest.mark.xfail(reason='why it fails')\ndef test_expected_to_fail():\n    assert False\n")
    run = subprocess.run([sys.executable, *command[1:], "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider",
                          str(tmp_path / "toy")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"^SKIPPED \[1\] .*test_toy\.py:\d+: why it skips$", run.stdout, re.M), run.stdout
    assert re.search(r"^XFAIL .*test_toy\.py::test_expected_to_fail - why it fails$", run.stdout, re.M), run.stdout


def test_the_committed_toc_and_parameters_cells_are_the_declarations():
    """_toc.yml and each notebook's parameters cell are written from the chapters' declarations (certattr book
    rewrites them); the committed files must be what the declarations make, so that a plain papermill run of a
    notebook costs what the cpu profile costs."""
    from certattr.book.build import parameters_cell_in_step
    from certattr.book.chapters import chapter_names, get, toc_yaml

    assert (ROOT / "_toc.yml").read_text() == toc_yaml()
    listed = re.findall(r"file: book/chapters/([\w-]+)", toc_yaml())
    assert [c for c in listed if c != "execution"] == chapter_names()
    for chapter in {get(c).source for c in chapter_names()}:
        text = (ROOT / "notebooks" / f"{chapter}.md").read_text()
        assert ":tags: [parameters" in text and "format_name: myst" in text
        before = text
        assert parameters_cell_in_step(chapter, ROOT, write=False), f"{chapter}: its parameters cell is not its declaration's"
        assert (ROOT / "notebooks" / f"{chapter}.md").read_text() == before


#: where a text may cite a path that no checkout holds: what the book build, the benchmarks and Sphinx write
GENERATED = ("book/chapters/", "_static/mathjax", "benchmarks/results/")
#: repository paths as texts cite them: a top-level folder of the repository, then a path
CITED_PATH = re.compile(r"(?<![\w./-])((?:certattr|tests|benchmarks|notebooks|book|_static|\.ci)/[\w./*-]*\w)")


def test_the_texts_cite_only_files_of_this_repository():
    """Docstrings, comments, chapters, tests, benchmarks and the READMEs cite files of this repository (a moved or
    renamed file leaves no stale citation): every repository path they cite is in the checkout, a Sphinx page of
    it (``book/intro`` is book/intro.md) or a generated output; none cites the project's private spec (SPEC.md is no
    file of this repository) or reads the shared folder beside it."""
    texts = [*(ROOT / "certattr").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "notebooks").glob("*.md"),
             *(ROOT / "book").glob("*.md"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.md"),
             *(ROOT / "benchmarks").glob("*.sh"), ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "environment.yml",
             ROOT / "Makefile", ROOT / ".ci" / "run"]
    missing, spec, shared = [], [], []
    for path in texts:
        where, text = str(path.relative_to(ROOT)), path.read_text()
        if path.name == "test_packaging.py":  # this test names what it looks for
            continue
        if re.search(r"SPEC §|SPEC\.md|shared/SPEC", text):
            spec.append(where)
        if "../shared" in text or "/work/shared" in text:
            shared.append(where)
        if path.name == "test_imports.py":  # the import checker's own tests feed it made-up modules
            continue
        for cited in {m.group(1) for m in CITED_PATH.finditer(text)}:
            found = (any(ROOT.glob(cited)) if "*" in cited else (ROOT / cited).exists() or
                     any((ROOT / f"{cited}{suffix}").exists() for suffix in (".md", ".py", ".ipynb")))
            if not found and not f"{cited}/".startswith(GENERATED) and not cited.startswith(GENERATED):
                missing.append(f"{where}: {cited}")
    assert not spec, f"these cite SPEC, which users do not have: {spec}"
    assert not shared, f"these read the shared folder outside the repository: {shared}"
    assert not missing, f"these cite files the repository does not hold: {missing}"
