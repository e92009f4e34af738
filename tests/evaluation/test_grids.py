"""Grids: qualification threshold, distinct classes, row-major placement, determinism, resizing."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from certattr.evaluation.grids import Grid, build_grids, cell_mask, cell_slices, make_grid, qualify_images
from certattr.models.testing import tiny_model
from certattr.engine.validation import CertattrError


N_CLASSES = 10
SIZE = 8


def encoded_images(n, seed=0, size=SIZE):
    """n random images; pixel (0, 0, 0) encodes the index i as (i + 1) / 128 so fake models can look it up."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.rand(3, size, size, generator=gen)
        x[0, 0, 0] = (i + 1) / 128
        out.append((f"img{i:02d}", x))
    return out


def logits_row(label, confidence, classes=N_CLASSES):
    """Logits whose softmax gives ``confidence`` to ``label`` and the rest evenly to the other classes."""
    p = np.full(classes, (1 - confidence) / (classes - 1))
    p[label] = confidence
    return np.log(p)


class FakeModel:
    """A callable returning fixed logits per image (looked up from the encoded index); counts its calls."""

    def __init__(self, table):
        self.table = torch.tensor(np.asarray(table), dtype=torch.float32)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        idx = torch.round(x[:, 0, 0, 0] * 128).long() - 1
        return self.table[idx]


def fake(spec):
    """spec: list of (label, confidence) per image index."""
    return FakeModel([logits_row(lab, conf) for lab, conf in spec])


# --- geometry ---------------------------------------------------------------------------------------------------
def test_cell_mask_row_major():
    m = [cell_mask(4, 6, c) for c in range(4)]
    assert m[0][:2, :3].all() and m[0].sum() == 6  # top-left
    assert m[1][:2, 3:].all() and m[1].sum() == 6  # top-right
    assert m[2][2:, :3].all() and m[2].sum() == 6  # bottom-left
    assert m[3][2:, 3:].all() and m[3].sum() == 6  # bottom-right
    assert (np.sum(m, axis=0) == 1).all()  # a partition
    assert cell_slices(6, 6, 4, (2, 3)) == (slice(3, 6), slice(2, 4))


@pytest.mark.parametrize("bad", [dict(height=5, width=4, cell=0), dict(height=4, width=4, cell=4),
                                 dict(height=4, width=4, cell=-1), dict(height=4, width=4, cell=True)])
def test_cell_mask_errors(bad):
    with pytest.raises(CertattrError):
        cell_mask(**bad)


def test_make_grid_places_row_major_and_resizes():
    ims = [x for _, x in encoded_images(4)]
    g = make_grid(ims)
    assert g.shape == (3, 2 * SIZE, 2 * SIZE)
    assert torch.equal(g[:, :SIZE, :SIZE], ims[0]) and torch.equal(g[:, :SIZE, SIZE:], ims[1])
    assert torch.equal(g[:, SIZE:, :SIZE], ims[2]) and torch.equal(g[:, SIZE:, SIZE:], ims[3])
    small = make_grid(ims, cell_size=4)
    assert small.shape == (3, 8, 8)
    expect = F.interpolate(ims[3][None], size=(4, 4), mode="bilinear", align_corners=False, antialias=True)[0]
    assert torch.allclose(small[:, 4:, 4:], expect.clamp(0, 1))
    with pytest.raises(CertattrError, match="different sizes"):
        make_grid(ims[:3] + [torch.rand(3, 4, 4)])
    with pytest.raises(CertattrError, match="needs 4 images"):
        make_grid(ims[:3])


# --- qualification --------------------------------------------------------------------------------------------------
def test_threshold_agreement_and_label():
    images = encoded_images(6)
    images[5] = (images[5][0], images[5][1], 1)  # a labelled image that is classified as 5 (wrong label)
    m1 = fake([(0, 0.995), (1, 0.98), (2, 0.999), (3, 0.995), (4, 0.999), (5, 0.999)])
    m2 = fake([(0, 0.999), (1, 0.999), (2, 0.989), (7, 0.999), (4, 0.991), (5, 0.999)])
    q = qualify_images(images, [m1, m2], threshold=0.99)
    assert [x.image_id for x in q.qualified] == ["img00", "img04"]
    assert [x.label for x in q.qualified] == [0, 4]
    assert q.qualified[1].confidence == pytest.approx(0.991, abs=1e-6)  # the smallest over the models
    assert q.rejected == {"low_confidence": ["img01", "img02"], "disagree": ["img03"], "wrong_label": ["img05"]}
    # the threshold is a parameter: at 0.98 images 1 and 2 qualify too
    q2 = qualify_images(images, [m1, m2], threshold=0.98)
    assert [x.image_id for x in q2.qualified] == ["img00", "img01", "img02", "img04"]
    # one model alone: its own top-1 and confidence decide
    assert [x.image_id for x in qualify_images(images, m1, threshold=0.99).qualified] == [
        "img00", "img02", "img03", "img04"]


