"""Statistical validity of the certifier (certattr.engine.certify.certify_binary), checked by simulation.

Pixels are simulated as independent Bernoulli labels with KNOWN probabilities p1 = P(label 1), p0 = 1 - p1.
A certificate with label l claims that the smoothed probability of l is >= tau. A pixel is WRONGLY
certified when it is certified with a label l whose true probability p_l is < tau; a run is in error when
it has at least one wrong pixel. The guarantee: P(run in error) <= alpha (family-wise, over the P pixels).

How the checks are sound and able to fail (every simulation is seeded, so results are reproducible):
- "exceeds alpha": the one-sided 99.9% Clopper-Pearson LOWER bound of the observed error rate is > alpha.
  A correct certifier triggers it with probability <= 0.001, so the test fails only when we are confident
  that the error rate exceeds alpha.
- "matches the oracle" (Bonferroni, where pixels are independent): the exact error probability, computed
  here from the binomial distribution independently of certattr (majority step on n0 samples, test step on
  n - n0), lies inside the two-sided 99.9% Clopper-Pearson interval of the observed rate. This catches
  implementation errors in either direction (e.g. an off-by-one in the p-value) that stay below alpha.
- The same machinery is run on deliberately broken certifiers (no multiple-testing correction; a p-value
  off by one, P(Bin >= c + 1) instead of P(Bin >= c)) built from certify_binary's own counts, and must flag them.
"""
from functools import lru_cache

import numpy as np
import pytest
from scipy.stats import beta, binom

from certattr.engine.certify import certify_binary
from certattr.engine.certificate import ABSTAIN

CONF = 0.999  # confidence of every Clopper-Pearson bound
EPS = 1e-9  # p_l < tau - EPS counts as "below tau" (pixels exactly at tau may be certified)


# --- Clopper-Pearson ----------------------------------------------------------------------------------------------
def cp_lower(k: int, n: int, conf: float = CONF) -> float:
    """One-sided lower confidence bound for a binomial proportion."""
    return 0.0 if k == 0 else float(beta.ppf(1 - conf, k, n - k + 1))


def cp_upper(k: int, n: int, conf: float = CONF) -> float:
    return 1.0 if k == n else float(beta.ppf(conf, k + 1, n - k))


def cp_interval(k: int, n: int, conf: float = CONF) -> tuple[float, float]:
    """Two-sided interval with coverage conf (each tail (1 - conf) / 2)."""
    tail = (1 + conf) / 2
    return cp_lower(k, n, tail), cp_upper(k, n, tail)


def exceeds_alpha(k: int, runs: int, alpha: float) -> bool:
    return cp_lower(k, runs) > alpha


def matches_oracle(k: int, runs: int, exact: float, conf: float = CONF) -> bool:
    lo, hi = cp_interval(k, runs, conf)
    return lo <= exact <= hi


# --- simulation --------------------------------------------------------------------------------------------------
def design(tau: float, n_pixels: int) -> np.ndarray:
    """p1 per pixel: one exactly at tau (label 1), one just over tau on the label-0 side, the rest just
    under tau, alternating label-1 side (p1 = tau - d) and label-0 side (p0 = tau - d), d in {0.01, 0.02}."""
    p1 = [tau, 1 - (tau + 0.02)]
    for i in range(n_pixels - 2):
        d = 0.01 if i % 4 < 2 else 0.02
        p1.append(tau - d if i % 2 == 0 else 1 - (tau - d))
    return np.asarray(p1)


def tight_design(tau: float, n_pixels: int) -> np.ndarray:
    """One pixel exactly at tau, all others at tau - 0.0025 (alternating sides): errors close to alpha."""
    return np.asarray([tau] + [tau - 0.0025 if i % 2 == 0 else 1 - (tau - 0.0025) for i in range(n_pixels - 1)])


@lru_cache(maxsize=None)
def simulate(p1: tuple, n: int, runs: int, seed: int) -> np.ndarray:
    """bool (runs, n, 1, P): sample i of run r is Bernoulli(p1) for every pixel, all runs drawn at once."""
    rng = np.random.default_rng(seed)
    u = rng.random((runs, n, len(p1)), dtype=np.float32)
    return (u < np.asarray(p1, dtype=np.float32))[:, :, None, :]


def certify_runs(binary: np.ndarray, n0: int, tau: float, alpha: float, correction: str):
    """certify_binary on each run: labels, majority, counts, each (runs, P)."""
    out = [certify_binary(b, n0, tau, alpha, correction) for b in binary]
    labels, majority, counts = (np.stack([o[i][0] for o in out]) for i in range(3))
    return labels, majority, counts


def wrong(labels: np.ndarray, p1: np.ndarray, tau: float) -> np.ndarray:
    """bool (runs, P): certified with a label whose true probability is < tau."""
    p1 = np.asarray(p1, dtype=np.float64)
    return ((labels == 1) & (p1 < tau - EPS)) | ((labels == 0) & ((1 - p1) < tau - EPS))


