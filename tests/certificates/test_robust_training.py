"""Levine et al.'s adversarial training for interpretation (certattr.certificates.robust_training)."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from certattr.certificates.robust_training import (AttackOutcome, DigitCNN, DigitSplits, SaliencyAttackSettings,
                                                   TrainingSettings, digit_model, digit_splits, random_perturbation,
                                                   regularised_loss, saliency_attack, saliency_maps, saliency_penalty,
                                                   train, trained_network)
from certattr.certificates.robust_training.network import one_thread
from certattr.certificates.robust_training.saliency_attack import predicted, topk_overlap, topk_sets
from certattr.certificates.robust_training.training import TrainedNetwork, WeightsCacheWarning, settings_key
from certattr.engine.validation import CertattrError
from certattr.methods import get_method

@pytest.fixture(autouse=True)
def _one_thread():
    """The digit network is tiny: one torch thread is many times faster than two on a busy machine."""
    with one_thread():
        yield


TINY = dict(size=8, channels=(3, 4), hidden=8, epochs=2, batch_size=64)


def _small(data: DigitSplits, n_train: int = 192, n_test: int = 64) -> DigitSplits:
    """The first digits of each split: enough to train a few steps, fast on a busy 2-core machine."""
    return DigitSplits(data.train_images[:n_train], data.train_labels[:n_train], data.test_images[:n_test],
                       data.test_labels[:n_test], data.size)


@pytest.fixture(scope="module")
def digits16():
    return digit_splits(16)


@pytest.fixture(scope="module")
def plain_net(digits16):
    """A network trained with plain cross-entropy (lambda = 0) on the 16x16 digits: about 90% test accuracy."""
    return train(TrainingSettings(lam=0.0, epochs=6), digits16).net


# --- the data and the maps ---------------------------------------------------------------------------------
def test_digits_are_stratified_grey_and_in_range():
    d = digit_splits(8)
    assert d.train_images.shape[1:] == (3, 8, 8) and len(d.train_images) + len(d.test_images) == 1797
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 2]) and 0 <= d.train_images.min() <= d.train_images.max() <= 1
    counts = torch.bincount(d.test_labels, minlength=10)
    assert counts.min() >= 44 and counts.max() <= 46  # 25% of each class (174-183 per class)
    assert d.fingerprint() == digit_splits(8).fingerprint() != digit_splits(8, seed=1).fingerprint()
    with pytest.raises(CertattrError, match="multiple of 4"):
        digit_splits(10)


def test_saliency_maps_equal_the_engine_grad_method(digits16):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = DigitCNN(16)
    model = digit_model(net)
    x = digits16.test_images[:6]
    y = model(x).argmax(dim=1)
    engine = get_method("grad").attribute(model, x, y, "input")  # captum Saliency, channel sum
    assert torch.allclose(engine, saliency_maps(net, x, y), rtol=1e-6, atol=1e-9)
    assert all(p.requires_grad for p in net.parameters())  # the model holds a frozen copy


def test_softplus_twin_approaches_the_relu_network_as_beta_grows(digits16):
    net = DigitCNN(16)
    x = digits16.test_images[:8]
    with torch.no_grad():
        gap = [float((net(x, beta) - net(x)).abs().max()) for beta in (1.0, 10.0, 100.0)]
    assert gap[0] > gap[1] > gap[2] and gap[2] < 0.05 * gap[0]


# --- the regulariser: a double backward, checked against finite differences ------------------------------
@pytest.mark.parametrize("activation", ["softplus", "relu"])
@pytest.mark.parametrize("part", ["penalty", "loss"])
def test_penalty_gradient_matches_finite_differences(activation, part):
    """The gradient w.r.t. the weights of the penalty (a double backward: the maps are input gradients) and of
    the whole Eq. 4.1 loss, against central differences along random directions of the weights (float64)."""
    torch.manual_seed(0)
    net = DigitCNN(8, (4, 6), 16, activation=activation).double()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    x_adv = torch.rand(3, 3, 8, 8, dtype=torch.float64)  # far enough for a ReLU net's activation pattern to change
    y = torch.tensor([0, 3, 7])
    lam = 0.7
    params = list(net.parameters())

    def value():
        if part == "penalty":
            return saliency_penalty(net, x, x_adv, y)
        return regularised_loss(net, x, y, lam, x_adv)[0]

    assert float(saliency_penalty(net, x, x_adv, y).detach()) > 0
    grads = torch.autograd.grad(value(), params, allow_unused=True)
    if part == "penalty":
        assert grads[-1] is None  # the output bias does not move an input gradient
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):  # directional derivatives along random directions of the weights
        direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        analytic = sum(float((g * v).sum()) for g, v in zip(grads, direction))
        h = 1e-6
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                for p, v in zip(params, direction):
                    p.add_(sign * h * v)
            values.append(float(value().detach()))
            with torch.no_grad():
                for p, v in zip(params, direction):
                    p.sub_(sign * h * v)
        numeric = (values[0] - values[1]) / (2 * h)
        assert abs(numeric) > 1e-6
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-10)


def test_lambda_zero_trains_exactly_like_plain_cross_entropy():
    settings = TrainingSettings(lam=0.0, **TINY)
    data = _small(digit_splits(8))
    got = train(settings, data).net
    # an independent plain cross-entropy loop: same initial weights, same seeded batch order, Adam
    net = settings.network()
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    order = torch.Generator().manual_seed(settings.seed)
    for _ in range(settings.epochs):
        perm = torch.randperm(len(data.train_images), generator=order)
        for start in range(0, len(perm), settings.batch_size):
            idx = perm[start:start + settings.batch_size]
            loss = F.cross_entropy(net(data.train_images[idx]), data.train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, a), b in zip(got.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    regularised = train(settings.replace(lam=1.0, attack_steps=1), data).net
    assert not torch.equal(regularised.fc2.weight, net.fc2.weight)


# --- the attack --------------------------------------------------------------------------------------------
def _attack_beats_control(attack, net, x, y, k, margin=0.1) -> bool:
    """The attack's mean top-k overlap is below the random control's (same norms per image) by ``margin``."""
    out = attack(net, x, y)
    control = random_perturbation(net, x, y, out.norm, k=k, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(control.norm, out.norm, rtol=1e-4, atol=1e-6)  # the control has the same norms
    return float(out.overlap.mean()) < float(control.overlap.mean()) - margin


def test_attack_lowers_overlap_more_than_random_and_a_no_op_does_not(plain_net, digits16):
    net, k = plain_net, 26
    x = digits16.test_images[:48]
    y = predicted(net, x)

    def real(net, x, y):
        return saliency_attack(net, x, y, eps=1.0, k=k, attack=SaliencyAttackSettings(steps=8),
                               generator=torch.Generator().manual_seed(0))

    def no_op(net, x, y):
        return AttackOutcome(x.clone(), torch.ones(len(x), dtype=torch.float64), torch.zeros(len(x)),
                             torch.ones(len(x), dtype=torch.bool))

    assert _attack_beats_control(real, net, x, y, k)
    assert not _attack_beats_control(no_op, net, x, y, k)


def test_attack_stays_in_the_ball_the_box_and_the_class(plain_net, digits16):
    net = plain_net
    x = digits16.test_images[:32]
    y = predicted(net, x)
    out = saliency_attack(net, x, y, eps=0.5, k=26, attack=SaliencyAttackSettings(steps=4, restarts=2),
                          generator=torch.Generator().manual_seed(1))
    assert float(out.norm.max()) <= 0.5 + 1e-5 and 0 <= float(out.adversarial.min()) <= float(out.adversarial.max()) <= 1
    assert torch.equal(predicted(net, out.adversarial), y)
    assert bool((out.norm[out.found] > 0.1).all())  # never left at x where a start was found (ties: later iterate)
    # the reported overlap is that of the classifier's maps, recomputed independently
    clean = saliency_maps(net, x, y).flatten(1)
    adv = saliency_maps(net, out.adversarial, y).flatten(1)
    for i in range(len(x)):
        top_clean = set(torch.sort(clean[i], descending=True, stable=True).indices[:26].tolist())
        top_adv = set(torch.sort(adv[i], descending=True, stable=True).indices[:26].tolist())
        assert float(out.overlap[i]) == pytest.approx(len(top_clean & top_adv) / 26)


def test_topk_sets_break_ties_by_index():
    maps = torch.tensor([[[1.0, 2.0], [2.0, 0.0]]])
    assert topk_sets(maps, 2).tolist() == [[1, 2]]
    assert topk_overlap(torch.tensor([[1, 3]]), maps).tolist() == [0.5]


# --- the weights cache ----------------------------------------------------------------------------------------
def test_cached_weights_are_reused_only_for_identical_settings(tmp_path):
    data = _small(digit_splits(8))
    base = TrainingSettings(lam=0.5, attack_steps=1, **TINY)
    first = trained_network(base, tmp_path, data)
    again = trained_network(TrainingSettings(lam=0.5, attack_steps=1, **TINY), tmp_path, data)
    assert not first.cached and again.cached
    for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()):
        assert torch.equal(a, b)
    assert again.history == first.history and again.test_accuracy == first.test_accuracy
    for change in ({"lam": 0.25}, {"epochs": 1}, {"seed": 1}, {"attack_eps": 0.5}, {"attack_beta": 5.0},
                   {"lr": 1e-3}, {"activation": "softplus"}):
        other = trained_network(base.replace(**change), tmp_path, data)
        assert not other.cached, change
    files = sorted((tmp_path / "robust_training").glob("*.pt"))
    assert len(files) == 8 and not list((tmp_path / "robust_training").glob(".*"))  # no temporary files left
    # other digits are another key; a file holding other settings under this key is retrained, with a warning
    assert settings_key(base, data.fingerprint()) != settings_key(base, _small(digit_splits(8, seed=1)).fingerprint())
    own = tmp_path / "robust_training" / f"{settings_key(base, data.fingerprint())}.pt"
    foreign = tmp_path / "robust_training" / f"{settings_key(base.replace(lam=0.25), data.fingerprint())}.pt"
    shutil.copyfile(foreign, own)
    with pytest.warns(WeightsCacheWarning, match="other settings"):
        redone = trained_network(base, tmp_path, data)
    assert not redone.cached and torch.equal(redone.net.fc2.weight, first.net.fc2.weight)
    own.write_bytes(b"truncated")
    with pytest.warns(WeightsCacheWarning, match="retraining"):
        assert not trained_network(base, tmp_path, data).cached
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trained_network(base, tmp_path, data).cached


def test_settings_are_checked():
    with pytest.raises(CertattrError, match="lam"):
        TrainingSettings(lam=-1)
    with pytest.raises(CertattrError, match="activation"):
        TrainingSettings(activation="tanh")
    assert TrainingSettings(size=16, attack_k_frac=0.1).attack_k() == 26


# --- the evaluation: scaled SmoothGrad against Sparsified SmoothGrad (Levine's Fig. 1(b)) --------------------------
def test_scaled_sum_encoding_is_the_mean_of_max_normalised_maps():
    from certattr.certificates.robust_training.evaluation import ScaledSum

    gen = np.random.default_rng(0)
    maps = gen.standard_normal((5, 4, 6)).astype(np.float32)
    maps[2] = 0.0  # a map of zeros stays zero
    arrays = ScaledSum().encode(maps, (4, 6))
    expected = sum(np.abs(m.astype(np.float64)) / np.abs(m).max() for i, m in enumerate(maps) if i != 2)
    assert np.allclose(ScaledSum().decode(arrays), expected, rtol=1e-12) and int(arrays["count"]) == 5
    ScaledSum().check(arrays, 5)
    with pytest.raises(ValueError):
        ScaledSum().check(arrays, 4)


def test_scaled_vs_sparsified_rows_match_independent_estimates(tmp_path):
    from certattr.certificates.robust_training.evaluation import scaled_vs_sparsified_rows
    from certattr.certificates.settings import SparsifiedSmoothing
    from certattr.certificates.sparsified_smoothgrad import certified_overlap, hoeffding_term, sparsified_smoothgrad
    from certattr.engine.config import SamplingConfig
    from certattr.engine.smoothing import SmoothedAttribution
    from certattr.models.testing import tiny_model

    model = tiny_model()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    kw = dict(smoothing=SparsifiedSmoothing(0.2, tau_frac=0.2), sampling=SamplingConfig(n=40, seed=3, chunk_size=8))
    rows = scaled_vs_sparsified_rows(model, image, "img", eta=0.9, k_frac=0.05, eps_list=[0.0, 0.01], cache=tmp_path,
                                     **kw)
    # Sparsified SmoothGrad by the package's own driver, no cache; scaled SmoothGrad from the engine's raw maps
    s_sparse = sparsified_smoothgrad(model, image, None, image_id="img", **kw).s_hat
    raw = SmoothedAttribution(model, "grad", "input", 0.2, n=40, seed=3, chunk_size=8,
                              progress=False).sample(image, "img")
    a = np.abs(raw.astype(np.float64))
    s_scaled = (a / a.reshape(40, -1).max(axis=1)[:, None, None]).mean(axis=0)
    d = s_sparse.size
    k = int(np.ceil(0.05 * d))
    c = hoeffding_term(40, d, 0.9)
    for row in rows:
        s = s_sparse if row["method"] == "Sparsified SmoothGrad" else s_scaled
        assert row["k"] == k and row["c"] == pytest.approx(c)
        assert row["certified_overlap"] == certified_overlap(s, k, row["eps"], 0.2, c) / k
        assert row["max_value"] == pytest.approx(float(s.max()), rel=1e-9)
    assert len(list(tmp_path.rglob("chunk_*scaledsum*"))) == 5  # stored beside the top-k sets, one pass


def test_paper_certificate_rows_go_through_the_engine(digits16, plain_net, tmp_path):
    from certattr.certificates.robust_training.evaluation import paper_certificate_rows
    from certattr.engine.config import CertConfig, SamplingConfig

    trained = TrainedNetwork(plain_net, TrainingSettings(lam=0.0))
    rows = paper_certificate_rows(trained, digits16, sigma=0.25, n_images=2, sampling=SamplingConfig(n=60, chunk_size=10),
                                  cert=CertConfig(n0=5, ks=(50, 10)), cache=tmp_path)
    assert len(rows) == 4 and {r["K"] for r in rows} == {50.0, 10.0}
    for r in rows:
        assert r["certified_1"] + r["certified_0"] + r["abstain"] == pytest.approx(1.0)
    again = paper_certificate_rows(trained, digits16, sigma=0.25, n_images=2, sampling=SamplingConfig(n=60, chunk_size=10),
                                   cert=CertConfig(n0=5, ks=(50, 10)), cache=tmp_path)  # from the cache: the same
    assert again == rows
