"""Reading another chapter's results (certattr.book.results): exactly the rows of this run are selected, and the
coverage names the (method, layer) pairs that are present, missing or undefined, on constructed result rows."""
import pandas as pd

from certattr.book import results
from certattr.models.testing import tiny_model, tiny_vgg_model


def _results_rows():
    rows = []
    for model in ("a", "b"):
        for method, layer in (("grad", "input"), ("gradcam", "final"), ("cam", "final"), ("grad", "final")):
            for k in (50.0, 10.0, 30.0):
                for sigma, tau, n in ((0.15, 0.75, 100), (0.25, 0.75, 100), (0.15, 0.9, 100), (0.15, 0.75, 50)):
                    rows.append({"model": model, "method": method, "layer": layer, "k": k, "sigma": sigma,
                                 "tau": tau, "alpha": 0.001, "n": n})
    return pd.DataFrame(rows)


def test_select_results_keeps_exactly_the_rows_of_this_run():
    frame = _results_rows()
    per_layer = {"input": ["grad"], "final": ["gradcam", "cam"]}
    got = results.select_results(frame, models=["a"], sigma=0.15 + 1e-12, ks=[50.0, 10.0], layers=["input", "final"],
                                 tau=0.75, alpha=0.001, n=100, per_layer=per_layer)
    expected = [i for i, r in frame.iterrows()
                if r.model == "a" and abs(r.sigma - 0.15) < 1e-9 and r.k in (50.0, 10.0) and r.tau == 0.75
                and r.n == 100 and r.method in per_layer[r.layer]]
    assert list(got.index) == expected and len(expected) == 3 * 2
    # arguments left out do not filter
    loose = results.select_results(frame, models=["a", "b"], tau=0.75, n=100)
    assert len(loose) == 2 * 4 * 3 * 2
    assert results.select_results(None, models=["a"], tau=0.75) is None


def test_results_coverage_names_present_missing_and_undefined_pairs():
    vgg = tiny_vgg_model()  # Cam is not defined with a fully connected head
    frame = _results_rows()
    frame = frame[(frame.sigma == 0.15) & (frame.tau == 0.75) & (frame.n == 100)]
    frame = frame[~((frame.method == "grad") & (frame.layer == "final") & (frame.k == 30.0))]
    per_layer = {"input": ["grad"], "final": ["gradcam", "cam", "grad"]}
    cover = results.results_coverage(frame, {"a": vgg}, per_layer, [50.0, 30.0, 10.0])
    status = {(r.method, r.layer): r.status for r in cover.itertuples()}
    assert status == {("grad", "input"): "present", ("gradcam", "final"): "present", ("cam", "final"): "undefined",
                      ("grad", "final"): "missing"}
    why = dict(zip(zip(cover.method, cover.layer), cover.why))
    assert why[("grad", "final")] == "no row at K = 30%" and why[("cam", "final")]
    assert not results.results_complete(frame, {"a": vgg}, per_layer, [50.0, 30.0, 10.0])
    assert results.results_complete(frame, {"a": vgg}, per_layer, [50.0, 10.0])
    # with a model that defines Cam, its rows are required too
    assert (results.results_coverage(frame, {"a": tiny_model()}, per_layer, [50.0]).status == "present").all()
    assert not results.results_complete(frame.iloc[:0], {"a": vgg}, per_layer, [50.0])
    assert set(results.results_coverage(None, {"a": vgg}, per_layer, [50.0]).status) == {"missing", "undefined"}
