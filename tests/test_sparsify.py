"""Top-K sparsification on hand-made maps with ties, zeros and saturation (SPEC §1.3)."""
import numpy as np
import pytest
import torch

from certattr.sparsify import sparsify, topk_thresholds, upsample_maps
from certattr.validation import CertattrError


def reference_threshold(values, k):
    """numpy-free linear-interpolation percentile: rank (100-K)/100 * (N-1) in the sorted list."""
    s = sorted(abs(v) for v in values)
    pos = (100 - k) / 100 * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def test_threshold_matches_hand_computation():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 9, 11))
    for k in (5, 25, 50, 73.5, 100):
        assert np.isclose(topk_thresholds(a, [k])[0, 0], reference_threshold(a.ravel(), k))


def test_distinct_values_select_about_k_percent_and_sign_is_ignored():
    a = np.arange(1, 101, dtype=float).reshape(1, 10, 10) * np.where(np.arange(100) % 2, 1, -1).reshape(1, 10, 10)
    sel = sparsify(a, [10, 50])
    assert sel[0].sum() == 10 and sel[1].sum() == 50
    assert set(np.abs(a[sel[0]]).astype(int)) == set(range(91, 101))


def test_zeros_are_never_important():
    a = np.zeros((1, 10, 10))
    a[0, 0, :3] = [3.0, 2.0, 1.0]  # a CAM after ReLU: 3 positive pixels, 97 zeros
    sel = sparsify(a, [50, 10, 1])
    assert sel[0].sum() == 3 and sel[1].sum() == 3  # fewer than K% selected: zeros tie at the threshold
    assert sel[2].sum() == 1 and sel[2][0, 0, 0]  # t_1 = 2.01 lies between 2 and 3


def test_ties_at_the_threshold_are_not_important():
    a = np.array([[[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 5.0, 5.0]]])
    sel = sparsify(a, [50])[0]
    assert sel.sum() == 2 and sel[0, 1, 2] and sel[0, 1, 3]


def test_saturation_does_not_empty_the_topk_set():
    """The reference clipped at the clean map's 99.5th percentile; a saturated noisy map then selected nothing.
    Ranking the raw |a| keeps the largest values selectable."""
    rng = np.random.default_rng(1)
    clean = rng.random((32, 32))
    noisy = clean * 10  # most of it would exceed the clean map's 99.5th percentile
    clipped = np.minimum(noisy, np.percentile(clean, 99.5))
    assert sparsify(clipped, [25])[0].sum() == 0  # the reference behaviour: empty set
    assert sparsify(noisy, [25])[0].sum() == 256  # ours: exactly 25%


def test_constant_map_selects_nothing():
    assert sparsify(np.full((2, 8, 8), 0.3), [50, 5]).sum() == 0


def test_bad_input():
    with pytest.raises(CertattrError, match="0 < K <= 100"):
        sparsify(np.ones((4, 4)), [0])
    with pytest.raises(CertattrError, match="NaN or inf"):
        sparsify(np.array([[np.nan, 1.0]]), [50])


def test_upsample_is_bilinear_align_corners_false():
    small = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample_maps(small, (4, 4))
    # align_corners=False: the output pixel centre 0.5/4 maps to input coordinate -0.25 -> clamped to 0
    assert up.shape == (1, 4, 4)
    assert torch.isclose(up[0, 0, 0], torch.tensor(0.0)) and torch.isclose(up[0, 1, 1], torch.tensor(0.75 * 0 + 0.0 + 0.75))
    assert torch.isclose(up[0, 3, 3], torch.tensor(3.0))
    assert torch.equal(upsample_maps(up, (4, 4)), up)
