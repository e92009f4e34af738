"""Validity of every anytime bound by simulation: 10,000 runs each, adversarial stopping, priors wrong on purpose;
and variants that break the rules (a prior or bet chosen from the samples it is applied to, looks chosen freely)
must break the error rate."""
import numpy as np
import pytest
from scipy.stats import beta

from certattr.engine.anytime_bounds import BettingBound, LooksBound, PriorBound
from certattr.engine.bets import kelly_bet, prior_log_weights
from certattr.engine.sequential import AnytimeCounter

RUNS, CHUNK, N_MAX, TAU, ALPHA = 10_000, 10, 1000, 0.75, 0.05
FALSE_PIXELS = 6
#: q_j per pixel for a ladder of two K: FALSE_PIXELS pixels whose claims are both just false (0.749 < tau at K_1,
#: 0.251 > 1 - tau at K_2: two tests per pixel can err), and one whose claims are just true
Q = np.array([[0.749, 0.251]] * FALSE_PIXELS + [[0.76, 0.24]])
KS = (50, 10)


@pytest.fixture(scope="module")
def counts():
    """(looks, m, RUNS, P) uint8 counts per chunk of nested top-K selections (codes 0..m per sample)."""
    rng = np.random.default_rng(2024)
    probs = -np.diff(np.c_[np.ones(len(Q)), Q, np.zeros(len(Q))], axis=1)  # (P, m+1)
    looks, m = N_MAX // CHUNK, Q.shape[1]
    out = np.empty((looks, m, RUNS, len(Q)), dtype=np.uint8)
    for px, p in enumerate(probs):
        codes = rng.multinomial(CHUNK, p, size=(looks, RUNS))  # (looks, RUNS, m+1)
        for j in range(m):
            out[:, j, :, px] = codes[..., j + 1:].sum(-1)
    return out


def _clopper_pearson(k, n, level=0.001):
    lo = beta.ppf(level / 2, k, n - k + 1) if k else 0.0
    hi = beta.ppf(1 - level / 2, k + 1, n - k) if k < n else 1.0
    return lo, hi


def _run(counts, counter):
    """Feed every chunk (adversarial stopping: the labels keep every claim ever made, so a run errs if a false
    claim appeared at any look); returns (errors, (lo, hi)) of the family-wise error over the runs."""
    for chunk in counts:
        counter.add_counts(chunk, CHUNK)
    labels = counter.labels()
    q = Q.T[:, None, :]
    wrong = ((labels == 1) & (q < TAU)) | ((labels == 0) & (q > 1 - TAU))
    errors = int(wrong.any(axis=(0, 2)).sum())
    return errors, _clopper_pearson(errors, RUNS)


def _counter(bound, **kw):
    return AnytimeCounter(KS, (RUNS, len(Q)), tau=TAU, alpha=ALPHA, n_pixels=len(Q), bound=bound, n_max=N_MAX, **kw)


def _wrong_prior(centre_false, centre_true):
    """A prior map (m, RUNS, P) that puts the false pixels' prior on the false side of each claim at
    ``centre_false`` (their important claim at K_1, their unimportant claim at K_2) and the last pixel's at
    ``centre_true``."""
    prior = np.empty((len(KS), RUNS, len(Q)))
    prior[0, :, :-1], prior[1, :, :-1] = centre_false, 1 - centre_false
    prior[0, :, -1], prior[1, :, -1] = centre_true, 1 - centre_true
    return prior


VALID = {
    "mixture": dict(),
    "looks": dict(),
    "betting": dict(),
    "prior from n0 samples": dict(prior_n0=20),
    "prior wrong: just past tau": dict(prior=_wrong_prior(0.76, 0.5)),
    "prior wrong: certain": dict(prior=_wrong_prior(0.99, 0.01)),
}