# --- the exact oracle (independent of certattr) -------------------------------------------------------------------
def critical_count(n_test: int, tau: float, level: float, offset: int = 1) -> float:
    """Smallest c with P(Bin(n_test, tau) >= c) <= level (offset=1; offset=0 gives P(Bin > c)); inf if none."""
    c = np.arange(n_test + 1)
    ok = np.nonzero(binom.sf(c - offset, n_test, tau) <= level)[0]
    return float(ok[0]) if ok.size else np.inf


def certify_probability(p1: np.ndarray, n: int, n0: int, c_star: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact P(certified 1) and P(certified 0) per pixel for a per-pixel threshold c_star on the count.

    Majority on n0 samples (strict: 2 * ones > n0, a tie gives 0), then c = agreeing samples of n - n0.
    """
    p1 = np.asarray(p1, dtype=np.float64)
    n_test = n - n0
    select1 = binom.sf(n0 // 2, n0, p1)
    if not np.isfinite(c_star):
        return np.zeros_like(p1), np.zeros_like(p1)
    return select1 * binom.sf(c_star - 1, n_test, p1), (1 - select1) * binom.sf(c_star - 1, n_test, 1 - p1)


def exact_fwer(p1, n, n0, tau, c_star) -> float:
    cert1, cert0 = certify_probability(p1, n, n0, c_star)
    p1 = np.asarray(p1)
    e = np.where(p1 < tau - EPS, cert1, 0.0) + np.where(1 - p1 < tau - EPS, cert0, 0.0)
    return float(1 - np.prod(1 - e))


# --- broken certifiers (for the checks' power) -------------------------------------------------------------------
def uncorrected_labels(majority, counts, n, n0, tau, alpha):
    pv = binom.sf(counts - 1, n - n0, tau)
    return np.where(pv <= alpha, majority, ABSTAIN)


def off_by_one_labels(majority, counts, n, n0, tau, alpha):
    pv = binom.sf(counts, n - n0, tau)  # P(Bin > c): one count too generous
    return np.where(pv <= alpha / majority.shape[-1], majority, ABSTAIN)


# --- configurations ----------------------------------------------------------------------------------------------------
def tight_alpha(n, n0, tau, n_pixels, c):
    """An alpha at which P * P(Bin(n - n0, tau) >= c) = alpha: the Bonferroni level is exactly attained."""
    return n_pixels * float(binom.sf(c - 1, n - n0, tau)) * (1 + 1e-9)


CONFIGS = {  # name: (n, n0, tau, alpha, P, runs, seed, design)
    "n100-tau0.75": (100, 10, 0.75, 0.2, 8, 4000, 1, design),
    "n50-tau0.6": (50, 10, 0.6, 0.1, 6, 4000, 2, design),
    "n200-tau0.9": (200, 20, 0.9, 0.05, 4, 3000, 3, design),
    "n40-n0odd": (40, 5, 0.75, 0.2, 5, 4000, 4, design),
    # alpha chosen so that the Bonferroni level is attained exactly at c = 43 of 49 test samples
    "tight": (60, 11, 0.7, tight_alpha(60, 11, 0.7, 8, 43), 8, 6000, 5, tight_design),
}


def run_config(name):
    n, n0, tau, alpha, P, runs, seed, make = CONFIGS[name]
    p1 = make(tau, P)
    return (n, n0, tau, alpha, P, runs, p1), simulate(tuple(p1), n, runs, seed)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_family_wise_error_at_most_alpha(name):
    (n, n0, tau, alpha, P, runs, p1), binary = run_config(name)
    c_star = critical_count(n - n0, tau, alpha / P)
    exact = exact_fwer(p1, n, n0, tau, c_star)
    assert exact <= alpha  # the theory, exactly
    assert exact >= 0.1 * alpha, "the design must make errors frequent enough to be measured"

    bonf, majority, counts = certify_runs(binary, n0, tau, alpha, "bonferroni")
    holm, _, _ = certify_runs(binary, n0, tau, alpha, "holm")
    k_bonf = int(wrong(bonf, p1, tau).any(axis=1).sum())
    k_holm = int(wrong(holm, p1, tau).any(axis=1).sum())
    assert not exceeds_alpha(k_bonf, runs, alpha), (k_bonf, runs, alpha)
    assert not exceeds_alpha(k_holm, runs, alpha), (k_holm, runs, alpha)
    assert matches_oracle(k_bonf, runs, exact), (k_bonf / runs, exact)
    # Holm certifies a superset of Bonferroni, with the same labels
    assert np.all((bonf == ABSTAIN) | (holm == bonf))
    assert k_holm >= k_bonf
    # the counts are those of the simulated samples (the oracle's model of the certifier)
    ones_test = binary[:, n0:, 0, :].sum(axis=1)
    assert np.array_equal(counts, np.where(majority == 1, ones_test, n - n0 - ones_test))


@pytest.mark.parametrize("name", ["n100-tau0.75", "n40-n0odd", "tight"])
def test_broken_certifiers_are_detected(name):
    """The checks above can fail: a certifier without correction, or with an off-by-one p-value, is flagged."""
    (n, n0, tau, alpha, P, runs, p1), binary = run_config(name)
    _, majority, counts = certify_runs(binary, n0, tau, alpha, "bonferroni")

    uncorrected = uncorrected_labels(majority, counts, n, n0, tau, alpha)
    k = int(wrong(uncorrected, p1, tau).any(axis=1).sum())
    exact_unc = exact_fwer(p1, n, n0, tau, critical_count(n - n0, tau, alpha))
    assert exact_unc > alpha  # the broken certifier really violates the guarantee in this design...
    assert exceeds_alpha(k, runs, alpha), (k / runs, alpha)  # ...and the test machinery sees it
    assert matches_oracle(k, runs, exact_unc)  # the oracle models the broken certifier too

    off = off_by_one_labels(majority, counts, n, n0, tau, alpha)
    k_off = int(wrong(off, p1, tau).any(axis=1).sum())
    exact_correct = exact_fwer(p1, n, n0, tau, critical_count(n - n0, tau, alpha / P))
    assert not matches_oracle(k_off, runs, exact_correct), (k_off / runs, exact_correct)
    if name == "tight":  # where Bonferroni is attained, the off-by-one error even exceeds alpha detectably
        assert exceeds_alpha(k_off, runs, alpha), (k_off / runs, alpha)


POWER = {  # name: (n, n0, tau, alpha, p1 per pixel, runs, seed): pixels well above tau on both sides
    "n100": (100, 10, 0.75, 0.05, (0.8, 0.83, 0.86, 0.9, 1 - 0.83, 1 - 0.88), 4000, 11),
    "n60-n0odd": (60, 11, 0.7, 0.1, (0.75, 0.8, 0.85, 1 - 0.78, 1 - 0.82), 4000, 12),
    # n0 = 4: the majority step matters, and a tie (2 of 4) selects 0, which favours the label-0 side
    "n50-n0even": (50, 4, 0.75, 0.1, (0.8, 0.85, 0.9, 1 - 0.85, 1 - 0.9), 4000, 13),
}


@pytest.mark.parametrize("name", list(POWER))
def test_power_matches_binomial(name):
    n, n0, tau, alpha, p1, runs, seed = POWER[name]
    p1 = np.asarray(p1)
    P = p1.size
    binary = simulate(tuple(p1), n, runs, seed)
    c_star = critical_count(n - n0, tau, alpha / P)
    cert1, cert0 = certify_probability(p1, n, n0, c_star)
    true_label = (p1 > 0.5).astype(int)
    exact = np.where(true_label == 1, cert1, cert0)  # P(certified with the right label)
    assert ((exact > 0.2) & (exact < 0.8)).any(), "the design must have intermediate power"

    bonf, _, _ = certify_runs(binary, n0, tau, alpha, "bonferroni")
    holm, _, _ = certify_runs(binary, n0, tau, alpha, "holm")
    hits_bonf = (bonf == true_label).sum(axis=0)
    hits_holm = (holm == true_label).sum(axis=0)
    conf = 1 - (1 - CONF) / P  # Bonferroni over the P per-pixel comparisons
    for j in range(P):
        assert matches_oracle(int(hits_bonf[j]), runs, float(exact[j]), conf), (j, hits_bonf[j] / runs, exact[j])
        # Holm is at least as powerful as Bonferroni
        assert cp_upper(int(hits_holm[j]), runs, conf) >= exact[j]
    # these pixels are far above tau: never certified with the wrong label
    assert not wrong(bonf, p1, tau).any() and not wrong(holm, p1, tau).any()


def test_oracle_machinery_rejects_wrong_power_models():
    """The power comparison can fail: ignoring the majority step, or breaking ties towards 1, is detected."""
    n, n0, tau, alpha, p1, runs, seed = POWER["n50-n0even"]
    p1 = np.asarray(p1)
    P = p1.size
    binary = simulate(tuple(p1), n, runs, seed)
    c_star = critical_count(n - n0, tau, alpha / P)
    true_label = (p1 > 0.5).astype(int)
    bonf, _, _ = certify_runs(binary, n0, tau, alpha, "bonferroni")
    hits = (bonf == true_label).sum(axis=0)
    conf = 1 - (1 - CONF) / P

    def all_match(model):
        return all(matches_oracle(int(hits[j]), runs, float(model[j]), conf) for j in range(P))

    test_pass = binom.sf(c_star - 1, n - n0, np.maximum(p1, 1 - p1))
    assert not all_match(test_pass)  # "the right label is always selected"
    select1_tie_to_1 = binom.sf(n0 // 2 - 1, n0, p1)  # 2 * ones >= n0
    tie_to_1 = np.where(true_label == 1, select1_tie_to_1, 1 - select1_tie_to_1) * test_pass
    assert not all_match(tie_to_1)
    cert1, cert0 = certify_probability(p1, n, n0, c_star)
    assert all_match(np.where(true_label == 1, cert1, cert0))  # the right model