def test_qualification_does_not_depend_on_batch_size():
    images = encoded_images(7)
    spec = [(i % 5, 0.9 + 0.01 * i) for i in range(7)]
    a = qualify_images(images, fake(spec), threshold=0.925, chunk_size=1)
    b = qualify_images(images, fake(spec), threshold=0.925, chunk_size=64)
    assert a.qualified == b.qualified and [x.image_id for x in a.qualified] == ["img03", "img04", "img05", "img06"]


def test_duplicate_ids_and_bad_entries_rejected():
    images = encoded_images(2)
    with pytest.raises(CertattrError, match="twice"):
        qualify_images([images[0], images[0]], fake([(0, 0.999)]))
    with pytest.raises(CertattrError, match="pixel values"):
        qualify_images([("x", torch.full((3, 4, 4), 2.0))], fake([(0, 0.999)]))
    with pytest.raises(CertattrError, match="threshold"):
        qualify_images(images, fake([(0, 0.999)] * 2), threshold=1.5)


# --- building ------------------------------------------------------------------------------------------------------
def twelve_images():
    """12 images over 6 classes (2 each), all confident, for both fake models."""
    images = encoded_images(12)
    spec = [(i // 2, 0.995) for i in range(12)]
    return images, [fake(spec), fake(spec)], {f"img{i:02d}": i // 2 for i in range(12)}


def test_grids_distinct_classes_and_row_major_content():
    images, models, label_of = twelve_images()
    source = dict((i, x) for i, x in images)
    grids = build_grids(images, models, 20, seed=3, threshold=0.99)
    assert len(grids) == 20 and len({g.grid_id for g in grids}) == 20
    assert len({g.image_ids for g in grids}) == 20  # distinct=True: no repeated arrangement
    for g in grids:
        assert isinstance(g, Grid) and g.tensor.shape == (3, 2 * SIZE, 2 * SIZE) and g.tensor.dtype == torch.float32
        assert len(set(g.classes)) == 4
        assert list(g.classes) == [label_of[i] for i in g.image_ids]
        for c, image_id in enumerate(g.image_ids):
            r, col = divmod(c, 2)
            block = g.tensor[:, r * SIZE:(r + 1) * SIZE, col * SIZE:(col + 1) * SIZE]
            assert torch.equal(block, source[image_id])
            assert torch.equal(g.cell_image(c), source[image_id])
            assert g.target_class(c) == label_of[image_id]
            assert np.array_equal(g.cell_mask(c), cell_mask(2 * SIZE, 2 * SIZE, c))
        assert g.target_id(2) == f"{g.grid_id}-c2"
        assert min(g.confidences) >= 0.99
    with pytest.raises(CertattrError):
        grids[0].target_class(4)


def test_grids_deterministic_under_seed():
    images, models, _ = twelve_images()
    a = build_grids(images, models, 10, seed=7)
    b = build_grids(images, models, 10, seed=7)
    c = build_grids(images, models, 10, seed=8)
    assert [g.grid_id for g in a] == [g.grid_id for g in b]
    assert all(torch.equal(x.tensor, y.tensor) and x.image_ids == y.image_ids for x, y in zip(a, b))
    assert [g.image_ids for g in a] != [g.image_ids for g in c]
    # the same seed with another batch size still gives the same grids
    d = build_grids(images, models, 10, seed=7, chunk_size=1)
    assert [g.image_ids for g in d] == [g.image_ids for g in a]
    # asking for fewer grids gives a prefix of the longer list
    assert [g.grid_id for g in build_grids(images, models, 4, seed=7)] == [g.grid_id for g in a[:4]]


def test_selection_uses_all_classes_and_cells():
    images, models, _ = twelve_images()
    grids = build_grids(images, models, 200, seed=0, distinct=False)
    counts = np.zeros((4, 6))
    for g in grids:
        for c, k in enumerate(g.classes):
            counts[c, k] += 1
    # every class appears in every cell; expected 200*4/6 = 133 per class overall, 33 per (cell, class)
    assert (counts > 10).all()
    assert np.allclose(counts.sum(axis=0) / 800, 1 / 6, atol=0.05)


def test_too_few_classes_error_names_counts_and_threshold():
    images = encoded_images(6)
    spec = [(0, 0.995), (1, 0.995), (2, 0.995), (3, 0.5), (3, 0.999), (2, 0.999)]
    models = [fake(spec), fake([(lab, 0.999) if i != 4 else (5, 0.999) for i, (lab, _) in enumerate(spec)])]
    with pytest.raises(CertattrError) as err:
        build_grids(images, models, 1, threshold=0.99)
    msg = str(err.value)
    assert "4 of 6 images qualified" in msg and "0.99" in msg and "3 distinct classes" in msg
    assert "1 low confidence" in msg and "1 disagree" in msg


def test_distinct_arrangement_limit():
    images = encoded_images(4)
    models = fake([(i, 0.999) for i in range(4)])
    grids = build_grids(images, models, 24, seed=1)  # 4! orderings of 4 single images
    assert len({g.image_ids for g in grids}) == 24
    with pytest.raises(CertattrError, match="only 24 distinct"):
        build_grids(images, models, 25, seed=1)
    assert len(build_grids(images, models, 30, seed=1, distinct=False)) == 30


def test_grid_size_and_cell_size():
    images, models, _ = twelve_images()
    source = dict((i, x) for i, x in images)
    g = build_grids(images, models, 2, seed=0, grid_size=12)[0]
    assert g.tensor.shape == (3, 12, 12) and g.cell_size == (6, 6)
    expect = F.interpolate(source[g.image_ids[1]][None], size=(6, 6), mode="bilinear", align_corners=False,
                           antialias=True)[0].clamp(0, 1)
    assert torch.allclose(g.tensor[:, :6, 6:], expect)
    assert build_grids(images, models, 1, seed=0, cell_size=(4, 5))[0].tensor.shape == (3, 8, 10)
    with pytest.raises(CertattrError, match="divisible"):
        build_grids(images, models, 1, grid_size=13)
    with pytest.raises(CertattrError, match="not both"):
        build_grids(images, models, 1, grid_size=12, cell_size=6)
    # the grid id depends on the content (size): different sizes, different ids
    assert g.grid_id != build_grids(images, models, 1, seed=0)[0].grid_id


def test_general_layout():
    images, models, _ = twelve_images()
    g = build_grids(images, models, 3, seed=0, layout=(2, 3))[0]
    assert g.tensor.shape == (3, 2 * SIZE, 3 * SIZE) and len(set(g.classes)) == 6
    with pytest.raises(CertattrError, match="needs 9 distinct classes"):
        build_grids(images, models, 1, layout=(3, 3))


def test_tiny_model_grids():
    """Real (tiny) models: qualification equals a direct computation, and grids hold that content."""
    model = tiny_model(seed=0)
    ims = [torch.tensor(bits).view(3, 1, 1).expand(3, 32, 32).contiguous()
           for bits in itertools.product([0.0, 1.0], repeat=3)]
    for k in range(24):
        a = torch.zeros(3, 32, 32)
        a[k % 3, :, ::2 + k // 3] = 1.0
        ims.append(a)
    images = [(f"t{i:02d}", x) for i, x in enumerate(ims)]
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack(ims)).double(), dim=1)
    conf, label = probs.max(dim=1)
    threshold = 0.12  # the tiny random model is never confident: a low threshold for the test
    keep = [i for i in range(len(ims)) if conf[i] >= threshold]
    classes = {int(label[i]) for i in keep}
    assert len(classes) >= 4, "the test inputs must give the tiny model >= 4 classes"
    q = qualify_images(images, model, threshold=threshold)
    assert [x.image_id for x in q.qualified] == [f"t{i:02d}" for i in keep]
    grids = build_grids(images, model, 5, seed=0, threshold=threshold)
    for g in grids:
        assert len(set(g.classes)) == 4
        for c, image_id in enumerate(g.image_ids):
            i = int(image_id[1:])
            assert g.classes[c] == int(label[i]) and conf[i] >= threshold
            assert torch.equal(g.cell_image(c), ims[i])
    # raising the threshold above every confidence leaves nothing
    with pytest.raises(CertattrError, match="0 of 32 images qualified"):
        build_grids(images, model, 1, threshold=math.nextafter(float(conf.max()), 1.0))
