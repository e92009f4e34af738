"""The tables, rankings and selections the evaluation chapters show (certattr.evaluation.tables), on small
constructed result rows with answers worked out by hand or by an independent loop."""
import math

import pandas as pd
import pytest

from certattr.evaluation import tables


# --- robustness --------------------------------------------------------------------------------------------------
def test_pooled_outcome_table_formats_percentages_and_names_the_empty_cells():
    pooled = pd.DataFrame([
        {"model": "m", "method_title": "Grad", "layer": "input", "certified_1": 0.125, "certified_0": 0.5, "abstain": 0.375},
        {"model": "m", "method_title": "Grad", "layer": "final", "certified_1": 0.0, "certified_0": 1.0, "abstain": 0.0},
        {"model": "m", "method_title": "LRP", "layer": "input", "certified_1": 0.3333, "certified_0": 0.3333,
         "abstain": 0.3334},
        {"model": "m", "method_title": "RISE", "layer": "final", "certified_1": 0.2, "certified_0": 0.2, "abstain": 0.6},
    ])
    got = tables.pooled_outcome_table(pooled, ["input", "final"], {"m": "Model M"}, {("LRP", "final")})
    assert list(got.columns) == ["certified '1', Input layer (%)", "certified '1', Final layer (%)",
                                 "certified '0', Input layer (%)", "certified '0', Final layer (%)",
                                 "abstain, Input layer (%)", "abstain, Final layer (%)"]
    assert list(got.index) == [("Model M", "Grad"), ("Model M", "LRP"), ("Model M", "RISE")]
    assert list(got.loc[("Model M", "Grad")]) == ["12.5", "0.0", "50.0", "100.0", "37.5", "0.0"]
    assert got.loc[("Model M", "LRP"), "abstain, Final layer (%)"] == "not defined"  # not defined there
    assert got.loc[("Model M", "RISE"), "certified '1', Input layer (%)"] == "not run"  # defined, left out


def test_pooled_outcome_table_shows_no_numbers_for_degenerate_cells():
    """Grad at the Final layer with every certificate a constant map: "degenerate" in its cells, not 3.8% certified
    '1' that would read as a measurement; a cell only partly degenerate keeps its numbers."""
    pooled = pd.DataFrame([
        {"model": "m", "method_title": "Grad", "layer": "input", "certified_1": 0.125, "certified_0": 0.5,
         "abstain": 0.375, "degenerate": False},
        {"model": "m", "method_title": "Grad", "layer": "final", "certified_1": 0.038, "certified_0": 0.962,
         "abstain": 0.0, "degenerate": True},
    ])
    got = tables.pooled_outcome_table(pooled, ["input", "final"], {"m": "Model M"}, set())
    assert list(got.loc[("Model M", "Grad")]) == ["12.5", "degenerate", "50.0", "degenerate", "37.5", "degenerate"]


def _means():
    rows = []
    values = {("grad", "input"): [0.5, 0.4, 0.3], ("rise", "input"): [0.2, 0.2, 0.2],
              ("lrp", "input"): [0.1, 0.3, 0.6], ("gradcam", "final"): [0.6, 0.5, float("nan")]}
    for (method, layer), vs in values.items():
        for sigma, v in zip((0.15, 0.25, 0.33), vs):
            for k in (50.0, 10.0):
                if math.isnan(v):
                    continue  # not run at this sigma
                rows.append({"model": "m", "method": method, "method_title": method.upper(), "layer": layer,
                             "sigma": sigma, "k": k, "value": v if k == 50.0 else v / 2, "gridpg": 0.4,
                             "no_certified": 0.25})
    return pd.DataFrame(rows)


def test_gridpg_trend_counts_the_combinations_that_fall_with_the_radius():
    means = _means()
    assert tables.gridpg_trend(means, 50.0) == (1, 3)  # grad falls, rise is flat, lrp rises; gradcam lacks a sigma
    assert tables.gridpg_trend(means[means.sigma == 0.15], 50.0) is None


def test_gridpg_summary_table_has_every_k_and_the_uncertified_columns():
    got = tables.gridpg_summary_table(_means(), 0.15, 50.0, {"m": "Model M"})
    assert list(got.columns) == ["Certified GridPG, K = 50%", "Certified GridPG, K = 10%",
                                 "uncertified GridPG, K = 50%", "empty certificates, K = 50% (%)"]
    assert got.loc[("Model M", "GRAD", "Input")].tolist() == [0.5, 0.25, 0.4, 25.0]
    assert got.loc[("Model M", "GRADCAM", "Final"), "Certified GridPG, K = 10%"] == 0.3
    assert list(got.index.names) == ["model", "method", "layer"]


