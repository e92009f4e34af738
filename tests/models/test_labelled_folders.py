"""A labelled folder is a data set: a class folder tree or a CSV of (file, label) gives every image its class, checked
against the model's classes, and that class is the target everywhere (Python API, CLI, grids, chapters).

Oracles: the constructed images' classes are known by construction (class c is a bright vertical band at columns
6c..6c+5, on a 1-channel 32x32 image; a colour image's class is its colour), so every label and target is compared
with the class the test put there; confidences are recomputed with a plain softmax of the test's own network; the
number of images that qualify for a grid is counted by hand. The chapter run (papermill, every image chapter) is in
``test_labelled_folder_runs_every_image_chapter``.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image as PILImage

from certattr.cli import main
from certattr.engine.validation import CertattrError
from certattr.models.labelled import LabelledImages, labelled_files, labelled_images
from certattr.models.wrap import wrap

SIDE, BAND = 32, 6
GREY_CLASSES = ("cyst", "edema", "mass", "nodule", "normal")  # 5 classes; "normal" is never confident
#: (folder class, band class, band contrast) of each image: a contrast of 0.7 is confident, 0.15 not; the last
#: image is mislabelled (a confident "mass" band in the "normal" folder): its label, not its top-1, is its target
BAND_IMAGES = tuple((c, c, contrast) for c in range(4) for contrast in (0.7, 0.15)) + ((4, 4, 0.15), (4, 4, 0.12),
                                                                                       (4, 2, 0.7))
MISLABELLED = "normal2"
COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.1, 0.1, 0.9)}


def grey_net() -> nn.Sequential:
    """A 1-channel classifier of the band images whose head is not GAP->linear (Flatten, Linear: it takes only
    32x32 inputs): logit c = 10 * a weighted mean of relu(x - 0.2) over band c (weights 1 +- 0.5, fixed, so that no two
    pixels tie in a map), so a band of contrast 0.7 gives softmax ~0.996 and one of 0.15 about 0.5. Built from torch
    layers only, so that a pickle of it loads anywhere."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * SIDE * SIDE, 5))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0, 1, 1] = 0.25  # the input is normalized (x - 0.5) / 0.25: 0.25 * that + 0.3 = x - 0.2
        net[0].bias.copy_(torch.tensor([0.3, 0.5]))
        net[0].weight[1, 0] = 0.25 / 9
        net[3].weight.zero_()
        net[3].bias.zero_()
        pattern = 1 + 0.5 * (2 * torch.rand(SIDE, BAND, generator=torch.Generator().manual_seed(0)) - 1)
        for c in range(5):
            w = torch.zeros(2, SIDE, SIDE)
            w[0, :, c * BAND:(c + 1) * BAND] = 10.0 * pattern / pattern.sum()
            net[3].weight[c] = w.flatten()
    return net.eval()


def grey_model(classes=None):
    return wrap(grey_net(), "1", mean=(0.5,), std=(0.25,), input_size=SIDE, classes=classes, name="bands")


def colour_net() -> nn.Sequential:
    """A 3-class colour classifier with a GAP->linear head: logit c = 12 * mean of channel c."""
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[0].bias.fill_(1.0)  # keeps the ReLU open for any normalized pixel in [-1, 1]
        net[4].weight.copy_(12 * torch.eye(3))
        net[4].bias.zero_()
    return net.eval()


def band_image(c: int, contrast: float, rng) -> np.ndarray:
    img = np.full((SIDE, SIDE), 0.2) + rng.uniform(-0.03, 0.03, (SIDE, SIDE))
    img[:, c * BAND:(c + 1) * BAND] += contrast
    return (np.clip(img, 0, 1) * 255).astype("uint8")


def write_band_tree(root: Path) -> dict:
    """root/<class>/<class><i>.png (:data:`BAND_IMAGES`); returns {image id: its folder's class index}."""
    rng, truth = np.random.default_rng(0), {}
    for label, band, contrast in BAND_IMAGES:
        name = GREY_CLASSES[label]
        (root / name).mkdir(parents=True, exist_ok=True)
        image_id = f"{name}{sum(1 for i in truth if i.startswith(name))}"
        PILImage.fromarray(band_image(band, contrast, rng), mode="L").save(root / name / f"{image_id}.png")
        truth[image_id] = label
    return truth


