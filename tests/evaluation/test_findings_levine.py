"""The verdicts of the levine chapter (certattr.evaluation.findings.levine) on tables whose answer is
known by construction."""
from __future__ import annotations

import numpy as np
import pandas as pd

from certattr.evaluation.findings import levine as lf


def _attacks(shift_per_lam: float, noise: float = 0.02, n: int = 40) -> pd.DataFrame:
    gen = np.random.default_rng(0)
    rows = []
    for j, lam in enumerate([0.0, 1.0, 10.0]):
        for eps in (0.5, 1.0):
            for i in range(n):
                rows.append({"lam": lam, "eps": eps, "image": f"d{i}",
                             "attack": 0.5 + shift_per_lam * j + noise * gen.standard_normal(), "random": 0.9})
    return pd.DataFrame(rows)


def test_robustness_verdict_follows_the_paired_difference():
    assert lf.check_robustness_rises(_attacks(0.1)).verdict == "agrees"
    assert lf.check_robustness_rises(_attacks(-0.1)).verdict == "disagrees"
    assert lf.check_robustness_rises(_attacks(0.0, noise=0.2, n=6)).verdict == "inconclusive"
    one = _attacks(0.1)
    assert lf.check_robustness_rises(one[one.lam == 0.0]).verdict == "not tested"


def _correct(acc_small: float, acc_big: float, n: int = 400) -> pd.DataFrame:
    gen = np.random.default_rng(1)
    base = gen.random(n)
    return pd.DataFrame([{"lam": lam, "image": f"t{i}", "correct": bool(base[i] < acc)}
                         for lam, acc in ((0.0, acc_small), (10.0, acc_big)) for i in range(n)])


def test_accuracy_verdict_uses_the_stated_threshold():
    assert lf.check_accuracy_drops_little(_correct(0.9, 0.9)).verdict == "agrees"
    assert lf.check_accuracy_drops_little(_correct(0.9, 0.7)).verdict == "disagrees"
    verdict = lf.check_accuracy_drops_little(_correct(0.9, 0.86))  # a drop of about 4 points, interval around 3: undecided
    assert verdict.verdict == "inconclusive" and verdict.statistics["low"] < lf.ACCURACY_DROP < verdict.statistics["high"]


def _scaled(sparse: float, scaled: float, photos: int = 8) -> pd.DataFrame:
    return pd.DataFrame([{"image": f"p{j}", "method": m, "eps": e, "certified_overlap": v + 0.01 * (j % 3)}
                         for j in range(photos) for e in (0.01, 0.02)
                         for m, v in (("Sparsified SmoothGrad", sparse), ("scaled SmoothGrad", scaled))])


def test_figure_1b_verdict_needs_a_vacuous_scaled_and_a_non_vacuous_sparsified_certificate():
    assert lf.check_sparsified_beats_scaled(_scaled(0.4, 0.0)).verdict == "agrees"
    assert lf.check_sparsified_beats_scaled(_scaled(0.4, 0.2)).verdict == "inconclusive"  # scaled is not vacuous
    assert lf.check_sparsified_beats_scaled(_scaled(0.0, 0.3)).verdict == "disagrees"
    assert lf.check_sparsified_beats_scaled(_scaled(0.0, 0.0)).verdict == "inconclusive"
    near_empty = lf.check_sparsified_beats_scaled(_scaled(0.01, 0.0))  # larger, but both (near) vacuous
    assert near_empty.verdict == "inconclusive" and "near vacuous" in near_empty.why
    few = lf.check_sparsified_beats_scaled(_scaled(0.4, 0.0, photos=2))  # two photos: no interval, no verdict
    assert few.verdict == "inconclusive" and few.statistics["low"] is None and "CI" not in few.measured
    assert "too few for an interval" in few.measured


def test_lambda_trend_pairs_the_same_images():
    frame = pd.DataFrame({"lam": [0.0] * 8 + [1.0] * 9, "image": [f"i{j}" for j in range(8)] + [f"i{j}" for j in range(9)],
                          "value": [0.1 * j for j in range(8)] + [0.1 * j + 0.2 for j in range(8)] + [9.0]})
    trend = lf.lambda_trend(frame, "value")
    assert trend["n"] == 8 and abs(trend["estimate"] - 0.2) < 1e-12 and trend["answer"] == "rises"
    assert lf.lambda_trend(frame[frame.image.isin(["i0", "i1", "i8"])], "value")["answer"] == "undecided"  # 2 pairs
