"""certattr.book.plans.certify_plan: a chapter certifies the works of its plan; the same samples at several tau; the
methods of one layer and sigma share each image's gradient; settings are checked before any work."""
import numpy as np
import pytest
import torch

from certattr.book.plans import ModelPool, PlanBuilder, RunSpec, certify_plan, execution_order
from certattr.engine.certify import certify_maps
from certattr.engine.config import CertConfig
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.validation import CertattrError
from certattr.evaluation.jobs import Job
from certattr.models.testing import tiny_model

CERT = CertConfig(n0=5, alpha=0.05, tau=0.75, ks=[50, 20])


def plan_of(net, jobs, methods, sigmas, cache_dir, layers=("input",)):
    """The plan a chapter's planner would build for ``jobs`` (with the model itself as the pool's only model)."""
    params = {"weights": "pretrained", "seed": 2, "chunk_size": 10, "n": 60, "ks": [50, 20],
              "cache_dir": None if cache_dir is None else str(cache_dir)}
    b = PlanBuilder("test", params, ModelPool("cpu", loader=lambda *key: net), placeholders=False)
    b.add(net, jobs, RunSpec(methods, list(layers), sigmas))
    return b.plan()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def jobs():
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(5))
    return [Job("a", "img-a", image, 3)]


def _equal(a, b):
    for name in ("labels", "majority", "counts", "pvalues", "mean_sparsified"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.tau, a.alpha, a.n, a.n0, a.correction, a.ks, a.metadata) == \
        (b.tau, b.alpha, b.n, b.n0, b.correction, b.ks, b.metadata)


def test_the_same_samples_certify_at_each_tau_without_resampling(model, jobs, tmp_path):
    plan = plan_of(model, jobs, ["grad"], [0.25], tmp_path)
    first = certify_plan(plan, CERT, n=60)
    key = (model.name, "a", "grad", "input", 0.25)
    assert list(first.certificates) == [key] and not first.undefined[model.name]
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    try:
        again = certify_plan(plan, CERT, n=60, taus=[0.6, 0.7])
    finally:
        for h in hooks:
            h.remove()
    assert not calls, "certifying at other tau ran the model although the cache holds the samples"
    assert sorted(again.at_tau) == [key + (0.6,), key + (0.7,)]
    _equal(again.certificates[key], first.certificates[key])
    # each is the certificate of the sampled maps at that tau (as certify_maps gives it)
    maps = SmoothedAttribution(model, "grad", "input", 0.25, n=60, n0=5, seed=2, chunk_size=10,
                               progress=False).sample(jobs[0].tensor, "img-a", 3)
    meta = first.certificates[key].metadata
    for tau in (0.6, 0.7):
        expected = certify_maps(maps, [50, 20], sigma=0.25, n0=5, tau=tau, alpha=0.05, metadata=meta)
        _equal(again.at_tau[key + (tau,)], expected)
    abstained = [(again.at_tau[key + (t,)].labels == -1).sum() for t in (0.6, 0.7)]
    assert abstained[0] < abstained[1] < 2 * 1024  # some certify at 0.6, fewer at 0.7


def test_taus_are_certified_only_at_the_sigmas_asked(model, jobs, tmp_path):
    plan = plan_of(model, jobs, ["grad"], [0.2, 0.3], tmp_path)
    done = certify_plan(plan, CERT, n=60, taus=[0.6], tau_sigmas=[0.2])
    assert sorted(done.at_tau) == [(model.name, "a", "grad", "input", 0.2, 0.6)]


@pytest.mark.parametrize("cert, taus, message", [
    (lambda: CertConfig(tau=0.3), (), "tau=0.3 is not allowed"),
    (lambda: CERT, [1.5], "tau=1.5 is not allowed"),
    (lambda: CertConfig(correction="sidak"), (), "correction='sidak' is unknown"),
])
def test_settings_are_checked_before_any_work(model, jobs, cert, taus, message):
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *a: calls.append(1)) for m in model.modules()]
    try:
        with pytest.raises(CertattrError, match=message):
            certify_plan(plan_of(model, jobs, ["grad"], [0.25], None), cert(), n=60, taus=taus)
    finally:
        for h in hooks:
            h.remove()
    assert not calls


def test_methods_of_one_layer_and_sigma_share_each_images_gradient_whatever_the_number_of_images():
    """Grad and IxG read one input gradient per noisy chunk. With a gradient memo that holds one image's chunks
    only (as the real memo holds a few 224x224 images'), the plan's works must be certified image by image for
    the second method to find the first one's gradients: every chunk is a miss for Grad and a hit for IxG. The
    certificates equal those of each method alone."""
    from certattr.engine.memo import BoundedMemo

    net = tiny_model(seed=4)
    images = [Job(f"k{i}", f"img-{i}", torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(10 + i)), 3)
              for i in range(3)]
    chunk_bytes = 10 * 3 * 32 * 32 * 4
    net.__dict__["_gradient_memo"] = BoundedMemo(lambda g: g.numel() * g.element_size(), 6 * chunk_bytes)
    plan = plan_of(net, images, ["grad", "ixg"], [0.2], None)
    assert [(w.image_id, w.method) for w in execution_order(plan.works)] == [
        (f"img-{i}", m) for i in range(3) for m in ("grad", "ixg")]
    certs = certify_plan(plan, CERT, n=60).certificates
    memo = net.gradient_memo()
    assert (memo.misses, memo.hits) == (3 * 6, 3 * 6)  # 3 images x 6 chunks of 10: computed once, read once
    assert sorted(certs) == sorted((net.name, j.key, m, "input", 0.2) for m in ("grad", "ixg") for j in images)
    for method in ("grad", "ixg"):
        memo.clear()
        alone = certify_plan(plan_of(net, images, [method], [0.2], None), CERT, n=60).certificates
        for key, cert in alone.items():
            _equal(cert, certs[key])
