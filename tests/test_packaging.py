"""Project layout and metadata: environment.yml and pyproject.toml declare the same dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_reqs = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert env_reqs == declared  # same names and the same version specifiers


def test_layout_and_console_script():
    for path in ("book", "certattr", "notebooks", "_config.yml", "_toc.yml", "environment.yml", "tests", "README.md",
                 "pyproject.toml", ".ci/run"):
        assert (ROOT / path).exists(), path
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["certattr"] == "certattr.cli:main"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci and "make book" in readme


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


def test_nothing_reads_the_shared_folder():
    for path in list((ROOT / "certattr").rglob("*.py")) + list((ROOT / "notebooks").glob("*.md")):
        assert "../shared" not in path.read_text() and "/work/shared" not in path.read_text(), path


def test_no_text_cites_a_file_outside_the_repository():
    """Docstrings, chapters and tests cite the paper and the README, never the project's private spec (SPEC.md is
    no file of this repository)."""
    texts = [*(ROOT / "certattr").rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "notebooks").glob("*.md"),
             *(ROOT / "book").glob("*.md"), ROOT / "README.md"]
    citing = [str(path.relative_to(ROOT)) for path in texts
              if path.name != "test_packaging.py" and re.search(r"SPEC §|SPEC\.md|shared/SPEC", path.read_text())]
    assert not citing, f"these cite SPEC, which users do not have: {citing}"
