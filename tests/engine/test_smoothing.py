"""The engine: sample cache, resumption, corruption, reproducibility across batch sizes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from certattr.engine.cache import SampleCache, cache_key

CHUNK = 10
from certattr.engine.certify import certify_maps
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.validation import CertattrError

from .helpers import engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method,layer", [("grad", "input"), ("gradcam", "final"), ("ixg", "final")])
def test_certificates_identical_whatever_the_order_of_chunks(tiny, tiny_image, method, layer, tmp_path, monkeypatch):
    reference = engine(tiny, None, method=method, layer=layer, n=100).certify(tiny_image, "t", 3, ks=[50, 10], alpha=0.05)
    # compute the chunks in reverse order (each into the cache), then certify from the cache
    e = engine(tiny, tmp_path, method=method, layer=layer, n=100)
    ident = e.identity(tiny_image, "t", 3)
    for c in reversed(range(10)):
        e.cache.save_chunk(cache_key(ident), c, e.attribute_chunk(tiny_image, "t", 3, c))
    assert e.certify(tiny_image, "t", 3, ks=[50, 10], alpha=0.05) == reference
    # chunk sizes change the model's batch: maps agree to float rounding
    other = engine(tiny, None, method=method, layer=layer, n=100, chunk_size=25).sample(tiny_image, "t", 3)
    np.testing.assert_allclose(other, e.sample(tiny_image, "t", 3), rtol=1e-5, atol=1e-7)


def test_cache_reuse_and_other_k_tau_alpha_do_not_resample(tiny, tiny_image, tmp_path, monkeypatch):
    e = engine(tiny, tmp_path)
    first = e.certify(tiny_image, "t", 1, tau=0.6, alpha=0.05)
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k))
    e2 = engine(tiny, tmp_path)
    again = e2.certify(tiny_image, "t", 1, tau=0.6, alpha=0.05)
    other = e2.certify(tiny_image, "t", 1, ks=[30], tau=0.6, alpha=0.01, correction="holm")
    assert calls == [] and again == first and other.ks == (30.0,)
    # a larger n reuses the first chunks and computes only the new ones
    engine(tiny, tmp_path, n=60).certify(tiny_image, "t", 1, tau=0.6, alpha=0.05)
    assert calls == [4, 5]
    # the compact cache holds top-K codes of the ladder, not maps: a K outside the ladder and the raw maps resample
    calls.clear()
    engine(tiny, tmp_path).certify(tiny_image, "t", 1, ks=[33], alpha=0.05)
    assert calls == [0, 1, 2, 3]
    calls.clear()
    engine(tiny, tmp_path).sample(tiny_image, "t", 1)
    assert calls == [0, 1, 2, 3]


def test_kept_raw_maps_serve_a_new_k_without_resampling(tiny, tiny_image, tmp_path, monkeypatch):
    kept = engine(tiny, tmp_path, keep_maps=True)
    reference = kept.certify(tiny_image, "t", 1, ks=[50, 25], tau=0.6, alpha=0.05)
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k))
    e = engine(tiny, tmp_path)  # keep_maps is not part of the samples: the same entry
    assert e.certify(tiny_image, "t", 1, ks=[50, 25], tau=0.6, alpha=0.05) == reference
    new_k = e.certify(tiny_image, "t", 1, ks=[33, 7], tau=0.6, alpha=0.05)  # outside the ladder: derived from the raw maps
    maps = e.sample(tiny_image, "t", 1)
    assert calls == []
    assert new_k == certify_maps(maps, [33, 7], sigma=0.25, n0=10, tau=0.6, alpha=0.05, metadata=new_k.metadata)


def test_key_changes_with_everything_that_changes_samples(tiny, tiny_image):
    e = engine(tiny)
    base = e.identity(tiny_image, "t", 1)
    keys = {cache_key(base)}
    variants = [dict(sigma=0.5), dict(seed=1), dict(layer="final"), dict(method="grad")]
    for v in variants:
        keys.add(cache_key(engine(tiny, **v).identity(tiny_image, "t", 1)))
    keys.add(cache_key(e.identity(tiny_image, "u", 1)))
    keys.add(cache_key(e.identity(tiny_image, "t", 2)))
    keys.add(cache_key(e.identity(tiny_image.flip(-1), "t", 1)))
    keys.add(cache_key(engine(tiny, chunk_size=20).identity(tiny_image, "t", 1)))
    from certattr.methods import get_method
    keys.add(cache_key(engine(tiny, method=get_method("grad")).identity(tiny_image, "t", 1)))
    from certattr.models.testing import tiny_model
    keys.add(cache_key(engine(tiny_model(seed=1)).identity(tiny_image, "t", 1)))
    assert len(keys) == 1 + len(variants) + 4 + 1 + 1 - 1  # grad twice (by name and by object) is the same key
    # n is not in the key: sample i does not depend on n
    assert cache_key(engine(tiny, n=80).identity(tiny_image, "t", 1)) == cache_key(base)


def test_corrupted_chunk_is_detected_and_recomputed(tiny, tiny_image, tmp_path):
    e = engine(tiny, tmp_path)
    clean = e.sample(tiny_image, "t", 1)
    chunks = sorted(tmp_path.rglob("chunk_*.npz"))
    assert len(chunks) == 4
    chunks[1].write_bytes(chunks[1].read_bytes()[:100])  # truncated
    data = bytearray(chunks[2].read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the compressed maps
    chunks[2].write_bytes(bytes(data))
    cache = SampleCache(tmp_path)
    with pytest.warns(UserWarning, match="damaged chunk"):
        again = engine(tiny, cache).sample(tiny_image, "t", 1)
    assert cache.corrupt_chunks == 2
    np.testing.assert_array_equal(again, clean)


_CHILD = r"""
import sys, time, torch
sys.path.insert(0, {root!r})
from certattr.engine.smoothing import SmoothedAttribution
from certattr.models.testing import tiny_model
torch.set_num_threads(1)
orig = SmoothedAttribution.attribute_chunk
def slow(self, *a, **k):
    time.sleep(0.15)
    return orig(self, *a, **k)
