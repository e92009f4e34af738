"""The paper's metrics on hand-made label maps with hand-computed values."""
import math

import numpy as np
import pytest
import torch

from certattr.engine.certify import certify_maps
from certattr.evaluation.metrics import (DeletionCurve, GridPG, certificate_gridpg, certified_fractions, certified_gridpg, deletion_curve, deletion_masks, fill_value, gridpg, label_counts, pooled_fractions, summarize_gridpg)
from certattr.evaluation.rows import certificate_rows, deletion_rows, gridpg_rows, to_frame
from certattr.engine.certificate import ABSTAIN, Certificate
from certattr.models.testing import tiny_model
from certattr.engine.validation import CertattrError

A = ABSTAIN


def make_cert(labels, ks, metadata=None):
    labels = np.asarray(labels, dtype=np.int8)
    if labels.ndim == 2:
        labels = labels[None]
    shape = labels.shape
    return Certificate(labels=labels, majority=np.where(labels == 1, 1, 0).astype(np.int8),
                       counts=np.zeros(shape, np.int32), pvalues=np.ones(shape), mean_sparsified=np.zeros(shape, np.float32),
                       ks=tuple(float(k) for k in ks), sigma=0.25, tau=0.75, alpha=0.001, n=100, n0=10,
                       correction="bonferroni", metadata=dict(metadata or {}))


# --- %certified ---------------------------------------------------------------------------------------------------
IMG_A = [[1, 0], [A, A]]  # 2x2: one '1', one '0', two abstain
IMG_B = [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [A, A, A, A]]  # 4x4: twelve '1', four abstain


def test_label_counts():
    assert label_counts(np.array(IMG_A)) == {"n_pixels": 4, "n_certified_1": 1, "n_certified_0": 1, "n_abstain": 2}


def test_pooled_fractions_pool_counts_over_sizes():
    f = pooled_fractions([np.array(IMG_A), np.array(IMG_B)])
    # pooled: 13 ones, 1 zero, 6 abstain out of 20 pixels
    assert f["certified_1"] == pytest.approx(13 / 20)
    assert f["certified_0"] == pytest.approx(1 / 20)
    assert f["abstain"] == pytest.approx(6 / 20)
    assert f["certified_1"] + f["certified_0"] + f["abstain"] == pytest.approx(1.0)
    assert f["robustness"] == pytest.approx(14 / 20)
    # the mean of per-image fractions differs: (1/4 + 12/16) / 2 = 0.5
    assert f["image_mean_certified_1"] == pytest.approx(0.5)
    assert f["image_mean_certified_0"] == pytest.approx(0.125)
    assert f["image_mean_abstain"] == pytest.approx(0.375)
    assert f["image_mean_robustness"] == pytest.approx(0.625)
    assert (f["n_images"], f["n_pixels"], f["n_certified_1"], f["n_certified_0"], f["n_abstain"]) == (2, 20, 13, 1, 6)


def test_certified_fractions_per_k_over_certificates():
    a = make_cert([IMG_A, [[A, A], [A, 0]]], ks=(50, 10))
    b = make_cert([IMG_B, np.zeros((4, 4))], ks=(50, 10))
    f = certified_fractions([a, b])
    assert list(f) == [50.0, 10.0]
    assert f[50.0]["certified_1"] == pytest.approx(13 / 20)
    assert f[10.0]["certified_0"] == pytest.approx(17 / 20) and f[10.0]["abstain"] == pytest.approx(3 / 20)
    for v in f.values():
        assert v["certified_1"] + v["certified_0"] + v["abstain"] == pytest.approx(1.0)
    # one certificate alone matches Certificate.fractions()
    single = certified_fractions(a)
    for k, v in a.fractions().items():
        assert single[k]["certified_1"] == pytest.approx(v["certified_1"])
        assert single[k]["abstain"] == pytest.approx(v["abstain"])
    assert list(certified_fractions([a, b], ks=[10])) == [10.0]
    with pytest.raises(CertattrError, match="has no K"):
        certified_fractions([a, make_cert(IMG_B, ks=(30,))])


@pytest.mark.parametrize("bad", [np.array([[2, 0]]), np.array([[0.0, 1.0]]), np.zeros((2, 2, 2, 2), dtype=int)])
def test_bad_labels_rejected(bad):
    with pytest.raises(CertattrError):
        pooled_fractions([bad])