def write_colour_images(folder: Path) -> dict:
    """folder/<colour><i>.png; returns {file name: class index}."""
    folder.mkdir(parents=True)
    rng, truth = np.random.default_rng(1), {}
    for c, (name, rgb) in enumerate(COLOURS.items()):
        for i in range(2):
            pixels = np.clip(np.array(rgb) + rng.uniform(-0.05, 0.05, (SIDE, SIDE, 3)), 0, 1)
            PILImage.fromarray((pixels * 255).astype("uint8")).save(folder / f"{name}{i}.png")
            truth[f"{name}{i}.png"] = c
    return truth


@pytest.fixture(scope="module")
def bands(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled") / "scans"
    return root, write_band_tree(root)


def _one_line(call, match):
    with pytest.raises(CertattrError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def _softmax(net, images) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(net((torch.stack(images) - 0.5) / 0.25).double(), dim=1)


# --- the readers -------------------------------------------------------------------------------------------------
def test_a_class_folder_tree_labels_every_image_with_its_folders_class(bands):
    root, truth = bands
    model = grey_model()
    images = labelled_images(root, model)
    assert isinstance(images, LabelledImages) and images.layout == "folders"
    assert {im.id: im.label for im in images} == truth  # sorted folder names: cyst 0, ..., normal 4
    assert all(tuple(im.tensor.shape) == (1, SIDE, SIDE) for im in images)  # the model's channels and size
    assert images.class_names == dict(enumerate(GREY_CLASSES))
    assert images.counts() == {0: 2, 1: 2, 2: 2, 3: 2, 4: 3}
    # the pixels are the file's, in [0, 1]: the image's band is brighter than the rest
    for im, (_, band, _) in zip(images, BAND_IMAGES):
        assert im.tensor[0, :, band * BAND:(band + 1) * BAND].mean() > im.tensor[0].mean()
    # a model with class names: folders map by name, whatever their sorted order
    named = grey_model(classes=list(reversed(GREY_CLASSES)))
    by_name = labelled_images(root, named)
    assert {im.id: im.label for im in by_name} == {i: 4 - c for i, c in truth.items()}
    assert by_name.class_names[0] == "normal"


def test_a_csv_labels_by_index_or_by_name_relative_to_its_folder(tmp_path):
    truth = write_colour_images(tmp_path / "photos")
    names = list(COLOURS)
    rows = [(f"photos/{f}" if i % 3 else f"photos/{Path(f).stem}", str(c) if i % 2 else names[c])
            for i, (f, c) in enumerate(truth.items())]  # indices and names mixed; some files without suffix
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("file", "label", "note")] + [(f, lab, "x") for f, lab in rows])
    model = wrap(colour_net(), "1", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=SIDE, classes=names, name="colours")
    images = labelled_images(tmp_path / "labels.csv", model)
    assert images.layout == "csv"
    assert {im.id: im.label for im in images} == {Path(f).stem: c for f, c in truth.items()}
    assert all(tuple(im.tensor.shape) == (3, SIDE, SIDE) for im in images)
    # the files alone (what the CLI reads before it certifies), without a model: indices stay, names need names
    found = labelled_files(tmp_path / "labels.csv", classes=names)
    assert list(found.labels) == [c for _, c in truth.items()] and len(found) == 6


def test_class_folders_named_by_integers_are_those_classes_and_may_leave_some_out(tmp_path):
    root = _tree(tmp_path, {"3": 1, "1": 2})  # two of the five classes, named by their indices
    images = labelled_images(root, grey_model())
    assert sorted((im.id, im.label) for im in images) == [("10", 1), ("11", 1), ("30", 3)]
    _one_line(lambda: labelled_images(_tree(tmp_path / "b", {"1": 1, "5": 1}), grey_model()),
              r"class folder '5' in .*: label 5 is a class the model does not have: it has 5 classes \(0..4\)")


