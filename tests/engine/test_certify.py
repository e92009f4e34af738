"""Certification against closed forms and a brute-force binomial computation."""
import math

import numpy as np
import pytest
from scipy.stats import binom

import certattr
from certattr.engine.certify import certify_binary, certify_maps
from certattr.engine.statistics import certified_radius, certifying_count, min_samples_to_certify
from certattr.engine.certificate import ABSTAIN, Certificate


def brute_force_labels(binary, n0, tau, alpha, P):
    """Pixel by pixel with an independent binomial tail sum (math.comb), Bonferroni."""
    n = binary.shape[0]
    m = n - n0
    out = np.empty(binary.shape[1:], dtype=int)
    for idx in np.ndindex(*binary.shape[1:]):
        col = binary[(slice(None),) + idx]
        ones = int(col[:n0].sum())
        label = 1 if 2 * ones > n0 else 0
        c = int((col[n0:] == label).sum())
        pval = sum(math.comb(m, j) * tau ** j * (1 - tau) ** (m - j) for j in range(c, m + 1))
        out[idx] = label if pval <= alpha / P else ABSTAIN
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certify_binary_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, n0, H, W = 60, 8, 6, 7
    p = rng.choice([0.02, 0.3, 0.5, 0.8, 0.99], size=(H, W))
    binary = rng.random((n, H, W)) < p
    for tau, alpha in [(0.6, 0.05), (0.75, 0.001), (0.9, 0.2)]:
        labels, majority, counts, pvalues = certify_binary(binary, n0, tau, alpha)
        np.testing.assert_array_equal(labels, brute_force_labels(binary, n0, tau, alpha, H * W))
        np.testing.assert_allclose(pvalues, binom.sf(counts - 1, n - n0, tau))


def test_needs_88_of_90_at_paper_defaults():
    P, tau, alpha, m = 224 ** 2, 0.75, 0.001, 90
    pv = certattr.engine.statistics.binomial_pvalues(m, tau)
    assert pv[88] <= alpha / P < pv[87]
    # end to end: a pixel column with exactly c agreeing test samples, certified iff c >= 88
    n, n0 = 100, 10
    binary = np.zeros((n, 224, 224), dtype=bool)
    binary[:n0] = True  # majority 1 everywhere
    for c in (86, 87, 88, 89, 90):
        binary[n0:, 0, c] = np.arange(m) < c
    labels = certify_binary(binary, n0, tau, alpha)[0]
    assert [labels[0, c] for c in (86, 87, 88, 89, 90)] == [ABSTAIN, ABSTAIN, 1, 1, 1]


def test_holm_certifies_a_superset_of_bonferroni():
    rng = np.random.default_rng(3)
    n, n0 = 80, 10
    p = rng.uniform(0.6, 1.0, size=(20, 20))
    binary = rng.random((n, 20, 20)) < p
    bonf = certify_binary(binary, n0, 0.75, 0.05, "bonferroni")[0]
    holm = certify_binary(binary, n0, 0.75, 0.05, "holm")[0]
    assert np.all(holm[bonf != ABSTAIN] == bonf[bonf != ABSTAIN])
    # a map where 360 of 400 pixels agree in every sample: Holm then tests the other 40 at alpha/40,
    # Bonferroni at alpha/400; a count c with alpha/400 < p-value <= alpha/40 separates them
    m, tau, alpha = n - n0, 0.75, 0.05
    pv = binom.sf(np.arange(m + 1) - 1, m, tau)
    c = int(np.flatnonzero((pv > alpha / 400) & (pv <= alpha / 40))[0])
    binary = np.ones((n, 20, 20), dtype=bool)
    binary[n0:, :2, :] = np.arange(m)[:, None, None] < c  # 40 pixels with exactly c agreeing test samples
    bonf = certify_binary(binary, n0, tau, alpha, "bonferroni")[0]
    holm = certify_binary(binary, n0, tau, alpha, "holm")[0]
    assert (bonf != ABSTAIN).sum() == 360 and (holm != ABSTAIN).sum() == 400


def test_holm_matches_textbook_step_down():
    pvals = np.array([0.001, 0.04, 0.03, 0.2, 0.012])
    # sorted: 0.001 <= .05/5, 0.012 <= .05/4, 0.03 > .05/3 -> stop: reject the first two
    np.testing.assert_array_equal(certattr.engine.statistics.holm_rejections(pvals, 0.05), [True, False, False, False, True])


@pytest.mark.parametrize("sigma,expected", [(0.15, 0.101), (0.25, 0.169), (0.33, 0.223)])
def test_radius(sigma, expected):
    assert round(certified_radius(sigma, 0.75), 3) == expected


def test_min_samples_to_certify_is_tight():
    for tau, alpha, P in [(0.75, 0.001, 224 ** 2), (0.9, 0.01, 100), (0.6, 0.05, 1)]:
        n = min_samples_to_certify(10, tau, alpha, P)
        assert tau ** (n - 10) <= alpha / P < tau ** (n - 11)