SmoothedAttribution.attribute_chunk = slow
gen = torch.Generator().manual_seed(7)
image = torch.rand(3, 32, 32, generator=gen)
e = SmoothedAttribution(tiny_model(seed=0), "gradcam", "input", 0.25, n=200, n0=10, cache={cache!r}, progress=False)
e.sample(image, "t", 1)
print("finished")
"""


def test_sigkill_and_resume_is_bit_identical_and_recomputes_no_finished_chunk(tiny, tiny_image, tmp_path, monkeypatch):
    reference = engine(tiny, None, n=200).sample(tiny_image, "t", 1)
    cache_dir = tmp_path / "cache"
    rng = np.random.default_rng(0)
    for _round in range(3):  # kill at several random points, resuming each time
        proc = subprocess.Popen([sys.executable, "-c", _CHILD.format(root=str(ROOT), cache=str(cache_dir))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        target = len(list(cache_dir.rglob("chunk_*.npz"))) + int(rng.integers(1, 4))
        deadline = time.time() + 60
        while len(list(cache_dir.rglob("chunk_*.npz"))) < target and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.15)))  # somewhere inside the next chunk
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = {p.name for p in cache_dir.rglob("chunk_*.npz")}
    assert 3 <= len(done) < 20 and not list(cache_dir.rglob("*.tmp"))
    computed = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: computed.append(a[-1]) or original(self, *a, **k))
    resumed = engine(tiny, cache_dir, n=200).sample(tiny_image, "t", 1)
    finished = {int(name[6:11]) for name in done}
    assert not finished & set(computed)
    assert sorted(computed) == sorted(set(range(20)) - finished)
    np.testing.assert_array_equal(resumed, reference)


def test_bad_parameters(tiny, tiny_image):
    with pytest.raises(CertattrError, match="sigma"):
        engine(tiny, sigma=0)
    with pytest.raises(CertattrError, match="n0=10 is not allowed with n=10") as exc:  # where both meet
        engine(tiny, n=10, n0=10).certify(tiny_image, "t", 1)
    assert "\n" not in str(exc.value)
    with pytest.raises(CertattrError, match="target"):
        engine(tiny).certify(tiny_image, "t", 99)
    with pytest.raises(CertattrError, match=r"\[0, 1\]"):
        engine(tiny).certify(tiny_image * 2, "t", 1)
    bad = tiny_image.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(CertattrError, match="NaN"):
        engine(tiny).sample(bad, "t", 1)


class _RowByRow(torch.nn.Module):
    """Runs a module on one row at a time: a model whose kernels cannot depend on the batch size."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return torch.cat([self.module(row.unsqueeze(0)) for row in x])


