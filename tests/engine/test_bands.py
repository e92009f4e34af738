"""The band certificate: one claim for the whole top-K ladder at one alpha (certattr.engine.bands)."""
import io
import json

import numpy as np
import pytest
from scipy.stats import beta, binom

from certattr.engine.bands import band_extent, band_labels, band_levels
from certattr.engine.certificate import ABSTAIN, Certificate
from certattr.engine.certify import certify_maps
from certattr.engine.statistics import agreeing_counts, binomial_pvalues, majority_labels


def _maps(seed, n=300, hw=(9, 11)):
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 1.0, hw)
    return base[None] * np.exp(0.8 * rng.standard_normal((n, *hw)))


def _brute_force_bands(cert):
    """Per pixel, with scipy's binomial directly: the chains, the level and the labels."""
    m, H, W = cert.labels.shape
    N, P = cert.n - cert.n0, H * W
    out = np.full((m, H, W), ABSTAIN, dtype=np.int8)
    for y in range(H):
        for x in range(W):
            maj = [int(cert.majority[j, y, x]) for j in range(m)]
            level = cert.alpha / P if len(set(maj)) == 1 else cert.alpha / (2 * P)
            for j in range(m):
                c = int(cert.counts[j, y, x])
                if binom.sf(c - 1, N, cert.tau) <= level:
                    out[j, y, x] = maj[j]
    return out


def test_band_labels_match_a_brute_force_computation():
    cert = certify_maps(_maps(0), [50, 30, 10, 5], sigma=0.25, n0=10, alpha=0.01)
    want = _brute_force_bands(cert)
    np.testing.assert_array_equal(cert.band_labels, want)
    # the n0 labels are nested along the ladder: ones first, then zeros
    assert (np.diff(cert.majority.astype(int), axis=0) <= 0).all()
    assert {1, 0} <= set(np.unique(want)) and (want == ABSTAIN).any()


@pytest.mark.parametrize("ks", [(50,), (50, 10), (50, 25, 5), (50, 40, 30, 25, 20, 10, 5)])
@pytest.mark.parametrize("seed", [1, 2])
def test_bands_certify_a_superset_of_per_k_certificates_at_alpha_over_m(ks, seed):
    maps, alpha = _maps(seed), 0.01
    per_k = certify_maps(maps, ks, sigma=0.25, alpha=alpha / len(ks))  # jointly valid at alpha (union bound)
    bands = certify_maps(maps, ks, sigma=0.25, alpha=alpha).band_labels
    for j in range(len(ks)):
        certified = per_k.labels[j] != ABSTAIN
        np.testing.assert_array_equal(bands[j][certified], per_k.labels[j][certified])
    gained = int(((bands != ABSTAIN) & (per_k.labels == ABSTAIN)).sum())
    if len(ks) >= 3:
        assert gained > 0  # strictly more on these maps: alpha/(mP) < alpha/(2P)
    if len(ks) == 1:
        np.testing.assert_array_equal(bands, per_k.labels)  # one K: the same certificate


def test_band_levels_one_or_two_chains():
    majority = np.array([[[1, 1, 0]], [[1, 0, 0]]], dtype=np.int8)  # (m=2, 1, 3): all 1, 1 then 0, all 0
    np.testing.assert_allclose(band_levels(majority, 0.3)[0], [0.1, 0.05, 0.1])


def test_band_extent_reads_the_finest_inside_and_coarsest_outside():
    labels = np.array([[[1, 1, 0, ABSTAIN]], [[1, ABSTAIN, 0, ABSTAIN]], [[ABSTAIN, 0, 0, 0]]], dtype=np.int8)
    inside, outside = band_extent(labels, (50, 25, 5))
    np.testing.assert_array_equal(inside[0], [25, 50, np.nan, np.nan])
    np.testing.assert_array_equal(outside[0], [np.nan, 5, 50, 5])


