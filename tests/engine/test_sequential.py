"""Anytime certification: confidence sequences (certattr.engine.confseq), the sequential loop
(certattr.engine.sequential) and its place in the engine (SmoothedAttribution.certify(sequential=True))."""
import warnings

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import beta

from certattr import SmoothedAttribution
from certattr.engine.certificate import ABSTAIN, Certificate
from certattr.engine.confseq import anytime_level, bound_table, log_mixture
from certattr.engine.sequential import AnytimeCounter
from certattr.engine.statistics import clopper_pearson_lower
from certattr.engine.validation import CertattrError


# --- the confidence sequence --------------------------------------------------------------------------------

@pytest.mark.parametrize("successes,trials,q", [(0, 5, 0.3), (3, 7, 0.2), (7, 7, 0.9), (12, 20, 0.75)])
def test_log_mixture_is_the_uniform_mixture_likelihood_ratio(successes, trials, q):
    mixture, _ = quad(lambda p: p ** successes * (1 - p) ** (trials - successes), 0, 1, epsabs=1e-14)
    want = np.log(mixture) - successes * np.log(q) - (trials - successes) * np.log(1 - q)
    assert log_mixture(successes, trials, q) == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("trials,level", [(1, 0.1), (10, 0.05), (137, 1e-4), (1000, 1e-8)])
def test_bound_table_is_the_boundary_of_the_sequence_and_monotone(trials, level):
    lower, upper = bound_table(trials, level)
    s = np.arange(trials + 1)
    threshold = -np.log(level)
    assert (np.diff(lower) >= 0).all() and (np.diff(upper) >= 0).all() and (lower <= s / trials).all()
    assert (upper >= s / trials).all() and lower[0] == 0 and upper[-1] == 1
    inner = (lower > 1e-6)
    # just outside the interval: excluded (M >= 1/delta); just inside: kept
    assert (log_mixture(s[inner], trials, lower[inner] - 1e-9) >= threshold).all()
    assert (log_mixture(s[inner], trials, lower[inner] + 1e-7) < threshold).all()
    inner = upper < 1 - 1e-6
    assert (log_mixture(s[inner], trials, upper[inner] + 1e-9) >= threshold).all()
    assert (log_mixture(s[inner], trials, upper[inner] - 1e-7) < threshold).all()


def test_anytime_level_two_sequences_per_pixel_for_a_ladder():
    assert anytime_level(0.01, 100, 1) == pytest.approx(1e-4)
    assert anytime_level(0.01, 100, 3) == pytest.approx(5e-5)


# --- validity: a simulation with known probabilities and adversarial stopping ------------------------------

RUNS, CHUNK, N_MAX, TAU, ALPHA = 10_000, 10, 1000, 0.75, 0.05
#: q_j per pixel for a ladder of two K: one pixel whose claims are both just false (0.745 < tau, 0.255 > 1 - tau),
#: one just above (true claims)
Q = np.array([[0.745, 0.255], [0.76, 0.24]])


def _chunk_counts(rng):
    """(looks, m, RUNS, P) counts per chunk of nested top-K selections (codes 0..m per sample)."""
    probs = -np.diff(np.c_[np.ones(len(Q)), Q, np.zeros(len(Q))], axis=1)  # (P, m+1)
    looks, m = N_MAX // CHUNK, Q.shape[1]
    codes = np.stack([rng.multinomial(CHUNK, p, size=(looks, RUNS)) for p in probs], axis=-2)  # (looks, RUNS, P, m+1)
    return np.stack([codes[..., j:].sum(-1) for j in range(1, m + 1)], axis=1)


def _wrong(labels):
    q = Q.T[:, None, :]
    return ((labels == 1) & (q < TAU)) | ((labels == 0) & (q > 1 - TAU))


def _clopper_pearson(k, n, level=0.001):
    lo = beta.ppf(level / 2, k, n - k + 1) if k else 0.0
    hi = beta.ppf(1 - level / 2, k + 1, n - k) if k < n else 1.0
    return lo, hi


def test_anytime_family_wise_error_is_at_most_alpha_whatever_the_stopping_and_a_fixed_n_bound_is_not():
    counts = _chunk_counts(np.random.default_rng(23))
    counter = AnytimeCounter((50, 10), (RUNS, len(Q)), tau=TAU, alpha=ALPHA, n_pixels=len(Q), bound="mixture")
    level = counter.level
    ever_wrong_fixed = np.zeros(RUNS, dtype=bool)
    for chunk in counts:  # adversarial stopping: a run errs if a false claim appears at any look
        counter.add_counts(chunk, CHUNK)
        t = counter.seen
        cp_lower = clopper_pearson_lower(np.arange(t + 1), t, level)  # fixed-n bound, the same level, every look
        lower, upper = cp_lower[counter.ones], 1 - cp_lower[t - counter.ones]
        fixed = np.where(lower >= TAU, 1, np.where(upper <= 1 - TAU, 0, ABSTAIN))
        ever_wrong_fixed |= _wrong(fixed).any(axis=(0, 2))
    errors = int(_wrong(counter.labels()).any(axis=(0, 2)).sum())  # labels are those ever certified
    lo, hi = _clopper_pearson(errors, RUNS)
    assert hi <= ALPHA, (errors / RUNS, lo, hi)
    lo_bad, hi_bad = _clopper_pearson(int(ever_wrong_fixed.sum()), RUNS)
    assert lo_bad > ALPHA, (ever_wrong_fixed.mean(), lo_bad)


