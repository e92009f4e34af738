"""certattr.profiling: the stage clock times without changing what it times, the label comparison counts what it
says, the GPU check's time guard skips and still writes, and the tiny CPU rehearsal's JSON holds every method with
ratios that recompute from its own numbers. The engine's side of the prefetch is in tests/engine/test_prefetch.py."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from certattr.engine import noise, smoothing
from certattr.engine.certify import MapCounter
from certattr.engine.smoothing import SmoothedAttribution
from certattr.methods import method_names
from certattr.models.registry import LAYERS
from certattr.profiling import FORWARD_ONLY, MODEL_STAGES, STAGES, StageClock, gpu_check
from certattr.profiling.gpu_measurements import (
    BATCHING,
    PRECISION_METHODS,
    label_changes,
)


@pytest.mark.filterwarnings("ignore::certattr.engine.certify.CertificationWarning")  # n = 7 certifies nothing
def test_stage_clock_counts_the_engine_steps_and_changes_nothing(tiny, tiny_image):
    settings = {"sigma": 0.2, "n": 7, "n0": 2, "chunk_size": 3, "cache": None, "progress": False}
    plain = SmoothedAttribution(tiny, "grad", "input", **settings).certify(tiny_image, "clock", ks=(50, 20))
    originals = (noise.gaussian_noise, smoothing.upsample_maps, MapCounter.add)
    engine = SmoothedAttribution(tiny, "grad", "input", **settings)
    with StageClock(engine.method) as clock:
        timed = clock.run(engine.certify, tiny_image, "clock", ks=(50, 20))
    assert (noise.gaussian_noise, smoothing.upsample_maps, MapCounter.add) == originals
    assert "attribute" not in vars(engine.method)  # the instance's wrapper is gone again
    for field in ("labels", "majority", "counts"):  # the same samples, counted the same way
        np.testing.assert_array_equal(getattr(timed, field), getattr(plain, field))
    assert clock.calls["model"] == math.ceil(7 / 3)  # one batched call per chunk: 3 + 3 + 1
    assert clock.calls["noise drawing"] == 3  # one draw per chunk
    assert clock.calls["counting"] == 3 and clock.calls["testing"] == 1
    report = clock.report()
    stages = report["seconds"]
    assert set(stages) == set(STAGES) and min(stages.values()) >= 0
    model = stages["model"] + stages["clean prediction"]
    assert report["model_s"] == pytest.approx(model, abs=1e-5)
    assert report["outside_s"] == pytest.approx(sum(stages.values()) - model, abs=1e-5)
    # exclusive times add up: never more than the wall time (nothing counted twice), and short of it only by the
    # clock's own calls (a few microseconds each; six-digit rounding of each stage adds up to 1e-5)
    gap = report["wall_s"] - sum(stages.values())
    assert -1e-5 <= gap <= 0.01 * report["wall_s"] + 1e-4


@pytest.mark.filterwarnings("ignore::certattr.engine.certify.CertificationWarning")
def test_the_stage_clock_counts_prefetched_draws_as_overlapped_and_only_the_wait_as_noise_wait(tiny, tiny_image):
    """With copies drawn ahead (forced here on the CPU; the engine's side: tests/engine/test_prefetch.py) the clock
    changes no sample, counts the draws in the background as overlapped and the caller's waiting for them as
    "noise wait", and its exclusive times still add up to the wall time."""
    settings = {"sigma": 0.2, "n": 7, "n0": 2, "chunk_size": 3, "progress": False}
    plain = SmoothedAttribution(tiny, "grad", "input", cache=None, **settings).certify(tiny_image, "pf", ks=(50, 20))
    engine = SmoothedAttribution(tiny, "grad", "input", cache=None, **settings)
    engine.prefetch = True
    with StageClock(engine.method) as clock:
        timed = clock.run(engine.certify, tiny_image, "pf", ks=(50, 20))
    for field in ("labels", "majority", "counts"):
        np.testing.assert_array_equal(getattr(timed, field), getattr(plain, field))
    report = clock.report()
    assert clock.calls["noise drawing"] == 1 and clock.calls["noise wait"] == 2
    assert report["overlapped"]["noise drawing"] > 0
    gap = report["wall_s"] - sum(report["seconds"].values())
    assert -1e-5 <= gap <= 0.01 * report["wall_s"] + 1e-4


def test_label_changes_counts_each_kind_of_change():
    a = np.array([[[1, 0, -1], [1, 1, 0]], [[0, 0, 1], [-1, 1, 1]]], dtype=np.int8)  # (K, H, W), -1 abstains
    b = np.array([[[0, 0, -1], [1, -1, 1]], [[0, 1, 1], [-1, 1, 0]]], dtype=np.int8)
    majority_a = np.zeros((2, 2, 3), dtype=np.int8)
    majority_b = majority_a.copy()
    majority_b[0, 0, 0] = majority_b[1, 1, 2] = majority_b[1, 0, 1] = 1  # 3 of 12 differ
    got = label_changes(SimpleNamespace(labels=a, ks=(50, 10), majority=majority_a),
                                  SimpleNamespace(labels=b, majority=majority_b))
    assert got["majority_differing_share"] == pytest.approx(3 / 12, abs=1e-6)
    assert got["pixels"] == 12
    assert got["differing_share"] == pytest.approx(5 / 12, abs=1e-6)
    assert got["differing_share_per_k"] == {"50": pytest.approx(3 / 6, abs=1e-6), "10": pytest.approx(2 / 6, abs=1e-6)}
    assert got["one_to_zero"] == 2 and got["zero_to_one"] == 2  # (K50: (0,0) 1->0, (1,2) 0->1; K10: (0,1), (1,2))


def test_time_guard_skips_every_step_and_still_writes(tmp_path):
    result = gpu_check.main([str(tmp_path), "--tiny", "--image-size", "64", "--budget-seconds", "0",
                             "--methods", "grad", "rise", "--threads", "1"])
    assert result["methods"] == [] and result["precision"] == [] and result["batching"] == []
    skipped = {s["what"] for s in result["skipped"]}
    assert {"grad@input fp32", "rise@input fp32", "grad@final fp32", "rise@final fp32"} <= skipped
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["skipped"] == result["skipped"]
    assert "Skipped by the time guard" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.slow
def test_tiny_rehearsal_has_every_method_and_consistent_ratios(tmp_path):
    result = gpu_check.main([str(tmp_path), "--tiny", "--image-size", "64", "--budget-seconds", "100000",
                             "--threads", "1"])
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["methods"] == result["methods"] and not written["skipped"]
    settings, limits = written["meta"]["settings"], written["limits"]
    for entry in limits.values():
        for kind in ("forward", "forward_backward"):
            rates = entry[kind]["images_per_s"]
            assert entry[kind]["best_images_per_s"] == max(rates.values())
            assert rates[str(entry[kind]["best_batch"])] == max(rates.values())
    rows = {(r["method"], r["layer"]): r for r in written["methods"]}
    assert set(rows) == {(m, layer) for m in method_names() for layer in LAYERS}
    table = (tmp_path / "gpu_check.md").read_text()
    for (name, layer), row in rows.items():
        assert f"| {name}@{layer} |" in table
        if "undefined" in row:
            assert (name, layer) == ("cam", "input")
            continue
        rate = limits["fp32"][row["reference"]]["best_images_per_s"]
        assert row["reference"] == ("forward" if name in FORWARD_ONLY else "forward_backward")
        assert row["limit_seconds_per_image"] == pytest.approx(settings["n"] * row["passes_per_map"] / rate, rel=1e-4)
        assert row["ratio_to_limit"] == pytest.approx(row["limit_seconds_per_image"] / row["seconds_per_image"],
                                                      rel=1e-4)
        seconds = row["overhead"]["seconds"]
        assert row["overhead"]["outside_s"] == pytest.approx(
            sum(v for k, v in seconds.items() if k not in MODEL_STAGES), abs=1e-4)
        assert row["overhead"]["wall_s"] <= row["seconds_per_image"] + 1e-6
        for k in settings["ks"]:
            assert sum(row["fractions"][str(float(k))].values()) == pytest.approx(1.0)
    assert {(r["method"], r["layer"]) for r in written["precision"]} == \
        {(m, layer) for m in PRECISION_METHODS for layer in LAYERS}
    for row in written["precision"]:
        assert row["precision"] == "bf16" and 0 <= row["differing_share"] <= 1
        assert row["speedup_vs_fp32"] == pytest.approx(row["fp32_seconds_per_image"] / row["seconds_per_image"], rel=1e-3)
        assert row["fp32_seconds_per_image"] == pytest.approx(rows[(row["method"], row["layer"])]["seconds_per_image"])
    assert {(r["method"], r["layer"]) for r in written["batching"]} == set(BATCHING)
    for row in written["batching"]:
        assert row["gain"] == pytest.approx(row["batched_maps_per_s"] / row["single_maps_per_s"], rel=2e-3)
    assert written["memory"]["largest_chunk"] == "n/a" and written["memory"]["host_peak_rss_mb"] > 0