@pytest.mark.parametrize("n_test,tau,alpha,n_pixels", [(90, 0.75, 0.001, 224 * 224), (10, 0.75, 0.05, 1),
                                                       (5, 0.75, 0.001, 100), (200, 0.6, 0.01, 50)])
def test_certifying_count_is_the_smallest_passing_count(n_test, tau, alpha, n_pixels):
    passing = [c for c in range(n_test + 1) if binom.sf(c - 1, n_test, tau) <= alpha / n_pixels]
    expected = passing[0] if passing else n_test + 1
    assert certifying_count(n_test, tau, alpha, n_pixels) == expected
    assert (5, 0.75, 0.001, 100) != (n_test, tau, alpha, n_pixels) or expected == n_test + 1  # the case with none


def test_too_few_samples_warns_with_the_smallest_n():
    maps = np.random.default_rng(0).random((30, 16, 16))
    with pytest.warns(certattr.CertificationWarning, match=r"smallest n that could certify is \d+"):
        cert = certify_maps(maps, [50], sigma=0.25, n0=10, tau=0.9, alpha=0.001)
    assert (cert.labels == ABSTAIN).all()


def test_certificate_roundtrip_and_overlay(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.random((12, 12))
    maps = base[None] + 0.01 * rng.standard_normal((100, 12, 12))
    cert = certify_maps(maps, [10, 50, 25], sigma=0.25, metadata={"image_id": "x"})
    assert cert.ks == (50.0, 25.0, 10.0)
    for f in cert.fractions().values():
        assert math.isclose(sum(f.values()), 1.0)
    path = cert.save(tmp_path / "c.npz")
    again = Certificate.load(path)
    assert again == cert and again.radius == cert.radius
    ov = cert.overlay()
    for k in (50.0, 25.0, 10.0):  # smaller K wins
        smaller = [s for s in cert.ks if s < k]
        expected = (cert.label_map(k) == 1) & ~np.any([cert.label_map(s) == 1 for s in smaller] or [np.zeros_like(ov, bool)], axis=0)
        assert np.array_equal(ov == k, expected)
    text = cert.statement()
    assert "1 - 3*alpha" in text and "Bonferroni" in text and "R = 0.169" in text


# --- per-pixel certified radius ------------------------------------------------------------------------------
def bisection_lower_bound(c, m, level, iters=200):
    """The p in [0, 1] with P(Bin(m, p) >= c) = level, by bisection on binom.sf (increasing in p)."""
    if c == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        if binom.sf(c - 1, m, mid) < level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_clopper_pearson_lower_bound_against_bisection_and_closed_form():
    from certattr.engine.statistics import clopper_pearson_lower

    for m, level in [(90, 0.001 / 224 ** 2), (40, 0.05), (7, 0.2)]:
        got = clopper_pearson_lower(np.arange(m + 1), m, level)
        want = [bisection_lower_bound(c, m, level) for c in range(m + 1)]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert got[m] == pytest.approx(level ** (1 / m), rel=1e-12)  # c = m: p^m = level
        assert np.all(np.diff(got) > 0)


@pytest.mark.parametrize("correction", ["bonferroni", "holm"])
def test_pixel_radii_match_an_independent_computation(correction):
    from scipy.stats import norm

    rng = np.random.default_rng(11)
    base = rng.random((10, 12))
    maps = base[None] + 0.05 * rng.standard_normal((120, 10, 12))
    sigma, tau, alpha = 0.25, 0.75, 0.01
    cert = certify_maps(maps, [50, 20], sigma=sigma, n0=10, tau=tau, alpha=alpha, correction=correction)
    m, P = 110, 120
    for i, k in enumerate(cert.ks):
        radii = cert.pixel_radii(k)
        assert radii.shape == (10, 12) and radii.dtype == np.float64
        for idx in np.ndindex(10, 12):
            p_lower = bisection_lower_bound(int(cert.counts[i][idx]), m, alpha / P)
            want = sigma * norm.ppf(p_lower) if p_lower > 0.5 else 0.0
            assert radii[idx] == pytest.approx(want, rel=1e-7, abs=1e-12), (k, idx)
        np.testing.assert_array_equal(cert.pixel_radius_certified(k), radii > 0)
        bonferroni = cert.pvalues[i] <= alpha / P
        assert bonferroni.any() and (radii[bonferroni] >= cert.radius).all()
        if correction == "bonferroni":  # every certified pixel certifies at least R; abstaining ones less
            certified = cert.labels[i] != ABSTAIN
            assert (radii[certified] >= cert.radius).all() and (radii[~certified] < cert.radius).all()
        assert (radii > 0).sum() >= bonferroni.sum()  # p_lower > 1/2 is weaker than p_lower >= tau


def test_pixel_radius_at_the_paper_defaults():
    """n = 100, n0 = 10, alpha = 0.001, P = 224^2: 90/90 agreeing gives p_lower = (alpha/P)^(1/90) and the
    largest radius; 88/90 (the fewest that certify at tau = 0.75) gives R_p >= R; 50/90 gives none."""
    from scipy.stats import norm

    P = 224 ** 2
    counts = np.full((1, 224, 224), 50, np.int32)
    counts[0, 0, :3] = [90, 88, 87]
    shape = counts.shape
    cert = Certificate(labels=np.full(shape, ABSTAIN, np.int8), majority=np.ones(shape, np.int8), counts=counts,
                       pvalues=binom.sf(counts - 1, 90, 0.75), mean_sparsified=np.zeros(shape, np.float32),
                       ks=(50.0,), sigma=0.25, tau=0.75, alpha=0.001, n=100, n0=10, correction="bonferroni")
    r = cert.pixel_radii(50)
    assert r[0, 0] == pytest.approx(0.25 * norm.ppf((0.001 / P) ** (1 / 90)), rel=1e-12)
    assert r[0, 1] >= cert.radius > r[0, 2] > 0 and r[1, 1] == 0
    assert not cert.pixel_radius_certified(50)[1, 1]


def test_pixel_radii_are_saved_and_old_files_still_load(tmp_path):
    import io
    import json

    rng = np.random.default_rng(3)
    maps = rng.random((8, 8))[None] + 0.01 * rng.standard_normal((100, 8, 8))
    cert = certify_maps(maps, [50, 10], sigma=0.15)
    again = Certificate.load(cert.save(tmp_path / "c.npz"))
    assert again == cert
    np.testing.assert_array_equal(again.radii, cert.radii)
    with np.load(tmp_path / "c.npz") as data:
        assert "radii" in data.files
    # a format-1 file (written before per-pixel radii): no radii array; they are recomputed from the counts
    with np.load(tmp_path / "c.npz") as data:
        params = json.loads(bytes(data["params"]).decode())
        arrays = {k: data[k] for k in data.files if k not in ("params", "radii")}
    params["format"] = 1
    buf = io.BytesIO()
    np.savez_compressed(buf, params=np.frombuffer(json.dumps(params).encode(), dtype=np.uint8), **arrays)
    (tmp_path / "old.npz").write_bytes(buf.getvalue())
    old = Certificate.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.radii, cert.radii)
    params["format"] = 99
    buf = io.BytesIO()
    np.savez_compressed(buf, params=np.frombuffer(json.dumps(params).encode(), dtype=np.uint8), **arrays)
    (tmp_path / "future.npz").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=r"format 99 is not understood.*reads formats \[1, 2, 3, 4\]"):
        Certificate.load(tmp_path / "future.npz")