def test_empty_input_rejected():
    with pytest.raises(CertattrError):
        pooled_fractions([])
    with pytest.raises(CertattrError):
        certified_fractions([])


# --- GridPG ---------------------------------------------------------------------------------------------------------
def test_certified_gridpg_inside_target():
    lab = np.full((4, 4), A)
    lab[2:, :2] = 1  # all certified ones in cell 2 (bottom-left)
    lab[0, 3] = 0  # certified '0' elsewhere does not count
    assert certified_gridpg(lab, 2) == GridPG(1.0, 4.0, 4.0, False)
    assert certified_gridpg(lab, 0).value == 0.0 and not certified_gridpg(lab, 0).empty


def test_certified_gridpg_uniform_and_hand_case():
    assert certified_gridpg(np.ones((6, 6), dtype=int), 3).value == pytest.approx(0.25)
    lab = np.zeros((4, 4), dtype=int)
    lab[0, 0] = lab[0, 1] = lab[1, 1] = 1  # 3 in cell 0
    lab[0, 3] = lab[3, 0] = lab[3, 3] = 1  # 1 each in cells 1, 2, 3
    g = certified_gridpg(lab, 0)
    assert g.value == pytest.approx(0.5) and (g.inside, g.total) == (3, 6)
    assert certified_gridpg(lab, 1).value == pytest.approx(1 / 6)
    # a 2x3 layout: cell 4 is the middle of the bottom row
    lab23 = np.zeros((4, 6), dtype=int)
    lab23[2:, 2:4] = 1
    lab23[0, 0] = 1
    assert certified_gridpg(lab23, 4, layout=(2, 3)).value == pytest.approx(4 / 5)
    assert certified_gridpg(np.ones((4, 6), dtype=int), 0, layout=(2, 3)).value == pytest.approx(1 / 6)


def test_certified_gridpg_none_certified():
    g = certified_gridpg(np.array([[A, 0], [0, A]]), 0)
    assert g == GridPG(0.0, 0.0, 0.0, True)


def test_uncertified_gridpg_positive_mass():
    a = np.array([[2.0, 1.0, -5.0, 0.0],
                  [0.0, 0.0, 0.0, 1.0],
                  [-9.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 0.0]])
    g = gridpg(a, 0)  # positive mass 3 in cell 0, 1 in cell 1; negatives ignored
    assert g.value == pytest.approx(0.75) and g.total == pytest.approx(4.0) and not g.empty
    assert gridpg(a, 1).value == pytest.approx(0.25)
    assert gridpg(np.full((4, 4), 0.3), 2).value == pytest.approx(0.25)
    assert gridpg(-np.abs(a), 0) == GridPG(0.0, 0.0, 0.0, True)
    assert gridpg(torch.ones(4, 4), 3).value == pytest.approx(0.25)
    with pytest.raises(CertattrError):
        gridpg(np.array([[np.nan, 0], [0, 0]]), 0)


def test_certificate_gridpg_and_summary():
    lab50 = np.ones((4, 4), dtype=int)
    lab10 = np.full((4, 4), A)
    lab10[0, 0] = 1
    cert = make_cert([lab50, lab10, np.full((4, 4), A)], ks=(50, 10, 5))
    res = certificate_gridpg(cert, 0)
    assert list(res) == [50.0, 10.0, 5.0]
    assert [r.value for r in res.values()] == [0.25, 1.0, 0.0]
    s = summarize_gridpg(res.values())
    assert s["mean"] == pytest.approx(1.25 / 3) and s["n_empty"] == 1 and s["frac_empty"] == pytest.approx(1 / 3)
    assert s["mean_nonempty"] == pytest.approx(0.625)
    assert math.isnan(summarize_gridpg([GridPG(0.0, 0, 0, True)])["mean_nonempty"])


def test_gridpg_needs_divisible_size():
    with pytest.raises(CertattrError, match="divisible"):
        certified_gridpg(np.ones((5, 4), dtype=int), 0)


# --- deletion -----------------------------------------------------------------------------------------------------------
def test_fill_value_mean_is_zero_after_normalize():
    model = tiny_model()
    colour = fill_value(model, "mean")
    assert torch.allclose(colour, torch.tensor([0.485, 0.456, 0.406]), atol=1e-6)
    assert torch.allclose(model.normalize(colour.view(1, 3, 1, 1)), torch.zeros(1, 3, 1, 1), atol=1e-6)
    assert torch.equal(fill_value(model, 0.25), torch.full((3,), 0.25))
    assert torch.allclose(fill_value(model, (0.1, 0.2, 0.3)), torch.tensor([0.1, 0.2, 0.3]))
    for bad in ("zero", 1.5, (0.1, 0.2), float("nan")):
        with pytest.raises(CertattrError):
            fill_value(model, bad)


