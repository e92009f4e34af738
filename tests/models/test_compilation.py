"""Compiled forward-only passes (issue 27 point 3): same maps as eager to float rounding, the "auto" rule, the
fallback where compilation fails, the cache keys, and certificates independent of chunking and resumption.

Every compilation here is of the tiny test network at one pass shape (8 images of 32x32), made once per module:
the presets are never compiled by the tests (that takes tens of seconds; benchmarks/bench_compile.py measures it)."""
from __future__ import annotations

import warnings
from copy import deepcopy

import numpy as np
import pytest
import torch

from certattr.engine.cache import cache_key
from certattr.engine.smoothing import SmoothedAttribution
from certattr.methods import get_method
from certattr.methods.perturbation import MASKED_LOGITS, _masked_passes
from certattr.models import compilation
from certattr.models.compilation import CompileEstimate, resolve_policy, should_compile
from certattr.models.execution import Execution
from certattr.models.testing import tiny_model

PASS = 8  # images per forward pass in every test: one compiled graph serves them all
METHODS = [get_method("rise", n_masks=16, pass_batch=PASS), get_method("occlusion", window=8, stride=4, pass_batch=PASS)]


@pytest.fixture(scope="module")
def compiled():
    return tiny_model(seed=0).set_compilation("on")


@pytest.fixture
def images():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(autouse=True)
def _fresh_masked_logits():
    MASKED_LOGITS.clear()  # no replay of logits computed by another test's model state
    yield
    MASKED_LOGITS.clear()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_compiled_masked_passes_equal_eager_to_float_rounding(compiled, images, method):
    eager = method.attribute(tiny_model(seed=0), images, 3, "input", seed=1, image_id="a")
    MASKED_LOGITS.clear()
    maps = method.attribute(compiled, images, 3, "input", seed=1, image_id="a")
    assert "input" in compilation.compiled_state(compiled)  # the compiled module ran
    # Occlusion's maps are differences of logits: their rounding is that of the logits, not of the (small) drops
    with torch.no_grad():
        scale = max(float(eager.abs().max()), float(compiled(images).abs().max()))
    assert float(eager.abs().max()) > 0
    torch.testing.assert_close(maps, eager, rtol=1e-5, atol=1e-6 * scale)


def test_a_compiled_model_copies_without_its_compiled_code(compiled, images):
    METHODS[0].attribute(compiled, images, 3, "input", seed=1, image_id="a")
    copy = deepcopy(compiled)
    assert "input" in compilation.compiled_state(compiled) and compilation.compiled_state(copy) == {}
    assert copy.fingerprint() == compiled.fingerprint()