def test_band_labels_are_saved_and_old_files_compute_them(tmp_path):
    cert = certify_maps(_maps(3), [50, 25, 5], sigma=0.25)
    again = Certificate.load(cert.save(tmp_path / "c.npz"))
    assert again == cert
    np.testing.assert_array_equal(again.band_labels, cert.band_labels)
    with np.load(tmp_path / "c.npz") as data:
        params = json.loads(bytes(data["params"]).decode())
        arrays = {k: data[k] for k in data.files if k not in ("params", "band_labels")}
    params["format"] = 3
    params.pop("anytime")
    buf = io.BytesIO()
    np.savez_compressed(buf, params=np.frombuffer(json.dumps(params).encode(), dtype=np.uint8), **arrays)
    (tmp_path / "old.npz").write_bytes(buf.getvalue())
    np.testing.assert_array_equal(Certificate.load(tmp_path / "old.npz").band_labels, cert.band_labels)
    text = cert.statement()
    assert "band certificate" in text and "1 - alpha = 0.999" in text
    assert set(cert.summary()["band_fractions"]) == {"50.0", "25.0", "5.0"}


# --- validity: a simulation with known per-pixel probabilities -------------------------------------------

RUNS, N_TEST, N0, TAU = 10_000, 90, 10, 0.75
#: code distributions of the pixels (P(code = 0..3); q_j = P(code >= j)): four pixels whose label-1 claim at the
#: largest K and label-0 claim at the smallest K are both just false (q_1 = 0.7499 < tau, q_3 = 0.2501 > 1 - tau),
#: and one pixel just above tau whose claims are true
Q = np.array([[0.7499, 0.5, 0.2501]] * 4 + [[0.76, 0.751, 0.249]])
#: alpha with alpha/P exactly a binomial tail (no slack from discreteness for the per-K variant)
ALPHA = len(Q) * binom.sf(76, N_TEST, TAU) * (1 + 1e-12)


def _simulated_certificates(rng):
    """Majority labels and p-values (m, RUNS, P) of the fixed-n certificate on simulated nested top-K codes."""
    probs = -np.diff(np.c_[np.ones(len(Q)), Q, np.zeros(len(Q))], axis=1)  # (P, m+1): P(code = c)
    m = Q.shape[1]
    sel = np.stack([rng.multinomial(N0, p, size=RUNS) for p in probs], axis=1)  # (RUNS, P, m+1)
    test = np.stack([rng.multinomial(N_TEST, p, size=RUNS) for p in probs], axis=1)
    ones_sel = np.stack([sel[..., j:].sum(-1) for j in range(1, m + 1)])  # (m, RUNS, P)
    ones_test = np.stack([test[..., j:].sum(-1) for j in range(1, m + 1)])
    majority = majority_labels(ones_sel, N0)
    pvalues = binomial_pvalues(N_TEST, TAU)[agreeing_counts(majority, ones_test, N_TEST)]
    return majority, pvalues


def _family_wise_error(labels):
    """Fraction of runs with a false claim: label 1 where q_j < tau, label 0 where q_j > 1 - tau."""
    q = Q.T[:, None, :]  # (m, 1, P)
    wrong = ((labels == 1) & (q < TAU)) | ((labels == 0) & (q > 1 - TAU))
    return int(wrong.any(axis=(0, 2)).sum())


def _clopper_pearson(k, n, level=0.001):
    lo = beta.ppf(level / 2, k, n - k + 1) if k else 0.0
    hi = beta.ppf(1 - level / 2, k + 1, n - k) if k < n else 1.0
    return lo, hi


def test_band_certificate_family_wise_error_is_at_most_alpha_and_per_k_read_jointly_is_not():
    majority, pvalues = _simulated_certificates(np.random.default_rng(2025))
    n_pixels = len(Q)
    bands = band_labels(majority, pvalues, ALPHA, n_pixels=n_pixels)
    errors = _family_wise_error(bands)
    lo, hi = _clopper_pearson(errors, RUNS)
    assert lo <= ALPHA, (errors / RUNS, lo, hi, ALPHA)  # consistent with FWER <= alpha (99.9% interval)
    assert errors / RUNS > 0.5 * ALPHA  # the simulation is adversarial: the error is near alpha, not ~0
    # the invalid variant: the paper's per-K certificates at alpha each, read as one claim
    per_k = np.where(pvalues <= ALPHA / n_pixels, majority, ABSTAIN)
    lo_bad, _ = _clopper_pearson(_family_wise_error(per_k), RUNS)
    assert lo_bad > ALPHA, (lo_bad, ALPHA)  # shown to exceed alpha
    # per-K at alpha/m each (valid) certifies a subset of the band certificate in every run
    valid_per_k = pvalues <= ALPHA / (n_pixels * Q.shape[1])
    assert (bands[valid_per_k] != ABSTAIN).all()
