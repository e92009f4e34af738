"""Golden values recorded before the engine was reorganised (issue 21): the sample-cache keys, certificates and
related estimates users already have on disk or in print must stay bit for bit the same.

The expected values are literal hex digests computed by the engine as it was before the change; any change to
what determines a cache key (the engine's ``identity``) or to how samples are drawn, sparsified, counted and
tested fails here.
"""
import hashlib
import warnings

import numpy as np
import pytest

from certattr.engine.cache import cache_key
from certattr.engine.noise import UniformBall
from certattr.engine.smoothing import SmoothedAttribution

KEYS = [  # (method, layer, noise, n, seed, chunk_size, target) -> cache key
    (("gradcam", "final", 0.25, 40, 0, 10, 3), "11deaab5139eaa3ffe0c12b71e92ac38e5ccc7cd3e6857c8b140f91ab4267516"),
    (("grad", "input", 0.25, 30, 3, 7, 1), "278b5041c0366fd76bc05f56ab6e7e5436c40df44f2668c999c9bf2c0e324870"),
    (("ixg", "final", "ball0.5", 20, 1, 10, 5), "817b6308d65d7cab6d593b1da246c3d474f4d21f729dc8b4c86a5d3e8cedda5f"),
    (("ixg", "input", 0.1, 100, 0, 25, 0), "c4925248339feb22972f8278df30b556450693705bee879633621ab7fe4e796d"),
]

CERTS = [  # (method, layer, n, chunk_size, seed, certify settings) -> (digest of the arrays, certified pixels)
    (("grad", "input", 40, 10, 0, dict(ks=(50, 25, 5), tau=0.6, alpha=0.05)),
     ("50425aaf096c2137f8679aa45574950af1f9bffba82e97b6b0e1bebfae7b3761", 1432)),
    (("gradcam", "final", 35, 10, 1, dict(ks=(30, 10), tau=0.6, alpha=0.05, correction="holm")),
     ("ff6321587a0cca57b3acf138f3596bc924f005ba4cd23eba6ab5b63693a6bd3d", 805)),
    (("ixg", "final", 50, 20, 2, dict(ks=(50,), tau=0.75, alpha=0.05, n0=5)),
     ("2c0c9b23ec53987cd112813bc4f2bc64181fd239c47fb74ed312bbce69e89bb7", 4)),
]


def _sha(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _digest(cert) -> str:
    h = hashlib.sha256()
    for a in (cert.labels, cert.majority, cert.counts, cert.pvalues, cert.mean_sparsified, cert.radii):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("setting,expected", KEYS)
def test_cache_keys_unchanged(tiny, tiny_image, setting, expected):
    method, layer, noise, n, seed, chunk_size, target = setting
    noise = UniformBall(0.5) if noise == "ball0.5" else noise
    engine = SmoothedAttribution(tiny, method, layer, noise, n=n, seed=seed, chunk_size=chunk_size, progress=False)
    assert cache_key(engine.identity(tiny_image, "golden", target)) == expected


@pytest.mark.parametrize("setting,expected", CERTS)
def test_certificates_unchanged(tiny, tiny_image, setting, expected, tmp_path):
    method, layer, n, chunk_size, seed, settings = setting
    for cache in (None, tmp_path, tmp_path):  # computed; computed and stored; read back from the cache
        engine = SmoothedAttribution(tiny, method, layer, 0.25, n=n, seed=seed, chunk_size=chunk_size, cache=cache,
                                     progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = engine.certify(tiny_image, "golden", 3, **settings)
        assert (_digest(cert), int((cert.labels != -1).sum())) == expected


def test_related_estimates_unchanged(tiny, tiny_image):
    from certattr.certificates.cosine import smooth_uniform
    from certattr.certificates.settings import MethodAtLayer, SparsifiedSmoothing, UniformSmoothing
    from certattr.certificates.sparsified_smoothgrad import sparsified_smoothgrad
    from certattr.engine.config import SamplingConfig

    grad, smoothing = MethodAtLayer("grad", "input"), SparsifiedSmoothing(0.25, tau_frac=0.1)
    ssg = sparsified_smoothgrad(tiny, tiny_image, 3, attribution=grad, smoothing=smoothing,
                                sampling=SamplingConfig(n=15, seed=2, chunk_size=10))
    assert _sha(ssg.s_hat) == "b5df62797e2faac0662ff157cb58f682b61489db1121c0dbccdeaead9f89d253"
    one = sparsified_smoothgrad(tiny, tiny_image, 3, attribution=grad, smoothing=smoothing,
                                sampling=SamplingConfig(n=1, seed=2, chunk_size=10))
    assert _sha(one.s_hat) == "d70fa47799dd572f7b6ea0c17af62c4ea8e8d0c59bbb9ebb5bb68f88659804e0"
    cosine = smooth_uniform(tiny, tiny_image, 3, attribution=MethodAtLayer("ixg", "final"),
                            smoothing=UniformSmoothing(0.5), sampling=SamplingConfig(n=13, seed=1, chunk_size=5))
    assert _sha(cosine.h_hat) == "68bdcfa39f2fcffd01d958c738413ad36b7c93673903bedac98e968835c99ccc"
    # the attack's smoothed top-K membership: recorded from certificates.attack.smoothed_membership(k=25, n=12)
    engine = SmoothedAttribution(tiny, "grad", "input", 0.25, n=12, seed=4, chunk_size=5, progress=False)
    member = engine.top_k_frequencies(tiny_image, "golden", 3, [25])[0]
    assert _sha(member) == "1c31b748c1acb9f8a0982f6a2ae5e2026f53c2cee00f32daa2e1c60b4d20d01e"