def test_deletion_masks_cumulative_smallest_first():
    lab = np.full((3, 2, 3), A)
    lab[0] = [[1, 1, 1], [1, 0, 0]]  # K=50
    lab[1] = [[1, 1, A], [0, 0, 0]]  # K=30
    lab[2] = [[A, 1, 0], [0, 0, 0]]  # K=10
    ks, masks = deletion_masks(lab, (50, 30, 10))
    assert ks == (10.0, 30.0, 50.0)
    assert masks[0].tolist() == [[False, True, False], [False, False, False]]
    assert masks[1].tolist() == [[True, True, False], [False, False, False]]
    assert masks[2].tolist() == [[True, True, True], [True, False, False]]


def _direct_probability(model, image, target):
    with torch.no_grad():
        return float(torch.softmax(model(image[None]).double(), dim=1)[0, target])


@pytest.mark.parametrize("fill", ["mean", 0.3])
def test_deletion_curve_matches_hand_built_images(fill):
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(3, 32, 32, generator=gen)
    rng = np.random.default_rng(0)
    lab = rng.choice([1, 0, A], size=(3, 32, 32), p=[0.1, 0.6, 0.3]).astype(np.int8)
    cert = make_cert(lab, ks=(50, 30, 10))
    target = 3
    curve = deletion_curve(model, image, target, cert, fill=fill)
    assert isinstance(curve, DeletionCurve) and curve.ks == (10.0, 30.0, 50.0)
    colour = torch.tensor([0.485, 0.456, 0.406]) if fill == "mean" else torch.full((3,), 0.3)
    expect, removed = [_direct_probability(model, image, target)], np.zeros((32, 32), bool)
    for idx in (2, 1, 0):  # K = 10, 30, 50
        removed |= lab[idx] == 1
        x = image.clone()
        for r, c in zip(*np.nonzero(removed)):
            x[:, r, c] = colour
        expect.append(_direct_probability(model, x, target))
        assert curve.n_removed[3 - idx] == removed.sum()
    assert np.allclose(curve.probabilities, expect, atol=1e-6)
    assert curve.n_removed[0] == 0 and np.allclose(curve.removed_fraction, curve.n_removed / 1024)
    assert np.all(np.diff(curve.n_removed) >= 0)
    p = np.asarray(expect)
    assert curve.auc == pytest.approx((1 / 3) * ((p[0] + p[1]) / 2 + (p[1] + p[2]) / 2 + (p[2] + p[3]) / 2))
    f = curve.removed_fraction
    assert curve.auc_over_fraction() == pytest.approx(sum((f[i + 1] - f[i]) * (p[i] + p[i + 1]) / 2 for i in range(3)))
    assert curve.fill == pytest.approx(tuple(colour.tolist()))


def test_deletion_with_nothing_certified_and_subset_of_ks():
    model = tiny_model()
    image = torch.full((3, 32, 32), 0.5)
    lab = np.full((2, 32, 32), A, dtype=np.int8)
    lab[0, :4] = 1  # K=50 certifies the top 4 rows; K=20 certifies nothing
    cert = make_cert(lab, ks=(50, 20))
    curve = deletion_curve(model, image, 0, cert, ks=[20])
    assert curve.ks == (20.0,) and curve.n_removed.tolist() == [0, 0]
    assert curve.probabilities[0] == pytest.approx(curve.probabilities[1]) and curve.auc == pytest.approx(curve.probabilities[0])
    full = deletion_curve(model, image, 0, cert)
    assert full.n_removed.tolist() == [0, 0, 128]


def test_deletion_errors():
    model = tiny_model()
    cert = make_cert(np.ones((1, 32, 32)), ks=(10,))
    with pytest.raises(CertattrError, match="size"):
        deletion_curve(model, torch.rand(3, 16, 16), 0, cert)
    with pytest.raises(CertattrError, match="10 classes"):
        deletion_curve(model, torch.rand(3, 32, 32), 10, cert)
    with pytest.raises(CertattrError, match="no K"):
        deletion_curve(model, torch.rand(3, 32, 32), 0, cert, ks=[30])


