"""The radii the certificates chapter compares, against independent computations."""
import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from certattr.engine.certify import certify_binary
from certattr.certificates.comparison import cosine_counterexample, cosine_radius, overlap_radius, pixel_best_radius
from certattr.certificates.cosine import certified_eps, mc_error
from certattr.certificates.sparsified_smoothgrad import certified_overlap, hoeffding_term


@pytest.mark.parametrize("m, n0, P", [(100, 10, 224 * 224), (50, 10, 1000), (1000, 10, 50176)])
def test_pixel_best_radius_is_where_an_all_agreeing_pixel_stops_certifying(m, n0, P):
    sigma, alpha = 0.25, 0.001
    R = pixel_best_radius(sigma, alpha, P, m, n0)
    tau_max = norm.cdf(R / sigma)
    # the binomial tail of a pixel agreeing in every test sample, just below and just above tau_max
    assert binom.sf(m - n0 - 1, m - n0, tau_max * (1 - 1e-9)) <= alpha / P
    assert binom.sf(m - n0 - 1, m - n0, min(tau_max * (1 + 1e-6), 1 - 1e-12)) > alpha / P
    if tau_max >= 0.5 + 1e-3:  # and the certifier itself agrees on a one-pixel map with the same level
        agree = np.ones((m, 1, 1), dtype=bool)
        labels, *_ = certify_binary(agree, n0, max(0.5, tau_max - 1e-6), alpha / P)
        assert labels[0, 0] == 1
    assert pixel_best_radius(sigma, alpha, P, n0, n0) == 0.0


def test_overlap_radius_is_the_largest_eps_keeping_the_overlap():
    rng = np.random.default_rng(0)
    s = np.sort(rng.beta(0.5, 3.0, 500))[::-1]
    k, sigma, m, eta = 20, 0.25, 8192, 0.95
    c = hoeffding_term(m, s.size, eta)
    eps = overlap_radius(s, k, sigma, m, eta)
    assert eps > 0
    assert certified_overlap(s, k, eps * (1 - 1e-6), sigma, c) >= math.ceil(k / 2)
    assert certified_overlap(s, k, eps * (1 + 1e-6), sigma, c) < math.ceil(k / 2)
    assert overlap_radius(s, k, sigma, m, eta, at_least=1) >= eps
    assert overlap_radius(s, k, sigma, 100, eta) <= eps  # fewer samples, larger Hoeffding term


def test_cosine_radius_subtracts_the_monte_carlo_term():
    args = dict(M=1.0, T=0.9, r=50.0, d=3 * 224 * 224, alpha=0.001)
    got = cosine_radius(8192, 0.8, **args)
    low = 0.8 - mc_error(8192, 1.0, 0.001)
    assert got == pytest.approx(certified_eps(low, 1.0, 0.9, 50.0, 3 * 224 * 224))
    assert mc_error(16, 1.0, 0.001) > 0.8 and cosine_radius(16, 0.8, **args) == 0.0  # the term exceeds the estimate
    assert 0 < cosine_radius(64, 0.8, **args) < got  # fewer samples, a larger term, a smaller radius


def test_the_counterexample_breaks_the_printed_bound_and_meets_the_corrected_one():
    cx = cosine_counterexample(n_mc=20_000)
    assert cx["cos(h(x), h(x+δ)) exact"] == pytest.approx(cx["corrected bound"], abs=1e-9)
    assert cx["cos(h(x), h(x+δ)) exact"] < cx["printed Theorem 1"] - 1e-3
    assert cx["same, Monte Carlo"] == pytest.approx(cx["cos(h(x), h(x+δ)) exact"], abs=0.02)
