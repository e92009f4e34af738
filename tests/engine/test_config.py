"""The two settings objects (SamplingConfig: which samples; CertConfig: how they are certified), the engine's
routing of keywords to them, and the sample store's reading of the first n samples of a cache entry."""
import dataclasses

import numpy as np
import pytest

from certattr.engine.cache import cache_key
from certattr.engine.config import (DEFAULT_CERT, DEFAULT_SAMPLING, CertConfig, SamplingConfig, check_fits,
                                    route_settings)
from certattr.engine.encodings import RAW, TopKSet
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.store import chunk_sizes
from certattr.engine.validation import CertattrError


def engine(model, cache=None, **kw):
    return SmoothedAttribution(model, kw.pop("method", "grad"), kw.pop("layer", "input"), 0.25, cache=cache,
                               progress=False, **kw)


# --- the settings objects ---------------------------------------------------------------------------------------
def test_the_two_objects_split_the_settings_without_overlap():
    sampling, cert = set(SamplingConfig.field_names()), set(CertConfig.field_names())
    assert sampling == {"n", "seed", "chunk_size", "keep_maps"}
    assert cert == {"n0", "tau", "alpha", "correction", "ks"} and not sampling & cert


def test_configs_are_frozen_and_validated_on_replace():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_CERT.tau = 0.9
    assert CertConfig(ks=(5, 50)).ks == (50.0, 5.0)  # checked and stored largest first
    with pytest.raises(CertattrError, match="tau=0.3 is not allowed"):
        DEFAULT_CERT.replace(tau=0.3)
    with pytest.raises(CertattrError, match="keep_maps=1 is not allowed"):
        SamplingConfig(keep_maps=1)
    assert SamplingConfig(n=1).n == 1  # one sample is a valid estimate (Sparsified SmoothGrad); not a certificate
    with pytest.raises(CertattrError, match="n0=1 is not allowed with n=1"):
        check_fits(SamplingConfig(n=1), CertConfig(n0=1))


def test_from_params_takes_the_named_fields_and_ignores_the_rest():
    params = {"n": 40, "seed": 3, "tau": 0.9, "ks": 30, "n0": None, "sigma": 0.5, "model": "resnet18"}
    assert SamplingConfig.from_params(params) == SamplingConfig(n=40, seed=3)
    assert CertConfig.from_params(params) == CertConfig(tau=0.9, ks=(30,))  # n0=None keeps the default
    assert CertConfig.from_params({"alpha": 0.01}, base=CertConfig(tau=0.6)) == CertConfig(tau=0.6, alpha=0.01)


def test_statement_states_n_alpha_and_correction():
    text = CertConfig(alpha=0.01, correction="holm").statement(200)
    assert "n = 200" in text and "alpha = 0.01" in text and "holm correction" in text and "n0 = 10" in text


def test_keywords_are_routed_to_the_object_they_belong_to():
    sampling, cert = route_settings(None, None, {"n": 200, "tau": 0.9, "keep_maps": True, "ks": [10]})
    assert sampling == DEFAULT_SAMPLING.replace(n=200, keep_maps=True)
    assert cert == DEFAULT_CERT.replace(tau=0.9, ks=(10,))
    base = SamplingConfig(seed=5)
    assert route_settings(base, None, {"n": 7})[0] == SamplingConfig(n=7, seed=5)  # keywords replace given fields
    assert route_settings(base, CertConfig(n0=3), {}) == (base, CertConfig(n0=3))


def test_the_engine_keeps_both_objects_and_the_keyword_api(tiny):
    e = SmoothedAttribution(tiny, "gradcam", "final", sigma=0.25, n=200, tau=0.9, progress=False)
    assert (e.sampling.n, e.cert.tau, e.n, e.sigma) == (200, 0.9, 200, 0.25)
    same = SmoothedAttribution(tiny, "gradcam", "final", 0.25, SamplingConfig(n=200), CertConfig(tau=0.9),
                               progress=False)
    assert (same.sampling, same.cert) == (e.sampling, e.cert)