def test_a_smaller_last_pass_is_padded_and_rows_do_not_interact(compiled):
    """Occlusion's unmasked pass of 4 rows is padded to the pass of 8: its logits are the full pass's first rows."""
    xn = compiled.normalize(torch.rand(PASS, 3, 32, 32, generator=torch.Generator().manual_seed(5)))
    view = compiled.view(xn, "input")
    forward = compilation.forward_runner(view, images=10 ** 6, pass_images=PASS)
    with torch.inference_mode():
        full, half = forward(xn), forward(xn[:4])
        eager = compiled.net(xn)
    assert half.shape == (4, full.shape[1])
    torch.testing.assert_close(half, full[:4], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(full, eager, rtol=1e-5, atol=1e-5)


# --- the "auto" rule -------------------------------------------------------------------------------------------
def test_auto_compiles_exactly_when_the_saving_exceeds_the_compile_time():
    estimate = CompileEstimate(eager_seconds_per_image=0.01, speedup=2.0, compile_seconds=40.0)
    # saving = images * 0.01 * (1 - 1/2) = images / 200 s: break-even at 8000 images
    assert estimate.break_even_images() == pytest.approx(8000)
    assert not should_compile("auto", estimate, 7999)
    assert should_compile("auto", estimate, 8001)
    assert not should_compile("auto", CompileEstimate(0.01, 0.79, 1.0), 10 ** 9)  # slower compiled: never
    assert CompileEstimate(0.01, 0.79, 1.0).break_even_images() == float("inf")
    assert not should_compile("auto", None, 10 ** 9)  # not measured: eager
    assert not should_compile("auto", CompileEstimate(0.01, compilation.MIN_SPEEDUP - 0.01, 1.0), 10 ** 9)
    assert not should_compile("off", estimate, 10 ** 9)
    assert should_compile("on", None, 1)


TINY_ESTIMATE = ("tiny_resnet", "input", "cpu", "fp32")


def test_auto_decides_per_call_from_the_estimate_of_the_model(monkeypatch, images):
    # no estimate for the tiny network, or one where compiling is slower: "auto" is "off" (it would never compile)
    assert tiny_model(seed=0).set_compilation("auto").execution.compilation == "off"
    monkeypatch.setitem(compilation.ESTIMATES, TINY_ESTIMATE, CompileEstimate(0.01, 0.97, 10.0))
    assert tiny_model(seed=0).set_compilation("auto").execution.compilation == "off"
    # an injected estimate: 4 rows x 1000 masks = 4000 images save 4000 * 0.01 * 0.5 = 20 s > 10 s; 400 images 2 s
    monkeypatch.setitem(compilation.ESTIMATES, TINY_ESTIMATE, CompileEstimate(0.01, 2.0, 10.0))
    model = tiny_model(seed=0).set_compilation("auto")
    assert model.execution.compilation == "auto"
    view = model.view(model.normalize(images), "input")
    assert _masked_passes(view, 100, PASS)[0] == view.forward
    assert _masked_passes(view, 1000, PASS)[0] != view.forward
    # another precision has no estimate: eager
    model.set_precision("bf16")
    view = model.view(model.normalize(images), "input")
    assert _masked_passes(view, 10 ** 6, PASS)[0] == view.forward


# --- failure and availability -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["torch.compile raises", "the first compiled call raises"])
def test_a_failing_compiler_falls_back_to_eager_with_one_warning_and_the_same_maps(monkeypatch, images, where):
    def broken_compile(module, **kwargs):
        if where == "torch.compile raises":
            raise RuntimeError("no working C++ compiler")

        def call(*args):
            raise RuntimeError("unsupported operator")
        return call

    method = METHODS[0]
    reference = method.attribute(tiny_model(seed=0), images, 3, "input", seed=1, image_id="a")
    monkeypatch.setattr(torch, "compile", broken_compile)
    model = tiny_model(seed=0).set_compilation("on")
    MASKED_LOGITS.clear()
    with pytest.warns(RuntimeWarning, match="torch.compile failed") as caught:
        maps = method.attribute(model, images, 3, "input", seed=1, image_id="a")
    assert len([w for w in caught if "torch.compile failed" in str(w.message)]) == 1
    assert torch.equal(maps, reference)
    MASKED_LOGITS.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eager from now on, without another warning
        assert torch.equal(METHODS[1].attribute(model, images, 3, "input"),
                           METHODS[1].attribute(tiny_model(seed=0), images, 3, "input"))


def test_without_a_cxx_compiler_the_policy_is_off_and_so_is_the_key(monkeypatch):
    monkeypatch.setattr(compilation.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "C++ compiler" in compilation.compiler_unavailable("cpu")
    with pytest.warns(RuntimeWarning, match="not available"):
        assert resolve_policy("on", "cpu") == "off"
    monkeypatch.setitem(compilation.ESTIMATES, TINY_ESTIMATE, CompileEstimate(0.01, 2.0, 10.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_policy("auto", "cpu", tiny_model().spec) == "off"
        assert tiny_model(seed=0).set_compilation("auto").fingerprint() == tiny_model(seed=0).fingerprint()


def test_a_policy_outside_the_allowed_ones_is_one_line():
    with pytest.raises(Exception, match="compilation.*(off|auto|on)"):
        Execution(compilation="always")
    with pytest.raises(Exception, match="compilation"):
        tiny_model().set_compilation("yes")


# --- cache keys ---------------------------------------------------------------------------------------------------
def test_the_policy_is_in_the_cache_key_and_off_leaves_the_keys_as_they_were(monkeypatch, tiny_image):
    plain = tiny_model(seed=0)
    assert Execution().key() == "" and Execution(compilation="off").key() == ""
    assert tiny_model(seed=0).set_compilation("off").fingerprint() == plain.fingerprint()
    fast_off = Execution("channels_last", True, "fp32", "off").key()
    assert "compilation" not in fast_off  # the fast path's keys are those it had before compilation existed

    def key(model):
        engine = SmoothedAttribution(model, "rise", "input", 0.25, n=8, chunk_size=4, progress=False)
        return cache_key(engine.identity(tiny_image, "t", 3))

    assert key(tiny_model(seed=0).set_compilation("auto")) == key(plain)  # no estimate: "auto" is "off"
    monkeypatch.setitem(compilation.ESTIMATES, TINY_ESTIMATE, CompileEstimate(0.01, 2.0, 10.0))
    keys = {policy: key(tiny_model(seed=0).set_compilation(policy)) for policy in ("off", "auto", "on")}
    assert len(set(keys.values())) == 3 and keys["off"] == key(plain)
    # re-measured estimates may change the "auto" decisions, hence its samples: a new key
    monkeypatch.setitem(compilation.ESTIMATES, TINY_ESTIMATE, CompileEstimate(0.01, 2.0, 20.0))
    assert key(tiny_model(seed=0).set_compilation("auto")) != keys["auto"]
    assert key(tiny_model(seed=0).set_compilation("on")) == keys["on"]


# --- certificates -------------------------------------------------------------------------------------------------
def _engine(model, cache=None, n=32, chunk_size=4):
    return SmoothedAttribution(model, METHODS[0], "input", 0.25, n=n, seed=2, chunk_size=chunk_size, n0=4, cache=cache,
                               progress=False)


def test_compiled_certificates_are_the_same_whatever_the_chunking_order_and_resumption(compiled, tiny_image, tmp_path):
    settings = dict(ks=[50, 10], tau=0.6, alpha=0.05)
    reference = _engine(compiled).certify(tiny_image, "t", 3, **settings)
    assert (reference.labels != -1).any()
    # chunks computed in reverse order into the cache, then certified from it
    e = _engine(compiled, tmp_path / "reversed")
    ident = e.identity(tiny_image, "t", 3)
    for c in reversed(range(8)):
        e.cache.save_chunk(cache_key(ident), c, e.attribute_chunk(tiny_image, "t", 3, c))
    assert e.certify(tiny_image, "t", 3, **settings) == reference
    # interrupted after 16 samples, resumed to 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 16 samples certify nothing yet: only their chunks are kept
        _engine(compiled, tmp_path / "resumed", n=16).certify(tiny_image, "t", 3, **settings)
    assert _engine(compiled, tmp_path / "resumed").certify(tiny_image, "t", 3, **settings) == reference
    # another chunk size (another model batch, the same pass of 8 images): maps agree to float rounding
    other = _engine(compiled, chunk_size=8)
    np.testing.assert_allclose(other.sample(tiny_image, "t", 3), _engine(compiled).sample(tiny_image, "t", 3),
                               rtol=1e-5, atol=1e-7)
    assert np.array_equal(other.certify(tiny_image, "t", 3, **settings).labels, reference.labels)
