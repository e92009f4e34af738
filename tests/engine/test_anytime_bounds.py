"""The anytime bounds (certattr.engine.bets, certattr.engine.anytime_bounds) against closed forms and brute force,
their reproducibility whatever the chunking, and their selection by name."""
import warnings

import numpy as np
import pytest
from scipy.stats import binom

from certattr.engine.anytime_bounds import BOUNDS, can_certify, make_bound
from certattr.engine.bets import (
    alternatives,
    kelly_bet,
    log_lr_table,
    look_schedule,
    predictive_table,
    prior_from_map,
    prior_log_weights,
    radius_levels,
)
from certattr.engine.certificate import ABSTAIN, Certificate
from certattr.engine.confseq import anytime_bounds
from certattr.engine.sequential import AnytimeCounter, certify_sequential
from certattr.engine.statistics import clopper_pearson_lower
from certattr.engine.validation import ANYTIME_BOUNDS, CertattrError

TAU = 0.75


# --- pieces ------------------------------------------------------------------------------------------------

def test_alternatives_lr_table_and_kelly_bet_are_the_likelihood_ratio():
    p = alternatives(TAU)
    assert p.size == 24 and (p > TAU).all() and (p < 1).all() and np.allclose(np.diff(p), 0.25 / 24)
    table = log_lr_table(7, p, TAU)
    s = 3
    assert table[s] == pytest.approx(np.log((p / TAU) ** s * ((1 - p) / (1 - TAU)) ** (7 - s)))
    # the Kelly bet at p makes the betting factor the likelihood ratio of one sample
    lam = kelly_bet(p, TAU)
    assert 1 + lam * (1 - TAU) == pytest.approx(p / TAU) and 1 - lam * TAU == pytest.approx((1 - p) / (1 - TAU))
    assert kelly_bet(0.5, TAU) == 0 and kelly_bet(1.0, TAU) < 1 / TAU


def test_prior_weights_sum_to_one_and_keep_the_floor():
    centre = np.array([[0.0, 0.8, 0.99]])
    lw = prior_log_weights(centre, TAU, width=0.05, floor=0.2)
    w = np.exp(lw)
    assert w.shape == (24, 1, 3) and np.allclose(w.sum(0), 1)
    assert (w >= 0.2 / 24 * (1 - 1e-12)).all()
    assert np.argmax(w[:, 0, 1]) == np.argmin(np.abs(alternatives(TAU) - 0.8))


def test_predictive_table_is_the_posterior_mean_by_brute_force():
    p = alternatives(TAU)
    for t, s in [(0, 0), (10, 9), (30, 12)]:
        like = p ** s * (1 - p) ** (t - s)
        assert predictive_table(t, TAU)[s] == pytest.approx((like * p).sum() / like.sum(), rel=1e-12)


def test_radius_levels_step_the_radius_by_a_quarter_sigma():
    from scipy.stats import norm
    m = radius_levels(TAU)
    assert m[0] == pytest.approx(TAU) and np.allclose(np.diff(norm.ppf(m)), 0.25) and norm.ppf(m[-1]) <= 3


def test_look_schedule_drops_looks_that_cannot_certify():
    level = 0.001 / (2 * 224 * 224)
    looks = look_schedule(1000, TAU, level)
    assert looks == (80, 100, 150, 200, 300, 400, 500, 600, 800, 1000)
    assert all(TAU ** t <= level / len(looks) for t in looks) and TAU ** 60 > level / len(looks)
    assert look_schedule(120, TAU, level) == (80, 100, 120) and look_schedule(50, TAU, level) == ()


def test_prior_from_map_ranks_against_each_k():
    a = np.arange(100, dtype=float).reshape(10, 10)  # pixel 99 is the top
    prior = prior_from_map(a, (50, 10))
    assert prior.shape == (2, 10, 10) and prior[0, 9, 9] > 0.99 and prior[1, 0, 0] < 0.01
    assert prior[0, 4, 9] == pytest.approx(0.5, abs=0.03) and (prior[1] <= prior[0]).all()


# --- the bounds against brute force -----------------------------------------------------------------------

def _feed(name, counts, b=10, **kw):
    """A bound of shape (1, n) fed the counts (looks, n) of blocks of b samples."""
    bound = make_bound(name, (1, counts.shape[1]), tau=TAU, level=0.01, n_max=b * len(counts), **kw)
    ones = np.zeros((1, counts.shape[1]), dtype=np.int64)
    for i, c in enumerate(counts):
        ones = ones + c
        bound.update(ones, b * (i + 1), c[None], b)
    return bound


