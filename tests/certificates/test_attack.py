"""l2 attacks on attributions, on the tiny model: constraints, class kept, not vacuous, certificates respected."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from certattr.certificates.attack import (DEFAULT_ATTACK_SAMPLING, AttackSettings, PixelAttackSettings, TargetSettings,
                                          attack_certified, attack_cosine, attack_topk, differentiable_maps,
                                          predicted_class, smooth_surrogate)
from certattr.certificates.settings import (MethodAtLayer, PixelCertificateSettings, SparsifiedSmoothing,
                                            UniformSmoothing)
from certattr.engine.config import CertConfig, SamplingConfig
from certattr.engine.statistics import certified_radius
from certattr.methods import get_method
from certattr.models.testing import tiny_model
from certattr.engine.validation import CertattrError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def _check_constraints(result, model, x, eps):
    delta = result.x_adv.double() - x.double()
    assert float(delta.norm()) <= eps  # exactly, in float64
    assert result.delta_norm == pytest.approx(float(delta.norm()))
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1
    assert int(predicted_class(model, result.x_adv[None])[0]) == int(predicted_class(model, x[None])[0])
    assert result.label_adv == result.label


def test_surrogate_swaps_relus_and_keeps_the_original(model, image):
    sur = smooth_surrogate(model, beta=50.0)
    assert sur.swapped == 3  # stem, block (shared by two calls), last
    assert not any(isinstance(m, nn.ReLU) for m in sur.modules())
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(sur(image[None]), model(image[None]), atol=0.05)


@pytest.mark.parametrize("method", ["grad", "ixg"])
@pytest.mark.parametrize("layer", ["input", "final"])
def test_differentiable_maps_equal_the_registry(model, image, method, layer):
    batch = torch.stack([image, image.flip(2)])
    target = torch.tensor([1, 4])
    ours = differentiable_maps(model, batch, target, method, layer)
    ref = get_method(method).attribute(model, batch, target, layer)
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-5, atol=1e-7)


def test_topk_attack_on_raw_map_is_not_vacuous_and_respects_the_constraints(model, image):
    eps = 1.0
    settings = dict(attribution=MethodAtLayer("grad", "input"), attack=AttackSettings(steps=12, restarts=2),
                    sampling=SamplingConfig(seed=0), image_id="img", progress=False)
    res = attack_topk(model, image, k=100, eps=eps, **settings)
    _check_constraints(res, model, image, eps)
    assert res.before == 1.0
    assert res.after < 0.8  # the overlap of the raw gradient map really drops
    again = attack_topk(model, image, k=100, eps=eps, **settings)
    assert torch.equal(again.x_adv, res.x_adv)  # seeded and deterministic
    assert len(res.loss_history) == 2 and len(res.loss_history[0]) == 12


def test_projection_stays_on_the_sphere_despite_float32_rounding():
    """At ImageNet size a candidate projected to exactly eps can round (float32) to just outside the ball; the
    projection must still return a point near the sphere, not fall back to x (regression: it used to)."""
    from certattr.certificates.attack.loop import AttackLoop

    att = AttackLoop.__new__(AttackLoop)
    gen = torch.Generator().manual_seed(0)
    att.x = 0.25 + 0.5 * torch.rand(3, 224, 224, generator=gen)  # away from the box: no clipping
    att.x64 = att.x.double()
    for eps in (0.0331, 0.1011734625, 1.0):
        att.eps = eps
        for trial in range(5):
            z = torch.randn(3, 224, 224, generator=gen, dtype=torch.float64)
            out = att.project(att.x64 + z * (1.1 * eps / float(z.norm())))
            norm = float((out.double() - att.x64).norm())
            assert 0.999 * eps <= norm <= eps


def _near_boundary(model, x):
    """A point on the segment from x to the black image, just on x's side of the decision boundary."""
    label = int(predicted_class(model, x[None])[0])
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if int(predicted_class(model, ((1 - mid) * x)[None])[0]) == label:
            lo = mid
        else:
            hi = mid
    assert hi < 1  # the black image has another class
    return (1 - lo) * x