def test_undecided_and_decided_abstain():
    counter = AnytimeCounter((50,), (1, 3), tau=0.75, alpha=0.05, bound="mixture")
    counter.add_counts(np.array([[[1000, 500, 0]]]), 1000)  # q-hat 1, 0.5 (decided abstain), 0
    np.testing.assert_array_equal(counter.labels()[0, 0], [1, ABSTAIN, 0])
    np.testing.assert_array_equal(counter.undecided()[0, 0], [False, False, False])
    fresh = AnytimeCounter((50,), (1, 3), tau=0.75, alpha=0.05, bound="mixture")
    fresh.add_counts(np.array([[[2, 1, 0]]]), 2)
    assert fresh.undecided().all()


# --- the engine --------------------------------------------------------------------------------------------

def _engine(tiny, cache, n=40):
    return SmoothedAttribution(tiny, "grad", "input", 0.25, n=n, chunk_size=10, cache=cache, progress=False,
                               tau=0.6, alpha=0.05, ks=(50, 25))


def _count_calls(monkeypatch):
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append(a[3]) or original(self, *a, **k))
    return calls


def test_sequential_reads_what_a_fixed_run_cached_and_the_other_way_round(tiny, tiny_image, tmp_path, monkeypatch):
    warnings.simplefilter("ignore")
    fixed = _engine(tiny, tmp_path / "a").certify(tiny_image, "t", 1)
    calls = _count_calls(monkeypatch)
    seq = _engine(tiny, tmp_path / "a").certify(tiny_image, "t", 1, sequential=True, undecided=0.0)
    assert calls == [] and seq.n == 40 and seq.anytime and seq.n0 == 0
    np.testing.assert_array_equal(seq.mean_sparsified, fixed.mean_sparsified)  # the same 40 samples
    # a sequential run that stops early computes only its chunks; a fixed run then computes only the rest
    early = _engine(tiny, tmp_path / "b").certify(tiny_image, "t", 1, sequential=True, undecided=0.99)
    assert early.n < 40 and calls == list(range(early.n // 10)) and len(early.metadata["history"]) == early.n // 10
    assert early.metadata["history"][-1][2] <= 0.99 < early.metadata["history"][0][2] or early.n == 10
    again = _engine(tiny, tmp_path / "b").certify(tiny_image, "t", 1)
    assert calls == [0, 1, 2, 3] and again == fixed


def test_sequential_certificate_labels_radii_and_statement(tiny, tiny_image, tmp_path):
    warnings.simplefilter("ignore")
    engine = _engine(tiny, tmp_path, n=200)
    cert = engine.certify(tiny_image, "t", 1, sequential=True, n_max=200, undecided=0.0)
    assert cert.n <= 200 and cert.metadata["n_max"] == 200
    np.testing.assert_array_equal(cert.band_labels, cert.labels)
    assert (cert.labels != ABSTAIN).any()
    # every certified label has a radius >= R (its lower bound reached tau); nested along the ladder
    certified = cert.labels != ABSTAIN
    assert (cert.radii[certified] >= cert.radius - 1e-12).all()
    assert ((cert.labels[1] == 1) <= (cert.labels[0] == 1)).all() and ((cert.labels[0] == 0) <= (cert.labels[1] == 0)).all()
    # a certified pixel's anytime p-value reached the level of its sequence
    assert (cert.pvalues[certified] <= cert.radius_level * (1 + 1e-6)).all()
    assert "whatever that stopping time" in cert.statement() and cert.summary()["anytime"] is True
    again = Certificate.load(cert.save(tmp_path / "s.npz"))
    assert again == cert and again.anytime


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_max=100), "n_max, undecided and bound are settings of sequential certification"),
    (dict(sequential=True, n0=5), "n0 cannot be given with sequential=True"),
    (dict(sequential=True, undecided=1.5), "undecided=1.5 is not allowed"),
    (dict(sequential=True, n_max=0), "n_max"),
])
def test_sequential_bad_settings_are_one_line_errors(tiny, tiny_image, kwargs, message):
    with pytest.raises(CertattrError, match=message):
        _engine(tiny, None).certify(tiny_image, "t", 1, **kwargs)


def test_engine_passes_the_named_bound_through_and_refuses_an_unknown_one(tiny, tiny_image):
    """certify(sequential=True, bound=...) reaches the anytime loop: the certificate records the bound it used,
    two bounds on the same samples give different p-values, and an unknown name lists the allowed ones."""
    engine = _engine(tiny, None)
    looks = engine.certify(tiny_image, "t", 1, sequential=True, bound="looks", undecided=0.0)
    mixture = engine.certify(tiny_image, "t", 1, sequential=True, bound="mixture", undecided=0.0)
    assert looks.metadata["bound"] == "looks" and mixture.metadata["bound"] == "mixture"
    assert not np.allclose(looks.pvalues, mixture.pvalues)
    with pytest.raises(CertattrError, match="bound='nope' is unknown: allowed are .*looks"):
        engine.certify(tiny_image, "t", 1, sequential=True, bound="nope")