def test_betting_wealth_is_the_product_of_its_predictable_bets():
    rng = np.random.default_rng(1)
    counts = rng.binomial(10, [0.9, 0.8, 0.3], size=(12, 3))
    bound = _feed("betting", counts)
    for px in range(3):
        log_w, s, t = 0.0, 0, 0
        for c in counts[:, px]:
            lam = kelly_bet(predictive_table(t, TAU)[s], TAU)  # from the samples before the block only
            log_w += c * np.log(1 + lam * (1 - TAU)) + (10 - c) * np.log(1 - lam * TAU)
            s, t = s + c, t + 10
        assert bound.log_one[0, 0, px] == pytest.approx(log_w)
        assert bound.p_one[0, px] <= np.exp(-log_w) * (1 + 1e-9)


def test_prior_wealth_is_the_two_phase_mixture_by_brute_force():
    rng = np.random.default_rng(2)
    counts = rng.binomial(10, [0.9, 0.85], size=(6, 2))
    bound = _feed("prior", counts, n0=20)
    p = alternatives(TAU)
    lr = lambda s, t: (p / TAU) ** s * ((1 - p) / (1 - TAU)) ** (t - s)
    for px in range(2):
        s0, s = counts[:2, px].sum(), counts[:, px].sum()
        first = lr(s0, 20).mean()  # even weights over the grid for the first 20 samples
        centre = (s0 + 0.5) / 21
        w = np.exp(prior_log_weights(np.array(centre), TAU, width=np.sqrt(0.05 ** 2 + 0.25 / 21)))
        second = (w * lr(s - s0, 40)).sum()
        assert -np.log(bound.p_one[0, px]) >= np.log(first * second) - 1e-9  # running min of 1/W includes now
        assert bound.crossed_one[0, px] == (first * second >= 100)


def test_looks_bound_is_clopper_pearson_at_delta_over_l_at_its_looks():
    counts = np.full((30, 1), 9)  # 90% agreement, 300 samples
    bound = make_bound("looks", (1, 1), tau=TAU, level=1e-6, n_max=300)
    assert bound.looks == (60, 80, 100, 150, 200, 300)
    ones = np.zeros((1, 1), dtype=np.int64)
    for i, c in enumerate(counts):
        ones = ones + c
        t = 10 * (i + 1)
        bound.update(ones, t, c[None], 10)
        if t == 150:
            want = clopper_pearson_lower(np.array([135]), 150, 1e-6 / 6)[0]
            assert bound.lower[0, 0] == pytest.approx(want)
            assert bound.p_one[0, 0] == pytest.approx(min(binom.sf(134, 150, TAU) * 6, 1.0))
    assert bound.crossed_one[0, 0] == (bound.p_one[0, 0] <= 1e-6)


def test_mixture_bound_is_the_intersected_confidence_sequence():
    rng = np.random.default_rng(3)
    counts = rng.binomial(10, [0.9, 0.5, 0.1], size=(20, 3))
    bound = _feed("mixture", counts)
    lower, upper = np.zeros(3), np.ones(3)
    s = np.cumsum(counts, axis=0)
    for i in range(20):
        lo, hi = anytime_bounds(s[i], 10 * (i + 1), 0.01)
        lower, upper = np.maximum(lower, lo), np.minimum(upper, hi)
    np.testing.assert_array_equal(bound.lower[0], lower)
    np.testing.assert_array_equal(bound.upper[0], upper)


def test_can_certify_follows_each_bound():
    level = 0.001 / (2 * 224 * 224)
    for name in BOUNDS:
        assert can_certify(name, 1000, tau=TAU, level=level), name
        assert not can_certify(name, 40, tau=TAU, level=level), name


# --- the counter: chunking, the ladder, names --------------------------------------------------------------

def _binary(seed=4, n=200, shape=(3, 4)):
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, size=shape)
    u = rng.random((n, *shape))
    return np.stack([u < q, u < q * 0.7])  # (2, n, H, W), nested: top-25 inside top-50