def test_gridpg_summary_table_shows_degenerate_cells_as_such():
    """GradCam at the Final layer with every certificate a constant map: "degenerate" in its row (the figures draw
    it so), the other rows keep their numbers."""
    means = _means().assign(degenerate=lambda f: f.method == "gradcam")
    got = tables.gridpg_summary_table(means, 0.15, 50.0, {"m": "Model M"})
    assert got.loc[("Model M", "GRADCAM", "Final")].tolist() == ["degenerate"] * 4
    assert got.loc[("Model M", "GRAD", "Input")].tolist() == [0.5, 0.25, 0.4, 25.0]


def test_overlay_pairs_prefer_the_papers_pairs_then_the_rest():
    per_layer = {"input": ["grad", "rise", "lrp"], "final": ["grad", "gradcam"]}
    done = {("rise", "input"), ("gradcam", "final"), ("grad", "final"), ("grad", "input")}
    computed = lambda m, layer: (m, layer) in done  # noqa: E731
    assert tables.overlay_pairs(computed, ["input", "final"], per_layer) == [
        ("rise", "input"), ("gradcam", "final"), ("grad", "input")]
    assert tables.overlay_pairs(computed, ["input", "final"], per_layer, limit=4)[-1] == ("grad", "final")
    assert tables.overlay_pairs(computed, ["input", "final"], per_layer, ["grad"]) == [("grad", "input"),
                                                                                       ("grad", "final")]


# --- trade-off and faithfulness -----------------------------------------------------------------------------------
def test_ranked_means_average_per_method_then_sort():
    frame = pd.DataFrame({"method_title": ["A", "B", "A", "C"], "x": [0.2, 0.5, 0.6, 0.1]})
    assert tables.ranked_means(frame, "x").to_dict() == {"B": 0.5, "A": 0.4, "C": 0.1}
    assert list(tables.ranked_means(frame, "x", ascending=True).index) == ["C", "A", "B"]


def _method_layer_rows(models=("M",)):
    rows = []
    for model in models:
        for method, layer, v in (("GradCam", "final", 1.0), ("RISE", "final", 2.0), ("Grad", "input", 3.0),
                                 ("RISE", "input", 4.0), ("GradCam", "input", 5.0)):
            rows.append({"model_title": model, "method_title": method, "layer": layer, "v": v})
    return pd.DataFrame(rows)


def test_method_layer_table_orders_methods_and_layers():
    frame = _method_layer_rows()
    first_seen = tables.method_layer_table(frame, ["v"], {"v": "value"}, input_first=False)
    assert list(first_seen.index) == [("GradCam", "Input"), ("GradCam", "Final"), ("RISE", "Input"), ("RISE", "Final"),
                                      ("Grad", "Input")]
    assert list(first_seen.columns) == ["value"] and first_seen.loc[("RISE", "Final"), "value"] == 2.0
    input_first = tables.method_layer_table(frame, ["v"], {"v": "value"}, input_first=True)
    assert [m for m, _ in input_first.index][::2] == ["Grad", "RISE", "GradCam"]
    two = tables.method_layer_table(_method_layer_rows(("B", "A")), ["v"], {}, input_first=True)
    assert list(two.index.names) == ["model", "method", "layer"] and two.index[0][0] == "A"


def test_deletion_summary_means_over_images():
    rows = []
    for image, (auc, p0, p1, removed) in {"x": (0.2, 0.8, 0.4, 0.1), "y": (0.4, 0.6, 0.6, 0.3)}.items():
        for step, p in ((0, p0), (1, p1)):
            rows.append({"model_title": "M", "method_title": "Grad", "layer": "input", "image_id": image,
                         "step": step, "auc": auc, "probability": p, "relative_probability": p / p0,
                         "removed_fraction": removed if step else 0.0})
    got = tables.deletion_summary(pd.DataFrame(rows)).iloc[0]
    assert got.auc == pytest.approx(0.3) and got.p_clean == 0.8
    assert got.drop1 == pytest.approx((0.5 + 1.0) / 2) and got.removed1 == pytest.approx(0.2)


