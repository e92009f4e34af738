"""Top-K sparsification on hand-made maps with ties, zeros and saturation."""
import numpy as np
import pytest
import torch

from certattr.engine.sparsify import sparsify, topk_thresholds, upsample_maps
from certattr.engine.validation import CertattrError


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
    """The reference clipped each noisy map at the clean map's 99.5th percentile (and so at 1.0 after
    normalising by it): a noisy map above that level then tied at the clip value and selected nothing.
    Ranking the raw |a|: whatever the scale of a map and however little of it lies below a clean map's
    range, the selection is exactly the set of pixels above the exact percentile, counted independently
    (brute force in fractions, and the plain top-count by sorting for distinct values), also at a K
    smaller than the 0.5% that a clip at the 99.5th percentile would tie."""
    rng = np.random.default_rng(1)
    clean = rng.random((32, 32))
    for scale in (10.0, 1e3, 1e-3):
        noisy = clean * scale + scale  # every value above the clean map's range
        for k, count in (("25", 256), ("0.4", 5)):  # q = (100 - K)/100 * 1023: lo = 767 and 1018
            sel = sparsify(noisy, [float(k)])[0, 0]
            want, _ = brute_force_selection(noisy, k)
            assert np.array_equal(sel, want) and sel.sum() == count, (scale, k)
            largest = np.argsort(noisy, axis=None)[-count:]
            assert set(np.flatnonzero(sel)) == set(largest.tolist()), (scale, k)


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


# --- the exact threshold: rounding never selects a tie block ---------------------------------------------
KS_EXACT = ("5", "10", "12.5", "25", "30", "50", "73.5", "99.9", "100")


def brute_force_selection(values, k: str):
    """{p : |a_p| > t_K} with t_K the linear-interpolation percentile computed in exact rationals."""
    from fractions import Fraction

    flat = [Fraction(abs(float(v))) for v in np.ravel(values)]
    s = sorted(flat)
    q = (100 - Fraction(k)) / 100 * (len(s) - 1)
    lo = q.numerator // q.denominator
    hi = min(lo + 1, len(s) - 1)
    t = s[lo] + (q - lo) * (s[hi] - s[lo])
    return np.array([v > t for v in flat]).reshape(np.shape(values)), t


def test_a_tie_block_at_the_exact_threshold_is_not_selected():
    """The exact 70th percentile of 0..62 and 28 x 100 is 100 (position 63 of 0..90); np.percentile rounds it
    to just below 100 and so selects the 28 tied pixels. Strict '>' against the exact value selects none."""
    a = np.r_[np.arange(63.), np.full(28, 100.)].reshape(1, 7, 13)
    assert (a > np.percentile(a, 70)).sum() == 28  # the float-rounded rule this replaces
    want, t = brute_force_selection(a, "30")
    assert t == 100 and want.sum() == 0
    assert sparsify(a, [30])[0].sum() == 0
    assert topk_thresholds(a, [30])[0, 0] == 100.0


@pytest.mark.parametrize("scale", [1.0, 0.1, 1 / 3])
def test_selection_equals_exact_rational_brute_force_on_maps_with_ties(scale):
    """Small maps of few distinct values (many ties), several shapes, K as decimals: the selection equals
    the brute force in fractions, and |a| > topk_thresholds is the same set."""
    rng = np.random.default_rng(int(scale * 1000))
    for shape in ((6, 7, 13), (5, 4, 5), (4, 1, 2), (3, 10, 10), (2, 1, 1)):
        maps = rng.integers(-4, 5, size=shape) * scale
        maps[0] = np.repeat(rng.integers(0, 3, size=shape[1] * shape[2] // 2 + 1), 2)[: shape[1] * shape[2]].reshape(
            shape[1:]) * scale
        for k in KS_EXACT:
            sel = sparsify(maps, [float(k)])[0]
            thr = topk_thresholds(maps, [float(k)])[0]
            for i in range(shape[0]):
                want, t = brute_force_selection(maps[i], k)
                assert np.array_equal(sel[i], want), (shape, k, i)
                assert np.array_equal(np.abs(maps[i]) > thr[i], want), (shape, k, i)
                assert abs(thr[i] - float(t)) <= 2 * np.spacing(max(float(t), 1e-300)), (shape, k, i)


def test_exact_rule_finds_every_float_rounding_case_np_percentile_gets_wrong():
    """On random tie-heavy maps the brute force disagrees with np.percentile's float threshold somewhere
    (so the brute-force test above can tell the two apart), and never with ours."""
    rng = np.random.default_rng(7)
    wrong_np = 0
    for _ in range(300):
        n_low, n_high = rng.integers(1, 80), rng.integers(2, 40)
        a = np.r_[np.arange(float(n_low)), np.full(n_high, 100.0)][None]
        for k in ("5", "10", "12.5", "25", "30", "50"):
            want, _ = brute_force_selection(a, k)
            wrong_np += not np.array_equal(np.abs(a) > np.percentile(a, 100 - float(k), axis=1)[:, None], want)
            assert np.array_equal(sparsify(a[:, None], [float(k)])[0, :, 0], want)
    assert wrong_np > 0


def test_order_of_ks_is_kept_and_many_maps_are_vectorised():
    rng = np.random.default_rng(3)
    maps = rng.integers(0, 6, size=(40, 9, 9)).astype(np.float32)
    both = sparsify(maps, [12.5, 50])
    assert np.array_equal(both[0], sparsify(maps, [12.5])[0]) and np.array_equal(both[1], sparsify(maps, [50])[0])
    for i in range(40):
        assert np.array_equal(both[0, i], brute_force_selection(maps[i], "12.5")[0])
