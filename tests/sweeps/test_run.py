"""Sweeps (certattr.book.plans, certattr.sweeps.run): a 2-worker Dask LocalCluster fills the sample cache bit for bit like a
serial run, also when a worker is killed mid-sweep; two processes computing the same chunks at once leave one
valid chunk each; an interrupted sweep resumes without recomputing finished chunks; the dry run counts right."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from certattr.book.build import chapter_parameters
from certattr.engine.cache import SampleCache
from certattr.book.build import book_plan
from certattr.book.chapters import chapter_plan
from certattr.book.plans import ModelPool, cache_keys, compare_with_cache, work_engine
from certattr.sweeps.run import compute_group, group_works, run_sweep
from certattr.engine.validation import CertattrError

distributed = pytest.importorskip("distributed", reason="dask.distributed, a dependency of certattr "
                                  "(dask[distributed]), is not installed: the sweep's cluster cannot start")

#: three bundled photos x two sigmas x (Gradient, GradCAM) at the Final layer of EfficientNet-Lite0, 3 chunks
#: of 10 samples each: 12 cache entries, 36 chunks, in 6 tasks (one per photo and sigma)
_SMALL = {"photos": ["coffee", "chelsea", "camera"], "methods": ["grad", "gradcam"], "layers": ["final"],
          "sigmas": [0.15, 0.33], "n": 30, "n0": 5, "chunk_size": 10}


def _plan(cache_dir, **more):
    params = chapter_parameters("smoke", "robustness", {**_SMALL, **more, "cache_dir": str(cache_dir)})
    return chapter_plan("robustness", params, pool=_POOL)


_POOL = ModelPool("cpu")


def _chunks(plan) -> dict:
    """{(cache key, chunk): maps} of every chunk of the plan, read through the cache (None where missing)."""
    cache = SampleCache(plan.cache_dir)
    return {(key, c, size): cache.load_chunk(key, c, size, w.chunk_size)
            for key, w in cache_keys(plan, _POOL).items() for c, size in w.chunk_specs}


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] is not None and b[k] is not None, k
        assert a[k].dtype == b[k].dtype == np.float32 and a[k].tobytes() == b[k].tobytes(), k


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The reference: every work sampled by the chapters' own engine (SmoothedAttribution.sample) in this process,
    one torch thread (as each of the two workers on a 2-core machine)."""
    cache = tmp_path_factory.mktemp("serial_cache")
    plan = _plan(cache)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for w in plan.works:
            net = _POOL.get(w.model, w.weights, w.model_seed, w.zero_head_redraw)
            work_engine(w, net, cache=plan.cache_dir).sample(plan.images[w.image_key], w.image_id, w.target)
    finally:
        torch.set_num_threads(threads)
    return _chunks(plan)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as c, Client(c) as client:
        yield c, client


def test_the_small_plan_is_what_it_says(tmp_path):
    plan = _plan(tmp_path)
    assert len(plan.works) == 12 and plan.n_chunks == 36 and len(group_works(plan)) == 6
    assert {(w.method, w.layer, w.sigma) for w in plan.works} == {(m, "final", s) for m in ("grad", "gradcam")
                                                                  for s in (0.15, 0.33)}


def test_a_models_narrower_scope_and_own_input_size_are_planned_as_the_chapter_runs_them(tmp_path):
    """The cpu profile runs EfficientNet-Lite1 on three photos with fewer methods, at its own 240x240 input: the
    plan (what a sweep computes) holds exactly that, and Lite0 keeps the chapter's full settings at 224x224."""
    plan = _plan(tmp_path, models=["efficientnet_lite0", "efficientnet_lite1"],
                 model_scope={"efficientnet_lite1": {"photos": ["coffee"], "methods": {"final": ["gradcam"]}}})
    lite0 = {(w.image_id, w.method, w.sigma, w.shape) for w in plan.works if w.model == "efficientnet_lite0"}
    lite1 = {(w.image_id, w.method, w.sigma, w.shape) for w in plan.works if w.model == "efficientnet_lite1"}
    assert lite0 == {(p, m, s, (3, 224, 224)) for p in _SMALL["photos"] for m in ("grad", "gradcam")
                     for s in (0.15, 0.33)}
    assert lite1 == {("coffee", "gradcam", s, (3, 240, 240)) for s in (0.15, 0.33)}
    with pytest.raises(CertattrError, match="model_scope.*unknown key.*'photos'"):
        _plan(tmp_path, models=["efficientnet_lite1"], model_scope={"efficientnet_lite1": {"photo": ["coffee"]}})


