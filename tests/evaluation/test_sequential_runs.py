"""The "Fewer samples" runs (certattr.evaluation.sequential_runs) and their findings rows."""
import warnings

import numpy as np
import pytest

from certattr import SmoothedAttribution
from certattr.engine.certificate import ABSTAIN
from certattr.engine.config import CertConfig, SamplingConfig
from certattr.evaluation.jobs import Job
from certattr.evaluation.findings.anytime import (check_anytime_equal_budget, check_anytime_reaches_fixed,
                                                     check_band_superset, sequential_verdicts)
from certattr.engine.sequential import DEFAULT_BOUND
from certattr.engine.validation import ANYTIME_BOUNDS
from certattr.evaluation.sequential_runs import fixed_and_sequential, samples_to_reach, stop_from_history


def test_samples_to_reach_reads_the_history():
    history = [[10, 0.1, 0.9], [20, 0.29, 0.5], [30, 0.35, 0.1]]
    assert samples_to_reach(history, 0.3) == 20 and samples_to_reach(history, 0.4) is None
    assert samples_to_reach(history, 0.36) == 30


def test_fixed_and_sequential_against_independent_certificates(tiny, tiny_image, tmp_path):
    warnings.simplefilter("ignore")
    res = fixed_and_sequential(tiny, "grad", "input", Job("t", "t", tiny_image, 1), 0.25, SamplingConfig(n=60),
                               CertConfig(ks=(50, 25), tau=0.6, alpha=0.05, n0=5), ns=[20], undecided=[0.5],
                               cache_dir=tmp_path)
    assert [r["n"] for r in res["fixed"]] == [20, 60] and res["history"][-1][0] == 60
    for row in res["fixed"]:
        e = SmoothedAttribution(tiny, "grad", "input", 0.25, n=row["n"], cache=tmp_path, progress=False,
                                ks=(50, 25), tau=0.6, alpha=0.05, n0=5)
        cert = e.certify(tiny_image, "t", 1)
        assert row["certified"] == pytest.approx(float((cert.labels != ABSTAIN).mean()))
        assert row["band_certified"] == pytest.approx(float((cert.band_labels != ABSTAIN).mean()))
        assert row["band_superset"] and row["band_certified"] >= row["per_k_alpha_over_m"]
    stop = res["stops"][0]
    assert stop["samples"] <= 60 and stop["samples"] % 10 == 0
    assert res["reach"] == samples_to_reach(res["history"], res["fixed"][-1]["certified"])
    verdicts = sequential_verdicts({"t": res})
    assert len(verdicts) == 3
    # every bound ran on the same 60 samples; the default's stop read off its history is the engine's real stop
    assert set(res["bounds"]) == set(ANYTIME_BOUNDS) and res["bound"] == DEFAULT_BOUND
    assert res["bounds"][DEFAULT_BOUND]["history"] == res["history"]
    assert res["bounds"][DEFAULT_BOUND]["stops"] == res["stops"]
    for name, run in res["bounds"].items():
        assert [row[0] for row in run["history"]] == [10, 20, 30, 40, 50, 60], name
        assert run["reach"] == samples_to_reach(run["history"], res["fixed"][-1]["certified"])
    others = [b for b in ANYTIME_BOUNDS if b != DEFAULT_BOUND]
    assert all(f"{b} " in verdicts[1].measured and f"{b} " in verdicts[2].measured for b in others)


def test_stop_from_history():
    history = [[10, 0.1, 0.9], [20, 0.29, 0.5], [30, 0.35, 0.1]]
    assert stop_from_history(history, 0.5) == {"undecided": 0.5, "samples": 20, "certified": 0.29}
    assert stop_from_history(history, 0.05)["samples"] == 30


def _run(reach, fixed_last, anytime_last, budget_fixed, budget_anytime, superset=True):
    return {"n_max": 100, "reach": reach, "anytime_certified": anytime_last,
            "fixed": [{"n": 50, "certified": budget_fixed, "band_certified": 0.5, "per_k_alpha_over_m": 0.4,
                       "band_gain": 3, "band_superset": superset},
                      {"n": 100, "certified": fixed_last, "band_certified": 0.6, "per_k_alpha_over_m": 0.5,
                       "band_gain": 4, "band_superset": True}],
            "history": [[50, budget_anytime, 0.2], [100, anytime_last, 0.1]]}


def test_verdicts_follow_their_criteria():
    good = {"a": _run(30, 0.6, 0.6, 0.4, 0.45), "b": _run(40, 0.6, 0.6, 0.4, 0.41)}
    assert [v.verdict for v in sequential_verdicts(good)] == ["agrees", "agrees", "agrees"]
    bad = {"a": _run(None, 0.6, 0.5, 0.4, 0.3, superset=False), "b": _run(None, 0.6, 0.5, 0.4, 0.35)}
    assert check_band_superset(bad).verdict == "disagrees"
    v = check_anytime_reaches_fixed(bad)
    assert v.verdict == "disagrees" and "at least 100%" in v.measured and "0 of 2 photos" in v.measured
    assert check_anytime_equal_budget(bad).verdict == "disagrees"
    mixed = {"a": _run(30, 0.6, 0.6, 0.4, 0.45), "b": _run(None, 0.6, 0.5, 0.4, 0.3)}
    assert check_anytime_reaches_fixed(mixed).verdict == "disagrees"  # (0.3 + 1) / 2 = 65% > 50%
    assert check_anytime_equal_budget(mixed).verdict == "inconclusive"
    assert check_anytime_reaches_fixed({"a": _run(10, .6, .6, .4, .4), "b": _run(None, .6, .5, .4, .4),
                                        "c": _run(10, .6, .6, .4, .4), "d": _run(10, .6, .6, .4, .4),
                                        "e": _run(10, .6, .6, .4, .4)}).verdict == "inconclusive"  # 28% lower bound
    # within one point at every budget agrees, more than one point below at every one disagrees
    assert check_anytime_equal_budget({"a": _run(30, .6, .6, .4, .392), "b": _run(30, .6, .6, .4, .395)}).verdict \
        == "agrees"
    assert check_anytime_equal_budget({"a": _run(30, .6, .6, .4, .389), "b": _run(30, .6, .6, .4, .38)}).verdict \
        == "disagrees"
    assert check_band_superset({}).verdict == "not tested"
