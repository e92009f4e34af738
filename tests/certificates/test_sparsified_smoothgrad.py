"""Top-k certificates of Sparsified SmoothGrad (Levine et al.): floors, Hoeffding, overlap, ranks, Theorem 3."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from certattr.models.testing import tiny_model
from certattr.certificates.sparsified_smoothgrad import (
    TopKCertificate, certified_overlap, certified_ranks, certify_topk, empirical_ceil, empirical_floor,
    hoeffding_term, median_rank_bound, median_ranks, overlap_radii, pair_threshold, population_ceil,
    population_floor, relaxed_sparsify, sample_ranks, sparsified_smoothgrad, sparsify_topk, topk_certificate,
    topk_count)
from certattr.certificates.settings import MethodAtLayer, SparsifiedSmoothing, TopKCertConfig
from certattr.engine.config import SamplingConfig
from certattr.engine.validation import CertattrError

torch.set_num_threads(1)
U = np.linspace(0.0, 1.0, 201)


# --- floor / ceiling ---------------------------------------------------------------------------------
def test_population_floor_monotone_in_value_and_eps_and_identity_at_zero():
    prev = None
    for eps in [0.0, 0.01, 0.1, 0.5, 2.0]:
        f = population_floor(U, eps, 0.25)
        assert np.all(np.diff(f) >= 0)  # non-decreasing in the value
        assert np.all((f >= 0) & (f <= U + 1e-15))
        if prev is not None:
            assert np.all(f <= prev + 1e-15)  # non-increasing in eps
        prev = f
    np.testing.assert_allclose(population_floor(U, 0.0, 0.25), U, atol=1e-12)
    np.testing.assert_allclose(population_ceil(U, 0.0, 0.25), U, atol=1e-12)
    # symmetry: ceil(u) = 1 - floor(1 - u); the closed form
    np.testing.assert_allclose(population_ceil(U, 0.1, 0.25), 1 - population_floor(1 - U, 0.1, 0.25), atol=1e-12)
    assert population_floor(0.5, 0.25, 0.25) == pytest.approx(norm.cdf(-1.0))


def test_empirical_floor_monotone_handles_small_values_and_ceil_mirrors():
    c = 0.03
    prev = None
    for eps in [0.0, 0.05, 0.3]:
        f = empirical_floor(U, eps, 0.25, c)
        assert np.all(np.isfinite(f)) and np.all(np.diff(f) >= 0) and np.all((f >= 0) & (f <= 1))
        if prev is not None:
            assert np.all(f <= prev + 1e-15)
        prev = f
    # at eps = 0 the empirical floor is s - 2c (clipped at 0); s - c <= 0 gives 0 (no claim), not NaN
    np.testing.assert_allclose(empirical_floor(U, 0.0, 0.25, c), np.clip(U - 2 * c, 0, 1), atol=1e-12)
    assert empirical_floor(0.02, 0.1, 0.25, c) == 0.0
    assert empirical_floor(0.03, 0.1, 0.25, c) == 0.0
    np.testing.assert_allclose(empirical_ceil(U, 0.1, 0.25, c), 1 - empirical_floor(1 - U, 0.1, 0.25, c), atol=1e-12)
    # the direct formula where it is defined
    s = 0.6
    assert empirical_floor(s, 0.1, 0.25, c) == pytest.approx(norm.cdf(norm.ppf(s - c) - 0.1 / 0.25) - c)


def test_hoeffding_term_equals_direct_computation():
    for n, d, eta in [(8192, 224 * 224, 0.95), (100, 10, 0.5), (1, 1, 0.99)]:
        c = hoeffding_term(n, d, eta)
        assert c == pytest.approx(math.sqrt(math.log(2 * d / (1 - eta)) / (2 * n)), rel=1e-15)
        assert 2 * d * math.exp(-2 * n * c * c) == pytest.approx(1 - eta, rel=1e-10)  # union of d two-sided tails
    assert hoeffding_term(8192, 224 * 224, 0.95) == pytest.approx(0.02976, abs=1e-5)


def test_population_floor_holds_for_smoothed_step_function_monte_carlo():
    """f(x) = 1[x >= 0] in 1-D: s(x) = Phi(x/sigma); check s(x + delta) >= floor(s(x)) on a grid, by MC."""
    sigma, eps, n = 0.5, 0.3, 40_000
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(n) * sigma
    xs = np.linspace(-1.5, 1.5, 31)
    s_mc = {round(x, 6): float(np.mean(x + noise >= 0)) for x in np.concatenate([xs, xs - eps, xs + eps])}
    tol = 4 * math.sqrt(0.25 / n)  # 4 standard errors of each estimate
    for x in xs:
        floor = population_floor(s_mc[round(x, 6)], eps, sigma)
        ceil = population_ceil(s_mc[round(x, 6)], eps, sigma)
        for delta in (-eps, eps):
            value = s_mc[round(x + delta, 6)]
            assert value >= floor - 2 * tol
            assert value <= ceil + 2 * tol
        # the step function is the extremal case: the floor is attained at delta = -eps
        assert s_mc[round(x - eps, 6)] == pytest.approx(floor, abs=2 * tol)
    # a non-extremal function (a bump 1[|x| < 1]), exactly: s(x + delta) >= floor(s(x)) for all |delta| <= eps
    s = lambda x: norm.cdf((1 - x) / sigma) - norm.cdf((-1 - x) / sigma)  # noqa: E731
    grid = np.linspace(-3, 3, 121)
    for delta in np.linspace(-eps, eps, 13):
        assert np.all(s(grid + delta) >= population_floor(s(grid), eps, sigma) - 1e-12)
        assert np.all(s(grid + delta) <= population_ceil(s(grid), eps, sigma) + 1e-12)


# --- overlap and ranks -------------------------------------------------------------------------------------
def _overlap_brute(s_hat, k, eps, sigma, c):
    """The definition, element by element with math functions."""
    s = sorted((float(v) for v in s_hat), reverse=True)
    count = 0
    for i in range(k):
        j = 2 * k - 1 - i
        lo = s[i] - c
        left = (norm.cdf(norm.ppf(lo) - 2 * eps / sigma) if lo > 0 else 0.0) - c
        if j >= len(s) or left > s[j]:
            count += 1
    return count


def _random_s(rng, d):
    s = rng.random(d)
    if rng.random() < 0.3:  # ties and exact 0 / 1
        s = np.round(s * 4) / 4
    return s


def test_certified_overlap_equals_brute_force_definition():
    rng = np.random.default_rng(1)
    for _ in range(300):
        d = int(rng.integers(1, 12))
        s = _random_s(rng, d)
        k = int(rng.integers(1, d + 1))
        eps, sigma, c = float(rng.choice([0, 0.01, 0.1, 0.4])), 0.25, float(rng.choice([0, 0.01, 0.05]))
        assert certified_overlap(s, k, eps, sigma, c) == _overlap_brute(s, k, eps, sigma, c)


def test_certified_overlap_is_valid_against_every_feasible_top_k_set():
    """Worst case over all top-k sets Y that some s' with s'_j in [lo_j, hi_j] (the certified intervals of
    s(x + delta)) can have: |X ∩ Y| >= m, X = the top-k of s_hat (ties by index)."""
    rng = np.random.default_rng(2)
    sigma = 0.25
    for _ in range(150):
        d = int(rng.integers(2, 9))
        s = _random_s(rng, d)
        k = int(rng.integers(1, d + 1))
        eps, c = float(rng.choice([0.0, 0.02, 0.1])), float(rng.choice([0.0, 0.02]))
        m = certified_overlap(s, k, eps, sigma, c)
        lo = np.where(s - c > 0, norm.cdf(norm.ppf(np.clip(s - c, 0, 1)) - eps / sigma), 0.0)
        hi = np.where(s + c < 1, norm.cdf(norm.ppf(np.clip(s + c, 0, 1)) + eps / sigma), 1.0)
        X = set(np.argsort(-s, kind="stable")[:k].tolist())
        worst = k
        for Y in itertools.combinations(range(d), k):
            rest = [j for j in range(d) if j not in Y]
            if not rest or max(lo[rest]) <= min(hi[list(Y)]):  # Y is a top-k set of some feasible s'
                worst = min(worst, len(X & set(Y)))
        assert m <= worst, (s, k, eps, c, m, worst)


def test_overlap_radii_agree_with_overlap():
    rng = np.random.default_rng(3)
    for _ in range(50):
        s = rng.random(40)
        k, c, sigma = 10, 0.01, 0.3
        radii = overlap_radii(s, k, sigma, c)
        for eps in [0.0, 0.01, 0.05, 0.2]:
            assert certified_overlap(s, k, eps, sigma, c) == int(np.sum(radii > eps + 1e-12))


def test_certified_ranks_brute_force():
    rng = np.random.default_rng(4)
    for _ in range(50):
        s = _random_s(rng, 15)
        eps, sigma, c = 0.05, 0.25, 0.02
        ranks = certified_ranks(s, eps, sigma, c)
        for i in range(s.size):
            v = pair_threshold(s[i], eps, sigma, c)
            assert ranks[i] == sum(1 for j in range(s.size) if not s[j] < v)
            assert ranks[i] >= 1 + sum(1 for j in range(s.size) if s[j] > s[i])  # never better than now


def test_median_rank_theorem_3_bound():
    """Elements whose median rank over the samples is <= k_s have s_hat >= 1/2 and certified rank <= the bound."""
    rng = np.random.default_rng(5)
    n, d, tau_frac = 31, 60, 0.1
    base = rng.random(d) * 3
    base[[4, 17, 33]] += 4.0  # three clearly dominant elements
    maps = (base[None] + rng.standard_normal((n, d))).reshape(n, 6, 10)
    g = sparsify_topk(maps, tau_frac).reshape(n, d)
    k_s = topk_count(d, tau_frac)
    assert np.all(g.sum(axis=1) == k_s)
    s_hat = g.mean(axis=0)
    med = median_ranks(maps)
    top = med <= k_s
    assert top.any()
    assert np.all(s_hat[top] >= 0.5)
    np.testing.assert_array_equal(sample_ranks(maps) <= k_s, g.astype(bool))
    np.testing.assert_array_equal(sample_ranks(maps), sample_ranks(maps.reshape(n, d)))
    # (the implication holds for any c; the c of n = 31 samples would make the bound vacuous here)
    for eps, c in itertools.product([0.0, 0.02, 0.1], [0.0, 0.01, 0.05, hoeffding_term(n, d, 0.95)]):
        bound = median_rank_bound(k_s, d, eps, 0.25, c)
        ranks = certified_ranks(s_hat, eps, 0.25, c)
        assert np.all(ranks[s_hat >= 0.5] <= bound)
        if eps <= 0.02 and c <= 0.01:
            assert bound < d
    # the closed form without sampling error: v = Phi(-2 eps / sigma)
    assert median_rank_bound(10, 1000, 0.1, 0.5, 0.0) == math.floor(10 / norm.cdf(-0.4))
    assert median_rank_bound(10, 1000, 0.0, 0.5, 0.0) == 20
    assert median_rank_bound(10, 1000, 0.1, 0.5, 0.6) == 1000  # vacuous


# --- sparsification -----------------------------------------------------------------------------------------
def test_sparsify_topk_counts_and_ties_by_index():
    flat = np.zeros((2, 4, 5))
    g = sparsify_topk(flat, 0.15)  # k_s = ceil(0.15 * 20) = 3
    assert g.sum(axis=(1, 2)).tolist() == [3, 3]
    assert np.flatnonzero(g[0]).tolist() == [0, 1, 2]
    a = np.array([[1.0, -5.0, 3.0, 3.0]])
    assert sparsify_topk(a, 0.5).tolist() == [[0.0, 1.0, 1.0, 0.0]]  # |.| ranks, tie 3 = 3 -> lower index
    assert topk_count(10, 0.3) == 3 and topk_count(10, 0.31) == 4 and topk_count(10, 0.01) == 1


def test_relaxed_sparsify():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 10, 10))
    r = relaxed_sparsify(a, 0.2, 0.05)
    assert r.shape == a.shape and r.min() >= 0 and r.max() <= 1
    for row, m in zip(r.reshape(3, -1), np.abs(a).reshape(3, -1)):
        order = np.argsort(-m)
        assert np.all(row[order[:5]] == 1)  # top gamma fraction -> 1
        assert np.all(row[order[19:]] == 0)  # at or below the (1 - tau) quantile -> 0
        mid = order[5:19]
        assert np.all(np.diff(row[mid]) <= 0)  # linear, decreasing with the rank
    t = torch.tensor(a, requires_grad=True)
    out = relaxed_sparsify(t, 0.2, 0.05)
    np.testing.assert_allclose(out.detach().numpy(), r)
    out.sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    with pytest.raises(CertattrError, match="gamma_frac"):
        relaxed_sparsify(a, 0.1, 0.2)


# --- from a model ---------------------------------------------------------------------------------------------
def _image():
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_sparsified_smoothgrad_reproducible_and_certificate_states_its_parameters():
    model, x = tiny_model(), _image()
    smoothing = SparsifiedSmoothing(0.1, tau_frac=0.1)
    a = sparsified_smoothgrad(model, x, smoothing=smoothing, sampling=SamplingConfig(n=40, seed=3, chunk_size=7),
                              image_id="img")
    b = sparsified_smoothgrad(model, x, smoothing=smoothing, sampling=SamplingConfig(n=40, seed=3, chunk_size=40),
                              image_id="img")
    np.testing.assert_array_equal(a.s_hat, b.s_hat)  # batching does not change the noise
    assert a.s_hat.shape == (32, 32) and a.s_hat.sum() == pytest.approx(a.k_s) and a.k_s == 103
    cert = topk_certificate(model, x, cert=TopKCertConfig(k=20, eps=0.01, eta=0.9), smoothing=smoothing,
                            sampling=SamplingConfig(n=40, seed=3), image_id="img")
    assert isinstance(cert, TopKCertificate)
    assert (cert.eta, cert.n, cert.sigma, cert.eps, cert.k) == (0.9, 40, 0.1, 0.01, 20)
    assert cert.c == pytest.approx(hoeffding_term(40, 1024, 0.9))
    assert 0 <= cert.overlap <= 20 and cert.ranks.shape == (32, 32)
    text = cert.statement()
    for piece in ("eta = 0.9", "n = 40", "sigma = 0.1", "eps = 0.01", "k = 20"):
        assert piece in text
    relaxed = sparsified_smoothgrad(model, x, smoothing=smoothing.replace(gamma_frac=0.01),
                                    sampling=SamplingConfig(n=8, seed=3))
    assert relaxed.s_hat.sum() <= relaxed.k_s
    # with (almost) no sampling error and eps = 0, pair i holds iff s_(i) > s_(2k-1-i) strictly
    s = np.sort(a.s_hat.ravel())[::-1]
    assert certify_topk(a.s_hat, 5, eps=0.0, sigma=0.1, n=10**15).overlap == sum(s[i] > s[9 - i] for i in range(5))


def test_sparsified_smoothgrad_shares_the_pipeline_samples_through_the_cache(tmp_path, monkeypatch):
    """Same noise as SmoothedAttribution: with a cache, the chunks the pipeline wrote are read back (no model call),
    and the estimate equals the uncached one."""
    from certattr.engine.smoothing import SmoothedAttribution

    model, x = tiny_model(), _image()
    ixg, smoothing = MethodAtLayer("ixg", "final"), SparsifiedSmoothing(0.1, tau_frac=0.2)
    n30, n25 = SamplingConfig(n=30, seed=3, chunk_size=10), SamplingConfig(n=25, seed=3, chunk_size=10)
    plain = sparsified_smoothgrad(model, x, 2, attribution=ixg, smoothing=smoothing, sampling=n30, image_id="img")
    engine = SmoothedAttribution(model, "ixg", "final", 0.1, n=30, n0=10, seed=3, chunk_size=10, cache=tmp_path,
                                 progress=False)
    engine.sample(x, "img", 2)

    def no_model_call(*args, **kwargs):
        raise AssertionError("a chunk was recomputed although the pipeline had cached it")

    with monkeypatch.context() as m:
        m.setattr(SmoothedAttribution, "attribute_chunk", no_model_call)
        cached = sparsified_smoothgrad(model, x, 2, attribution=ixg, smoothing=smoothing, sampling=n25,
                                       image_id="img", cache=tmp_path)
    again = sparsified_smoothgrad(model, x, 2, attribution=ixg, smoothing=smoothing, sampling=n25, image_id="img")
    np.testing.assert_allclose(cached.s_hat, again.s_hat, atol=1e-12)
    np.testing.assert_allclose(
        sparsified_smoothgrad(model, x, 2, attribution=ixg, smoothing=smoothing, sampling=n30, image_id="img",
                              cache=tmp_path).s_hat, plain.s_hat, atol=1e-12)


@pytest.mark.parametrize("call, name", [
    (lambda: population_floor(0.5, -0.1, 0.25), "eps=-0.1"),
    (lambda: population_floor(0.5, 0.1, 0.0), "sigma=0.0"),
    (lambda: hoeffding_term(100, 10, 1.0), "eta=1.0"),
    (lambda: hoeffding_term(0, 10, 0.9), "n=0"),
    (lambda: certified_overlap(np.ones(5) / 2, 0, 0.1, 0.25, 0.0), "k=0"),
    (lambda: certified_overlap(np.ones(5) / 2, 6, 0.1, 0.25, 0.0), "k=6"),
    (lambda: sparsify_topk(np.ones(4), 0.0), "tau_frac=0.0"),
    (lambda: certify_topk(np.full(4, 2.0), 1, eps=0.1, sigma=0.25, n=10), "s_hat"),
])
def test_parameters_are_validated(call, name):
    with pytest.raises(CertattrError) as err:
        call()
    assert name in str(err.value) and "\n" not in str(err.value)