@pytest.mark.slow  # a 2-worker LocalCluster or two spawned processes: 25-60 s on 2 cores
def test_a_dask_sweep_with_a_killed_worker_equals_a_serial_run_bit_for_bit(tmp_path, serial, cluster):
    _, client = cluster
    plan = _plan(tmp_path)
    result, errors = {}, []

    def sweep():
        try:
            result["report"] = run_sweep(plan, client=client, progress=False, print_fn=lambda *a: None)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    thread = threading.Thread(target=sweep)
    thread.start()
    pids = client.run(os.getpid)  # {worker address: pid}
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and thread.is_alive():
        busy = [addr for addr, keys in client.processing().items() if keys]
        written = list(tmp_path.rglob("chunk_*.npz"))
        if busy and written:  # mid-sweep: chunks on disk, tasks still running
            victim = busy[0]
            os.kill(pids[victim], signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=300)
    assert not errors, errors
    assert victim is not None, "the sweep finished before a worker could be killed"
    report = result["report"]
    assert report.chunks == 36 and report.computed + report.reused == 36
    _assert_same(_chunks(plan), serial)
    # the certificates from the swept cache are those of the serial run
    w = plan.works[0]
    net = _POOL.get(w.model, w.weights, w.model_seed, w.zero_head_redraw)
    cert = work_engine(w, net, cache=plan.cache_dir).certify(plan.images[w.image_key], w.image_id, w.target, ks=[50])
    assert cert.labels.size and np.isfinite(cert.pvalues).all()


@pytest.mark.slow  # a 2-worker LocalCluster or two spawned processes: 25-60 s on 2 cores
def test_an_interrupted_sweep_resumes_without_recomputing_finished_chunks(tmp_path, serial, cluster):
    _, client = cluster
    plan = _plan(tmp_path)
    done = []

    def stop_after_five(work, chunk):
        done.append((work, chunk))
        if len(done) == 5:
            raise KeyboardInterrupt

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: on a CPU the maps are bit for bit equal at equal thread counts
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(plan, serial=True, progress=False, on_chunk=stop_after_five)
        resumed = run_sweep(plan, client=client, progress=False, print_fn=lambda *a: None)
        assert (resumed.computed, resumed.reused) == (36 - 5, 5)
        again = run_sweep(plan, serial=True, progress=False)
        assert (again.computed, again.reused) == (0, 36)
    finally:
        torch.set_num_threads(threads)
    _assert_same(_chunks(plan), serial)


def _compute_in_process(args):
    works, image, cache_dir, barrier = args
    barrier.wait()
    return compute_group(works, image, cache_dir, "cpu", torch_threads=1)


@pytest.mark.slow  # a 2-worker LocalCluster or two spawned processes: 25-60 s on 2 cores
def test_two_processes_computing_the_same_chunks_at_once_both_succeed_and_leave_one_valid_chunk(tmp_path, serial):
    plan = _plan(tmp_path)
    works = group_works(plan)[0]
    image = plan.images[works[0].image_key]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        results = pool.map(_compute_in_process, [(works, image, plan.cache_dir, barrier)] * 2)
    total = sum(w.n_chunks for w in works)
    assert all(c + r == total for c, r in results) and sum(c for c, _ in results) >= total
    cache = SampleCache(plan.cache_dir)
    keys = {k: w for k, w in cache_keys(plan, _POOL).items() if w in works}
    for key, w in keys.items():
        files = sorted(p.name for p in cache.entry(key).iterdir())
        assert files == sorted(["manifest.json"] + [cache.chunk_path(key, c, None if size == w.chunk_size else size).name
                                                 for c, size in w.chunk_specs]), files
        for c, size in w.chunk_specs:
            assert cache.load_chunk(key, c, size, w.chunk_size).tobytes() == serial[(key, c, size)].tobytes()
    assert cache.corrupt_chunks == 0


