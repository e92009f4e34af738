"""The helpers every chapter shares: display names, integer K, n/a text, reduction notes, figure glue."""
import numpy as np
import pandas as pd

from certattr.book import chapter
from certattr.methods import method_names, get_method


def test_display_names_and_integer_k():
    assert chapter.method_title("gradcampp") == "GradCam++" and chapter.method_title("nope") == "nope"
    assert [chapter.k_text(k) for k in (50.0, 5, 12.5)] == ["50", "5", "12.5"]
    frame = pd.DataFrame({"method": method_names(), "layer": "input", "value": np.nan})
    shown = chapter.display_frame(frame)
    assert list(shown.method) == [get_method(m).title for m in method_names()]
    assert set(shown.layer) == {"Input"} and set(shown.value) == {chapter.NOT_RUN}


def test_reduction_notes_name_what_was_reduced_and_only_that():
    overrides = {"rise@input": {"n_masks": 16}, "occlusion@input": {"window": 75, "stride": 75},
                 "intgrad@input": {"steps": 5}}
    notes = chapter.reduction_notes(overrides, offline=True)
    text = chapter.reduction_text(notes)
    assert len(notes) == 4 and "16 masks" in text and "75x75" in text and "5 steps" in text and "top-1" in text
    only = chapter.reduction_notes(overrides, offline=False, methods_run={"grad", "rise"})
    assert len(only) == 1 and "RISE" in only[0]
    assert chapter.reduction_text([]) == "This run uses the paper's settings."
    assert chapter.reduction_notes({"rise": {"n_masks": 1000}}, offline=False) == []


def test_placeholder_figure_is_glued_when_nothing_ran(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update({name: value}))
    chapter.glue_figure("x", None, note="The Input layer was not run in this profile.")
    fig = glued["x"]
    assert fig.axes[0].texts[0].get_text() == "The Input layer was not run in this profile."


def _bar_rows(kind):
    """Rows of two models at the Final layer: model a has Grad at both x levels and RISE at "1" only; model b
    has nothing at the Final layer."""
    rows = []
    for method, x in (("Grad", "1"), ("Grad", "2"), ("RISE", "1")):
        row = {"model": "a", "method_title": method, "layer": "final", "R": x}
        if kind == "outcome":
            row.update(certified_1=0.2, certified_0=0.5, abstain=0.3)
        else:
            row.update(value=0.6, low=0.5, high=0.7)
        rows.append(row)
    rows.append({**rows[0], "model": "b", "layer": "input"})
    return pd.DataFrame(rows)


def test_method_bars_figure_draws_one_axes_per_model_and_marks_missing_and_undefined_bars():
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from certattr.book.plotting import method_bars_figure

    common = dict(models=["a", "b"], model_titles={"a": "Model A", "b": "Model B"},
                  method_order=["Grad", "LRP", "RISE", "Cam"], undefined_pairs={("LRP", "final")}, x_col="R",
                  xs=["1", "2"], title="t")
    fig = method_bars_figure(_bar_rows("outcome"), "final", **common)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "Model A, Final layer: t"  # b has no Final rows
    ax = fig.axes[0]
    # groups: Grad, LRP (undefined: "not defined"), RISE; Cam neither ran nor is undefined, so it is left out
    assert [t.get_text() for t in ax.texts if t.get_text() in ("Grad", "LRP", "RISE", "Cam")] == ["Grad", "LRP", "RISE"]
    assert [t.get_text() for t in ax.texts].count("not\ndefined") == 1
    assert [t.get_text() for t in ax.texts].count("not run") == 1  # RISE at x = "2"
    stacks = {}
    for bar in ax.patches:
        if isinstance(bar, Rectangle) and not bar.get_hatch():
            stacks[round(bar.get_x() + bar.get_width() / 2, 6)] = stacks.get(round(bar.get_x() + bar.get_width() / 2, 6),
                                                                              0) + bar.get_height()
    assert len(stacks) == 3 and all(abs(h - 100.0) < 1e-9 for h in stacks.values())  # '1' + '0' + abstain = 100%
    assert fig.legends  # the outcome colours
    plt.close(fig)

    fig = method_bars_figure(_bar_rows("gridpg"), "final", kind="gridpg", **common)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Certified GridPG" and any(abs(y - 0.25) < 1e-12 for line in ax.lines
                                                          for y in line.get_ydata())  # the random baseline
    heights = sorted(b.get_height() for b in ax.patches if isinstance(b, Rectangle) and not b.get_hatch())
    assert heights == [0.6, 0.6, 0.6]
    plt.close(fig)
    assert method_bars_figure(_bar_rows("outcome"), "input", **{**common, "models": ["a"]}) is None


