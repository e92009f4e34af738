"""certattr.wrap: any nn.Module as a certattr model, its head derived from the network itself.

Oracles: the presets (their hand-written splits) for ResNet-18 and EfficientNet-Lite0, the network's own forward
pass for the derived heads, the hook fallback for the torch.fx cut; bad specifications are one-line errors.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from certattr.engine.validation import CertattrError, UndefinedAttribution
from certattr.methods import get_method, method_names
from certattr.models.registry import GapLinearHead, load_model
from certattr.models.tiny_nets import TinyVGG
from certattr.models.wrap import wrap

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
#: small settings so that the twelve methods run in seconds (the maps' equality does not depend on them)
FAST = {"rise": {"n_masks": 6}, "occlusion": {"window": 32, "stride": 32}, "intgrad": {"steps": 2}}


def _maps(model, images, layer):
    out = {}
    for name in method_names():
        method = get_method(name, **FAST.get(name, {}))
        if method.undefined_reason(model, layer) is None:
            out[name] = method.attribute(model, images, 3, layer, seed=0, image_id="x")
    return out


def _assert_same_maps(preset, wrapped, images):
    for layer in ("input", "final"):
        expected, got = _maps(preset, images, layer), _maps(wrapped, images, layer)
        assert sorted(got) == sorted(expected) and len(expected) == (11 if layer == "input" else 12), layer
        for name in expected:
            # bit for bit: the Input layer runs the same network; at the Final layer the traced body runs the same
            # modules in the same order, and the detected GAP->linear head is the presets' GapLinearHead
            assert torch.equal(expected[name], got[name]), (name, layer)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_resnet18_wrapped_gives_the_presets_maps_bit_for_bit(images):
    import torchvision

    preset = load_model("resnet18", "random", seed=0, fast=False)  # the network as built (no folding)
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(preset.net.state_dict())
    wrapped = wrap(net, "layer4", input_size=224, **IMAGENET)
    assert isinstance(wrapped.head, GapLinearHead) and wrapped.gap_linear is net.fc
    assert wrapped.spec.canonizers == preset.spec.canonizers and wrapped.spec.notes["split"] == "torch.fx"
    _assert_same_maps(preset, wrapped, images)


def test_efficientnet_lite0_wrapped_gives_the_presets_maps_bit_for_bit(images):
    import timm

    preset = load_model("efficientnet_lite0", fast=False)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(preset.net.state_dict())
    wrapped = wrap(net, "bn2", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=224)
    assert isinstance(wrapped.head, GapLinearHead) and wrapped.spec.canonizers == preset.spec.canonizers
    _assert_same_maps(preset, wrapped, images)


def _tiny_vgg(seed=0):
    torch.manual_seed(seed)
    return TinyVGG(10, 8).eval()


def test_traced_head_equals_the_network_and_the_hook_fallback_bit_for_bit():
    """A non-GAP head (three operations after the layer): the fx head, the hook head and the network agree."""
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    fx_model = wrap(_tiny_vgg(), "features.4", mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)
    hook_model = wrap(_tiny_vgg(), "features.4", mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32, split="hooks")
    assert fx_model.spec.notes["split"] == "torch.fx" and hook_model.spec.notes["split"] == "forward hooks"
    for model in (fx_model, hook_model):
        act, context = model.features(model.normalize(x))
        assert torch.equal(model.logits_from_final(act, *context), model(x))
    assert fx_model.view(fx_model.normalize(x), "final").context == ()  # the traced head needs the activation only
    for name in method_names():
        if name == "cam":
            continue
        method = get_method(name, **FAST.get(name, {}))
        assert torch.equal(method.attribute(fx_model, x, 1, "final"), method.attribute(hook_model, x, 1, "final")), name


def test_a_skip_connection_across_the_split_becomes_context():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 5)

        def forward(self, x):
            s = self.stem(x)
            return self.fc((self.block(s) + s).mean(dim=(2, 3)))

    model = wrap(Skip(), "block", mean=(0,) * 3, std=(1,) * 3, input_size=16)
    x = torch.rand(2, 3, 16, 16)
    act, context = model.features(model.normalize(x))
    assert len(context) == 1 and torch.equal(model.logits_from_final(act, *context), model(x))
    assert model.gap_linear is None and "Cam is undefined" in get_method("cam").undefined_reason(model, "final")
    # a residual sum written in forward code that no canonizer covers: LRP says so
    assert "residual sum" in get_method("lrp").undefined_reason(model, "input")


def test_token_layer_is_a_grid_after_dropping_leading_tokens():
    class TinyViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.blocks = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8))
            self.head = nn.Linear(8, 7)

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(len(x), -1, -1), t], dim=1)
            return self.head(self.blocks(t)[:, 0] + t[:, 1:].mean(1))

    torch.manual_seed(0)
    net = TinyViT().eval()
    model = wrap(net, "blocks.0", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=16, drop_tokens=1)
    x = torch.rand(2, 3, 16, 16)
    act, context = model.features(model.normalize(x))
    assert act.shape == (2, 8, 4, 4) and context[0].shape == (2, 1, 8)
    tokens = net.blocks[0](torch.cat([net.cls.expand(2, -1, -1), net.patch(model.normalize(x)).flatten(2).transpose(1, 2)], 1))
    assert torch.equal(act, tokens[:, 1:].transpose(1, 2).reshape(2, 8, 4, 4))  # token i -> row i // 4, column i % 4
    assert torch.equal(model.logits_from_final(act, *context), model(x))
    assert get_method("gradcam").attribute(model, x, 0, "final").shape == (2, 4, 4)
    assert model.spec.final_reduce == "l1"
    with pytest.raises(CertattrError, match="drop_tokens"):
        wrap(TinyViT(), "blocks.0", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=16, drop_tokens=0)


def test_lrp_names_the_layer_type_it_cannot_handle():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    model = wrap(net, "2", mean=(0,) * 3, std=(1,) * 3, input_size=8)
    reason = get_method("lrp").undefined_reason(model, "input")
    assert "GroupNorm" in reason and "'1'" in reason
    with pytest.raises(UndefinedAttribution, match="GroupNorm"):
        get_method("lrp").attribute(model, torch.rand(1, 3, 8, 8), 0, "input")
    assert get_method("cam").undefined_reason(model, "final") is None  # GAP->linear after '2'


@pytest.mark.parametrize("kwargs, message", [
    ({"final_layer": "layer9"}, "final_layer='layer9' is not a module path of TinyVGG"),
    ({"final_layer": "featres.4"}, "did you mean 'features.4'"),
    ({"final_layer": "classifier"}, "is not spatial: its output is (1, 10)"),
    ({"mean": (0.5, 0.5)}, "mean has 2 values but the model takes 3 channel(s)"),
    ({"std": (0.5, 0.5, 0.5, 0.5)}, "std has 4 values but the model takes 3 channel(s)"),
    ({"std": (0.5, 0.0, 0.5)}, "every standard deviation must be > 0"),
    ({"input_size": 0}, "input_size=0 is not allowed"),
    ({"classes": ["a", "b"]}, "classes has 2 names but the model gives 10 logits"),
    ({"mean": (0.5,), "std": (0.5,)}, "the module failed on a (1, 1, 32, 32) input"),
])
def test_bad_specifications_are_one_line_errors(kwargs, message):
    spec = {"final_layer": "features.4", "mean": (0.5,) * 3, "std": (0.25,) * 3, "input_size": 32, **kwargs}
    with pytest.raises(CertattrError) as err:
        wrap(_tiny_vgg(), **spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_module_that_is_not_a_classifier_is_refused():
    segmenter = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with pytest.raises(CertattrError, match=r"is not a classifier: it maps a \(1, 3, 16, 16\) image to \(1, 2, 16, 16\)"):
        wrap(segmenter, "1", mean=(0,) * 3, std=(1,) * 3, input_size=16)
    with pytest.raises(CertattrError, match="give a torch.nn.Module"):
        wrap(lambda x: x, "1", mean=(0,) * 3, std=(1,) * 3, input_size=16)


def test_the_spec_is_part_of_the_fingerprint():
    """Two wraps of the same weights at another Final layer or normalization are other cache entries."""
    a = wrap(_tiny_vgg(), "features.4", mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)
    b = wrap(_tiny_vgg(), "features.3", mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)
    c = wrap(_tiny_vgg(), "features.4", mean=(0.4,) * 3, std=(0.25,) * 3, input_size=32)
    assert len({a.fingerprint(), b.fingerprint(), c.fingerprint()}) == 3
