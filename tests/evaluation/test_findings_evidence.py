"""The claims list and the evidence rules: every claim gets a computed verdict; methods that were not run, are
flagged degenerate or ran with an inflating setting never count as evidence; zeros from empty certificates are
reported, not ranked; verdicts follow the effect size's interval and their text carries the same numbers."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from certattr.evaluation import findings as F
from certattr.evaluation.findings.common import Measure, rank_verdict

RNG = np.random.default_rng(7)
ALL = ("grad", "gb", "ixg", "intgrad", "lrp", "rise", "occlusion", "gradcam", "gradcampp", "layercam", "cam",
       "ablationcam")


def robustness(value, *, methods=ALL, layers=("input", "final"), sigmas=(0.15, 0.33), ks=(50.0, 10.0), images=8,
               model="m", n_pixels=10000, extra=None):
    """value(image, method, layer, sigma, k) -> (certified_1 fraction, abstain fraction)."""
    rows = []
    for i in range(images):
        for m in methods:
            for layer in layers:
                for sigma in sigmas:
                    for k in ks:
                        c1, ab = value(i, m, layer, sigma, k)
                        n1, na = int(round(c1 * n_pixels)), int(round(ab * n_pixels))
                        row = {"model": model, "model_title": model.upper(), "weights": "pretrained",
                               "image_id": f"im{i}", "method": m, "layer": layer, "sigma": sigma, "tau": 0.75,
                               "k": k, "radius": sigma * 0.6745, "n_pixels": n_pixels, "n_certified_1": n1,
                               "n_abstain": na, "n_certified_0": n_pixels - n1 - na, "certified_1": n1 / n_pixels,
                               "abstain": na / n_pixels, "robustness": 1 - na / n_pixels,
                               "n_components_1": 3, "mean_component_px_1": 100.0}
                        row.update((extra or (lambda *a: {}))(i, m, layer, sigma, k))
                        rows.append(row)
    return pd.DataFrame(rows)


def localization(gridpg, *, methods=ALL, layers=("input", "final"), targets=40, empty=lambda m, l: False):
    rows = []
    for t in range(targets):
        for m in methods:
            for layer in layers:
                for k in (50.0, 10.0):
                    nothing = empty(m, layer)
                    g = 0.0 if nothing else float(np.clip(gridpg(m, layer) + 0.05 * RNG.normal(), 0, 1))
                    rows.append({"model": "m", "grid_id": f"g{t // 4}", "target_cell": t % 4, "method": m,
                                 "layer": layer, "sigma": 0.15, "k": k, "certified_gridpg": g,
                                 "no_certified": nothing, "robustness": 0.95})
    return pd.DataFrame(rows)


def deletion(score, *, methods=ALL, layers=("input", "final"), images=8, removed=lambda m, l: 100):
    rows = []
    for i in range(images):
        for m in methods:
            for layer in layers:
                n = removed(m, layer)
                rel = 1.0 if n == 0 else float(np.clip(1 - score(m, layer) + 0.02 * RNG.normal(), 0, 2))
                for step in (0, 1):
                    rows.append({"model": "m", "image_id": f"im{i}", "method": m, "layer": layer, "step": step,
                                 "n_removed": 0 if step == 0 else n, "relative_probability": 1.0 if step == 0 else rel})
    return pd.DataFrame(rows)


def full_run(settings=None) -> F.RunTables:
    good = {"rise": 0.8, "lrp": 0.7}
    rob = robustness(lambda i, m, l, s, k: (k / 200 * good.get(m, 0.3), 0.2 + s - good.get(m, 0.3) / 4))
    flips = pd.DataFrame([{"model": "m", "image_id": f"im{i}", "method": m, "layer": "final", "flipped": i % 2 == 0}
                          for i in range(8) for m in ALL])
    return F.RunTables(robustness=rob, tau=robustness(lambda i, m, l, s, k: (0.1, 0.2), sigmas=(0.15,)),
                       localization=localization(lambda m, l: good.get(m, 0.3)),
                       faithfulness=deletion(lambda m, l: good.get(m, 0.3)), flips=flips,
                       vit=robustness(lambda *a: (0.1, 0.3), methods=("gradcam", "rise"), layers=("final",),
                                      model="vit_b_16").assign(weights="random"),
                       settings=settings or F.RunSettings())


# --- every claim gets a row ---------------------------------------------------------------------------------
def test_every_claim_has_a_check_and_a_computed_verdict():
    assert set(F.CHECKS) == set(F.FINDINGS)
    for run in (full_run(), F.RunTables()):
        verdicts = F.check_claims(run)
        assert [v.finding.id for v in verdicts] == list(F.FINDINGS)
        for v in verdicts:
            assert v.verdict in F.VERDICTS and v.measured and v.why and "nan" not in v.measured.lower()
    # the chapters' declarations split the list without loss
    from certattr.book.chapters import chapters
    from certattr.book.chapters.declaration import PAPER_DOMAIN
    declared = [f.id for c in chapters(PAPER_DOMAIN.name) for f in c.findings if f.id in F.FINDINGS]
    assert sorted(declared) == sorted(F.FINDINGS)
    by_chapter = sum((F.check_claims(full_run(), [f.id for f in c.findings if f.id in F.FINDINGS])
                      for c in chapters(PAPER_DOMAIN.name)), [])
    assert sorted(v.finding.id for v in by_chapter) == sorted(F.FINDINGS)


def test_the_issue_list_of_claims_is_kept():
    for fid in ("input_localization_leaders", "gradcam_least_faithful_input", "final_flip", "rise_best_balance",
                "r_trend_every_model", "k_trend_every_model", "vit_gradient_weak", "vit_activation_weak_final",
                "gradient_input", "sigma_trend", "small_k_detail", "gradgb_final", "localization_faithfulness",
                "rise_lrp_balance", "tau_trend"):
        f = F.FINDINGS[fid]
        assert f.paper and f.source and f.criterion


def test_a_claim_on_the_full_constructed_run_agrees_where_built_to():
    verdicts = {v.finding.id: v for v in F.check_claims(full_run())}
    for fid in ("sigma_trend", "input_robust_leaders", "input_localization_leaders", "deletion_input_leaders",
                "rise_lrp_balance"):
        assert verdicts[fid].verdict == "agrees", (fid, verdicts[fid].measured)
    assert verdicts["vit_rise_robust"].verdict == "cannot test offline"
    assert verdicts["gradgb_final_faithful_vgg"].verdict == "cannot test offline"
    assert verdicts["r_trend_every_model"].verdict == "inconclusive"  # one model cannot show "every model"


# --- evidence rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, flagged", [
    ({"rise@input": {"n_masks": 12}}, {("rise", "input")}),
    ({"rise@input": {"n_masks": 100}}, set()),
    ({"rise": {"n_masks": 50}}, {("rise", None)}),
    ({"occlusion@input": {"window": 16, "stride": 8}}, set()),
    ({"occlusion@input": {"window": 75, "stride": 75}}, {("occlusion", "input")}),
    ({"occlusion@final": {"window": 5, "stride": 3}}, {("occlusion", "final")}),
    ({"occlusion": {"window": 6, "stride": 2}}, {("occlusion", "input"), ("occlusion", "final")} - {("occlusion", "input")}),
    ({"intgrad@input": {"steps": 5}}, set()),
])
def test_inflating_settings_follow_the_declared_thresholds(overrides, flagged):
    assert set(F.inflating_settings(overrides)) == flagged


def test_gb_and_intgrad_not_run_at_input_are_not_evidence():
    """Grad and IxG certify almost nothing, but GB and IntGrad did not run: the claim was not tested."""
    rob = robustness(lambda i, m, l, s, k: (0.001, 0.9), methods=("grad", "ixg", "lrp", "rise"))
    v = F.check_gradient_input(rob)
    assert v.verdict == "not tested"
    assert "GB (not run at the Input layer)" in v.why and "IntGrad (not run at the Input layer)" in v.why
    full = robustness(lambda i, m, l, s, k: (0.001, 0.9), methods=F.GRADIENT_METHODS)
    assert F.check_gradient_input(full).verdict == "agrees"
    # one named method far above a tenth of the budget disproves the claim whatever else is missing
    high = robustness(lambda i, m, l, s, k: ((0.3 if m == "grad" else 0.0) * k / 100, 0.5), methods=("grad", "ixg"))
    assert F.check_gradient_input(high).verdict == "disagrees"


def test_inflated_rise_and_degenerate_occlusion_never_count():
    """Issue case 2: RISE with 12 masks leads, Occlusion is flagged degenerate; neither may carry the verdict."""
    good = {"rise": 0.9, "occlusion": 0.95, "lrp": 0.7}
    loc = localization(lambda m, l: good.get(m, 0.3), methods=("grad", "ixg", "lrp", "rise", "occlusion"))
    loc["degenerate"] = np.where(loc.method == "occlusion", "noisy maps constant", "")
    settings = F.RunSettings({"rise@input": {"n_masks": 12}})
    v = F.check_input_localization_leaders(loc, settings=settings)
    assert v.verdict == "not tested"  # LRP leads what is left, but RISE ran only at a setting that does not count
    assert "RISE at the Input layer (12 masks" in v.excluded and "Occlusion at the Input layer" in v.excluded
    assert "Occlusion" not in v.measured and "RISE" not in v.measured.split("highest first:")[1].split(";")[0]
    # counted, the degenerate Occlusion would decide the verdict against the paper
    assert F.check_input_localization_leaders(loc.drop(columns="degenerate")).verdict == "disagrees"


def test_zero_from_nothing_removed_is_reported_not_ranked():
    faith = deletion(lambda m, l: {"lrp": 0.6, "rise": 0.5}.get(m, 0.3),
                     methods=("grad", "ixg", "lrp", "rise", "occlusion"),
                     removed=lambda m, l: 0 if m in ("grad", "ixg") else 100)
    v = F.check_deletion_input_leaders(faith)
    assert v.verdict == "agrees"
    # Grad and IxG removed nothing, so their curves are the same: one method, reported once, not ranked
    assert "Grad (nothing removed at the first step in 100% of its units)" in v.excluded
    ranked = v.measured.split("highest first:")[1].split(";")[0]
    assert "Grad" not in ranked and "IxG" not in ranked and "Occlusion" in ranked
    assert set(v.statistics["not_ranked"]) == {"grad"} and v.statistics["identical"] == {"grad": ["grad", "ixg"]}
    # a named method that removed nothing cannot agree
    faith2 = deletion(lambda m, l: 0.3, methods=("grad", "lrp", "rise", "occlusion"),
                      removed=lambda m, l: 0 if m == "rise" else 100)
    assert F.check_deletion_input_leaders(faith2).verdict != "agrees"


def test_sigma_trend_agrees_when_the_interval_excludes_zero_though_the_sign_test_does_not():
    """Issue case 3: 18 falls and 8 rises (sign test p = 0.076) with a mean drop whose interval excludes 0."""
    drops = np.r_[np.full(18, 0.09), np.full(8, -0.03), np.zeros(7)]
    RNG.shuffle(drops)

    def value(i, m, l, s, k):
        unit = (i * 2 + (l == "final")) * 3 + ("grad", "lrp", "rise").index(m)
        d = drops[unit] if unit < len(drops) else 0.0  # units past 33 are dropped below
        return 0.05, 0.3 + (d if s > 0.2 else 0.0)
    rob = robustness(value, methods=("grad", "lrp", "rise"), images=6, ks=(50.0,))
    rob = rob[~((rob.image_id == "im5") & (rob.layer == "final"))]  # 33 units
    rob = pd.concat([rob, rob.assign(model="m2", model_title="M2")])  # a second model: 66 units, 6 images
    rob = pd.concat([rob, rob[rob.image_id.isin(["im0", "im1"])].assign(image_id=lambda f: f.image_id + "b")])
    v = F.check_sigma_trend(rob)
    s = v.statistics
    # a plain recomputation keyed by the whole unit
    a = rob[rob.sigma == 0.15].set_index(["model", "image_id", "method", "layer"]).robustness
    b = rob[rob.sigma == 0.33].set_index(["model", "image_id", "method", "layer"]).robustness
    d = (a - b).dropna()
    assert (s["positive"], s["negative"], s["units"], s["clusters"]) == ((d > 0).sum(), (d < 0).sum(), len(d), 8)
    per_image = d.groupby(level="image_id").mean()
    assert (s["clusters_positive"], s["clusters_negative"]) == ((per_image > 0).sum(), (per_image < 0).sum())
    assert s["ci_low"] > 0 and v.verdict == "agrees"
    # the text carries the numbers that decided
    assert f"{100 * s['ci_low']:.1f} to {100 * s['ci_high']:.1f}" in v.why
    assert f"mean drop {100 * s['mean']:.1f} points" in v.measured


def test_small_k_with_a_clear_size_effect_is_not_inconclusive():
    """Issue case 4: few units certify anything at the small K, but those that do are clearly smaller."""
    def comps(i, m, l, s, k):
        return {"mean_component_px_1": (17.0 if k == 10 else 52.0) * (1 + 0.3 * RNG.random())}

    def value(i, m, l, s, k):  # at K = 10% only 16 of 48 units certify anything, two on each image
        return (0.0 if k == 10 and (ALL.index(m) + i) % 3 else 0.01), 0.5
    rob = robustness(value, methods=("grad", "gb", "ixg", "intgrad", "lrp", "rise"), layers=("input",),
                     sigmas=(0.15,), extra=comps)
    v = F.check_small_k_detail(rob)
    assert v.statistics["nonempty_small_k"] < 0.5 and v.statistics["sign_test_p"] < 0.01  # 8 of 8 images
    assert v.verdict == "agrees" and "Only" in v.why


def test_constant_final_maps_are_the_evidence_of_the_grad_gb_claim():
    """Grad and GB at the Final layer: constant maps (flagged degenerate), every pixel certified '0' (100%
    robust), nothing certified '1' on any grid: that is what the rebuttal describes, so it agrees."""
    constant = lambda i, m, l, s, k: {"degenerate": "noisy maps constant" if m in ("grad", "gb") else ""}
    loc = localization(lambda m, l: 0.5, methods=("grad", "gb", "lrp"), empty=lambda m, l: m in ("grad", "gb"))
    loc["degenerate"] = np.where(loc.method.isin(["grad", "gb"]), "noisy maps constant", "")
    rob = robustness(lambda i, m, l, s, k: (0.0, 0.0 if m in ("grad", "gb") else 0.1 + 0.02 * RNG.random()),
                     methods=("grad", "gb", "lrp"), sigmas=(0.15,), extra=constant)
    v = F.check_gradgb_final(loc, rob)
    assert v.verdict == "agrees", v.measured
    assert v.statistics["grad"]["constant_share"] == 1.0 and v.statistics["grad"]["best_other"] == "lrp"
    # maps that localize (GridPG far above chance) contradict "localize very poorly"
    loc2 = localization(lambda m, l: 0.9, methods=("grad", "gb", "lrp"))
    assert F.check_gradgb_final(loc2, rob).verdict == "disagrees"
    # another method clearly more robust contradicts "the most robust"
    rob2 = robustness(lambda i, m, l, s, k: (0.0, 0.3 if m in ("grad", "gb") else 0.0), methods=("grad", "gb", "lrp"),
                      sigmas=(0.15,), extra=constant)
    assert F.check_gradgb_final(loc, rob2).verdict == "disagrees"


def test_the_two_values_of_one_metric_are_named():
    loc = localization(lambda m, l: {"lrp": 0.7, "rise": 0.6}.get(m, 0.3), methods=("grad", "lrp", "rise", "ixg"))
    v = F.check_input_localization_leaders(loc)
    assert "per K = 50 and 10%" in v.measured and "the mean over K = 50% and 10%" in v.measured


# --- criteria on constructed numbers ------------------------------------------------------------------------
def test_rank_verdict_margin_matches_the_means_and_reads_both_ways():
    wide = pd.DataFrame({"a": RNG.normal(0.8, 0.05, 30), "b": RNG.normal(0.5, 0.05, 30),
                         "c": RNG.normal(0.4, 0.05, 30)})
    values = wide.assign(model="m", image_id=[f"im{i}" for i in range(30)]).melt(
        id_vars=["model", "image_id"], var_name="method", value_name="v")
    measure = Measure("v", "m", "image", conditions=())
    args = dict(measure=measure)
    v = rank_verdict("input_robust_leaders", values, ("a",), **args)
    assert v.verdict == "agrees"
    assert v.statistics["margin"] == pytest.approx(wide.a.mean() - wide.b.mean())
    low = rank_verdict("gradcam_least_faithful_input", values, ("c",), Measure("v", "m", "image", conditions=(),
                                                                                highest=False))
    assert low.verdict == "agrees" and low.statistics["margin"] == pytest.approx(wide.b.mean() - wide.c.mean())
    assert rank_verdict("input_robust_leaders", values, ("c",), **args).verdict == "disagrees"
    # a named method that did not run: not tested; one that ran but is degenerate: inconclusive
    capped = rank_verdict("input_robust_leaders", values, ("a", "z"), **args,
                          unavailable={"z": F.evidence.Absence("not run", "not run at the Input layer")})
    assert capped.verdict == "not tested" and "not run at the Input layer" in capped.why
    flagged = rank_verdict("input_robust_leaders", values, ("a", "z"), **args,
                           unavailable={"z": F.evidence.Absence("degenerate", "9 of 9 rows flagged degenerate")})
    assert flagged.verdict == "inconclusive" and "flagged degenerate" in flagged.why
    m = re.search(r"= ([+-]\d\.\d\d) \(95% CI ([+-]\d\.\d\d) to ([+-]\d\.\d\d)", v.measured)
    assert [float(x) for x in m.groups()] == pytest.approx([v.statistics[k] for k in ("margin", "ci_low", "ci_high")],
                                                           abs=0.006)


@pytest.mark.parametrize("flipping, expected", [(11, "agrees"), (1, "disagrees"), (6, "disagrees")])
def test_final_flip_counts_methods(flipping, expected):
    """Each method flips all of its 6 curves (exact interval above one half) or none (below)."""
    flips = pd.DataFrame([{"model": "m", "image_id": f"im{i}", "method": m, "layer": "final",
                           "flipped": ALL.index(m) < flipping} for i in range(6) for m in ALL])
    v = F.check_final_flip(flips)
    assert v.verdict == expected and len(v.statistics["flipping"]) == flipping


def test_final_flip_is_inconclusive_when_the_methods_are_undecided():
    flips = pd.DataFrame([{"model": "m", "image_id": f"im{i}", "method": m, "layer": "final", "flipped": i % 2 == 0}
                          for i in range(6) for m in ALL])
    v = F.check_final_flip(flips)
    assert v.verdict == "inconclusive" and v.statistics["flipping"] == v.statistics["keeping"] == []


def test_proportion_interval_is_clopper_pearson():
    share, low, high = F.proportion_interval(3, 12)
    assert share == 0.25 and low == pytest.approx(beta.ppf(0.025, 3, 10)) and high == pytest.approx(beta.ppf(0.975, 4, 9))


def test_curves_that_removed_nothing_do_not_count_for_flips():
    flips = pd.DataFrame([{"model": "m", "image_id": f"im{i}", "method": m, "layer": "final", "flipped": m != "grad"}
                          for i in range(8) for m in ALL])
    faith = deletion(lambda m, l: 0.5, removed=lambda m, l: 0 if m == "grad" else 10)
    v = F.check_final_flip(flips, faith)
    assert "grad" not in v.statistics["flipping"] and v.statistics["methods"] == len(ALL) - 1


@pytest.mark.parametrize("order, expected", [(("rise", "lrp"), "agrees"), (("lrp", "rise"), "disagrees")])
def test_rise_best_balance_needs_rise_first_and_lrp_second_at_both_layers(order, expected):
    score = {order[0]: 0.9, order[1]: 0.7}
    rob = robustness(lambda i, m, l, s, k: (0.1, 1 - score.get(m, 0.4)), sigmas=(0.15,))
    loc = localization(lambda m, l: score.get(m, 0.3))
    assert F.check_rise_best_balance(rob, loc).verdict == expected


def test_vit_claims_with_pretrained_weights_are_computed():
    cnn = robustness(lambda i, m, l, s, k: (0.1, 0.3), sigmas=(0.15,))
    vit = robustness(lambda i, m, l, s, k: (0.1, 0.3 if m in F.GRADIENT_METHODS else 0.8), sigmas=(0.15,),
                     model="vit_b_16")
    assert F.check_vit_gradient_weak(vit, cnn).verdict == "agrees"
    assert F.check_vit_activation_weak_final(vit, cnn).verdict == "agrees"
    assert F.check_vit_gradient_weak(vit.assign(weights="random"), cnn).verdict == "cannot test offline"


def test_verdict_rejects_an_unknown_word():
    with pytest.raises(ValueError, match="not allowed"):
        F.Verdict(F.FINDINGS["sigma_trend"], "maybe", "", "")


def test_rows_that_record_an_inflating_setting_are_excluded_without_declared_settings():
    rob = robustness(lambda i, m, l, s, k: (0.1, 0.1 if m == "rise" else 0.5), methods=("grad", "lrp", "rise"),
                     sigmas=(0.15,))
    rob["method_params"] = np.where((rob.method == "rise") & (rob.layer == "input"),
                                    '{"grid": 6, "n_masks": 12, "p": 0.1, "pass_batch": null}', "{}")
    v = F.check_input_robust_leaders(rob)
    assert "RISE at the Input layer (12 masks" in v.excluded and v.verdict != "agrees"
    rob["method_params"] = '{"n_masks": 1000}'
    assert F.check_input_robust_leaders(rob).excluded == ""