def test_a_plain_folder_has_no_labels(tmp_path):
    write_colour_images(tmp_path / "plain")
    images = labelled_images(tmp_path / "plain", resize=SIDE, crop=SIDE)
    assert images.layout == "plain" and len(images) == 6 and all(im.label is None for im in images)


def _tree(tmp_path, folders: dict) -> Path:
    """folders: {class folder: number of band images (of class 0)}."""
    root = tmp_path / "tree"
    rng = np.random.default_rng(2)
    for name, count in folders.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            PILImage.fromarray(band_image(0, 0.5, rng), mode="L").save(root / name / f"{name}{i}.png")
    return root


def _csv(tmp_path, text: str) -> Path:
    folder = tmp_path / "csvset"
    rng = np.random.default_rng(3)
    folder.mkdir()
    for i in range(2):
        PILImage.fromarray(band_image(i, 0.5, rng), mode="L").save(folder / f"a{i}.png")
    (folder / "labels.csv").write_text(text)
    return folder / "labels.csv"


@pytest.mark.parametrize("make, match", [
    (lambda t: _tree(t, {n: 1 for n in GREY_CLASSES + ("zeta",)}),
     r"has 6 class folders .*class folder 'zeta' \(position 5 in sorted order\) is a class the model does not have: "
     r"it has 5 classes \(0..4\)"),
    (lambda t: _tree(t, {"cyst": 1, "edema": 1}),
     r"has 2 class folders \(cyst, edema\): the model has 5 classes, and without class names the i-th class folder"),
    (lambda t: _tree(t, {**{n: 1 for n in GREY_CLASSES[:4]}, "normal": 0}),
     r"class folder '.*normal' holds no image file .*put the class's images in it, or remove it"),
    (lambda t: _csv(t, "file,label\na0.png,0\nmissing.png,1\n"),
     r"labels.csv:3: the image 'missing.png' does not exist"),
    (lambda t: _csv(t, "file,label\na0.png,0\na1.png,7\n"),
     r"labels.csv:3: label 7 is a class the model does not have: it has 5 classes \(0..4\)"),
    (lambda t: _csv(t, "image_name;diagnosis\na0.png;0\n"),
     r"has the columns \['image_name', 'diagnosis'\]: give a header row with the columns file and label"),
    (lambda t: _csv(t, "file,label\na0.png,0\na0.png,1\n"), r"labels.csv:3: 'a0.png' is listed twice"),
    (lambda t: _csv(t, "file,label\n"), r"lists no images"),
])
def test_wrong_labels_are_one_line(tmp_path, make, match):
    path = make(tmp_path)
    _one_line(lambda: labelled_images(path, grey_model()), match)


def test_a_label_name_the_model_does_not_have_and_a_mixed_folder_are_one_line(tmp_path):
    path = _csv(tmp_path, "file,label\na0.png,cyst\na1.png,tumour\n")
    named = grey_model(classes=list(GREY_CLASSES))
    _one_line(lambda: labelled_images(path, named), r"label 'tumour' in .* is not a class of the model \(its 5 "
                                                     r"classes: cyst, edema, mass, nodule, normal\)")
    root = _tree(tmp_path, {"cyst": 1})
    shutil.copy(root / "cyst" / "cyst0.png", root / "loose.png")
    _one_line(lambda: labelled_images(root, named), "holds both image files and folders of images")


# --- grids from a labelled folder ------------------------------------------------------------------------------------
def _localization_plan(tmp_path, root, threshold, n_grids=3):
    from certattr.book.chapters import chapter_plan

    model_file = tmp_path / "bands.pt"
    torch.save(grey_net(), model_file)
    params = {"profile": "smoke", "model": f"file:{model_file}", "trust_pickle": True, "mean": [0.5], "std": [0.25],
              "input_size": SIDE, "final_layer": "1", "image_dir": str(root), "threshold": threshold,
              "n_grids": n_grids, "cache_dir": str(tmp_path / "cache"), "methods": ["grad", "cam"]}
    return chapter_plan("localization", params)


