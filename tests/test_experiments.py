"""certattr.evaluation.experiments: certifying many configurations, the same samples at several tau."""
import numpy as np
import pytest
import torch

from certattr.engine.certify import certify_maps
from certattr.engine.config import DEFAULT_CERT, DEFAULT_SAMPLING
from certattr.evaluation.experiments import Job, certify_jobs
from certattr.engine.smoothing import SmoothedAttribution
from certattr.models.testing import tiny_model
from certattr.engine.validation import CertattrError


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def jobs(model):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(5))
    return [Job("a", "img-a", image, 3)]


SETTINGS = dict(n=60, n0=5, alpha=0.05, seed=2, chunk_size=10)


def _equal(a, b):
    for name in ("labels", "majority", "counts", "pvalues", "mean_sparsified"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.tau, a.alpha, a.n, a.n0, a.correction, a.ks, a.metadata) == \
        (b.tau, b.alpha, b.n, b.n0, b.correction, b.ks, b.metadata)


def test_certify_jobs_certifies_the_same_samples_at_each_tau_without_resampling(model, jobs, tmp_path):
    ks = [50, 20]
    certificates, undefined = certify_jobs(model, jobs, ["grad"], ["input"], [0.25], ks, tau=0.75,
                                           cache_dir=tmp_path, **SETTINGS)
    assert not undefined and list(certificates) == [("a", "grad", "input", 0.25)]
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    try:
        tau_out = {}
        again, _ = certify_jobs(model, jobs, ["grad"], ["input"], [0.25], ks, tau=0.75, cache_dir=tmp_path,
                                taus=[0.6, 0.7], tau_out=tau_out, **SETTINGS)
    finally:
        for h in hooks:
            h.remove()
    assert not calls, "certifying at other tau ran the model although the cache holds the samples"
    assert sorted(tau_out) == [("a", "grad", "input", 0.25, 0.6), ("a", "grad", "input", 0.25, 0.7)]
    _equal(again[("a", "grad", "input", 0.25)], certificates[("a", "grad", "input", 0.25)])
    # each is the certificate of the sampled maps at that tau (as certify_maps gives it)
    maps = SmoothedAttribution(model, "grad", "input", 0.25, n=60, n0=5, seed=2, chunk_size=10,
                               progress=False).sample(jobs[0].tensor, "img-a", 3)
    meta = certificates[("a", "grad", "input", 0.25)].metadata
    for tau in (0.6, 0.7):
        expected = certify_maps(maps, ks, sigma=0.25, n0=5, tau=tau, alpha=0.05, metadata=meta)
        _equal(tau_out[("a", "grad", "input", 0.25, tau)], expected)
    abstained = [(tau_out[("a", "grad", "input", 0.25, t)].labels == -1).sum() for t in (0.6, 0.7)]
    assert abstained[0] < abstained[1] < 2 * 1024  # some certify at 0.6, fewer at 0.7


@pytest.mark.parametrize("kw, message", [
    (dict(tau=0.3), "tau=0.3 is not allowed"),
    (dict(taus=[1.5], tau_out={}), "tau=1.5 is not allowed"),
    (dict(n=10, n0=10), "n0=10 is not allowed with n=10"),
    (dict(correction="sidak"), "correction='sidak' is unknown"),
    (dict(chunk_size=0), "chunk_size=0 is not allowed"),
])
def test_certify_jobs_checks_its_settings_before_any_work(model, jobs, kw, message):
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in model.modules()]
    try:
        with pytest.raises(CertattrError, match=message):
            certify_jobs(model, jobs, ["grad"], ["input"], [0.25], [50], **kw)
    finally:
        for h in hooks:
            h.remove()
    assert not calls


def test_the_defaults_are_the_configs():
    import inspect

    from certattr.certificates import attack
    from certattr.evaluation import experiments

    for fn in (experiments.certify_jobs, experiments.certify_many, attack.attack_certified):
        params = inspect.signature(fn).parameters
        for name in ("n", "n0", "tau", "alpha", "correction", "seed", "chunk_size"):
            default = DEFAULT_SAMPLING if name in DEFAULT_SAMPLING.field_names() else DEFAULT_CERT
            assert params[name].default == getattr(default, name), (fn.__name__, name)


def test_methods_of_one_layer_and_sigma_share_each_images_gradient_whatever_the_number_of_images():
    """Grad and IxG read one input gradient per noisy chunk. With a gradient memo that holds one image's chunks
    only (as the real memo holds a few 224x224 images'), certify_jobs must certify the methods image by image for
    the second to find the first one's gradients: every chunk is a miss for Grad and a hit for IxG. The
    certificates equal those of each method alone and come back in the configs' order."""
    from certattr.engine.memo import BoundedMemo

    net = tiny_model(seed=4)
    images = [Job(f"k{i}", f"img-{i}", torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(10 + i)), 3)
              for i in range(3)]
    chunk_bytes = 10 * 3 * 32 * 32 * 4
    net.__dict__["_gradient_memo"] = BoundedMemo(lambda g: g.numel() * g.element_size(), 6 * chunk_bytes)
    certs, _ = certify_jobs(net, images, ["grad", "ixg"], ["input"], [0.2], [50, 20], **SETTINGS)
    memo = net.gradient_memo()
    assert (memo.misses, memo.hits) == (3 * 6, 3 * 6)  # 3 images x 6 chunks of 10: computed once, read once
    assert list(certs) == [(j.key, m, "input", 0.2) for m in ("grad", "ixg") for j in images]
    for method in ("grad", "ixg"):
        memo.clear()
        alone, _ = certify_jobs(net, images, [method], ["input"], [0.2], [50, 20], **SETTINGS)
        for key, cert in alone.items():
            _equal(cert, certs[key])
