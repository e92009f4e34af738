"""The README's papermill command works from any folder: a chapter's default folders are the repository's.

Oracle: where the files land. The chapter runs with its parameters cell's own defaults for cache_dir and results_dir
(not passed), from a folder outside the repository; its tables must appear under
<repository>/book/chapters/results/<profile>/ and its samples under $CERTATTR_CACHE, and nothing in the working folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from certattr.book.build import chapter_parameters
from certattr.book.chapter import DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR, REPOSITORY, repository_paths

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_defaults_resolve_against_the_repository(monkeypatch):
    monkeypatch.delenv("CERTATTR_CACHE", raising=False)
    assert REPOSITORY == ROOT
    assert repository_paths(DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR, "cpu") == (
        str(ROOT / ".cache" / "samples"), str(ROOT / "book" / "chapters" / "results" / "cpu"))
    monkeypatch.setenv("CERTATTR_CACHE", "/shared/cache")
    assert repository_paths(DEFAULT_CACHE_DIR, "mine", "cpu") == ("/shared/cache", "mine")  # given values are kept


@pytest.mark.slow
def test_the_readme_papermill_command_from_another_folder(tmp_path):
    if not (BIN / "papermill").exists() or not (BIN / "jupytext").exists():
        pytest.skip(f"the papermill or jupytext command is not beside this Python ({BIN}): the README's command "
                    f"cannot run (both are dependencies of certattr: pip install -e .)")
    profile = f"test-anywhere-{uuid.uuid4().hex[:8]}"  # its own results folder, removed afterwards
    params = chapter_parameters("smoke", "faithfulness")
    params = {k: v for k, v in params.items() if k not in ("cache_dir", "results_dir")}
    params.update(profile=profile, n=20, n0=5, alpha=0.05, methods=["gradcam"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    elsewhere, cache = tmp_path / "elsewhere", tmp_path / "cache"
    elsewhere.mkdir()
    env = {**os.environ, "CERTATTR_CACHE": str(cache)}
    results = ROOT / "book" / "chapters" / "results" / profile
    try:
        subprocess.run([str(BIN / "jupytext"), "--to", "ipynb", str(ROOT / "notebooks" / "faithfulness.md"), "-o",
                        str(tmp_path / "f.ipynb")], cwd=elsewhere, check=True, capture_output=True, env=env)
        run = subprocess.run([str(BIN / "papermill"), str(tmp_path / "f.ipynb"), str(tmp_path / "f-out.ipynb"),
                              "-f", str(tmp_path / "params.yaml"), "--cwd", str(elsewhere)],
                             cwd=elsewhere, capture_output=True, text=True, env=env, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        assert sorted(p.suffix for p in results.iterdir()) and any(p.suffix == ".csv" for p in results.iterdir())
        table = pd.read_csv(results / "faithfulness.csv")  # the run read the parameters file it was given
        assert set(table.method) == {"gradcam"} and (table[table.step == 0].relative_probability == 1.0).all()
        assert any(cache.rglob("chunk_*")), "the samples went to $CERTATTR_CACHE"
        assert list(elsewhere.iterdir()) == []  # nothing in the working folder
        assert not (tmp_path.parent / ".cache").exists() or not any((tmp_path.parent / ".cache").rglob("chunk_*"))
    finally:
        shutil.rmtree(results, ignore_errors=True)


#: each chapter that takes a user's model: its own parameters beside the shared ones, and the table it writes
USER_MODEL_CHAPTERS = {
    "robustness": ({"tau": "0.6", "taus": "[]", "sigmas": "[0.15]"}, "robustness.csv"),
    "faithfulness": ({"tau": "0.6", "sigma": "0.15", "ks": "[10, 50]"}, "faithfulness.csv"),
}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(USER_MODEL_CHAPTERS))
def test_a_chapter_on_a_users_model_file_and_image_folder(chapter, tmp_path, monkeypatch):
    """`certattr book --only CHAPTER -p models '["file:my.pt"]' -p final_layer ... -p image_dir DIR` (in a copy
    of the book's folder, so the repository's executed chapters are untouched)."""
    import numpy as np
    import pandas as pd
    import torch
    from PIL import Image as PILImage

    from certattr.cli import main
    from certattr.models.tiny_nets import TinyResNet

    root = tmp_path / "book"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "book" / "chapters").mkdir(parents=True)
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        PILImage.fromarray((np.random.RandomState(i).rand(40, 48, 3) * 255).astype("uint8")).save(scans / f"scan{i}.png")
    torch.manual_seed(0)
    torch.save(TinyResNet(10, 8).eval(), tmp_path / "my.pt")
    monkeypatch.setenv("CERTATTR_CACHE", str(tmp_path / "cache"))
    params = {"models": f'["file:{tmp_path / "my.pt"}"]', "final_layer": "last", "mean": "[0.5, 0.5, 0.5]",
              "std": "[0.25, 0.25, 0.25]", "input_size": "32", "trust_pickle": "true", "image_dir": str(scans),
              "n": "30", "n0": "4", "alpha": "0.2", "methods": "[gradcam, cam]", "layers": "[final]"}
    own, written = USER_MODEL_CHAPTERS[chapter]
    params.update(own)
    args = ["book", "--profile", "smoke", "--only", chapter, "--no-build", "--root", str(root)]
    for name, value in params.items():
        args += ["-p", name, value]
    assert main(args) == 0
    table = pd.read_csv(root / "book" / "chapters" / "results" / "smoke" / written)
    assert set(table.image_id) == {"scan0", "scan1"} and set(table.model) == {"my.pt"}
    assert len(table) > 0 and any((tmp_path / "cache").rglob("chunk_*"))
    if chapter == "robustness":  # the Final-layer bars draw the user's model, not the "not run" placeholder
        figure = _glued_text(root / "book" / "chapters" / "robustness.ipynb", "rob_r1_final")
        assert figure.startswith("<Figure") and "500x80" not in figure, figure


def _glued_text(notebook, name: str) -> str:
    """The text/plain of the output glued as ``name`` in an executed notebook."""
    import json

    for cell in json.loads(notebook.read_text())["cells"]:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                text = [v for k, v in out["data"].items() if k.endswith("text/plain")]
                return "".join(text[0])
    raise AssertionError(f"nothing glued as {name!r} in {notebook}")