def test_ranked_deletion_auc_reports_empty_first_steps_instead_of_ranking_them():
    # GradCam removes nothing on 2 of 3 images (its high AUC measures the empty certificate): not ranked, even
    # though its AUC is the highest; Grad removes nothing on 1 of 3 (at most half): ranked; RISE lowest.
    removed = {"GradCam": (0.0, 0.0, 0.2), "Grad": (0.0, 0.1, 0.1), "RISE": (0.3, 0.3, 0.3)}
    aucs = {"GradCam": (0.9, 0.9, 0.5), "Grad": (0.6, 0.4, 0.5), "RISE": (0.2, 0.3, 0.1)}
    rows = []
    for method in removed:
        for i, image in enumerate("abc"):
            for step in (0, 1, 2):
                rows.append({"model": "m", "image_id": image, "method_title": method, "layer": "input", "step": step,
                             "auc": aucs[method][i], "removed_fraction": removed[method][i] * step})
    rows.append({"model": "m", "image_id": "a", "method_title": "RISE", "layer": "final", "step": 1, "auc": 0.7,
                 "removed_fraction": 0.0})
    ranked, empty = tables.ranked_deletion_auc(pd.DataFrame(rows), "input")
    assert list(ranked.index) == ["RISE", "Grad"] and ranked["Grad"] == pytest.approx(0.5)
    assert empty == {"GradCam": pytest.approx(2 / 3)}
    ranked, empty = tables.ranked_deletion_auc(pd.DataFrame(rows), "final")
    assert ranked.empty and empty == {"RISE": 1.0}


# --- method chapter ---------------------------------------------------------------------------------------------
def test_per_k_outcome_table_and_budget_shares():
    rows = pd.DataFrame([
        {"method": "grad", "layer": "input", "k": 10.0, "certified_1": 0.02, "abstain": 0.5},
        {"method": "grad", "layer": "input", "k": 50.0, "certified_1": 0.1, "abstain": 0.4},
        {"method": "rise", "layer": "input", "k": 50.0, "certified_1": 0.4, "abstain": 0.1},
        {"method": "rise", "layer": "final", "k": 50.0, "certified_1": 0.45, "abstain": 0.0},
    ])
    got = tables.per_k_outcome_table(rows)
    assert list(got.columns) == ["certified '1', K = 50% (%)", "certified '1', K = 10% (%)", "abstain, K = 50% (%)",
                                 "abstain, K = 10% (%)"]
    assert got.loc[("Grad", "Input")].tolist() == pytest.approx([10.0, 2.0, 40.0, 50.0])
    assert math.isnan(got.loc[("RISE", "Input"), "certified '1', K = 10% (%)"])
    grad = tables.budget_shares(rows, 50.0, "input", ["grad"])
    assert grad.to_dict() == pytest.approx({"grad": 0.2})  # 10% of the pixels out of a 50% budget
    assert tables.budget_shares(rows, 50.0, "input", ["grad"], among=False).to_dict() == pytest.approx({"rise": 0.8})


def test_degenerate_certificates_read_degenerate_and_are_not_ranked():
    # Grad's every curve comes from a constant map: its scores are no data (table cells read "degenerate") and it is
    # neither ranked nor counted as "removed nothing"; RISE is ranked as before
    rows = []
    for method, flag in (("Grad", "decided by rounding"), ("RISE", "")):
        for image in "ab":
            for step, p in ((0, 0.8), (1, 0.4)):
                rows.append({"model": "m", "model_title": "M", "method_title": method, "layer": "final",
                             "image_id": image, "step": step, "auc": 0.5, "probability": p,
                             "relative_probability": p / 0.8, "removed_fraction": 0.1 * step, "degenerate": flag})
    frame = pd.DataFrame(rows)
    summary = tables.deletion_summary(frame).set_index("method_title")
    assert summary.degenerate.to_dict() == {"Grad": True, "RISE": False}
    shown = tables.degenerate_cells(summary, summary.degenerate, ["auc", "drop1"])
    assert shown.loc["Grad", "auc"] == "degenerate" and shown.loc["RISE", "auc"] == pytest.approx(0.5)
    ranked, empty = tables.ranked_deletion_auc(frame, "final")
    assert list(ranked.index) == ["RISE"] and empty == {}
    per_k = tables.per_k_outcome_table(pd.DataFrame([
        {"method": "grad", "layer": "final", "k": 50.0, "certified_1": 0.0, "abstain": 0.0, "degenerate": "rounding"},
        {"method": "rise", "layer": "final", "k": 50.0, "certified_1": 0.4, "abstain": 0.1, "degenerate": ""}]))
    assert per_k.loc[("Grad", "Final")].tolist() == ["degenerate", "degenerate"]
    assert per_k.loc[("RISE", "Final")].tolist() == pytest.approx([40.0, 10.0])