@pytest.mark.parametrize("variant", list(VALID))
def test_family_wise_error_is_at_most_alpha_under_adversarial_stopping(counts, variant):
    bound = variant.split()[0]
    errors, (lo, hi) = _run(counts, _counter(bound, **VALID[variant]))
    print(f"FWER {variant}: {errors / RUNS:.4f} [{lo:.4f}, {hi:.4f}]")
    assert hi <= ALPHA, (variant, errors / RUNS, lo, hi)


def test_pixel_with_true_claims_is_certified_by_every_bound(counts):
    """Power, so that the error-rate tests are not passed by a bound that certifies nothing: pixel 1 (q = 0.76)
    is too close to tau for 1000 samples, so use a clearly important ladder instead (q = 0.95, 0.05)."""
    rng = np.random.default_rng(5)
    x = rng.random((N_MAX, 200)) < 0.95
    for bound in VALID:
        name = bound.split()[0]
        counter = AnytimeCounter((50, 10), (200, 1), tau=TAU, alpha=ALPHA, n_pixels=1, bound=name, n_max=N_MAX)
        for i in range(0, N_MAX, CHUNK):
            block = x[i:i + CHUNK].sum(0)
            counter.add_counts(np.stack([block, CHUNK - block])[:, :, None], CHUNK)
        labels = counter.labels()
        assert (labels[0] == 1).mean() > 0.99 and (labels[1] == 0).mean() > 0.99, bound


# --- invalid variants: they must break the error rate -----------------------------------------------------

class PeekingPrior(PriorBound):
    """Invalid: before each look, the prior is re-centred on the counts it is about to test (including the
    current block), so the mixture concentrates on the maximum-likelihood alternative."""

    def update(self, ones, t, block, b):
        q = ones / t
        self.log_w1 = prior_log_weights(q, self.tau, width=0.005, floor=1e-9)
        self.log_w0 = prior_log_weights(1 - q, self.tau, width=0.005, floor=1e-9)
        super().update(ones, t, block, b)


class PeekingBetting(BettingBound):
    """Invalid: the bet of a block is the Kelly bet at that block's own frequency (it sees the samples it bets on)."""

    def update(self, ones, t, block, b):
        freq = block / b
        for j, m in enumerate(self.levels):
            lam = kelly_bet(freq, m)
            self.log_one[j] += block * np.log1p(lam * (1 - m)) + (b - block) * np.log1p(-lam * m)
            lam = kelly_bet(1 - freq, m)
            self.log_zero[j] += (b - block) * np.log1p(lam * (1 - m)) + block * np.log1p(-lam * m)
        threshold = -np.log(self.level)
        self.ever_one |= self.log_one >= threshold
        self.ever_zero |= self.log_zero >= threshold
        self.crossed_one, self.crossed_zero = self.ever_one[0].copy(), self.ever_zero[0].copy()


class EveryChunkLooks(LooksBound):
    """Invalid: a look at every chunk, each at the full delta (nothing spent: a fixed-n test read repeatedly)."""

    def update(self, ones, t, block, b):
        self.looks, self.done, self.share = (t,), 0, self.level
        super().update(ones, t, block, b)


@pytest.mark.parametrize("bound,cls,kw", [("prior", PeekingPrior, dict(prior=_wrong_prior(0.8, 0.8))),
                                          ("betting", PeekingBetting, {}),
                                          ("looks", EveryChunkLooks, {})])
def test_a_variant_that_peeks_breaks_the_error_rate(counts, bound, cls, kw):
    counter = _counter(bound, **kw)
    counter.bound = cls(counter.bound.shape, tau=TAU, level=counter.level, n_max=N_MAX,
                        **({"prior": kw["prior"]} if "prior" in kw else {}))
    errors, (lo, hi) = _run(counts, counter)
    print(f"FWER invalid {cls.__name__}: {errors / RUNS:.4f} [{lo:.4f}, {hi:.4f}]")
    assert lo > ALPHA, (bound, errors / RUNS, lo, hi)
