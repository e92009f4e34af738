"""The statistics under the verdicts: every pairing, interval and count keys a measurement by its whole identity
(model, image or grid target, method, layer, settings); intervals resample images or grid targets; the labels
follow one rule; the empty-certificate rule holds for every method and K; identical maps count once; and a
second, plain implementation (certattr.evaluation.recheck) recomputes every row from the CSVs and agrees."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from certattr.evaluation import findings as F
from certattr.evaluation.recheck import recheck_frame

RNG = np.random.default_rng(11)
ALL = ("grad", "gb", "ixg", "intgrad", "lrp", "rise", "occlusion", "gradcam", "cam")


def rob_table(models, *, images=10, methods=ALL, layers=("input", "final"), ks=(50.0, 30.0, 10.0), taus=(0.75,),
              value=None, degenerate=lambda model, m, l: ""):
    """models: {model: [sigmas]}; value(model, i, m, l, s, k, tau) -> (certified_1, abstain)."""
    value = value or (lambda model, i, m, l, s, k, t: (k / 300 * (1 + 0.1 * RNG.random()),
                                                       min(0.95, 0.1 + s + 0.2 * (t - 0.75) + 0.05 * RNG.random())))
    rows = []
    for model, sigmas in models.items():
        for i in range(images):
            for m in methods:
                for layer in layers:
                    for s in sigmas:
                        for t in taus:
                            for k in ks:
                                c1, ab = value(model, i, m, layer, s, k, t)
                                n = 10000
                                n1, na = int(round(c1 * n)), int(round(ab * n))
                                rows.append({"model": model, "model_title": model.upper(), "image_id": f"im{i}",
                                             "method": m, "layer": layer, "sigma": s, "tau": t, "k": k,
                                             "radius": s * 0.6745, "n_pixels": n, "n_certified_1": n1,
                                             "n_abstain": na, "n_certified_0": n - n1 - na, "certified_1": n1 / n,
                                             "abstain": na / n, "robustness": 1 - na / n,
                                             "n_components_1": 3, "mean_component_px_1": 100.0 * k / 50 + RNG.random(),
                                             "degenerate": degenerate(model, m, layer), "method_params": "{}"})
    return pd.DataFrame(rows)


def loc_table(models=("m1",), *, targets=12, methods=ALL, layers=("input", "final"), ks=(50.0, 30.0, 10.0),
              gridpg=lambda m, l, k: 0.3, empty=lambda m, l, k, t: False, degenerate=lambda m, l: ""):
    rows = []
    for model in models:
        for t in range(targets):
            for m in methods:
                for layer in layers:
                    for k in ks:
                        nothing = empty(m, layer, k, t)
                        g = 0.0 if nothing else float(np.clip(gridpg(m, layer, k) + 0.05 * RNG.normal(), 0, 1))
                        n1 = 0 if nothing else int(1000 * RNG.random()) + 1
                        rows.append({"model": model, "model_title": model.upper(), "grid_id": f"g{t // 4}",
                                     "target_cell": t % 4, "method": m, "layer": layer, "sigma": 0.15, "tau": 0.75,
                                     "k": k, "certified_gridpg": g, "n_certified_1": n1,
                                     "n_certified_1_inside": int(round(g * n1)), "no_certified": nothing,
                                     "robustness": 0.9, "degenerate": degenerate(m, layer), "method_params": "{}"})
    return pd.DataFrame(rows)


def faith_table(models=("m1",), *, images=10, methods=ALL, layers=("input", "final"), drop=lambda m, l: 0.3,
                removed=lambda m, l, i: 100):
    rows, flips = [], []
    for model in models:
        for i in range(images):
            for m in methods:
                for layer in layers:
                    n = removed(m, layer, i)
                    rel = 1.0 if n == 0 else float(1 - drop(m, layer) + 0.05 * RNG.normal())
                    for step in (0, 1):
                        rows.append({"model": model, "image_id": f"im{i}", "method": m, "layer": layer, "step": step,
                                     "sigma": 0.15, "n_removed": 0 if step == 0 else n,
                                     "relative_probability": 1.0 if step == 0 else rel, "degenerate": "",
                                     "method_params": "{}"})
                    flips.append({"model": model, "image_id": f"im{i}", "method": m, "layer": layer,
                                  "flipped": bool(rel < 0.5)})
    return pd.DataFrame(rows), pd.DataFrame(flips)


def two_model_run():
    """Model m1 certified at σ = 0.15 and 0.33, model m2 at σ = 0.25 and 0.33 on the same image ids: a join
    without the model pairs m1's 0.15 with m2's 0.33 (and counts m2's 0.33 rows a second time)."""
    good = {"rise": 0.8, "lrp": 0.7}
    value = (lambda model, i, m, l, s, k, t: (k / 300 * good.get(m, 0.4),
                                              min(0.95, 0.1 + (s if model == "m1" else 0.5 - s) + 0.2 * (t - 0.75)
                                                  - 0.2 * good.get(m, 0.4) + 0.05 * RNG.random())))
    rob = rob_table({"m1": [0.15, 0.33], "m2": [0.25, 0.33]}, value=value,
                    degenerate=lambda model, m, l: "constant" if (m in ("grad", "gb") and l == "final") else "")
    tau = rob_table({"m1": [0.15], "m2": [0.25]}, taus=(0.75, 0.9), value=value)
    loc = loc_table(gridpg=lambda m, l, k: good.get(m, 0.3) if l == "input" else 0.4,
                    empty=lambda m, l, k, t: (m == "grad" and k < 50) or (m in ("grad", "gb") and l == "final"),
                    degenerate=lambda m, l: "constant" if (m in ("grad", "gb") and l == "final") else "")
    faith, flips = faith_table(drop=lambda m, l: good.get(m, 0.3) if l == "input" else 0.6)
    return rob, tau, loc, faith, flips


def test_pairings_never_cross_models():
    rob, *_ = two_model_run()
    v = F.check_sigma_trend(rob)
    # only m1 has both σ = 0.15 and 0.33: 10 images x 9 methods x 2 layers, less m1's degenerate Final Grad and GB
    expected = 10 * (9 * 2 - 2)
    assert v.statistics["units"] == expected and v.statistics["clusters"] == 10
    model_less = rob[rob.sigma == 0.15].merge(rob[rob.sigma == 0.33], on=["image_id", "method", "layer", "k"])
    assert len(model_less[model_less.k == 50]) != expected  # what the old join did: it crosses models
    per_model = F.check_r_trend_every_model(rob)
    assert set(per_model.statistics) == {"M1", "M2"}
    assert per_model.statistics["M2"]["mean"] < 0 < per_model.statistics["M1"]["mean"]  # built to go opposite ways
    with pytest.raises(ValueError, match="not unique"):
        F.paired(pd.concat([rob, rob]), "sigma", 0.15, 0.33, "robustness")


def test_every_row_agrees_with_the_plain_recomputation(tmp_path):
    rob, tau, loc, faith, flips = two_model_run()
    run = F.RunTables(robustness=rob, tau=tau, localization=loc, faithfulness=faith, flips=flips)
    from certattr.book.chapters import chapters
    from certattr.book.chapters.declaration import PAPER_DOMAIN
    for c in chapters(PAPER_DOMAIN.name):
        ids = [f.id for f in c.findings if f.id in F.FINDINGS]
        if ids:
            F.write_findings(F.check_claims(run, ids), tmp_path, c.stem)
    for name, frame in (("robustness", rob), ("robustness_tau", tau), ("localization", loc), ("faithfulness", faith),
                        ("faithfulness_flips", flips)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    table = recheck_frame(tmp_path)
    assert len(table) > 60 and table.claim.nunique() >= 12
    assert table.agree.all(), table[~table.agree].to_string()
    # and it does catch a row computed on other numbers
    saved = json.loads((tmp_path / "findings_robustness.json").read_text())
    for row in saved:
        if row["id"] == "sigma_trend":
            row["statistics"]["units"] += 1
    (tmp_path / "findings_robustness.json").write_text(json.dumps(saved))
    bad = recheck_frame(tmp_path)
    assert list(bad[~bad.agree].quantity) == ["units"]


def test_fewer_than_eight_images_get_no_interval():
    rob = rob_table({"m1": [0.15, 0.33]}, images=5)
    v = F.check_sigma_trend(rob)
    assert v.verdict == "inconclusive" and v.statistics["ci_low"] is None
    assert "only 5 images: too few for an interval (8 needed)" in v.measured + v.why and "CI" not in v.measured
    assert F.check_sigma_trend(rob_table({"m1": [0.15, 0.33]}, images=8)).statistics["ci_low"] is not None


@pytest.mark.parametrize("case, expected", [
    ("rise not run", "not tested"),
    ("rise with 12 masks", "not tested"),
    ("rise degenerate", "inconclusive"),
    ("too few images", "inconclusive"),
    ("interval contains 0", "inconclusive"),
    ("leads", "agrees"),
    ("trails", "disagrees"),
    ("rise not run, lrp trails", "disagrees"),
])
def test_one_labelling_rule(case, expected):
    lead = {"leads": 0.3, "trails": -0.3, "interval contains 0": 0.05}.get(case, 0.3)
    lrp_lead = -0.3 if "lrp trails" in case else lead
    noise = 0.3 if case == "interval contains 0" else 0.1
    value = lambda model, i, m, l, s, k, t: (0.1, max(0.0, min(0.95, 0.5 - {"rise": lead, "lrp": lrp_lead}.get(m, 0)
                                                                   + noise * RNG.normal())))
    methods = ("grad", "ixg", "lrp") if "not run" in case else ("grad", "ixg", "lrp", "rise")
    rob = rob_table({"m1": [0.15]}, images=5 if case == "too few images" else 12, methods=methods, value=value,
                    degenerate=lambda model, m, l: "constant" if case == "rise degenerate" and m == "rise" else "")
    if case == "rise with 12 masks":
        rob["method_params"] = np.where(rob.method == "rise", '{"n_masks": 12}', "{}")
    assert F.check_input_robust_leaders(rob).verdict == expected


def test_offline_label_is_only_for_weights_that_cannot_be_installed():
    rob, tau, loc, faith, flips = two_model_run()
    verdicts = {v.finding.id: v for v in F.check_claims(F.RunTables(robustness=rob, tau=tau, localization=loc,
                                                                    faithfulness=faith, flips=flips))}
    offline = {fid for fid, v in verdicts.items() if v.verdict == "cannot test offline"}
    assert offline == {"gradgb_final_faithful_vgg"}  # VGG-11's ImageNet weights
    assert all(verdicts[f].verdict == "not tested" for f in ("vit_gradient_weak", "vit_rise_robust"))  # no ViT run
    vit = rob_table({"vit_b_16": [0.15]}, methods=("gradcam", "rise")).assign(weights="random")
    assert F.check_vit_rise_robust(vit).verdict == "cannot test offline"


def test_empty_rule_is_applied_per_method_and_k():
    """Grad certifies nothing '1' at K = 30 and 10 but scores highest at K = 50: it is ranked at K = 50 only, where
    it leads, so LRP does not 'lead' because Grad's empty Ks are averaged in as zeros."""
    loc = loc_table(methods=("grad", "ixg", "lrp", "rise"), targets=16,
                    gridpg=lambda m, l, k: {"grad": 0.6, "lrp": 0.45, "rise": 0.5}.get(m, 0.2),
                    empty=lambda m, l, k, t: m == "grad" and k < 50)
    v = F.check_input_localization_leaders(loc)
    assert v.statistics["not_ranked"] == {"grad": [[30.0], [10.0]]}
    assert v.verdict == "disagrees" and "Grad" in v.why  # at K = 50 Grad is ahead of LRP and RISE
    # the old rule (a method's empty units averaged in as zeros over K) would have let LRP and RISE lead
    mean_over_k = loc[loc.layer == "input"].groupby("method").certified_gridpg.mean()
    assert mean_over_k["grad"] < min(mean_over_k["lrp"], mean_over_k["rise"])


def test_identical_maps_count_once_in_method_level_statistics():
    """Five methods with one deletion curve on a GAP->linear head are one method for the flip row."""
    same = ("ixg", "intgrad", "lrp", "cam", "gradcam")
    faith, flips = faith_table(images=10, methods=("grad", "rise", "occlusion") + same, layers=("final",),
                               drop=lambda m, l: 0.9 if m in same else 0.1)
    first = faith.step == 1
    for m in same[1:]:  # copy the first one's curves to the others: identical maps give identical curves
        faith.loc[first & (faith.method == m), "relative_probability"] = \
            faith.loc[first & (faith.method == same[0]), "relative_probability"].to_numpy()
        flips.loc[flips.method == m, "flipped"] = flips.loc[flips.method == same[0], "flipped"].to_numpy()
    v = F.check_final_flip(flips, faith)
    assert v.statistics["methods"] == 4 and v.statistics["identical"] == {"ixg": list(same)}
    assert v.verdict == "disagrees"  # 1 of 4 flips; counted as 5 of 8 it would have 'agreed'
    assert "IxG (= IntGrad = LRP = Cam = GradCam)" in v.measured
    groups = F.identical_groups(faith)
    assert groups == {("m1", "final"): [list(same)]}


def test_a_method_identical_on_one_model_only_keeps_its_rows_and_is_not_named_in_the_title():
    """IxG = LRP on m2 but not on m1: m2's IxG rows count once (dropped), m1's IxG rows stay and are listed with
    their own value, so the title must not say "LRP (= IxG)" next to a separate IxG value; Grad = GB on both
    models is one method everywhere and is titled so."""
    frame = pd.DataFrame([{"model": model, "image_id": f"im{i}", "method": m, "layer": "input", "k": 50.0,
                           "n_certified_1": (7 if (m == "ixg" and model == "m2") else
                                             {"lrp": 7, "ixg": 3, "grad": 1, "gb": 1}[m]) + i}
                          for model in ("m1", "m2") for i in range(3) for m in ("lrp", "ixg", "grad", "gb")])
    groups = F.identical_groups(frame)
    assert groups == {("m1", "input"): [["grad", "gb"]], ("m2", "input"): [["lrp", "ixg"], ["grad", "gb"]]}
    kept_frame, kept = F.collapse_identical(frame, groups, prefer=("lrp",))
    assert kept == {"grad": ["grad", "gb"]}  # not {"lrp": ["lrp", "ixg"]}: m1's IxG is still listed
    counts = kept_frame.groupby(["model", "method"]).size().to_dict()
    assert counts == {("m1", "grad"): 3, ("m1", "ixg"): 3, ("m1", "lrp"): 3, ("m2", "grad"): 3, ("m2", "lrp"): 3}


def test_deletion_row_states_the_tables_quantity_unclipped():
    faith, flips = faith_table(methods=("grad", "lrp", "rise", "gradcam"), layers=("input",),
                               drop=lambda m, l: {"gradcam": -0.2, "lrp": 0.4, "rise": 0.5}.get(m, 0.1))
    v = F.check_gradcam_least_faithful_input(faith)
    table_mean = faith[(faith.step == 1) & (faith.method == "gradcam")].relative_probability.mean()
    assert v.statistics["means"]["gradcam"] == pytest.approx(1 - table_mean)  # a rise is negative, not clipped
    assert "one minus the faithfulness table's relative probability" in v.measured


def test_a_row_neither_side_could_measure_agrees_and_a_missing_table_does_not():
    from certattr.evaluation.recheck.compare import _compare

    assert _compare("c", {"verdict": "inconclusive", "statistics": {}}, None) == [("c", "measured settings", "none", "none")]
    assert _compare("c", {"verdict": "agrees", "statistics": {"margin": 0.2}}, None) == \
        [("c", "row", "agrees", "no table to recompute from")]


def test_a_few_degenerate_units_leave_only_themselves_out():
    """Cam with 3 of 12 images flagged degenerate keeps its 9 other units as evidence (the plain recomputation does
    the same); Grad with every unit flagged is gone, and the note tells the two cases apart."""
    rob = rob_table({"m1": [0.15]}, images=12, methods=("cam", "grad", "rise"), layers=("final",), ks=(50.0,))
    flagged = ((rob.method == "cam") & rob.image_id.isin(["im0", "im1", "im2"])) | (rob.method == "grad")
    rob["degenerate"] = np.where(flagged, "constant", "")
    ev = F.admissible(rob)
    kept = ev.frame.groupby("method").size().to_dict()
    assert kept == {"cam": 9, "rise": 12}
    assert ev.excluded == {"Cam at the Final layer": "3 of its 12 rows, flagged degenerate; the other 9 count",
                           "Grad at the Final layer": "12 of 12 rows flagged degenerate"}
