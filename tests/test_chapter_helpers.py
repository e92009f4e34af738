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