def test_sampling_only_engines_read_any_n_and_refuse_to_certify_it(tiny, tiny_image):
    """The related certificates build a SamplingConfig only: n = 3 below the default n0 = 10 samples fine, and
    certifying those samples is refused in one line naming both n0 and n."""
    e = SmoothedAttribution(tiny, "grad", "input", 0.25, SamplingConfig(n=3, chunk_size=2), progress=False)
    assert [len(c) for c in e.chunks(tiny_image, "t", 1)] == [2, 1]
    with pytest.raises(CertattrError, match=r"^n0=10 is not allowed with n=3: .*1 <= n0 < n$"):
        e.certify(tiny_image, "t", 1)


# --- the sample store -------------------------------------------------------------------------------------------
def test_chunk_sizes():
    assert chunk_sizes(25, 10) == [10, 10, 5] and chunk_sizes(20, 10) == [10, 10] and chunk_sizes(1, 10) == [1]


def _count_model_calls(monkeypatch):
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append((a[3], k.get("size"))) or original(self, *a, **k))
    return calls


def test_the_store_reads_the_first_n_of_a_cached_larger_n(tiny, tiny_image, tmp_path, monkeypatch):
    """A cached n = 30 (chunks of 10) serves n = 25 and n = 7 without a model call: full chunks as they are, the
    partial last chunk as the head of the cached full chunk; a smaller n computes nothing past it."""
    big = engine(tiny, tmp_path, n=30, keep_maps=True)
    reference = big.sample(tiny_image, "t", 1)
    calls = _count_model_calls(monkeypatch)
    for n in (25, 7):
        read = np.concatenate(list(big.chunks(tiny_image, "t", 1, RAW, n=n)))
        assert read.shape[0] == n
        np.testing.assert_array_equal(read, reference[:n])
    assert calls == []
    # without a cache the first n = 7 samples are computed as one batch of 7 (never past n)
    list(engine(tiny, None, n=30).chunks(tiny_image, "t", 1, RAW, n=7))
    assert calls == [(0, 7)]


def test_the_store_derives_an_encoding_from_kept_raw_maps(tiny, tiny_image, tmp_path, monkeypatch):
    e = engine(tiny, tmp_path, n=20, keep_maps=True, layer="final", method="ixg")
    maps = np.concatenate(list(e.chunks(tiny_image, "t", 1, RAW)))
    calls = _count_model_calls(monkeypatch)
    encoding = TopKSet(0.2)
    derived = np.concatenate([encoding.decode(d) for d in e.chunks(tiny_image, "t", 1, encoding)])
    assert calls == []
    np.testing.assert_array_equal(derived, encoding.decode(encoding.encode(maps, tiny_image.shape[1:])))


def test_the_store_writes_every_encoding_a_reader_needs(tiny, tiny_image, tmp_path):
    other = TopKSet(0.1)
    e = SmoothedAttribution(tiny, "ixg", "final", 0.25, n=15, keep_maps=True, cache=tmp_path, also_store=[other],
                            progress=False)
    list(e.chunks(tiny_image, "t", 1, RAW))
    key = cache_key(e.identity(tiny_image, "t", 1))
    for chunk, size in ((0, 10), (1, 5)):
        assert e.cache.has_chunk(key, chunk, size, 10, RAW) and e.cache.has_chunk(key, chunk, size, 10, other)


def test_the_model_is_only_read(tiny, tiny_image):
    """The engine writes nothing into the caller's model; the fingerprint is the model's own."""
    before = dict(tiny.__dict__)
    engine(tiny, n=10).identity(tiny_image, "t", 1)
    assert tiny.__dict__.keys() == before.keys()
    assert all(tiny.__dict__[k] is before[k] for k in before if k != "_fingerprint")
