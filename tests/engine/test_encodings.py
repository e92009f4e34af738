"""The compact sample cache: top-K codes, top-k sets and bounded sums give exactly what raw maps give."""
import numpy as np
import pytest
import torch

from certattr.engine.cache import SampleCache, cache_key
from certattr.engine.certify import certify_maps
from certattr.engine.sparsify import flat_maps
from certattr.engine.encodings import (DEFAULT_LADDER, RAW, BoundedSum, TopKCodes, TopKSet, certificate_encoding,
                                encoding_from_spec, pack_codes, topk_ladder, unpack_codes)
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.sparsify import sparsify
from certattr.certificates.sparsified_smoothgrad import sparsify_topk
from certattr.engine.validation import CertattrError


def _maps(seed=0, b=6, shape=(12, 9)):
    """Random maps with the hard cases: ties, zeros, a constant map, a map with one nonzero pixel."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(b, *shape)).astype(np.float32)
    maps[1] = np.round(maps[1])  # many ties
    maps[2] = np.maximum(maps[2], 0)  # half zeros (a CAM after ReLU)
    maps[3] = 0.5  # constant
    maps[4] = 0
    maps[4, 1, 2] = 2.0
    return maps


@pytest.mark.parametrize("bits", range(1, 9))
def test_codes_pack_and_unpack_exactly(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2 ** bits, size=(5, 1001), dtype=np.uint8)
    packed = pack_codes(codes, bits)
    assert packed.shape == (5, -(-1001 * bits // 8))
    np.testing.assert_array_equal(unpack_codes(packed, bits, 1001), codes)


@pytest.mark.parametrize("ladder", [DEFAULT_LADDER, (50,), (100, 50, 12.5, 0.1), tuple(range(100, 0, -7))])
def test_topk_codes_decode_to_the_exact_sparsification(ladder):
    enc = TopKCodes(ladder)
    assert enc.bits == max(1, int(np.ceil(np.log2(len(ladder) + 1))))
    maps = _maps()
    data = enc.encode(maps, maps.shape[1:])
    enc.check(data, len(maps))
    for ks in (enc.ks, enc.ks[::-1][:2], enc.ks[-1:]):
        binary, flat = enc.decode(data, ks)
        np.testing.assert_array_equal(binary, sparsify(maps, ks))  # the oracle: sparsify on the float maps
        np.testing.assert_array_equal(flat, flat_maps(maps))
    with pytest.raises(CertattrError, match="not in the cached top-K ladder"):
        enc.decode(data, [33.3])


def test_topk_codes_upsample_final_layer_maps_like_the_certificate():
    enc = TopKCodes((50, 10))
    maps = _maps(b=6, shape=(4, 4))
    data = enc.encode(maps, (32, 32))
    from certattr.engine.sparsify import upsample_maps

    up = upsample_maps(torch.from_numpy(maps), (32, 32)).numpy()
    np.testing.assert_array_equal(enc.decode(data, (50, 10))[0], sparsify(up, (50, 10)))


def test_topk_sets_and_bounded_sums_are_what_their_certificates_compute():
    maps = _maps(b=5, shape=(7, 7))
    topset = TopKSet(0.1)
    np.testing.assert_array_equal(topset.decode(topset.encode(maps, (7, 7))), sparsify_topk(maps, 0.1))
    from certattr.certificates.cosine import bound_norm

    for mode in ("normalize", "clip"):
        enc = BoundedSum(0.7, mode)
        total = enc.decode(enc.encode(maps, (7, 7)))
        np.testing.assert_array_equal(total, bound_norm(torch.from_numpy(maps).double(), 0.7, mode).sum(0).numpy())


def test_specs_name_the_encodings_and_bad_ones_are_refused():
    for enc in (RAW, TopKCodes(DEFAULT_LADDER), TopKSet(0.25), BoundedSum(1.0, "clip")):
        assert encoding_from_spec(enc.spec) == enc
    for bad in ("raw:1", "topk", "sum:normalize", "maps"):
        with pytest.raises(CertattrError, match="unknown"):
            encoding_from_spec(bad)
    assert topk_ladder([50, 25]) == DEFAULT_LADDER and topk_ladder([33]) == tuple(sorted(DEFAULT_LADDER + (33.0,), reverse=True))
    assert certificate_encoding("input", [50]) == TopKCodes(DEFAULT_LADDER) and certificate_encoding("final") is RAW


def _engine(model, cache, **kw):
    kw.setdefault("n", 40)
    return SmoothedAttribution(model, kw.pop("method", "grad"), kw.pop("layer", "input"), 0.25, cache=cache,
                               progress=False, **kw)


@pytest.mark.parametrize("settings", [dict(tau=0.55), dict(tau=0.6, alpha=0.05), dict(n0=5, correction="holm", tau=0.6),
                                      dict(ks=[40, 5], alpha=0.2, tau=0.55)])
def test_certificates_from_the_compact_cache_equal_those_from_raw_maps(tiny, tiny_image, tmp_path, settings):
    compact = _engine(tiny, tmp_path / "compact")
    cert = compact.certify(tiny_image, "t", 3, **settings)
    maps = _engine(tiny, None).sample(tiny_image, "t", 3)
    cfg = compact.cert.replace(**settings)
    assert cert == certify_maps(maps, cfg.ks, sigma=0.25, n0=cfg.n0, tau=cfg.tau, alpha=cfg.alpha,
                                correction=cfg.correction, metadata=cert.metadata)
    files = sorted(p.name for p in (tmp_path / "compact").rglob("chunk_*"))
    assert files == [f"chunk_{c:05d}.topk-50-40-30-25-20-10-5.npz" for c in range(4)]  # no raw maps by default


def test_a_damaged_or_swapped_encoded_chunk_is_recomputed(tiny, tiny_image, tmp_path):
    e = _engine(tiny, tmp_path)
    reference = e.certify(tiny_image, "t", 3, tau=0.6, alpha=0.05)
    key = cache_key(e.identity(tiny_image, "t", 3))
    enc = e.certificate_encoding()
    first, second = e.cache.chunk_path(key, 0, encoding=enc), e.cache.chunk_path(key, 1, encoding=enc)
    second.write_bytes(first.read_bytes())  # chunk 0's file in chunk 1's place: its checksum names chunk 0
    blob = bytearray(first.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    first.write_bytes(bytes(blob))
    cache = SampleCache(tmp_path)
    with pytest.warns(UserWarning, match="discarding damaged chunk"):
        again = _engine(tiny, cache).certify(tiny_image, "t", 3, tau=0.6, alpha=0.05)
    assert again == reference and cache.corrupt_chunks == 2


def test_the_compact_cache_is_under_an_eighth_of_float32_maps_at_224(tiny, tmp_path):
    """Bytes on disk per Input-layer (configuration, image) at n = 100 and 224 x 224: at most 1/8 of the
    reference's 18.8 MB (its float32 maps); the raw maps, when kept, are the reference's size."""
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(1))
    e = _engine(tiny, tmp_path / "compact", n=100, method="grad")
    e.certify(image, "big", 3)
    compact = sum(p.stat().st_size for p in (tmp_path / "compact").rglob("chunk_*"))
    kept = _engine(tiny, tmp_path / "raw", n=100, method="grad", keep_maps=True)
    kept.certify(image, "big", 3)
    raw = sum(p.stat().st_size for p in (tmp_path / "raw").rglob("chunk_?????.npz"))
    assert raw > 17e6  # float32 maps hardly compress (the reference stores 18.8 to 20 MB)
    assert compact <= 18.8e6 / 8, compact