def test_method_bars_figure_leaves_out_what_did_not_run_instead_of_drawing_empty_slots():
    import matplotlib.pyplot as plt

    from certattr.book.plotting import method_bars_figure

    common = dict(model_titles={"a": "Model A", "c": "Model C"}, method_order=["Grad", "LRP", "RISE", "Cam"],
                  undefined_pairs={("LRP", "final")}, x_col="R", xs=["1", "2"], title="t")
    rows = pd.concat([_bar_rows("outcome"), _bar_rows("outcome").iloc[:1].assign(model="c")])

    def names(ax):
        return [t.get_text() for t in ax.texts if t.get_text() in ("Grad", "LRP", "RISE", "Cam")]

    # model c ran Grad only: its panel has Grad alone, no "not run" slots for the methods it did not run and no
    # "not defined" slot (it shows fewer than half of the methods)
    fig = method_bars_figure(rows, "final", models=["a", "c"], **common)
    assert [ax.get_title() for ax in fig.axes] == ["Model A, Final layer: t", "Model C, Final layer: t"]
    assert names(fig.axes[1]) == ["Grad"] and "not\ndefined" not in [t.get_text() for t in fig.axes[1].texts]
    assert [t.get_text() for t in fig.axes[1].texts].count("not run") == 1  # Grad at x = "2" only
    plt.close(fig)
    # a trend needs two levels: RISE (one R) is left out, and so is model c (one R)
    fig = method_bars_figure(rows, "final", models=["a", "c"], min_levels=2, **common)
    assert len(fig.axes) == 1 and names(fig.axes[0]) == ["Grad"]
    assert "not run" not in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    # nothing has a trend (a run at one σ): every method is drawn at the one level it has
    fig = method_bars_figure(rows[rows.method_title == "RISE"], "final", models=["a"], min_levels=2, **common)
    assert names(fig.axes[0]) == ["RISE"]
    plt.close(fig)


def test_one_level_text_names_what_a_trend_figure_leaves_out_per_model():
    from certattr.book.prose import one_level_text

    rows = pd.concat([_bar_rows("outcome"), _bar_rows("outcome").iloc[:1].assign(model="c")])
    text = one_level_text(rows, "final", "R", ["Grad", "LRP", "RISE"], {"a": "Model A", "c": "Model C"})
    assert text == "Run at one R only, and so not drawn here: RISE on Model A; Grad on Model C. "
    assert one_level_text(rows[rows.method_title == "Grad"].iloc[:2], "final", "R", ["Grad"],
                          {"a": "Model A"}) == "No method was run at one R only. "
    assert one_level_text(rows[rows.method_title == "RISE"], "final", "R", ["RISE"],
                          {"a": "Model A"}) == "Every method was run at one R only. "


def test_identical_maps_text_lists_the_groups_and_explains_linear_head_ones():
    assert chapter.identical_maps_text([]) == ""
    plain = chapter.identical_maps_text([["Grad", "GB"]])
    assert plain == "At the Final layer, some methods certify exactly the same pixels: Grad and GB."
    explained = chapter.identical_maps_text([["IxG", "IntGrad", "LRP"], ["Grad", "GB"]])
    assert explained.startswith("At the Final layer, some methods certify exactly the same pixels: IxG, IntGrad and "
                                "LRP; Grad and GB. This is expected when the head is global average pooling")
    # several models: one clause per model that has groups, named; one model with groups reads as before
    by_model = chapter.identical_maps_text({"Lite0": [["Grad", "GB"]], "Lite1": [], "Lite2": [["IxG", "LRP"]]})
    assert by_model.startswith("At the Final layer, some methods certify exactly the same pixels. On Lite0: Grad "
                               "and GB. On Lite2: IxG and LRP. This is expected")
    assert chapter.identical_maps_text({"Lite0": [["Grad", "GB"]], "Lite1": []}) == plain
    assert chapter.identical_maps_text({"Lite0": []}) == ""