def test_grids_from_a_labelled_folder_take_distinct_confident_classes_at_the_threshold(bands, tmp_path):
    root, truth = bands
    images = labelled_images(root, grey_model())
    confidence = _softmax(grey_net(), [im.tensor for im in images])
    labels = torch.tensor([im.label for im in images])
    confident = {im.id for im, p, y in zip(images, confidence, labels) if p.max() >= 0.9 and p.argmax() == y}
    assert len(confident) == 4  # by construction: the contrast-0.7 image of classes 0..3 (not the mislabelled one)
    assert confidence[[im.id for im in images].index(MISLABELLED)].max() >= 0.9  # confident, but not of its label
    plan = _localization_plan(tmp_path, root, threshold=0.9, n_grids=3)
    qual = plan.extras["qualification"]
    assert {q.image_id for q in qual.qualified} == confident and qual.n_images == len(truth)
    assert qual.rejected["wrong_label"] == [MISLABELLED]
    grids = plan.extras["grids"]
    assert len(grids) == 3
    for grid in grids:
        assert len(set(grid.classes)) == 4 and 4 not in grid.classes  # "normal" is never confident
        assert [truth[i] for i in grid.image_ids] == list(grid.classes)  # each cell's class is its folder label
        for image_id, conf in zip(grid.image_ids, grid.confidences):
            own = confidence[[im.id for im in images].index(image_id)].max().item()
            assert conf == pytest.approx(own, rel=1e-6) and conf >= 0.9
        # a greyscale model's grid is grey; the model takes only 32x32 inputs, so the grid is 32x32 (cells 16x16)
        assert tuple(grid.tensor.shape) == (1, SIDE, SIDE)
    # every grid target is a job with the cell's class; Cam is reported as not defined for this head
    works = [w for w in plan.works if w.method == "grad"]
    assert {(w.image_id, w.target) for w in works} == {(g.grid_id, c) for g in grids for c in g.classes}
    assert "not global average pooling" in plan.undefined["bands.pt"][("cam", "final")]


def test_a_folder_with_too_few_confident_classes_for_a_grid_is_one_line(bands, tmp_path):
    root, truth = bands
    message = _one_line(lambda: _localization_plan(tmp_path, root, threshold=0.999, n_grids=1),
                        r"cannot build a 2x2 grid: it needs 4 distinct classes, but 0 of 11 images qualified "
                        r"\(top-1 softmax confidence >= 0.999")
    assert "lower the threshold or give more images" in message


def test_labels_of_fewer_classes_than_a_grid_needs_are_one_line(tmp_path):
    from certattr.evaluation.grids import build_grids

    write_colour_images(tmp_path / "photos")
    (tmp_path / "photos" / "red").mkdir()
    (tmp_path / "photos" / "blue").mkdir()
    model = wrap(colour_net(), "1", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=SIDE, name="colours")
    for name in ("red0", "red1", "blue0"):
        shutil.move(tmp_path / "photos" / f"{name}.png", tmp_path / "photos" / name[:-1] / f"{name}.png")
    for f in (tmp_path / "photos").glob("*.png"):
        f.unlink()
    images = labelled_images(tmp_path / "photos", classes=list(COLOURS), resize=SIDE, crop=SIDE)
    assert {im.id: im.label for im in images} == {"red0": 0, "red1": 0, "blue0": 2}  # by name, not folder order
    _one_line(lambda: build_grids([(im.id, im.tensor, im.label) for im in images], model, 1, threshold=0.0),
              r"4 distinct classes, but 3 of 3 images qualified .* covering 2 distinct classes; the images' labels "
              r"name only 2 classes, so no set of these images makes a grid")


def test_certattr_book_takes_relative_paths_from_the_folder_it_runs_in(tmp_path, monkeypatch):
    from certattr.cli import _absolute

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.pt").write_bytes(b"")
    assert _absolute("scans/", True) == str(tmp_path / "scans")  # a folder that does not exist yet too
    assert _absolute("file:nets/a.pt", False) == f"file:{tmp_path / 'nets' / 'a.pt'}"
    assert _absolute(["net.pt", "resnet18"], False) == [str(tmp_path / "net.pt"), "resnet18"]  # a preset stays
    assert _absolute(["cyst", "edema"], True) == ["cyst", "edema"]  # class names, not a path
    assert _absolute("/data/scans", True) == "/data/scans"