@pytest.mark.parametrize("name", ANYTIME_BOUNDS)
def test_the_same_samples_give_the_same_certificate_whatever_the_chunking(name):
    binary = _binary()
    n = binary.shape[1]
    results = []
    for sizes in ([10] * 20, [7] * 28 + [4], [25] * 8, [200], [3, 17, 80, 100]):
        counter = AnytimeCounter((50, 25), (3, 4), tau=0.6, alpha=0.05, bound=name, n_max=n)
        start = 0
        for size in sizes:
            counter.add(binary[:, start:start + size], np.zeros(size, dtype=bool))
            start += size
        counter.flush()
        assert counter.seen == n
        results.append((counter.labels(), *counter.bound.bounds(), counter.p_important, counter.p_unimportant))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    assert (results[0][0] != ABSTAIN).any()


def test_labels_follow_the_ladder_in_fixed_sequence():
    counter = AnytimeCounter((50, 25, 5), (1, 2), tau=TAU, alpha=0.05, bound="betting", n_max=100)
    b = counter.bound
    b.crossed_one = np.array([[[True, False]], [[False, True]], [[True, True]]])  # K=25 missing for pixel 0
    b.crossed_zero = np.array([[[False, True]], [[False, False]], [[True, False]]])
    labels = counter.labels()
    np.testing.assert_array_equal(labels[:, 0, 0], [1, ABSTAIN, 0])  # important at 5 needs 50 and 25
    np.testing.assert_array_equal(labels[:, 0, 1], [ABSTAIN, ABSTAIN, ABSTAIN])  # 0 at 50 needs 0 at 25 and 5


def test_add_counts_waits_for_a_block_boundary():
    counter = AnytimeCounter((50,), (1, 1), tau=TAU, alpha=0.05, bound="mixture")
    counter.add_counts(np.array([[[4]]]), 4)
    assert counter.looked == 0 and counter.lower[0, 0, 0] == 0
    counter.add_counts(np.array([[[6]]]), 6)
    assert counter.looked == 10 and counter.lower[0, 0, 0] > 0


def test_unknown_bound_and_misplaced_settings_are_one_line_errors():
    with pytest.raises(CertattrError, match="bound='mixtur' is unknown: allowed are mixture, prior, betting, looks"):
        AnytimeCounter((50,), (2, 2), tau=TAU, alpha=0.05, bound="mixtur")
    with pytest.raises(CertattrError, match="needs n_max"):
        AnytimeCounter((50,), (2, 2), tau=TAU, alpha=0.05, bound="looks")
    with pytest.raises(CertattrError, match="settings of the prior bound"):
        AnytimeCounter((50,), (2, 2), tau=TAU, alpha=0.05, bound="betting", prior=np.zeros((1, 2, 2)))
    with pytest.raises(CertattrError, match="shape"):
        AnytimeCounter((50,), (2, 2), tau=TAU, alpha=0.05, bound="prior", prior=np.zeros((2, 2)))
    with pytest.raises(CertattrError, match=r"\[0, 1\]"):
        AnytimeCounter((50,), (2, 2), tau=TAU, alpha=0.05, bound="prior", prior=np.full((1, 2, 2), 2.0))


@pytest.mark.parametrize("name", ANYTIME_BOUNDS)
def test_certify_sequential_by_name(name, tmp_path):
    binary = _binary(n=400, shape=(6, 6))

    def chunks():
        for i in range(0, 400, 10):
            yield binary[:, i:i + 10], np.zeros(10, dtype=bool)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counter = AnytimeCounter((50, 25), (6, 6), tau=0.6, alpha=0.05, n_max=400, bound=name)
        cert = certify_sequential(chunks(), counter, sigma=0.25, undecided=0.0)
    assert cert.anytime and cert.metadata["bound"] == name and name in cert.statement()
    certified = cert.labels != ABSTAIN
    assert certified.any()
    assert (cert.radii[certified] >= cert.radius - 1e-12).all()
    assert (cert.pvalues[certified] <= cert.radius_level * (1 + 1e-6)).all()
    assert Certificate.load(cert.save(tmp_path / "c.npz")) == cert
    with pytest.raises(CertattrError, match="allowed are mixture, prior, betting, looks"):
        AnytimeCounter((50,), (6, 6), tau=0.6, alpha=0.05, n_max=400, bound="bets")
    with pytest.raises(CertattrError, match="needs a fresh AnytimeCounter with its horizon"):
        certify_sequential(chunks(), AnytimeCounter((50,), (6, 6), tau=0.6, alpha=0.05, bound="mixture"), sigma=0.25)