def test_backtracking_keeps_the_class_near_the_decision_boundary(model, image):
    xb = _near_boundary(model, image)
    logits = model(xb[None])[0].sort(descending=True).values
    assert float(logits[0] - logits[1]) < 1e-3  # a step of any size could change the class
    for eps in (0.5, 2.0):
        res = attack_topk(model, xb, k=50, eps=eps, attack=AttackSettings(steps=6, restarts=2, step_size=1.0),
                          sampling=SamplingConfig(seed=1), progress=False)
        _check_constraints(res, model, xb, eps)
        assert res.details["backtracks"] + res.details["init_halvings"] > 0  # backtracking was needed
        assert res.after < res.before
    res0 = attack_topk(model, image, k=50, eps=0.0, attack=AttackSettings(steps=2, restarts=1), progress=False)
    assert torch.equal(res0.x_adv, image) and res0.after == res0.before == 1.0


def test_smoothed_topk_and_cosine_attacks_respect_the_constraints(model, image):
    eps = 0.5
    attack = AttackSettings(n_attack=4, steps=3, restarts=1)
    res = attack_topk(model, image, k=50, eps=eps, smoothing=SparsifiedSmoothing(0.1),
                      sampling=DEFAULT_ATTACK_SAMPLING.replace(n=16), attack=attack, progress=False)
    _check_constraints(res, model, image, eps)
    assert 0 <= res.after <= 1
    res = attack_cosine(model, image, eps=eps, smoothing=UniformSmoothing(2.0), T=0.99,
                        sampling=DEFAULT_ATTACK_SAMPLING.replace(n=16), attack=attack, progress=False)
    _check_constraints(res, model, image, eps)
    assert -1 <= res.after <= 1 and res.before == pytest.approx(1.0) and "below_T" in res.details
    raw = attack_cosine(model, image, eps=1.0, attack=AttackSettings(steps=8, restarts=1), progress=False)
    _check_constraints(raw, model, image, 1.0)
    assert raw.after < raw.before  # the cosine of the raw map drops too


# --- the certified-pixel attack: strong where breaking is possible, harmless inside R ------------------------
SIGMA, TAU, ALPHA, K_ATT = 0.25, 0.75, 0.001, 25.0
R_TINY = certified_radius(SIGMA, TAU)


@pytest.fixture(scope="module")
def clean_cert(model, image):
    from certattr.engine.smoothing import SmoothedAttribution

    engine = SmoothedAttribution(model, "ixg", "final", SIGMA, n=100, n0=10, seed=0, chunk_size=10, progress=False)
    label = int(predicted_class(model, image[None])[0])
    return engine.certify(image, "img", label, ks=(K_ATT,), tau=TAU, alpha=ALPHA)


#: the settings of clean_cert, and the attack's
CERTIFICATE = PixelCertificateSettings(MethodAtLayer("ixg", "final"), SIGMA,
                                       SamplingConfig(n=100, seed=0, chunk_size=10),
                                       CertConfig(n0=10, tau=TAU, alpha=ALPHA, ks=(K_ATT,)))
PIXEL_ATTACK = PixelAttackSettings(n_attack=4, steps=20, restarts=1)


def _pixel_attack(model, image, clean, eps, attack=PIXEL_ATTACK, targets=TargetSettings(n_targets=32, eval_n=400)):
    return attack_certified(model, image, eps=eps, certificate=CERTIFICATE, attack=attack, targets=targets,
                            image_id="img", clean=clean, progress=False)