def test_missing_bars_are_empty_slots_and_real_zeros_are_drawn():
    """'not run' is a label over an empty slot (no bar at all), and a GridPG of exactly 0 is a visible stub."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Rectangle

    from certattr.book.plotting import interval_bars

    fig, ax = plt.subplots()
    frame = pd.DataFrame([{"method_title": "Grad", "R": "0.10", "value": 0.0, "low": 0.0, "high": 0.0},
                          {"method_title": "LRP", "R": "0.10", "value": 0.4, "low": 0.3, "high": 0.5}])
    interval_bars(ax, frame, ["Grad", "LRP"], ["0.10", "0.17"])
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted(round(b.get_height(), 6) for b in bars) == [0.0, 0.4]  # no bar for the two missing slots
    assert [t.get_text() for t in ax.texts].count("not run") == 2
    stubs = [line for line in ax.lines if list(line.get_ydata()) == [0, 0] and line.get_linewidth() >= 2]
    assert len(stubs) == 1 and stubs[0].get_xdata()[0] < 0.5  # Grad's real zero, in Grad's first slot
    plt.close(fig)


def test_degenerate_certificates_draw_a_labelled_slot_not_data():
    """Constant maps give 100% robust bars, GridPG 0 stubs and one-colour overlays that look like results: every
    figure draws a labelled 'degenerate' slot instead (no bar, no stub, no overlay colour)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch
    from matplotlib.patches import Rectangle

    from certattr.book.plotting import DEGENERATE_LABEL, interval_bars, outcome_bars, plot_certificate, plot_overlay
    from certattr.engine.certify import certify_maps

    fig, (a1, a2, a3, a4) = plt.subplots(1, 4)
    rows = pd.DataFrame([{"method_title": "Grad", "R": "0.10", "certified_1": 0.0, "certified_0": 1.0, "abstain": 0.0,
                          "degenerate": True},
                         {"method_title": "LRP", "R": "0.10", "certified_1": 0.2, "certified_0": 0.5, "abstain": 0.3,
                          "degenerate": False}])
    outcome_bars(a1, rows, ["Grad", "LRP"], ["0.10"])
    heights = [round(b.get_height(), 6) for b in a1.patches if isinstance(b, Rectangle) and b.get_height() > 0]
    assert sorted(heights) == [20.0, 30.0, 50.0] and [t.get_text() for t in a1.texts].count(DEGENERATE_LABEL) == 1
    means = rows.assign(value=[0.0, 0.4], low=[0.0, 0.3], high=[0.0, 0.5])
    interval_bars(a2, means, ["Grad", "LRP"], ["0.10"])
    assert not [line for line in a2.lines if list(line.get_ydata()) == [0, 0]]  # no "real zero" stub
    assert [t.get_text() for t in a2.texts].count(DEGENERATE_LABEL) == 1
    constant = certify_maps(np.ones((20, 8, 8), np.float32), [50], sigma=0.2, n0=5, tau=0.75, alpha=0.05)
    assert constant.degenerate
    image = torch.rand(3, 8, 8)
    plot_overlay(constant, image, a3, "Grad")
    plot_certificate(constant, 50, a4)
    for ax in (a3, a4):
        assert "degenerate:\nconstant map" in [t.get_text() for t in ax.texts]
    assert len(a3.images) == 1 and not a4.images  # the dimmed photo only, no overlay; no label map
    plt.close(fig)


def test_abstain_stripes_show_on_a_grey_photo():
    """On a uniform grey photo the abstain overlay must change pixels both up and down (a flat grey tint
    would leave the panel looking like the bare photo)."""
    from certattr.book.plotting import abstain_stripes

    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    rgba = abstain_stripes(mask)
    grey = 0.5
    shown = rgba[..., :3] * rgba[..., 3:] + grey * (1 - rgba[..., 3:])
    inside = shown[mask].mean(axis=1)
    assert (rgba[~mask, 3] == 0).all()
    assert inside.max() - grey > 0.3 and grey - inside.min() > 0.2