def test_statement_says_strict_radius_and_per_pixel_level():
    cert = certify_maps(np.random.default_rng(0).random((100, 6, 6)), [50], sigma=0.25)
    text = cert.statement()
    assert "||delta||_2 < R = 0.169" in text and "<= R" not in text
    assert "alpha/P" in text and "R_p" in text
    holm = certify_maps(np.random.default_rng(0).random((100, 6, 6)), [50], sigma=0.25, correction="holm")
    assert "Bonferroni level also for this Holm certificate" in holm.statement()


def test_pixel_radii_follow_a_subset_of_ks():
    import dataclasses

    cert = certify_maps(np.random.default_rng(1).random((100, 6, 6)), [50, 25, 10], sigma=0.25)
    sub = dataclasses.replace(cert, labels=cert.labels[[1]], majority=cert.majority[[1]], counts=cert.counts[[1]],
                              pvalues=cert.pvalues[[1]], mean_sparsified=cert.mean_sparsified[[1]], ks=(25.0,))
    np.testing.assert_array_equal(sub.pixel_radii(25), cert.pixel_radii(25))


def test_the_counter_counts_binary_maps_and_only_its_certificate_needs_n0():
    """MapCounter is the count step alone: fed the top-K maps (sparsify, flat_maps) chunk by chunk, its frequencies
    are the mean of the binary maps; with no selection samples (n0 = 0) it counts but refuses to certify."""
    from certattr.engine.certify import MapCounter
    from certattr.engine.sparsify import flat_maps, sparsify
    from certattr.engine.validation import CertattrError

    maps = np.random.default_rng(3).normal(size=(23, 6, 5))
    counter = MapCounter([50, 10], 23, 0, (6, 5))
    for start in range(0, 23, 10):
        chunk = maps[start:start + 10]
        counter.add(sparsify(chunk, [50, 10]), flat_maps(chunk))
    np.testing.assert_array_equal(counter.frequencies(), sparsify(maps, [50, 10]).mean(axis=1))
    with pytest.raises(CertattrError, match="n0=0 is not allowed"):
        counter.certificate(sigma=0.25, tau=0.75, alpha=0.01, correction="holm")
    with pytest.raises(CertattrError, match="more than n = 23"):
        counter.add(sparsify(maps[:1], [50, 10]), flat_maps(maps[:1]))