# --- the command line --------------------------------------------------------------------------------------------
def test_certify_on_a_labelled_csv_uses_the_labels_as_targets(tmp_path, capsys):
    truth = write_colour_images(tmp_path / "photos")
    flipped = "blue1.png"  # labelled red although it is blue: the label is explained, not the top-1 class
    labels = {**truth, flipped: 0}
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"photos/{f},{c}\n" for f, c in labels.items()))
    torch.save(colour_net(), tmp_path / "colours.pt")
    (tmp_path / "classes.txt").write_text("\n".join(COLOURS) + "\n")
    flags = ["--model", f"file:{tmp_path / 'colours.pt'}", "--trust-pickle", "--mean", "0.5", "0.5", "0.5",
             "--std", "0.5", "0.5", "0.5", "--input-size", str(SIDE), "--final-layer", "1", "--classes",
             str(tmp_path / "classes.txt"), "--method", "gradcam", "--n", "20", "--n0", "4", "--tau", "0.6",
             "--alpha", "0.2", "--k", "50", "--quiet", "--no-cache"]
    assert main(["certify", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "out")] + flags) == 0
    assert "6 images in 3 classes (red: 3, green: 2, blue: 1); each image's label is its target" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert {r["image_id"]: int(r["target"]) for r in rows} == {Path(f).stem: c for f, c in labels.items()}
    assert {r["image_id"]: r["target_name"] for r in rows}["blue1"] == "red"
    assert {r["image_id"]: r["prediction_name"] for r in rows}["blue1"] == "blue"
    for row in rows:  # the certificate explains the target
        summary = json.loads((tmp_path / "out" / "certificates" / f"{row['image_id']}.json").read_text())
        assert summary["certificate"]["metadata"]["target"] == int(row["target"])
    # --target with labels is refused, and so is a label the model does not have: one line each, exit 2
    assert main(["certify", str(tmp_path / "labels.csv"), "--target", "1", "--out", str(tmp_path / "o2")] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target cannot be given with" in err
    (tmp_path / "bad.csv").write_text("file,label\nphotos/red0.png,3\n")
    assert main(["certify", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o3")] + flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "label 3 is a class the model does not have: it has 3 classes (0..2)" in err


# --- every image chapter through papermill ---------------------------------------------------------------------
IMAGE_CHAPTERS = ("method", "robustness", "localization", "faithfulness", "tradeoff", "gallery")


def _glued(notebook: Path) -> dict:
    """{name: {mime type: data}} of every output an executed notebook glued."""
    out = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
                out[name] = {k.removeprefix(prefix): v for k, v in output.get("data", {}).items()}
    return out


def _figure_size(glued: dict) -> tuple[int, int]:
    text = "".join(glued["text/plain"])
    width, height = text.split("size ")[1].split(" ")[0].split("x")
    return int(width), int(height)


@pytest.mark.slow
def test_labelled_folder_runs_every_image_chapter(bands, tmp_path):
    """A 1-channel, 5-class model whose head is not GAP->linear (it takes only 32x32 inputs), built in this test and
    pickled, with a labelled folder of constructed images: every image chapter runs through papermill on the smoke
    profile, and its tables and figures are of these images, these labels and this model."""
    import jupytext
    import nbformat
    import pandas as pd
    import papermill

    from certattr.book.build import ROOT, chapter_parameters

    root, truth = bands
    torch.save(grey_net(), tmp_path / "bands.pt")
    run = tmp_path / "book" / "chapters"
    run.mkdir(parents=True)
    results = tmp_path / "results"
    ours = {"model": f"file:{tmp_path / 'bands.pt'}", "models": None, "trust_pickle": True, "mean": [0.5],
            "std": [0.25], "input_size": SIDE, "final_layer": "1", "image_dir": str(root), "threshold": 0.9,
            "methods": ["grad", "gradcam", "cam"], "layers": ["input", "final"], "n": 30, "n0": 5, "alpha": 0.1,
            "tau": 0.6, "taus": [], "sigmas": [0.15], "fewer_n_max": 40, "fewer_ns": [30], "focus_layer": "input",
            "focus_method": "grad", "cache_dir": str(tmp_path / "cache"), "results_dir": str(results)}
    for stem in IMAGE_CHAPTERS:
        declared = chapter_parameters("smoke", stem)
        params = {**declared, **{k: v for k, v in ours.items() if k in declared}}
        notebook = jupytext.read(ROOT / "notebooks" / f"{stem}.md")
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / f"{stem}.ipynb")
        papermill.execute_notebook(str(tmp_path / f"{stem}.ipynb"), str(run / f"{stem}.ipynb"), parameters=params,
                                   kernel_name="python3", cwd=str(run), progress_bar=False)
    glued = {stem: _glued(run / f"{stem}.ipynb") for stem in IMAGE_CHAPTERS}
    names = dict(enumerate(GREY_CLASSES))

    # the method chapter: the folder's first image, its label as the target, by its folder's name
    assert glued["method"]["image_id"]["text/plain"] == "'cyst0'"
    assert glued["method"]["target_name"]["text/plain"] == "'cyst'"
    assert glued["method"]["target_kind"]["text/plain"] == "'its label'"
    # robustness, faithfulness: every image of the folder, each certified for its own label
    rob = pd.read_csv(results / "robustness.csv")
    assert set(rob.image_id) == set(truth) and set(rob.model) == {"bands.pt"}
    assert all(rob.target == rob.image_id.map(truth))  # the mislabelled image too: its label, not its top-1 (2)
    assert set(rob[rob.image_id == MISLABELLED].target) == {4}
    assert {"grad", "gradcam"} == set(rob.method) and set(rob.layer) == {"input", "final"}  # Cam: not defined
    faith = pd.read_csv(results / "faithfulness.csv")
    assert set(faith.image_id) == set(truth) and all(faith.target == faith.image_id.map(truth))
    # localization: grids of distinct, confident classes (never "normal"), each target its cell's folder label
    grids = json.loads((results / "localization_grids.json").read_text())
    assert grids and all(len(set(g["classes"])) == 4 and 4 not in g["classes"] for g in grids)
    assert all([truth[i] for i in g["image_ids"]] == g["classes"] and min(g["confidences"]) >= 0.9 for g in grids)
    assert all(g["size"] == [SIDE, SIDE] for g in grids)  # the model takes only its own input size
    loc = pd.read_csv(results / "localization.csv")
    assert set(loc.target_name) <= set(GREY_CLASSES[:4]) and len(loc)
    assert "4 of 11 images qualified" in glued["localization"]["loc_explain"]["text/plain"]
    # the trade-off on the same model and data: robustness and GridPG of the two methods run, at both layers
    trade = pd.read_csv(results / "tradeoff.csv")
    assert set(trade.method) == {"grad", "gradcam"} and trade.robustness.notna().all()
    # the gallery: the first image of each class, by its class name
    gallery = pd.read_csv(results / "gallery.csv")
    assert sorted(set(gallery.image_id)) == [f"{n}0" for n in GREY_CLASSES]
    assert all(f"{name}0 ({name})" in glued["gallery"]["ga_images"]["text/plain"] for name in names.values())
    # the figures are drawn from the runs, not the "not run in this profile" slot (500x80)
    for stem, figure in (("method", "method_teaser"), ("method", "method_all_input"), ("robustness", "rob_r1_final"),
                         ("localization", "loc_grids"), ("localization", "loc_r11"), ("faithfulness", "fa_r8"),
                         ("tradeoff", "tr_r5"), ("gallery", "ga_input_0"), ("gallery", "ga_final_1")):
        shown = glued[stem][figure]
        assert "image/png" in shown and _figure_size(shown) != (500, 80), (stem, figure)
    # Cam is reported as not defined for this head, with the reason
    text = (run / "robustness.ipynb").read_text()
    assert "not global average pooling" in text
