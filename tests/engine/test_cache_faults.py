"""The sample cache cannot be fooled and the engine never changes the caller's model (issue 16, points 2, 3, 6).

Oracle for every cache fault: the samples of a run with no cache at all.
"""
import os
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from certattr.engine.cache import CacheWarning, SampleCache, cache_key
from certattr.engine.certify import DegenerateMapWarning, certify_maps
from certattr.engine.smoothing import ModelModeWarning, SmoothedAttribution
from certattr.engine.validation import CertattrError

from .helpers import engine as _engine, peak_rss_mb

ROOT = Path(__file__).resolve().parents[2]


def engine(model, cache=None, **kw):
    """The engine tests' engine (tests/engine/helpers.py) with Grad as the default method."""
    kw.setdefault("method", "grad")
    return _engine(model, cache, **kw)


def _chunks(folder):
    return sorted(Path(folder).rglob("chunk_*.npz"))


@pytest.fixture()
def reference(tiny, tiny_image):
    return engine(tiny).sample(tiny_image, "t", 1)


def test_a_chunk_copied_moved_or_swapped_is_detected_and_recomputed(tiny, tiny_image, tmp_path, reference):
    engine(tiny, tmp_path).sample(tiny_image, "t", 1)
    other = tmp_path / "other"
    engine(tiny, other).sample(tiny_image, "u", 1)  # another entry (another image id)
    a = _chunks(tmp_path / next(p.name for p in tmp_path.iterdir() if p.name != "other"))
    assert len(a) == 4
    b = _chunks(other)
    shutil.copy(a[0], a[1])                       # a copy of chunk 0 over chunk 1 of the same entry
    data2, data3 = a[2].read_bytes(), a[3].read_bytes()
    a[2].write_bytes(data3), a[3].write_bytes(data2)  # two chunks swapped
    shutil.copy(b[0], a[0])                       # chunk 0 of another entry
    cache = SampleCache(tmp_path)
    with pytest.warns(CacheWarning, match="checksum mismatch") as record:
        again = engine(tiny, cache).sample(tiny_image, "t", 1)
    assert cache.corrupt_chunks == 4 and len(record) == 4
    assert all("\n" not in str(w.message) for w in record)
    np.testing.assert_array_equal(again, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recomputed chunks are good now: no warning
        np.testing.assert_array_equal(engine(tiny, SampleCache(tmp_path)).sample(tiny_image, "t", 1), reference)


def test_chunks_a_power_cut_left_incomplete_are_recomputed_so_the_cache_skips_fsync(tiny, tiny_image, tmp_path,
                                                                                      reference, monkeypatch):
    """The cache writes its chunks without an fsync (other files keep theirs): a chunk whose bytes never reached
    the disk (empty, cut short, or zeros, as after a power cut) must be found and recomputed."""
    from certattr.engine.files import atomic_write_bytes

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    engine(tiny, tmp_path).sample(tiny_image, "t", 1)
    assert synced == []
    atomic_write_bytes(tmp_path / "other.txt", b"x")
    assert len(synced) == 1
    chunks = _chunks(tmp_path)
    chunks[0].write_bytes(b"")
    chunks[1].write_bytes(chunks[1].read_bytes()[: chunks[1].stat().st_size // 2])
    chunks[2].write_bytes(bytes(chunks[2].stat().st_size))
    cache = SampleCache(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        again = engine(tiny, cache).sample(tiny_image, "t", 1)
    np.testing.assert_array_equal(again, reference)
    assert sum(issubclass(w.category, CacheWarning) for w in record) == 3


def _flip_inside_compressed_maps(path: Path) -> None:
    """Flip a bit inside the deflate stream of maps.npy, so that zlib itself fails (not just the checksum)."""
    import struct
    import zipfile

    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("maps.npy")
    name_len, extra_len = struct.unpack("<HH", bytes(data[info.header_offset + 26:info.header_offset + 30]))
    start = info.header_offset + 30 + name_len + extra_len
    for offset in range(start + 2, start + info.compress_size - 2, 7):
        trial = bytearray(data)
        trial[offset] ^= 0x5A
        try:
            import zlib

            zlib.decompress(bytes(trial[start:start + info.compress_size]), -15)
        except zlib.error:
            path.write_bytes(bytes(trial))
            return
    pytest.skip("no single byte flip (every 7th byte of the compressed maps, XOR 0x5A) made zlib reject this chunk, "
                "so the bad-compression case cannot be built from it")


def test_bad_compression_directory_fifo_and_old_format_are_recomputed(tiny, tiny_image, tmp_path, reference):
    e = engine(tiny, tmp_path)
    e.sample(tiny_image, "t", 1)
    chunks = _chunks(tmp_path)
    _flip_inside_compressed_maps(chunks[0])
    chunks[1].unlink()
    chunks[1].mkdir()                        # a directory named like a chunk
    (chunks[1] / "x").write_text("x")
    if hasattr(os, "mkfifo"):
        chunks[2].unlink()
        os.mkfifo(chunks[2])                 # a FIFO in a chunk's place: must not block
    np.savez_compressed(chunks[3], maps=np.zeros((10, 32, 32), np.float32), sha256=np.array("0" * 64))  # old format
    done = {}
    cache = SampleCache(tmp_path)

    def run():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            done["maps"] = engine(tiny, cache).sample(tiny_image, "t", 1)
        done["warnings"] = [str(w.message) for w in record if issubclass(w.category, CacheWarning)]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "a special file in the cache blocked the run"
    np.testing.assert_array_equal(done["maps"], reference)
    assert len(done["warnings"]) == 4 and all("\n" not in w and "recomputed" in w for w in done["warnings"])
    assert any("error" in w.lower() for w in done["warnings"])  # the zlib/zip error is named
    assert all(p.is_file() for p in _chunks(tmp_path)) and len(_chunks(tmp_path)) == 4
    # a second run reads every chunk without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        np.testing.assert_array_equal(engine(tiny, tmp_path).sample(tiny_image, "t", 1), reference)


def test_a_chunk_never_computes_samples_past_n(tiny, tiny_image, tmp_path, monkeypatch):
    from certattr import methods

    sizes = []
    original = methods.get_method("grad").__class__.attribute

    def spy(self, model, images, *a, **kw):
        sizes.append(images.shape[0])
        return original(self, model, images, *a, **kw)

    monkeypatch.setattr(methods.get_method("grad").__class__, "attribute", spy)
    maps = engine(tiny, tmp_path, n=20, chunk_size=200).sample(tiny_image, "t", 1)
    assert sizes == [20] and maps.shape[0] == 20
    sizes.clear()
    engine(tiny, tmp_path, n=20, chunk_size=200).sample(tiny_image, "t", 1)
    assert sizes == []  # the partial chunk is cached
    sizes.clear()
    e = engine(tiny, None, n=45, chunk_size=10)
    e.sample(tiny_image, "t", 1)
    assert sizes == [10, 10, 10, 10, 5]
    # the uncached and cached runs agree bit for bit at the same n
    np.testing.assert_array_equal(engine(tiny, None, n=20, chunk_size=200).sample(tiny_image, "t", 1), maps)


def test_train_mode_model_is_sampled_in_eval_mode_and_left_unchanged(tiny_image):
    from certattr.models.testing import tiny_model

    model = tiny_model(seed=0)
    reference = engine(model, n=20).certify(tiny_image, "t", None, ks=[50], alpha=0.05)
    model.train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(ModelModeWarning, match="train mode") as record:
        cert = engine(model, n=20).certify(tiny_image, "t", None, ks=[50], alpha=0.05)
    assert len([w for w in record if issubclass(w.category, ModelModeWarning)]) == 1
    assert cert == reference                       # the eval-mode certificate
    assert model.training and all(m.training for m in model.modules())  # its mode restored
    for k, v in model.state_dict().items():        # BatchNorm running statistics untouched
        assert torch.equal(v, buffers[k]), k


def test_train_mode_samples_share_the_eval_cache_entry_because_they_are_eval_samples(tiny_image, tmp_path):
    from certattr.models.testing import tiny_model

    model = tiny_model(seed=0)
    eval_maps = engine(model, tmp_path).sample(tiny_image, "t", 1)
    model.train()
    with pytest.warns(ModelModeWarning):
        np.testing.assert_array_equal(engine(model, tmp_path).sample(tiny_image, "t", 1), eval_maps)
    assert engine(model).identity(tiny_image, "t", 1)["mode"] == "eval"


def test_a_buffer_changed_in_place_changes_the_key(tiny_image):
    from certattr.models.testing import tiny_model

    model = tiny_model(seed=0)
    before = cache_key(engine(model).identity(tiny_image, "t", 1))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    saved = bn.running_mean.clone()
    with torch.no_grad():
        bn.running_mean.add_(0.5)  # in place, as a forward pass in train mode does
    after = cache_key(engine(model).identity(tiny_image, "t", 1))
    with torch.no_grad():
        bn.running_mean.copy_(saved)
    assert before != after and cache_key(engine(model).identity(tiny_image, "t", 1)) == before


def test_streaming_certify_equals_certify_maps_of_all_samples(tiny, tiny_image, tmp_path):
    e = engine(tiny, tmp_path, n=47, n0=7, chunk_size=10, method="gradcam", layer="final")
    cert = e.certify(tiny_image, "t", 3, ks=[50, 25, 5], alpha=0.05, correction="holm")
    maps = e.sample(tiny_image, "t", 3)
    assert cert == certify_maps(maps, [50, 25, 5], sigma=0.25, n0=7, alpha=0.05, correction="holm",
                                metadata=cert.metadata)


def test_gap_linear_grad_at_the_final_layer_is_flagged_degenerate(tiny, tiny_image, tmp_path):
    """Grad at the Final layer of a GAP->linear head is the same weight at every position: constant up to
    rounding. The certificate says so, in one warning line, and keeps it when saved and loaded."""
    from certattr.engine.certificate import Certificate

    with pytest.warns(DegenerateMapWarning) as record:
        cert = engine(tiny, n=60, layer="final").certify(tiny_image, "t", 1, ks=[50], alpha=0.05)
    lines = [str(w.message) for w in record if issubclass(w.category, DegenerateMapWarning)]
    assert len(lines) == 1 and "\n" not in lines[0] and "grad@final" in lines[0] and "rounding" in cert.degenerate
    cert.save(tmp_path / "c.npz")
    assert Certificate.load(tmp_path / "c.npz").degenerate == cert.degenerate
    assert cert.summary()["degenerate"] == cert.degenerate and "Degenerate" in cert.statement()
    with warnings.catch_warnings():  # a normal map is not flagged
        warnings.simplefilter("error", DegenerateMapWarning)
        assert engine(tiny, n=60, layer="input").certify(tiny_image, "t", 1, ks=[50], alpha=0.05).degenerate == ""


def test_four_threads_sampling_into_one_cache(tiny, tiny_image, tmp_path, reference):
    results, errors = [None] * 4, []

    def run(i):
        try:
            results[i] = engine(tiny, tmp_path).sample(tiny_image, "t", 1)
        except Exception as err:  # noqa: BLE001
            errors.append(repr(err))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for r in results:
        np.testing.assert_array_equal(r, reference)
    assert len(_chunks(tmp_path)) == 4 and not list(tmp_path.rglob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # every chunk written is valid
        engine(tiny, tmp_path).sample(tiny_image, "t", 1)


_PROC = r"""
import sys, numpy as np, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from certattr.engine.smoothing import SmoothedAttribution
from certattr.models.testing import tiny_model
image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(7))
maps = SmoothedAttribution(tiny_model(seed=0), "grad", "input", 0.25, n=80, n0=10, cache={cache!r},
                           progress=False).sample(image, "t", 1)
np.save(sys.argv[1], maps)
"""


def test_processes_sharing_one_cache(tiny, tiny_image, tmp_path):
    reference = engine(tiny, n=80).sample(tiny_image, "t", 1)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _PROC.format(root=str(ROOT), cache=str(cache)),
                               str(tmp_path / f"m{i}.npy")], stderr=subprocess.PIPE, text=True) for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "Traceback" not in err and "damaged" not in err
    for i in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / f"m{i}.npy"), reference)
    assert len(_chunks(cache)) == 8 and not list(cache.rglob("*.tmp"))


def test_absurd_n_fails_fast_in_one_line(tiny):
    with pytest.raises(CertattrError) as exc:
        engine(tiny, n=10 ** 12)
    assert "\n" not in str(exc.value) and "years" in str(exc.value) and "TB" in str(exc.value)


def test_n_that_cannot_fit_in_the_cache_fails_after_the_first_chunk(tiny, tiny_image, tmp_path, monkeypatch):
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk", lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k))
    # a disk with 100 kB free, as the operating system reports it (the standard library's call, not the engine's)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: SimpleNamespace(total=10 ** 9, used=10 ** 9 - 10 ** 5, free=10 ** 5))
    with pytest.raises(CertattrError, match=r"GiB more in the sample cache .* are free"):
        engine(tiny, tmp_path, n=100_000).sample(tiny_image, "t", 1)
    assert calls == [0]


@pytest.mark.slow
def test_peak_rss_of_a_cached_certify_is_flat_in_n(tmp_path):
    """The issue measured 1.26 GB at n = 20 and 2.13 GB at n = 1000 on a cached run (Lite0); streaming makes it flat.
    Here a tiny CNN on a 256x256 image: each map is 256 kB, so holding the 1000 maps would add about 256 MB."""
    peak_rss_mb("certify", "tiny", "gradcam", "final", 1000, 10, tmp_path, size=256)  # fill the cache
    _, peak_20 = peak_rss_mb("certify", "tiny", "gradcam", "final", 20, 10, tmp_path, size=256)
    _, peak_1000 = peak_rss_mb("certify", "tiny", "gradcam", "final", 1000, 10, tmp_path, size=256)
    assert peak_1000 - peak_20 < 100, (peak_20, peak_1000)
    # the measurement sees maps that are held: sampling (which returns the n maps) grows by about 256 kB per map
    _, held_20 = peak_rss_mb("sample", "tiny", "gradcam", "final", 20, 10, size=256)
    _, held_1000 = peak_rss_mb("sample", "tiny", "gradcam", "final", 1000, 10, size=256)
    assert held_1000 - held_20 > 150, (held_20, held_1000)
