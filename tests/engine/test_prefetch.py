"""Copies drawn ahead (certattr.engine.prefetch): where the model runs off the CPU the engine draws chunk c+1's noisy
copies while the model runs on chunk c; the certificate stays the plain one bit for bit, each chunk is drawn once,
and a failure in the background is raised where the batch is taken."""
import threading

import numpy as np
import pytest

from certattr.engine import noise
from certattr.engine.prefetch import CopyPrefetch
from certattr.engine.smoothing import SmoothedAttribution


@pytest.mark.filterwarnings("ignore::certattr.engine.certify.CertificationWarning")  # n = 7 certifies nothing
def test_prefetched_copies_give_the_same_certificate_and_draw_each_chunk_once_ahead(tiny, tiny_image, tmp_path):
    """Forced on the CPU: the certificate is bit for bit the plain one, every chunk's copies are drawn once (the
    first in the caller's thread, the others in the prefetch's); a resumed run draws only the missing chunks."""
    settings = dict(sigma=0.2, n=7, n0=2, chunk_size=3, progress=False)
    plain = SmoothedAttribution(tiny, "grad", "input", cache=None, **settings).certify(tiny_image, "pf", ks=(50, 20))
    draws = []
    original = noise.gaussian_noise

    def counted(shape, seed, image_id, indices, *a, **k):
        draws.append((threading.current_thread().name, tuple(indices)))
        return original(shape, seed, image_id, indices, *a, **k)

    engine = SmoothedAttribution(tiny, "grad", "input", cache=None, **settings)
    engine.prefetch = True
    with pytest.MonkeyPatch.context() as m:
        m.setattr(noise, "gaussian_noise", counted)
        prefetched = engine.certify(tiny_image, "pf", ks=(50, 20))
    for field in ("labels", "majority", "counts"):
        np.testing.assert_array_equal(getattr(prefetched, field), getattr(plain, field))
    assert sorted(i for _, i in draws) == [(0, 1, 2), (3, 4, 5), (6,)]  # each chunk once, none past n
    assert {i: t for t, i in draws}[(0, 1, 2)] == threading.current_thread().name
    assert {t for t, i in draws if i != (0, 1, 2)} == {"certattr-copy-prefetch"}
    # a resumed run (chunk 0 cached, 1 and 2 not): chunk 1 is drawn where it is computed, 2 during 1's model pass
    cached = SmoothedAttribution(tiny, "grad", "input", cache=tmp_path, **settings)
    cached.certify(tiny_image, "pf", ks=(50, 20))
    lost = [f for f in tmp_path.rglob("chunk_*") if f.name.startswith(("chunk_00001", "chunk_00002"))]
    assert len(lost) == 2
    for f in lost:
        f.unlink()
    again = SmoothedAttribution(tiny, "grad", "input", cache=tmp_path, **settings)
    again.prefetch = True
    draws.clear()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(noise, "gaussian_noise", counted)
        resumed = again.certify(tiny_image, "pf", ks=(50, 20))
    np.testing.assert_array_equal(resumed.labels, plain.labels)
    assert draws == [(threading.current_thread().name, (3, 4, 5)), ("certattr-copy-prefetch", (6,))]


def test_a_failed_prefetch_is_raised_where_the_batch_is_taken():
    image = object()
    pf = CopyPrefetch()
    pf.start((image, "a", 0, 3), lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        pf.take((image, "a", 0, 3))
    pf.start((image, "a", 0, 3), lambda: "batch")
    assert pf.take((object(), "a", 0, 3)) is None  # another image (by identity): dropped
    assert pf.take((image, "a", 0, 3)) is None  # and gone
    pf.start((image, "a", 3, 3), lambda: "batch")
    assert pf.take((image, "a", 3, 3)) == "batch"
