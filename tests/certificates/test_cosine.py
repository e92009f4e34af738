"""Cosine certificates of uniformly smoothed attributions (arXiv 2405.06361): geometry, bounds, corollaries."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from certattr.certificates.cosine import (
    CosineCertificate, ball_overlap_fraction, ball_symdiff_fraction, bound_norm, certified_eps, certify_cosine,
    cosine_lower_bound, mc_error, min_radius, paper_cosine_bound, smooth_uniform, uniform_ball_noise)
from certattr.certificates.settings import UniformSmoothing
from certattr.engine.config import SamplingConfig
from certattr.models.testing import tiny_model
from certattr.engine.validation import CertattrError

torch.set_num_threads(1)
IMAGENET_D = 3 * 224 * 224


# --- sampling and geometry -----------------------------------------------------------------------------
def test_uniform_ball_noise_is_uniform_in_the_ball_and_seeded_per_index():
    r, d, n = 2.0, 5, 4000
    eta = uniform_ball_noise((d,), r, seed=1, image_id="a", indices=range(n)).double()
    norms = eta.norm(dim=1)
    assert float(norms.max()) <= r * (1 + 1e-6)
    # ||eta|| = r U^(1/d): (||eta||/r)^d is Uniform(0, 1)
    u = (norms / r) ** d
    assert abs(float(u.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert float(eta.mean(dim=0).abs().max()) < 4 * r / math.sqrt(n)
    # row j depends on (seed, image id, j) only
    again = uniform_ball_noise((d,), r, seed=1, image_id="a", indices=[7, 3])
    torch.testing.assert_close(again, eta[[7, 3]].float())
    assert not torch.equal(uniform_ball_noise((d,), r, 2, "a", [7]), again[:1])
    # another stream name: independent samples of the same ball
    other = uniform_ball_noise((d,), r, seed=1, image_id="a", indices=[7], stream="attack")
    assert not torch.equal(other, again[:1]) and float(other.norm()) <= r * (1 + 1e-6)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_ball_overlap_fraction_matches_monte_carlo(d):
    r, n = 1.0, 20000
    eta = uniform_ball_noise((d,), r, seed=0, image_id=f"mc{d}", indices=range(n)).double().numpy()
    for eps in [0.1, 0.5, 1.0, 1.7]:
        shift = np.zeros(d)
        shift[0] = eps
        p_mc = np.mean(np.linalg.norm(eta - shift, axis=1) <= r)  # P(x + eta in B(x + delta; r))
        p = ball_overlap_fraction(eps, r, d)
        assert abs(p - p_mc) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3
        assert ball_symdiff_fraction(eps, r, d) == pytest.approx(2 * (1 - p), abs=1e-12)


def test_ball_overlap_fraction_exact_in_two_and_three_dimensions():
    r = 1.3
    for eps in [0.0, 0.2, 1.0, 2.5]:
        lens2 = (2 * r * r * math.acos(eps / (2 * r)) - eps / 2 * math.sqrt(4 * r * r - eps * eps)) / (math.pi * r * r)
        assert ball_overlap_fraction(eps, r, 2) == pytest.approx(lens2, rel=1e-12, abs=1e-15)
        lens3 = (4 * r + eps) * (2 * r - eps) ** 2 / (16 * r ** 3)
        assert ball_overlap_fraction(eps, r, 3) == pytest.approx(lens3, rel=1e-12, abs=1e-15)
    assert ball_symdiff_fraction(2.0, 1.0, 10) == 2.0 and ball_symdiff_fraction(5.0, 1.0, 10) == 2.0
    assert ball_overlap_fraction(0.0, 1.0, 10) == 1.0


def test_ball_overlap_fraction_high_dimensional_asymptote():
    d, r = IMAGENET_D, 80.0
    for t in [0.05, 0.3, 1.0, 2.0, 3.0]:
        eps = 2 * r * t / math.sqrt(d)
        exact = ball_overlap_fraction(eps, r, d)
        assert exact == pytest.approx(2 * norm.cdf(-eps * math.sqrt(d) / (2 * r)), rel=1e-3)
        # the symmetric difference stays accurate where it is tiny (the complementary form)
        assert ball_symdiff_fraction(eps, r, d) == pytest.approx(2 * (1 - 2 * norm.cdf(-t)), rel=1e-3)
    tiny = ball_symdiff_fraction(1e-6, 1.0, d)
    assert 0 < tiny == pytest.approx(2 * (1 - 2 * norm.cdf(-1e-6 * math.sqrt(d) / 2)), rel=1e-4)


# --- the bounds -------------------------------------------------------------------------------------------
def test_bounds_at_most_one_equal_one_at_zero_decreasing_and_corrected_below_paper():
    eps = np.linspace(0, 3, 61)
    for d, r in [(3, 1.0), (3072, 2.0), (IMAGENET_D, 300.0)]:
        for c in [0.05, 0.5, 1.0]:
            ours, paper = cosine_lower_bound(c, 1.0, eps, r, d), paper_cosine_bound(c, 1.0, eps, r, d)
            assert ours[0] == 1.0 and paper[0] == 1.0
            assert np.all(ours <= 1) and np.all(paper <= 1) and np.all(ours >= -1)
            assert np.all(np.diff(ours) <= 1e-15) and np.all(np.diff(paper) <= 1e-15)
            assert np.all(ours <= paper + 1e-15)


def test_paper_theorem_1_is_violated_by_an_explicit_function_and_the_corrected_bound_is_attained():
    """d = 2, r = 1, ||delta|| = eps: g is constant on the three regions B(x)\\B(x'), B(x)∩B(x'), B(x')\\B(x)
    (||g|| <= M = 1), chosen so that h(x') - h(x) is perpendicular to h(x'), the worst case."""
    d, r, eps, M, c = 2, 1.0, 0.1, 1.0, 0.3
    q = ball_overlap_fraction(eps, r, d)  # lens fraction; each crescent has fraction 1 - q
    A = M * ball_symdiff_fraction(eps, r, d)
    assert A < c
    h = np.array([c, 0.0])
    cos_phi = -A / c  # unit u with cos(h, u) = -A/c, so that h(x') = h + A u is perpendicular to u
    u = np.array([cos_phi, math.sqrt(1 - cos_phi ** 2)])
    g1, g3 = -M * u, M * u  # the two crescents
    g2 = (h - (1 - q) * g1) / q  # the lens
    assert np.linalg.norm(g2) <= M
    h_x, h_xp = (1 - q) * g1 + q * g2, q * g2 + (1 - q) * g3
    np.testing.assert_allclose(h_x, h)
    cos = h_x @ h_xp / (np.linalg.norm(h_x) * np.linalg.norm(h_xp))
    paper, ours = paper_cosine_bound(c, M, eps, r, d), cosine_lower_bound(c, M, eps, r, d)
    assert cos < paper - 0.01  # the printed Theorem 1 fails
    assert cos == pytest.approx(ours, abs=1e-12)  # the corrected bound holds with equality
    # the same with an actual function of the input, by Monte-Carlo over the two balls
    x, xp = np.zeros(2), np.array([eps, 0.0])

    def g(z):
        in_x = np.linalg.norm(z - x, axis=1) <= r
        in_xp = np.linalg.norm(z - xp, axis=1) <= r
        return np.where((in_x & in_xp)[:, None], g2, np.where(in_x[:, None], g1, g3))

    # 160,000 ball samples: the Monte-Carlo cosine has a standard deviation of about 0.0013 (0.0025 measured
    # over 20 seeds at 40,000), so the tolerance 0.005 is about 4 standard deviations
    eta = uniform_ball_noise((2,), r, seed=0, image_id="counterexample", indices=range(160_000)).double().numpy()
    hx, hxp = g(x + eta).mean(axis=0), g(xp + eta).mean(axis=0)
    cos_mc = hx @ hxp / (np.linalg.norm(hx) * np.linalg.norm(hxp))
    assert cos_mc == pytest.approx(cos, abs=0.005) and cos_mc < paper - 0.005


def test_corollaries_invert_each_other():
    for bound in ("corrected", "paper"):
        fn = cosine_lower_bound if bound == "corrected" else paper_cosine_bound
        for d in [10, 3072, IMAGENET_D]:
            for c, T, eps in [(0.9, 0.9, 0.5), (0.5, 0.8, 1.0), (0.2, 0.95, 0.05)]:
                r = min_radius(c, 1.0, T, eps, d, bound)
                assert 0 < r < math.inf
                assert certified_eps(c, 1.0, T, r, d, bound) == pytest.approx(eps, rel=1e-9)
                assert fn(c, 1.0, eps, r, d) == pytest.approx(T, abs=1e-9)
                assert fn(c, 1.0, eps * 0.99, r, d) > T > fn(c, 1.0, eps * 1.01, r, d)
    # the paper's bound can certify every eps when ||h|| sqrt(1/T^2 - 1) >= 2M
    assert certified_eps(1.0, 1.0, 0.3, 1.0, 10, "paper") == math.inf
    assert certified_eps(0.0, 1.0, 0.9, 1.0, 10) == 0.0 and min_radius(0.0, 1.0, 0.9, 0.5, 10) == math.inf


def test_radius_proportional_to_eps_at_fixed_norm_ratio():
    for bound in ("corrected", "paper"):
        for c in [0.25, 1.0]:
            r1 = min_radius(c, 1.0, 0.9, 0.5, IMAGENET_D, bound)
            assert min_radius(c, 1.0, 0.9, 1.0, IMAGENET_D, bound) == pytest.approx(2 * r1, rel=1e-12)
            assert min_radius(2 * c, 2.0, 0.9, 0.5, IMAGENET_D, bound) == pytest.approx(r1, rel=1e-12)
    # ImageNet needs radii of order eps sqrt(d): at ||h|| = M, T = 0.9, eps = 0.5 the printed bound needs r ~ 315
    r = min_radius(1.0, 1.0, 0.9, 0.5, IMAGENET_D, "paper")
    assert 300 < r < 330
    assert min_radius(1.0, 1.0, 0.9, 0.5, IMAGENET_D) > r


def test_monte_carlo_term_closed_form():
    for N, M, alpha in [(200, 1.0, 0.1), (8192, 2.5, 0.001)]:
        assert mc_error(N, M, alpha) == pytest.approx(M * (1 + math.sqrt(2 * math.log(1 / alpha))) / math.sqrt(N))


def test_monte_carlo_term_covers_the_error():
    """||h_hat - h|| <= t with probability >= 1 - alpha, tested where the error is as large as ||g|| <= M
    allows: g = M s / sqrt(dim) with s uniform random signs (||g|| = M exactly, h = 0), so that
    ||h_hat - h|| concentrates at M / sqrt(N) (dim = 20; the term t is 3.15 M / sqrt(N) at alpha = 0.1), and
    g = +-M in one dimension, where ||h_hat - h|| = M |mean of N signs| has its longest tail. A term five
    times too small (0.63 M / sqrt(N)) is exceeded in most trials of either case."""
    rng = np.random.default_rng(0)
    N, M, alpha, trials = 200, 1.0, 0.1, 400
    t = mc_error(N, M, alpha)  # its closed form is checked by test_monte_carlo_term_closed_form
    for dim in (20, 1):
        signs = rng.integers(0, 2, size=(trials, N, dim)) * 2.0 - 1.0
        g = M * signs / math.sqrt(dim)
        assert np.allclose(np.linalg.norm(g, axis=2), M)
        errors = np.linalg.norm(g.mean(axis=1), axis=1)  # h = 0
        misses = int((errors > t).sum())
        assert misses / trials <= alpha, (dim, misses)


# --- from a model -------------------------------------------------------------------------------------------
def test_smooth_uniform_and_certificate():
    model = tiny_model()
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    ball = UniformSmoothing(2.0)
    a = smooth_uniform(model, x, smoothing=ball, sampling=SamplingConfig(n=24, seed=5, chunk_size=5), image_id="img")
    b = smooth_uniform(model, x, smoothing=ball, sampling=SamplingConfig(n=24, seed=5, chunk_size=24), image_id="img")
    np.testing.assert_allclose(a.h_hat, b.h_hat, rtol=1e-12)
    assert a.h_hat.shape == (32, 32) and 0 < a.norm <= 1 + 1e-9 and a.d_input == 3072
    cert = certify_cosine(a, eps=0.01, alpha=0.01, T=0.5)
    assert isinstance(cert, CosineCertificate)
    assert cert.t == pytest.approx(mc_error(24, 1.0, 0.01))
    assert cert.cos_bound == pytest.approx(cosine_lower_bound(max(0, a.norm - cert.t), 1.0, 0.01, 2.0, 3072))
    assert cert.displayed_bound <= cert.cos_bound <= cert.paper_bound
    for piece in ("1 - alpha = 0.99", "N = 24", "r = 2", "d = 3072", "eps = 0.01"):
        assert piece in cert.statement()
    maps = torch.randn(4, 3, 3)
    maps[0] = 0
    assert torch.allclose(bound_norm(maps, 2.0)[1:].flatten(1).norm(dim=1), torch.full((3,), 2.0))
    assert float(bound_norm(maps, 2.0)[0].abs().sum()) == 0
    assert bool((bound_norm(maps * 10, 2.0, "clip").flatten(1).norm(dim=1) <= 2.0 + 1e-6).all())


@pytest.mark.parametrize("call, name", [
    (lambda: certified_eps(0.5, 1.0, 1.0, 1.0, 10), "T=1.0"),
    (lambda: certified_eps(0.5, 1.0, 0.0, 1.0, 10), "T=0.0"),
    (lambda: certified_eps(0.5, 1.0, 0.9, 0.0, 10), "r=0.0"),
    (lambda: min_radius(0.5, 1.0, 0.9, -1.0, 10), "eps=-1.0"),
    (lambda: cosine_lower_bound(2.0, 1.0, 0.1, 1.0, 10), "norm_h=2.0"),
    (lambda: uniform_ball_noise((3,), -1.0, 0, "", [0]), "r=-1.0"),
    (lambda: mc_error(0, 1.0, 0.01), "N=0"),
    (lambda: certified_eps(0.5, 1.0, 0.9, 1.0, 10, "loose"), "bound='loose'"),
])
def test_parameters_are_validated(call, name):
    with pytest.raises(CertattrError) as err:
        call()
    assert name in str(err.value) and "\n" not in str(err.value)
