"""The book's chapters: every profile's parameters fit every chapter's ``parameters`` cell, and the paper
profile runs every chapter end to end on a tiny ImageNet-format folder with locally made weights."""
from __future__ import annotations

import ast
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm

from certattr.book.build import ROOT, chapter_parameters, run_chapter
from certattr.book.chapters import PROFILE_NAMES as PROFILES, chapter_names, get
from certattr.book.chapters.declaration import PAPER_DOMAIN

CHAPTERS = chapter_names()
PAPER_CHAPTERS = chapter_names(PAPER_DOMAIN.name)  #: the chapters on the paper's domain (the paper profile's subject)


def _parameter_names(chapter: str) -> set[str]:
    import jupytext

    notebook = jupytext.read(ROOT / "notebooks" / f"{chapter}.md")
    cells = [c for c in notebook.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{chapter}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    names = set()
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_profile_parameters_match_the_parameters_cell(profile, chapter):
    params = chapter_parameters(profile, chapter)
    unknown = sorted(set(params) - _parameter_names(get(chapter).source))  # a chapter on a domain: its notebook's
    assert not unknown, (f"profile {profile!r} gives chapter {chapter!r} parameters its parameters cell does not "
                         f"define: {unknown}")


@pytest.fixture()
def tiny_imagenet(tmp_path):
    """Four random 64x64 JPEGs and labels.txt ('<file> <class>')."""
    from PIL import Image

    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i, label in enumerate([1, 207, 409, 530]):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name, format="JPEG")
        lines.append(f"{name} {label}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def resnet18_weights(tmp_path, monkeypatch):
    """A TORCH_HOME holding a (random) ResNet-18 state_dict under the file name torchvision expects, so that
    ``weights="pretrained"`` loads it without a download (the papermill kernel inherits the environment)."""
    import torchvision
    from torchvision.models import ResNet18_Weights

    home = tmp_path / "torch_home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    filename = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    torch.save(net.state_dict(), checkpoints / filename)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return checkpoints / filename


def test_paper_profile_runs_the_robustness_chapter(tmp_path, tiny_imagenet, resnet18_weights):
    root = tmp_path / "book_root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "robustness.md", root / "notebooks" / "robustness.md")
    overrides = {"models": ["resnet18"], "device": "cpu", "imagenet_dir": str(tiny_imagenet), "n_images": 2,
                 "methods": ["grad", "gradcam"], "layers": ["input", "final"], "sigmas": [0.15, 0.25],
                 "ks": [50, 10], "n": 12, "n0": 2, "chunk_size": 6}
    params = chapter_parameters("paper", "robustness", overrides, root=root)
    # the paper profile's own choices survive the overrides
    assert params["weights"] == "pretrained" and params["tau"] == 0.75 and params["alpha"] == 0.001
    out = run_chapter("robustness", params, force=True, root=root)
    assert out.exists()
    table = pd.read_csv(root / "book" / "chapters" / "results" / "paper" / "robustness.csv")
    assert set(table.model) == {"resnet18"}
    assert table.image_id.nunique() == 2
    assert set(table.layer) == {"input", "final"} and set(table.method) == {"grad", "gradcam"}
    assert sorted(table.sigma.unique()) == [0.15, 0.25] and sorted(table.k.unique()) == [10.0, 50.0]
    # targets are the folder's labels (ImageNet mode), not the model's top-1
    labels = dict(line.split() for line in (tiny_imagenet / "labels.txt").read_text().splitlines())
    by_stem = {name.rsplit(".", 1)[0]: int(c) for name, c in labels.items()}
    assert all(by_stem[i] == t for i, t in zip(table.image_id, table.target))
    # one row per image x method x layer x sigma x K, fractions summing to one
    assert len(table) == 2 * 2 * 2 * 2 * 2
    np.testing.assert_allclose(table[["certified_1", "certified_0", "abstain"]].sum(axis=1), 1.0)
    # the samples went to the chapter's cache, under the temporary root
    assert any((root / ".cache" / "samples").rglob("chunk_*.npz"))


@pytest.fixture()
def paper_world(tmp_path, monkeypatch):
    """TORCH_HOME with locally made ResNet-18 and ViT-B/16 weights where torchvision looks, and a tiny
    ImageNet-format folder whose labels are what that ResNet-18 predicts (four distinct classes), so that
    grids can qualify (image label = prediction of every qualifying model)."""
    import torchvision
    from PIL import Image
    from torchvision.models import ResNet18_Weights, ViT_B_16_Weights

    from certattr.models.data import ImageNetFolder
    from certattr.models.registry import load_model

    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for builder, weights in [(torchvision.models.resnet18, ResNet18_Weights), (torchvision.models.vit_b_16, ViT_B_16_Weights)]:
        torch.manual_seed(0)
        torch.save(builder(weights=None).state_dict(), checkpoints / weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(24):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        base = rng.integers(0, 256, 3)  # a colour per image, plus noise: varied predictions
        pixels = np.clip(base + rng.normal(0, 40, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name, format="JPEG")
        names.append(name)
    (folder / "labels.txt").write_text("".join(f"{name} 0\n" for name in names))
    # a random ResNet-18 predicts one or two classes on such images: give four of them their own class with
    # fc rows W = pinv(P)^T of their pooled features P, so that logit_{c_i}(x_j) = 10 * delta_ij
    images = [ImageNetFolder(folder)[i] for i in range(4)]
    net = load_model("resnet18", "pretrained", fast=False)  # its weights are saved as torchvision builds them
    with torch.no_grad():
        pooled = net.features(net.normalize(torch.stack([im.tensor for im in images])))[0].mean(dim=(2, 3))
    rows = 10 * torch.linalg.pinv(pooled.double()).T.float()  # (4, 512)
    classes = [1, 207, 409, 530]
    state = net.net.state_dict()
    state["fc.weight"] = torch.zeros_like(state["fc.weight"])
    state["fc.bias"] = torch.zeros_like(state["fc.bias"])
    state["fc.weight"][classes] = rows
    torch.save(state, checkpoints / ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1])
    with torch.no_grad():
        predicted = load_model("resnet18", "pretrained")(torch.stack([im.tensor for im in images])).argmax(1)
    assert predicted.tolist() == classes, predicted
    for name in names[4:]:
        (folder / name).unlink()
    (folder / "labels.txt").write_text("".join(f"{name} {c}\n" for name, c in zip(names, classes)))
    return folder


_PAPER_TINY = {"device": "cpu", "n": 12, "n0": 2, "chunk_size": 6}
_PAPER_CHAPTERS = {
    "method": {"methods": ["grad", "gradcam"], "layers": ["final"], "focus_method": "gradcam",
               "focus_layer": "final", "ks": [50, 10], "fewer_photos": ["coffee"], "fewer_n_max": 24,
               "fewer_ns": [12]},
    "localization": {"models": ["resnet18"], "qualify_models": ["resnet18"], "n_images": 4, "threshold": 0.0,
                     "n_grids": 1, "grid_size": 128, "methods": ["grad", "gradcam"], "layers": ["final"],
                     "sigmas": [0.15], "ks": [50, 10], "overlay_ks": [10]},
    # n = 64: with fewer samples nothing can be certified at α = 0.001, every certificate is empty, and empty
    # certificates are not evidence, so the trade-off would rightly have no method to place
    "tradeoff": {"models": ["resnet18"], "n_images": 2, "qualify_models": ["resnet18"], "grid_n_images": 4,
                 "threshold": 0.0, "n_grids": 1, "grid_size": 128, "methods": ["grad", "gradcam"],
                 "layers": ["final"], "ks": [50, 10], "n": 64, "n0": 4},
    "faithfulness": {"models": ["resnet18"], "n_images": 2, "methods": ["grad", "gradcam"], "layers": ["final"],
                     "ks": [10, 50]},
    "vit": {"n_images": 1, "methods": ["gradcam"], "layers": ["final"], "ks": [50, 10]},
    "gallery": {"n_images": 1, "methods": ["grad", "gradcam"], "layers": ["final"], "ks": [50, 10]},
    "certificates": {"ks": [50, 10], "topk_ns": [12, 24], "cos_N": 8, "attack_eps": [1], "attack_n": 12,
                     "attack_steps": 1, "attack_restarts": 1, "attack_n_attack": 2, "topk_attack_steps": 1,
                     "topk_attack_n_eval": 4, "pixel_attack_eps": [1, 10], "pixel_attack_targets": 4,
                     "pixel_attack_steps": 1, "pixel_attack_n_attack": 1, "pixel_attack_eval_n": 4,
                     "pixel_attack_select_n": 2},
    "levine": {"lams": [0.0, 1.0], "digit_size": 8, "epochs": 1, "train_steps": 1, "n_attack_digits": 6,
               "attack_eps": [1.0], "attack_steps": 1, "attack_restarts": 1, "n_example_digits": 2, "n_cert_digits": 1,
               "ks": [50, 10], "ss_n": 12, "ss_eps": [0.1], "digit_chunk_size": 6, "fig1b_n_images": 1,
               "fig1b_n": 12, "fig1b_eps": [0.01]},
}


def test_paper_profile_runs_every_other_chapter_end_to_end(tmp_path, paper_world):
    """Every chapter but robustness (tested above) under the paper profile: ImageNet mode, torchvision
    weights from TORCH_HOME, each chapter's tidy table written; only the sizes are scaled down."""
    assert set(_PAPER_CHAPTERS) | {"robustness"} == set(PAPER_CHAPTERS)
    root = tmp_path / "book_root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for chapter, overrides in _PAPER_CHAPTERS.items():
        params = chapter_parameters("paper", chapter, {**_PAPER_TINY, "imagenet_dir": str(paper_world), **overrides},
                                    root=root)
        assert params["weights"] == "pretrained" and params["alpha"] == 0.001
        assert run_chapter(chapter, params, force=True, root=root).exists()
    results = root / "book" / "chapters" / "results" / "paper"
    # the certificate rows: the methods, layer, K and sample counts asked for; pixel counts that add up to the image;
    # R = σ·Φ⁻¹(τ), recomputed
    for table, methods in [("vit.csv", {"gradcam"}), ("gallery.csv", {"grad", "gradcam"})]:
        frame = pd.read_csv(results / table)
        assert len(frame) > 0 and set(frame.method) == methods and set(frame.layer) == {"final"}, table
        assert set(frame.k) == {50.0, 10.0} and set(frame.n) == {12} and set(frame.n0) == {2}, table
        assert (frame.n_certified_1 + frame.n_certified_0 + frame.n_abstain == frame.height * frame.width).all()
        np.testing.assert_allclose(frame.certified_1, frame.n_certified_1 / frame.n_pixels)
        np.testing.assert_allclose(frame[["certified_1", "certified_0", "abstain"]].sum(axis=1), 1.0)
        np.testing.assert_allclose(frame.radius, frame.sigma * norm.ppf(frame.tau))
    grids = pd.read_csv(results / "localization.csv")
    assert set(grids.model) == {"resnet18"} and grids.target_cell.nunique() == 4  # every cell is a target
    assert set(grids.method) == {"grad", "gradcam"} and set(grids.k) == {50.0, 10.0} and set(grids.sigma) == {0.15}
    # certified GridPG: the share of the certified '1' pixels inside the target's cell, 0 where none is certified
    certified = grids.n_certified_1 > 0
    np.testing.assert_allclose(grids.certified_gridpg[certified],
                               grids.n_certified_1_inside[certified] / grids.n_certified_1[certified])
    assert (grids.no_certified == ~certified).all() and (grids.certified_gridpg[~certified] == 0).all()
    # deletion curves: cumulative, starting from the whole image, probabilities relative to it, the AUC the mean of
    # the trapezoids over the steps
    faith = pd.read_csv(results / "faithfulness.csv")
    assert set(faith.method) == {"grad", "gradcam"} and set(faith.layer) == {"final"}
    assert set(faith.k.dropna()) == {10.0, 50.0}
    np.testing.assert_allclose(faith.removed_fraction, faith.n_removed / (224 * 224))
    for key, curve in faith.groupby(["model", "image_id", "method", "layer", "sigma"]):
        curve = curve.sort_values("step")
        p = curve.probability.to_numpy()
        assert curve.n_removed.iloc[0] == 0 and (np.diff(curve.n_removed) >= 0).all(), key
        np.testing.assert_allclose(curve.relative_probability, p / p[0])
        np.testing.assert_allclose(curve.auc, np.mean((p[1:] + p[:-1]) / 2))
    trade = pd.read_csv(results / "tradeoff.csv")
    assert len(trade) > 0 and set(trade.method) <= {"grad", "gradcam"} and set(trade.layer) == {"final"}
    assert trade.robustness.between(0, 1).all() and trade.certified_gridpg.between(0, 1).all()