def test_targets_are_the_certified_pixels_nearest_the_boundary(clean_cert):
    from certattr.certificates.attack import choose_targets

    cert = clean_cert
    targets = choose_targets(cert, K_ATT, "certified", 32)
    labels, counts = cert.labels[0].ravel(), cert.counts[0].ravel()
    certified = np.flatnonzero(labels != -1)
    assert len(targets) == 32 and (labels[targets] != -1).all()
    assert counts[targets].max() <= np.sort(counts[certified])[31]  # the 32 smallest counts (ties: any order)
    unc = choose_targets(cert, K_ATT, "uncertified", 32)
    clear = np.flatnonzero((labels == -1) & (3 * counts >= 2 * 90))
    assert (labels[unc] == -1).all() and (3 * counts[unc] >= 180).all() and len(set(unc.tolist())) == 32
    assert counts[unc].max() <= np.sort(counts[clear])[31]
    # extra fresh samples re-rank the ties: the target with the fewest agreeing samples in all comes first
    extra = np.arange(cert.n_pixels) % 7
    ranked = choose_targets(cert, K_ATT, "certified", 5, extra_agree=extra)
    total = counts + extra
    assert total[ranked[0]] == total[certified].min() and (np.diff(total[ranked]) >= 0).all()
    # ties are compact: on a certificate where all certified pixels tie, the targets are those nearest the
    # first one (the anchor)
    from certattr.engine.certificate import Certificate

    shape = (1, 12, 12)
    lab = np.where(np.random.default_rng(1).random(shape) < 0.5, 1, 0).astype(np.int8)
    tied = Certificate(labels=lab, majority=lab, counts=np.full(shape, 88, np.int32), pvalues=np.zeros(shape),
                       mean_sparsified=lab.astype(np.float32), ks=(K_ATT,), sigma=SIGMA, tau=TAU, alpha=ALPHA,
                       n=100, n0=10, correction="bonferroni")
    t = choose_targets(tied, K_ATT, "certified", 10)
    d2 = (np.arange(144) // 12 - t[0] // 12) ** 2 + (np.arange(144) % 12 - t[0] % 12) ** 2
    assert d2[t].max() <= np.delete(d2, t).min()


def test_attack_flips_the_plain_map_at_a_small_eps(model, image, clean_cert):
    """The plain (unsmoothed) top-K map, at its pixels nearest the threshold: at eps = R/3 the attack flips
    at least a third of the 32 targets, a random perturbation of the same norm (almost) none. A no-op
    attack flips none."""
    res = _pixel_attack(model, image, clean_cert, R_TINY / 3, attack=PIXEL_ATTACK.replace(smoothed=False, n_attack=1))
    _check_constraints(res, model, image, R_TINY / 3)
    att, rnd = res.details["attacked"], res.details["random"]
    assert att["flipped"] >= 11 and att["flipped"] >= rnd["flipped"] + 8, (att["flipped"], rnd["flipped"])


def test_attack_flips_the_smoothed_map_beyond_the_radius(model, image, clean_cert):
    """Far beyond R (30 R), the smoothed labels of the targeted certified pixels (estimated with 400 fresh
    samples, 4x the certification's) flip for at least 40% of the targets with a significant test, where
    a random perturbation of the same norm flips none; a no-op attack flips none."""
    res = _pixel_attack(model, image, clean_cert, 30 * R_TINY)
    _check_constraints(res, model, image, 30 * R_TINY)
    att, rnd = res.details["attacked"], res.details["random"]
    assert att["confidently_flipped"] >= 13 and rnd["flipped"] <= 2, (att, rnd["flipped"])
    assert res.details["target_radii"].min() >= R_TINY  # every target certifies at least R (Bonferroni)


def test_attack_inside_the_radius_flips_no_certified_pixel(model, image, clean_cert):
    """At eps = R (and R/2) no targeted certified pixel is confidently flipped: if the clean certificate is
    right (probability >= 1 - alpha) every target keeps P(label) >= 1/2 at ||delta|| <= R, so a confident
    flip (one-sided binomial test at level alpha / 32) has probability <= alpha + alpha = 0.002. The same
    attack at 30 R does flip them (test above), so this is not the no-op's pass."""
    for eps in (R_TINY / 2, R_TINY):
        res = _pixel_attack(model, image, clean_cert, eps)
        _check_constraints(res, model, image, eps)
        assert res.details["within_radius"] and res.details["failure_probability"] == pytest.approx(2 * ALPHA)
        assert res.details["attacked"]["confidently_flipped"] == 0
        assert res.delta_norm > 0.99 * eps  # the attack used its budget


def test_attack_certified_uses_the_pipeline_engine_and_its_cache(model, image, tmp_path):
    """The clean certificate is SmoothedAttribution.certify's (read from its cache); at eps = 0 nothing
    moves and the evaluation at x + 0 is the evaluation at x."""
    from certattr.engine.smoothing import SmoothedAttribution

    kw = dict(ks=(50,), tau=0.75, alpha=0.001)
    engine = SmoothedAttribution(model, "grad", "input", 0.25, n=100, n0=10, seed=0, chunk_size=10, cache=tmp_path,
                                 progress=False)
    label = int(predicted_class(model, image[None])[0])
    ref = engine.certify(image, "img", label, **kw)
    certificate = PixelCertificateSettings(MethodAtLayer("grad", "input"), 0.25,
                                           SamplingConfig(n=100, seed=0, chunk_size=10), CertConfig(**kw))
    res = attack_certified(model, image, eps=0.0, certificate=certificate,
                           attack=PixelAttackSettings(steps=1, restarts=1),
                           targets=TargetSettings(eval_n=50, eval_clean=True), image_id="img", cache=tmp_path,
                           progress=False)
    clean = res.details["clean_certificate"]
    assert (clean.labels == ref.labels).all() and (clean.counts == ref.counts).all()
    assert torch.equal(res.x_adv, image)
    np.testing.assert_array_equal(res.details["attacked"]["agree"], res.details["clean"]["agree"])
    np.testing.assert_array_equal(res.details["random"]["agree"], res.details["clean"]["agree"])


@pytest.mark.parametrize("call, name", [
    (lambda m, x: attack_topk(m, x, k=10, eps=-0.1, progress=False), "eps=-0.1"),
    (lambda m, x: attack_topk(m, x, k=10, eps=0.1, attack=AttackSettings(steps=0), progress=False), "steps=0"),
    (lambda m, x: attack_topk(m, x, k=0, eps=0.1, attack=AttackSettings(steps=1), progress=False), "k=0"),
    (lambda m, x: attack_topk(m, x, k=5000, eps=0.1, attack=AttackSettings(steps=1), progress=False), "k=5000"),
    (lambda m, x: attack_cosine(m, x, eps=0.1, smoothing=UniformSmoothing(0.0), progress=False), "r=0.0"),
    (lambda m, x: attack_cosine(m, x, eps=0.1, T=1.5, progress=False), "T=1.5"),
    (lambda m, x: attack_topk(m, x, k=10, eps=0.1, attribution=MethodAtLayer("gradcam", "input"), progress=False),
     "method='gradcam'"),
    (lambda m, x: attack_certified(m, x, eps=0.1, targets=TargetSettings(eval_seed=0), progress=False), "eval_seed=0"),
    (lambda m, x: attack_certified(m, x, eps=0.1, targets=TargetSettings(group="all"), progress=False), "group='all'"),
    (lambda m, x: attack_certified(m, x, eps=0.1, certificate=CERTIFICATE.replace(cert=CertConfig(ks=(50,))),
                                   targets=TargetSettings(k=25), progress=False), "k=25"),
    (lambda m, x: attack_topk(m, x, k=10, eps=0.1, attack=AttackSettings(beta=0), progress=False), "beta=0"),
])
def test_parameters_are_validated(model, image, call, name):
    with pytest.raises(CertattrError) as err:
        call(model, image)
    assert name in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("k, n", [(50, 37), (12.5, 20)])
def test_smoothed_membership_is_the_mean_top_k_membership_of_the_samples(model, image, tmp_path, k, n):
    """smoothed_membership reads the engine's certificate (mean_sparsified); it equals, bit for bit, the mean
    over the n raw sampled maps of their top-K membership in float64 (what it computed before from the maps)."""
    import warnings

    from certattr.certificates.attack import smoothed_membership
    from certattr.engine.smoothing import SmoothedAttribution
    from certattr.engine.sparsify import sparsify

    label = int(predicted_class(model, image[None])[0])
    kw = dict(attribution=MethodAtLayer("grad", "input"), k=k, sigma=0.25,
              sampling=SamplingConfig(n=n, seed=3, chunk_size=10), image_id="img")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the certificate's warnings (n too small to certify) are not shown
        got = smoothed_membership(model, image, label, cache=tmp_path, **kw)
    maps = SmoothedAttribution(model, "grad", "input", 0.25, n=n, n0=1, seed=3, chunk_size=10,
                               progress=False).sample(image, "img", label)
    expected = sparsify(maps, [k])[0].mean(axis=0, dtype=np.float64)
    assert got.dtype == np.float64 and got.shape == image.shape[1:]
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.mean() < 1


# --- the sweep over eps / R: the chapter's experiment, one call ---------------------------------------------
SWEEP_ATTACK = PixelAttackSettings(steps=20, n_attack=4, restarts=1)
SWEEP_TARGETS = TargetSettings(k=K_ATT, n_targets=8, eval_n=60, select_n=20)


def _sweep(model, image, clean_cert, eps_multiples, targets=SWEEP_TARGETS):
    from certattr.certificates.attack import pixel_attack_sweep

    return pixel_attack_sweep(model, image, clean_cert, certificate=CERTIFICATE, eps_multiples=eps_multiples,
                              attack=SWEEP_ATTACK, targets=targets, image_id="img")


@pytest.fixture(scope="module")
def sweep(model, image, clean_cert):
    return _sweep(model, image, clean_cert, [1, 30, 1.0])


def test_sweep_has_one_row_per_eps_group_and_perturbation(sweep, clean_cert):
    """eps = 0 is added and duplicates merge: at 0 one control row (x itself) per group, at each eps > 0 one
    attack and one control row per group; the targets are the certificate's labels at K, the attack stays in
    its ball and the control has norm eps."""
    table = sweep.table
    assert sweep.eps_multiples == [0.0, 1.0, 30.0] and sweep.radius == R_TINY
    assert len(table) == 2 * 3 + 2 * 2
    counts = table.groupby(["ε / R", "targets", "perturbation"]).size()
    assert (counts == 1).all()
    assert set(table.loc[table["ε / R"] == 0, "perturbation"]) == {"none (x)"}
    for group in ("certified", "uncertified"):
        rows = table[table["targets"] == group]
        assert (rows["of"] == len(sweep.targets[group])).all() and len(sweep.targets[group]) == 8
        assert sorted(rows.loc[rows["perturbation"] == "attack", "ε / R"]) == [1.0, 30.0]
    np.testing.assert_allclose(table["ε"], table["ε / R"] * R_TINY, rtol=0, atol=0)
    attack, control = table[table["perturbation"] == "attack"], table[table["perturbation"] != "attack"]
    assert (attack["‖δ‖ used"] <= attack["ε"]).all()
    assert (attack["‖δ‖ used"] > 0.9 * attack["ε"]).all()  # the whole budget, less what the [0,1] box clips
    assert (control["‖δ‖ used"] == control["ε"]).all()
    labels = clean_cert.labels[0].ravel()
    assert (labels[sweep.targets["certified"]] != -1).all() and (labels[sweep.targets["uncertified"]] == -1).all()
    np.testing.assert_array_equal(sweep.references["certified"], labels[sweep.targets["certified"]])


def test_sweep_control_flips_nothing_at_x_and_the_attack_flips_beyond_r(sweep):
    """At eps = 0 the control is x itself: a certified label is kept by at least half of fresh samples (else
    the certificate failed), so nothing flips; far beyond R (30 R) the attack flips certified targets that
    the random direction of the same norm leaves alone (the sweep is not vacuous)."""
    at_x = sweep.table[sweep.table["ε / R"] == 0]
    assert (at_x.loc[at_x["targets"] == "certified", "flipped"] == 0).all()
    assert (at_x["flipped (confident)"] == 0).all()
    assert sweep.flips("certified")[30.0] >= 4 > sweep.flips("certified", "random δ")[30.0]
    assert sweep.flips("certified", confident=True)[1.0] == 0  # inside R: probability <= 2 alpha


def test_sweep_counts_equal_those_of_attack_certified_per_eps(model, image, clean_cert, sweep):
    """Each eps of the sweep equals attack_certified called alone (it chooses its own targets, with the same
    selection samples, and runs its own random control): the same targets, norms and flip counts."""
    table = sweep.table.set_index(["ε / R", "targets", "perturbation"])
    for mult in (1.0, 30.0):
        for group in ("certified", "uncertified"):
            res = _pixel_attack(model, image, clean_cert, mult * R_TINY, attack=SWEEP_ATTACK,
                                targets=SWEEP_TARGETS.replace(group=group))
            np.testing.assert_array_equal(res.details["targets"], sweep.targets[group])
            attacked, random = table.loc[(mult, group, "attack")], table.loc[(mult, group, "random δ")]
            assert attacked["‖δ‖ used"] == res.delta_norm
            for row, out in ((attacked, res.details["attacked"]), (random, res.details["random"])):
                assert (row["flipped"], row["flipped (confident)"], row["fraction flipped"]) == (
                    out["flipped"], out["confidently_flipped"], out["fraction_flipped"])


def test_sweep_readouts_agree_with_the_table(sweep):
    """flips, series, flip_grid and class_constraint_counts read the same rows and attacks."""
    from certattr.certificates.attack import class_constraint_counts

    for group in ("certified", "uncertified"):
        for kind in ("attack", "random δ"):
            series = sweep.series(group, kind)
            assert list(series["ε / R"]) == [0.0, 1.0, 30.0]
            assert list(sweep.flips(group, kind)) == list(series["flipped"])
    grid = sweep.flip_grid()
    assert grid.shape == (3, 4) and list(grid.index.get_level_values(0)) == ["0", "1", "30"]
    row = sweep.table[(sweep.table["ε / R"] == 30) & (sweep.table["targets"] == "uncertified")
                      & (sweep.table["perturbation"] == "attack")].iloc[0]
    assert grid.loc[("30", f"{30 * R_TINY:.3f}"), "uncertified targets, attack"] == (
        f"{row['flipped']} ({row['flipped (confident)']})")
    assert grid.iloc[0, 0] == grid.iloc[0, 1]  # eps = 0 is shared by the attack and the control
    counts = class_constraint_counts(sweep.attacks.values())
    assert len(sweep.attacks) == 4 and counts["steps"] == 4 * SWEEP_ATTACK.steps * SWEEP_ATTACK.restarts
    assert counts["halved"] == sum(r.details["backtracks"] for r in sweep.attacks.values())


@pytest.mark.parametrize("change, name", [({"eps_multiples": [-1]}, "eps_multiples"), ({"k": 50}, "k=50"),
                                          ({"n_targets": 0}, "n_targets=0"), ({"eval_n": 1}, "eval_n=1")])
def test_sweep_parameters_are_validated(model, image, clean_cert, change, name):
    change = dict(change)
    eps_multiples = change.pop("eps_multiples", [1])
    with pytest.raises(CertattrError) as err:
        _sweep(model, image, clean_cert, eps_multiples, SWEEP_TARGETS.replace(**change))
    assert name in str(err.value) and "\n" not in str(err.value)
