"""The settings objects of the certificates and the attacks: bad values are one-line errors, good ones are kept
(normalised), the defaults are the engine's, and no function of the package takes more than 10 parameters."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import certattr.certificates
from certattr.certificates.attack import (DEFAULT_ATTACKED_CERTIFICATE, AttackSettings, PixelAttackSettings,
                                          TargetSettings)
from certattr.certificates.robust_training import SaliencyAttackSettings
from certattr.certificates.settings import (MethodAtLayer, PixelCertificateSettings, SparsifiedSmoothing,
                                            TopKCertConfig, UniformSmoothing)
from certattr.certificates.sparsified_smoothgrad import sparsified_smoothgrad
from certattr.engine.config import DEFAULT_CERT, DEFAULT_SAMPLING, CertConfig, SamplingConfig
from certattr.engine.validation import CertattrError
from certattr.models.testing import tiny_model

GRAD = MethodAtLayer("grad", "input")


def _one_line_error(make, name):
    with pytest.raises(CertattrError) as err:
        make()
    message = str(err.value)
    assert name in message and "\n" not in message and ("allowed" in message or "must" in message), message


@pytest.mark.parametrize("make, name", [
    (lambda: MethodAtLayer("nosuchmethod", "input"), "method='nosuchmethod'"),
    (lambda: MethodAtLayer(3, "input"), "method=3"),
    (lambda: MethodAtLayer("grad", "middle"), "layer='middle'"),
])
def test_method_at_layer_refuses_bad_values(make, name):
    _one_line_error(make, name)


def test_method_at_layer_keeps_names_and_objects():
    from certattr.methods import get_method

    assert MethodAtLayer("ixg", "Final").layer == "final"
    method = get_method("grad")
    assert MethodAtLayer(method).method_object() is method
    assert MethodAtLayer("GradCAM", "final").method_object().name == get_method("gradcam").name


@pytest.mark.parametrize("make, name", [
    (lambda: PixelCertificateSettings(GRAD, 0.0), "sigma=0.0"),
    (lambda: PixelCertificateSettings("grad", 0.25), "attribution='grad'"),
    (lambda: PixelCertificateSettings(GRAD, 0.25, sampling={"n": 10}), "sampling={'n': 10}"),
    (lambda: PixelCertificateSettings(GRAD, 0.25, cert=(50,)), "cert=(50,)"),
    (lambda: PixelCertificateSettings(GRAD, 0.25, SamplingConfig(n=10), CertConfig(n0=10)), "n0=10"),
    (lambda: PixelCertificateSettings(GRAD, 0.25).replace(tau=0.9), "tau"),
])
def test_pixel_certificate_settings_refuse_bad_values(make, name):
    _one_line_error(make, name)


@pytest.mark.filterwarnings("ignore::certattr.engine.certify.CertificationWarning")  # 30 samples certify nothing
def test_pixel_certificate_settings_check_the_certificate_they_describe():
    from certattr.engine.smoothing import SmoothedAttribution

    model, image = tiny_model(), torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    settings = PixelCertificateSettings(GRAD, 0.25, SamplingConfig(n=30), CertConfig(ks=(50,), alpha=0.05))
    engine = SmoothedAttribution(model, "grad", "input", 0.25, settings.sampling, settings.cert, progress=False)
    certificate = engine.certify(image, "img")
    settings.check_describes(certificate)  # its own: no error
    _one_line_error(lambda: settings.replace(cert=settings.cert.replace(tau=0.9)).check_describes(certificate),
                    "tau=0.75")
    _one_line_error(lambda: settings.replace(sigma=0.5).check_describes(certificate), "sigma=0.25")


@pytest.mark.parametrize("make, name", [
    (lambda: SparsifiedSmoothing(-0.1), "sigma=-0.1"),
    (lambda: SparsifiedSmoothing(0.25, tau_frac=0.0), "tau_frac=0.0"),
    (lambda: SparsifiedSmoothing(0.25, tau_frac=1.5), "tau_frac=1.5"),
    (lambda: SparsifiedSmoothing(0.25, tau_frac=0.1, gamma_frac=0.2), "gamma_frac=0.2"),
    (lambda: SparsifiedSmoothing(0.25, gamma_frac=0.0), "gamma_frac=0.0"),
])
def test_sparsified_smoothing_refuses_bad_values(make, name):
    _one_line_error(make, name)


@pytest.mark.parametrize("make, name", [
    (lambda: UniformSmoothing(0.0), "r=0.0"),
    (lambda: UniformSmoothing(1.0, M=0.0), "M=0.0"),
    (lambda: UniformSmoothing(1.0, M=float("nan")), "M=nan"),
    (lambda: UniformSmoothing(1.0, bound="scale"), "bound='scale'"),
])
def test_uniform_smoothing_refuses_bad_values(make, name):
    _one_line_error(make, name)


@pytest.mark.parametrize("make, name", [
    (lambda: TopKCertConfig(k=0, eps=0.1), "k=0"),
    (lambda: TopKCertConfig(k=2.5, eps=0.1), "k=2.5"),
    (lambda: TopKCertConfig(k=5, eps=-0.1), "eps=-0.1"),
    (lambda: TopKCertConfig(k=5, eps=0.1, eta=1.0), "eta=1.0"),
])
def test_topk_cert_config_refuses_bad_values(make, name):
    _one_line_error(make, name)


@pytest.mark.parametrize("kind", [AttackSettings, PixelAttackSettings])
@pytest.mark.parametrize("change, name", [
    ({"steps": 0}, "steps=0"), ({"restarts": 0}, "restarts=0"), ({"step_size": 0}, "step_size=0"),
    ({"momentum": 1.0}, "momentum=1.0"), ({"momentum": -0.1}, "momentum=-0.1"), ({"decay": "yes"}, "decay='yes'"),
    ({"beta": 0}, "beta=0"), ({"beta": "sharp"}, "beta='sharp'"), ({"n_attack": 0}, "n_attack=0"),
    ({"max_backtracks": -1}, "max_backtracks=-1"), ({"init_tries": -1}, "init_tries=-1"),
])
def test_attack_settings_refuse_bad_values(kind, change, name):
    _one_line_error(lambda: kind(**change), name)


@pytest.mark.parametrize("change, name", [({"temperature": 0}, "temperature=0"), ({"smoothed": 1}, "smoothed=1")])
def test_pixel_attack_settings_refuse_bad_values(change, name):
    _one_line_error(lambda: PixelAttackSettings(**change), name)


def test_the_pixel_attack_keeps_its_own_defaults_and_the_loop_its_own():
    loop, pixel = AttackSettings(), PixelAttackSettings()
    assert (loop.step_size, loop.momentum, loop.decay, loop.beta) == (0.5, 0.0, True, 10.0)
    assert (pixel.step_size, pixel.momentum, pixel.decay, pixel.beta) == (0.25, 0.9, False, "auto")
    assert (pixel.steps, pixel.restarts, pixel.n_attack, pixel.smoothed, pixel.temperature) == (20, 2, 8, True, 1.0)
    assert AttackSettings(beta=None).beta is None and pixel.replace(n_attack=1).n_attack == 1
    _one_line_error(lambda: pixel.replace(eps=0.1), "eps")


@pytest.mark.parametrize("change, name", [
    ({"k": 0}, "k=0"), ({"k": 150}, "k=150"), ({"group": "all"}, "group='all'"), ({"n_targets": 0}, "n_targets=0"),
    ({"select_n": 1}, "select_n=1"), ({"select_n": -2}, "select_n=-2"), ({"pixels": [3, -1]}, "pixels=[3, -1]"),
    ({"pixels": [0.5]}, "pixels=[0.5]"), ({"eval_n": 1}, "eval_n=1"), ({"eval_seed": -1}, "eval_seed=-1"),
    ({"eval_alpha": 1.0}, "eval_alpha=1.0"), ({"random_control": "no"}, "random_control='no'"),
    ({"eval_clean": None}, "eval_clean=None"),
])
def test_target_settings_refuse_bad_values(change, name):
    _one_line_error(lambda: TargetSettings(**change), name)


def test_target_settings_keep_pixels_and_k_in_one_form():
    targets = TargetSettings(k=25, pixels=np.array([[4, 7], [9, 0]]))
    assert targets.k == 25.0 and targets.pixels == (4, 7, 9, 0)
    assert TargetSettings(pixels=[]).pixels == () and TargetSettings().pixels is None


@pytest.mark.parametrize("change, name", [
    ({"steps": -1}, "steps=-1"), ({"restarts": 0}, "restarts=0"), ({"step_size": 0.0}, "step_size=0.0"),
    ({"beta": -1.0}, "beta=-1.0"), ({"init_tries": -1}, "init_tries=-1"),
])
def test_saliency_attack_settings_refuse_bad_values(change, name):
    _one_line_error(lambda: SaliencyAttackSettings(**change), name)


def test_the_training_attack_is_the_one_its_settings_name():
    from certattr.certificates.robust_training import TrainingSettings

    attack = TrainingSettings(attack_steps=3, attack_restarts=2, attack_beta=7.0).attack_settings()
    assert (attack.steps, attack.restarts, attack.beta) == (3, 2, 7.0)
    assert (attack.step_size, attack.init_tries) == (SaliencyAttackSettings().step_size,
                                                     SaliencyAttackSettings().init_tries)


def test_the_attacked_certificate_defaults_are_the_engines():
    """The certified-pixel attack's default certificate samples and certifies as the engine does by default, at
    K = 50% only (IxG at the Final layer, sigma = 0.25)."""
    default = DEFAULT_ATTACKED_CERTIFICATE
    assert default.sampling == DEFAULT_SAMPLING
    assert default.cert == DEFAULT_CERT.replace(ks=(50.0,))
    assert (default.attribution, default.sigma) == (MethodAtLayer("ixg", "final"), 0.25)


def test_a_function_refuses_what_is_not_its_settings_object():
    model, image = tiny_model(), torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    _one_line_error(lambda: sparsified_smoothgrad(model, image, smoothing=SparsifiedSmoothing(0.1),
                                                  sampling={"n": 10}), "sampling={'n': 10}")
    _one_line_error(lambda: sparsified_smoothgrad(model, image, smoothing=UniformSmoothing(1.0),
                                                  sampling=SamplingConfig(n=10)), "smoothing=UniformSmoothing")


def _parameter_counts(root: Path) -> dict:
    counts = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
                counts[f"{path.relative_to(root)}:{node.lineno} {node.name}"] = len(names)
    return counts


def test_no_function_of_the_certificates_takes_more_than_ten_parameters():
    counts = _parameter_counts(Path(certattr.certificates.__file__).parent)
    assert len(counts) > 100  # the package was read
    assert {where: count for where, count in counts.items() if count > 10} == {}