# --- tidy rows ------------------------------------------------------------------------------------------------------------
def test_certificate_rows_columns_and_values():
    cert = make_cert([IMG_B, np.zeros((4, 4))], ks=(50, 10), metadata={"image_id": "x", "method": "old"})
    rows = certificate_rows(cert, model="tiny", method="grad", layer="input")
    assert len(rows) == 2 and [r["k"] for r in rows] == [50.0, 10.0]
    r = rows[0]
    assert (r["image_id"], r["model"], r["method"], r["layer"]) == ("x", "tiny", "grad", "input")
    assert (r["n_pixels"], r["n_certified_1"], r["n_certified_0"], r["n_abstain"]) == (16, 12, 0, 4)
    assert r["certified_1"] == pytest.approx(0.75) and r["robustness"] == pytest.approx(0.75)
    assert r["sigma"] == 0.25 and r["radius"] == pytest.approx(0.25 * 0.6744897501960817)
    assert (r["height"], r["width"], r["n"], r["n0"], r["correction"]) == (4, 4, 100, 10, "bonferroni")
    assert rows[1]["certified_0"] == 1.0
    with pytest.raises(CertattrError, match="clash"):
        certificate_rows(cert, k=3)


def test_rows_to_frame_pool_like_certified_fractions():
    a = make_cert([IMG_A], ks=(50,), metadata={"image_id": "a"})
    b = make_cert([IMG_B], ks=(50,), metadata={"image_id": "b"})
    df = to_frame(certificate_rows(a) + certificate_rows(b))
    assert list(df["image_id"]) == ["a", "b"]
    pooled = df.groupby("k")[["n_certified_1", "n_pixels"]].sum()
    assert pooled.loc[50.0, "n_certified_1"] / pooled.loc[50.0, "n_pixels"] == pytest.approx(
        certified_fractions([a, b])[50.0]["certified_1"])


def test_gridpg_rows():
    lab = np.full((4, 4), A)
    lab[:2, 2:] = 1
    lab[3, 3] = 1
    cert = make_cert([lab], ks=(30,), metadata={"image_id": "grid0000"})
    attribution = np.zeros((4, 4))
    attribution[0, 2] = 3.0
    attribution[3, 0] = 1.0
    (row,) = gridpg_rows(cert, 1, attribution=attribution, method="rise")
    assert row["certified_gridpg"] == pytest.approx(0.8) and row["n_certified_1"] == 5 and row["n_certified_1_inside"] == 4
    assert row["no_certified"] is False and row["target_cell"] == 1 and row["method"] == "rise"
    assert row["gridpg"] == pytest.approx(0.75) and row["robustness"] == pytest.approx(5 / 16)
    assert "gridpg" not in gridpg_rows(cert, 1)[0]


def test_deletion_rows():
    curve = DeletionCurve(ks=(10.0, 30.0), target=2, fill=(0.5, 0.5, 0.5), fill_spec="mean",
                          n_removed=np.array([0, 3, 5]), removed_fraction=np.array([0, 0.3, 0.5]),
                          probabilities=np.array([0.8, 0.4, 0.2]))
    rows = deletion_rows(curve, image_id="x", method="grad")
    assert [r["step"] for r in rows] == [0, 1, 2] and math.isnan(rows[0]["k"]) and rows[2]["k"] == 30.0
    assert rows[1]["relative_probability"] == pytest.approx(0.5)
    # AUC over t = 0, 0.5, 1: 0.5 * (0.6 + 0.3) = 0.45
    assert all(r["auc"] == pytest.approx(0.45) for r in rows)
    assert curve.auc_over_fraction() == pytest.approx(0.3 * 0.6 + 0.2 * 0.3)


def test_end_to_end_with_certify_maps():
    rng = np.random.default_rng(1)
    base = np.zeros((8, 8))
    base[:4, :4] = 5.0  # strong attribution in cell 0
    maps = base[None] + 0.1 * rng.standard_normal((100, 8, 8))
    cert = certify_maps(maps, [25, 10], sigma=0.25, alpha=0.05, metadata={"image_id": "g"})
    res = certificate_gridpg(cert, 0)
    assert res[25.0].value == pytest.approx(1.0) and res[25.0].total == 16
    rows = certificate_rows(cert)
    assert rows[0]["n_certified_1"] == 16 and rows[0]["image_id"] == "g"