def _row_by_row_tiny():
    from certattr.models.registry import GapLinearHead, LoadedModel
    from certattr.models.testing import TinyResNet, _bn_stats, _spec

    def build(_weights):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = TinyResNet(10, 8)
        _bn_stats(net, 0)
        return net.eval()

    def split(net):
        return (_RowByRow(torch.nn.Sequential(net.stem, net.block, net.last)), _RowByRow(GapLinearHead(net.fc)), net.fc)

    return LoadedModel(_spec("tiny_rowwise", "Tiny ResNet, row by row", build, split, "last conv",
                             canonizers=("merge_batchnorm", "tiny_resnet", "gap_linear_head")), build("random"), "random")


BATCH_METHODS = [("grad", "input", {}), ("ixg", "final", {}), ("gradcam", "final", {}), ("lrp", "input", {}),
                 ("intgrad", "input", {"steps": 4}), ("rise", "input", {"n_masks": 12}),
                 ("occlusion", "final", {"window": 4, "stride": 2})]


@pytest.mark.parametrize("method,layer,params", BATCH_METHODS)
def test_certificates_bit_identical_across_batch_sizes_1_7_32(tiny_image, method, layer, params):
    """Everything certattr adds (noise, chunks, cache, upsampling, sparsification, counts) is batch-invariant:
    with a model whose kernels cannot see the batch, batch sizes 1, 7 and 32 give the same certificate bit
    for bit. (Vendor conv/GEMM kernels choose their blocking by batch size; see the next test.)"""
    from certattr.methods import get_method

    model = _row_by_row_tiny()
    certs = [SmoothedAttribution(model, get_method(method, **params), layer, 0.25, n=64, n0=8, chunk_size=bs,
                                 progress=False).certify(tiny_image, "t", 3, ks=[50, 10], alpha=0.05)
             for bs in (1, 7, 32)]
    assert certs[0] == certs[1] == certs[2]
    assert (certs[0].labels != -1).any()  # not vacuous: some pixel is certified


@pytest.mark.parametrize("method,layer", [("grad", "input"), ("ixg", "final"), ("gradcam", "final")])
def test_batched_kernels_change_maps_only_at_float_rounding_and_certificates_only_at_ties(tiny, tiny_image, method, layer):
    """With the real batched model, batch sizes 1, 7, 32 give maps equal to float rounding; a sample's
    top-K membership can change only for a pixel within rounding of that sample's threshold, and a
    certificate pixel only where such a membership changed."""
    from certattr.engine.sparsify import sparsify, topk_thresholds

    maps = {bs: engine(tiny, None, method=method, layer=layer, n=64, n0=8, chunk_size=bs).sample(tiny_image, "t", 3)
            for bs in (1, 7, 32)}
    scale = np.abs(maps[1]).max()
    for bs in (7, 32):
        np.testing.assert_allclose(maps[bs], maps[1], rtol=1e-5, atol=1e-6 * scale)
        flipped = sparsify(maps[1], [50, 10]) != sparsify(maps[bs], [50, 10])
        distance = np.abs(np.abs(maps[1])[None] - topk_thresholds(maps[1], [50, 10])[:, :, None, None])
        assert (distance[flipped] <= 1e-5 * scale).all()
        a, b = (certify_maps(maps[s], [50, 10], sigma=0.25, n0=8, alpha=0.05) for s in (1, bs))
        assert (flipped.any(axis=1) | (a.labels == b.labels)).all()