def test_dry_run_counts_passes_and_bytes(tmp_path, capsys):
    from certattr.cli import main
    from certattr.book.costs import estimate

    # the smoke method chapter: the focus method and three methods at the Final layer of EfficientNet-Lite0 (a 7x7
    # map on the 224x224 photo); the focus (GradCAM at the Final layer) is one of them: 3 entries, 100 samples each;
    # the "Fewer samples" section adds GradCAM at the Final layer under its own sigma: a 4th entry of 100 samples
    plan = book_plan("smoke", ["method"], {"cache_dir": str(tmp_path / "c")}, pool=_POOL)
    assert len(plan.works) == 4 and len({w.sigma for w in plan.works}) == 2
    est = estimate(plan, lambda w: _POOL.get(w.model, w.weights), rates_file=tmp_path / "r.json")
    # one body pass per sample and sigma shared by the methods, one head pass per sample and method
    assert (est["full_passes"], est["body_passes"], est["head_passes"]) == (0, 2 * 100, 4 * 100)
    assert est["raw_bytes"] == 4 * 100 * 7 * 7 * 4
    # Final-layer maps are kept raw (7x7 floats are smaller than one bit per input pixel); no chunk to measure the
    # compression on yet: the uncompressed size, plus 1 KiB per entry
    assert est["bytes_by_encoding"] == {"raw": 4 * 100 * 7 * 7 * 4} and est["bytes"] == 4 * 100 * 7 * 7 * 4 + 4 * 1024
    assert est["seconds"] > 0 and est["rates_measured"] == ["efficientnet_lite0|224x224"]
    # RISE at the Input layer: n_masks forward passes per sample on top of the sample's own full pass
    rise = chapter_plan("method", chapter_parameters("smoke", "method", {
        "methods": ["rise"], "layers": ["input"], "focus_method": "rise", "focus_layer": "input", "n": 20,
        "method_overrides": {"rise": {"n_masks": 7}}, "fewer_photos": [], "cache_dir": str(tmp_path / "c")}),
        pool=_POOL)
    est = estimate(rise, lambda w: _POOL.get(w.model, w.weights), rates_file=tmp_path / "r.json")
    assert (est["full_passes"], est["forward_passes"], est["raw_bytes"]) == (20, 20 * 7, 20 * 224 * 224 * 4)
    assert est["bytes_by_encoding"] == {"raw": 20 * 224 * 224 * 4}  # the method chapter shows its focus method's maps
    # the robustness chapter at the Input layer keeps only the top-K codes: 3 bits per pixel and 1 flag per sample
    codes = chapter_plan("robustness", chapter_parameters("smoke", "robustness", {**_SMALL, "layers": ["input"],
                                                                                  "cache_dir": str(tmp_path / "c")}),
                         pool=_POOL)
    est = estimate(codes, lambda w: _POOL.get(w.model, w.weights), rates_file=tmp_path / "r.json")
    assert est["bytes_by_encoding"] == {"topk": 12 * 30 * (224 * 224 * 3 // 8 + 1)}
    assert est["raw_bytes"] == 12 * 30 * 224 * 224 * 4 and est["raw_bytes"] / est["bytes"] > 10
    assert est["rates_read"]
    # RISE at the Final layer: through a GAP->linear head its masks are closed-form evaluations, else head passes
    rise_final = chapter_plan("method", chapter_parameters("smoke", "method", {
        "methods": ["rise"], "layers": ["final"], "focus_method": "rise", "focus_layer": "final", "n": 20,
        "method_overrides": {"rise": {"n_masks": 7}}, "fewer_photos": [], "cache_dir": str(tmp_path / "c")}),
        pool=_POOL)
    est = estimate(rise_final, lambda w: _POOL.get(w.model, w.weights), rates_file=tmp_path / "r.json")
    closed = _POOL.get("efficientnet_lite0", "pretrained").gap_linear is not None
    assert (est["body_passes"], est["head_passes"], est["closed_form"]) == (
        (20, 20, 20 * 7) if closed else (20, 20 * 8, 0))
    # the command line prints it, reading the rate measured above from the rates file
    assert main(["sweep", "--profile", "smoke", "--only", "method", "--dry-run", "--cache-dir", str(tmp_path / "c"),
                 "--rates", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "4 cache entries" in out and "chunks: 40; samples: 400" in out
    assert "model passes: 0 full (Input layer, forward and backward), 0 forward only" in out
    assert "200 to the Final layer" in out and "400 after it" in out
    assert "rates read from" in out and "measured now" not in out


def test_the_command_line_sweeps_then_finds_everything_in_the_cache(tmp_path, capsys):
    from certattr.cli import main

    # the smoke method chapter cut down: GradCAM (its focus) and Gradient at the Final layer, 20 samples each (and
    # without its "Fewer samples" section)
    args = ["sweep", "--profile", "smoke", "--only", "method", "--serial", "--cache-dir", str(tmp_path),
            "-p", "methods", "[grad, gradcam]", "-p", "n", "20", "-p", "fewer_photos", "[]"]
    assert main(args) == 0
    assert "2 cache entries in 1 tasks: 4 chunks, 4 computed now, 0 already in the cache" in capsys.readouterr().out
    assert main(args) == 0
    assert "4 chunks, 0 computed now, 4 already in the cache" in capsys.readouterr().out
    assert main(["sweep", "--profile", "smoke", "--scheduler", "tcp://127.0.0.1:9", "--serial"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_dry_run_of_the_paper_profile_without_imagenet_counts_placeholders_and_cannot_run(tmp_path):
    params = {"models": ["resnet18"], "methods": ["grad", "rise"], "layers": ["input", "final"], "n_images": 3,
              "sigmas": [0.15, 0.25], "weights": "random", "device": "cpu", "cache_dir": str(tmp_path)}
    plan = chapter_plan("robustness", chapter_parameters("paper", "robustness", params), placeholders=True)
    assert len(plan.works) == 3 * 2 * 2 * 2 and plan.notes
    with pytest.raises(CertattrError, match="placeholder images"):
        run_sweep(plan, serial=True)


@pytest.mark.filterwarnings("ignore::certattr.engine.certify.CertificationWarning")  # n = 20 over 224 x 224 pixels
def test_a_sweep_fills_the_compact_cache_the_chapters_certify_from_without_resampling(tmp_path, monkeypatch):
    """Input-layer works are stored as top-K codes, the certificates chapter's readers as top-k sets and bounded
    sums: after a serial sweep, the certificate, Sparsified SmoothGrad and the cosine estimate read them (no model
    call) and equal the same computations without a cache."""
    from certattr.certificates.cosine import smooth_uniform
    from certattr.certificates.settings import MethodAtLayer, SparsifiedSmoothing, UniformSmoothing
    from certattr.engine.config import SamplingConfig
    from certattr.engine.smoothing import SmoothedAttribution
    from certattr.certificates.sparsified_smoothgrad import sparsified_smoothgrad

    over = {"method": "grad", "layer": "input", "photo": "coffee", "n": 20, "n0": 5, "ks": [50, 10], "topk_ns": [15, 30],
            "topk_frac": 0.25, "cos_N": 12, "pixel_attack_select_n": 0, "cache_dir": str(tmp_path)}
    plan = chapter_plan("certificates", chapter_parameters("smoke", "certificates", over), pool=_POOL)
    kinds = {spec.split(":")[0] for w in plan.works for _, _, specs in w.chunk_files for spec in specs}
    assert kinds == {"topk", "topset", "sum"} and {w.noise for w in plan.works} == {"gaussian", "uniform-ball"}
    assert run_sweep(plan, serial=True, progress=False).computed == 3 + 1 + 2  # chunks 0-1: codes and sets at once
    assert compare_with_cache(plan, _POOL) == ({}, {})  # the cache holds exactly the planned files
    stray = next(tmp_path.rglob("chunk_00000.topset-*.npz"))
    moved = stray.with_name("chunk_00009.topset-0.25.npz")
    stray.rename(moved)
    missing, extra = compare_with_cache(plan, _POOL)
    assert [sorted(v) for v in missing.values()] == [[stray.name]] and [sorted(v) for v in extra.values()] == [[moved.name]]
    moved.rename(stray)
    w = next(w for w in plan.works if w.noise == "gaussian")
    net, image = _POOL.get(w.model, w.weights), plan.images[w.image_key]
    r = next(w for w in plan.works if w.noise == "uniform-ball").sigma

    def compute():
        cert = SmoothedAttribution(net, "grad", "input", w.sigma, n=20, n0=5, ks=(50, 10), cache=tmp_path,
                                   progress=False).certify(image, w.image_id, w.target, tau=0.6, alpha=0.05)
        grad = MethodAtLayer("grad", "input")
        ssg = sparsified_smoothgrad(net, image, w.target, attribution=grad,
                                    smoothing=SparsifiedSmoothing(w.sigma, tau_frac=0.25),
                                    sampling=SamplingConfig(n=30), image_id=w.image_id, cache=tmp_path)
        cos = smooth_uniform(net, image, w.target, attribution=grad, smoothing=UniformSmoothing(r),
                             sampling=SamplingConfig(n=12), image_id=w.image_id, cache=tmp_path)
        return cert, ssg.s_hat, cos.h_hat

    with monkeypatch.context() as m:
        m.setattr(SmoothedAttribution, "attribute_chunk", lambda *a: pytest.fail("resampled a swept chunk"))
        cached = compute()
    tmp_path = None  # the same computations without a cache
    fresh = compute()
    assert cached[0] == fresh[0]
    np.testing.assert_array_equal(cached[1], fresh[1])
    np.testing.assert_array_equal(cached[2], fresh[2])


def test_unknown_chapters_and_profiles_are_rejected_with_the_allowed_ones():
    with pytest.raises(CertattrError, match="robustness"):
        book_plan("smoke", ["nope"])
    with pytest.raises(CertattrError, match="smoke"):
        book_plan("nope")


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    plan = _plan(tmp_path)
    with pytest.raises(CertattrError, match="could not connect to the Dask scheduler") as err:
        run_sweep(plan, scheduler="tcp://127.0.0.1:9", progress=False, connect_timeout="2s")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, base, other, bad, refusal", [
    ("precision", "fp32", "bf16", "fp16", "fp16.*cpu: use one of fp32, bf16"),
    ("compilation", "auto", "off", "sometimes", "compilation.*sometimes"),
])
def test_a_model_setting_is_a_chapter_parameter_its_plan_keys_and_the_chapters_engine_reads(
        tmp_path, monkeypatch, name, base, other, bad, refusal):
    """precision and compilation are chapter parameters: the plan's works carry the chapter's value, their cache
    keys are disjoint from the default's, after a serial sweep the chapter's own engine on a model loaded with that
    value certifies from the cache (no model call), and a bad value is refused before any work."""
    from certattr.book.parameters import check_chapter_parameters
    from certattr.engine.smoothing import SmoothedAttribution
    from certattr.models.registry import load_model

    small = {**_SMALL, "photos": ["coffee"], "methods": ["gradcam"], "sigmas": [0.15], "n": 10, "n0": 5}
    plans = {v: chapter_plan("robustness", chapter_parameters("smoke", "robustness", {
        **small, name: v, "cache_dir": str(tmp_path)}), pool=_POOL) for v in (base, other)}
    for v, plan in plans.items():
        assert {getattr(w, name) for w in plan.works} == {v}
    keys = {v: set(cache_keys(plan, _POOL)) for v, plan in plans.items()}
    assert keys[other] and not keys[other] & keys[base]
    assert run_sweep(plans[other], serial=True, progress=False).computed == 1
    w = plans[other].works[0]
    net = load_model(w.model, w.weights, "cpu", **{name: other})
    with monkeypatch.context() as m:
        m.setattr(SmoothedAttribution, "attribute_chunk", lambda *a, **k: pytest.fail("resampled a swept chunk"))
        cert = SmoothedAttribution(net, w.method, w.layer, w.sigma, n=10, n0=5, ks=(50,), cache=tmp_path,
                                   progress=False).certify(plans[other].images[w.image_key], w.image_id, w.target)
    assert cert.n == 10
    with pytest.raises(CertattrError, match=refusal):
        check_chapter_parameters(chapter_parameters("smoke", "robustness", {name: bad}))
