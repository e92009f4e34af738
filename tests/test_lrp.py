"""LRP (zennit): conservation, canonizers against hand-made equivalents, and no leaked hooks or changes."""
import copy

import pytest
import torch
import torch.nn as nn
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from zennit.layer import Sum

import certattr.methods.lrp as lrp_module
from certattr.methods import get_method
from certattr.models.registry import load_model
from certattr.models.testing import tiny_model, tiny_vgg_model
from certattr.engine.validation import CertattrError, UndefinedAttribution

LAYERS = ("input", "final")


def zero_biases(model):
    """Make every bias (conv, linear, BatchNorm shift and running mean) zero, keeping BN scales non-trivial:
    then LRP with ZBox/ZPlus/Epsilon/Norm/Pass conserves relevance up to the stabilizers."""
    for module in model.net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.zero_()
            module.bias.data.zero_()
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.data.zero_()
    return model


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def target_logit(model, x):
    with torch.no_grad():
        logits = model(x)
    target = logits.argmax(1)
    return target, logits.gather(1, target[:, None])[:, 0]


@pytest.mark.parametrize("layer", LAYERS)
def test_conservation_on_residual_network_with_batchnorm(layer):
    model = zero_biases(tiny_model(seed=3))
    x = torch.rand(4, 3, 32, 32)
    target, logit = target_logit(model, x)
    relevance = get_method("lrp").attribute(model, x, target, layer)
    torch.testing.assert_close(relevance.sum(dim=(1, 2)), logit, rtol=1e-4, atol=1e-6)


def test_conservation_fails_without_the_residual_canonizer(monkeypatch):
    """Negative control: with a plain '+', the gradient copies relevance to both summands."""
    model = zero_biases(tiny_model(seed=3))
    x = torch.rand(2, 3, 32, 32)
    target, logit = target_logit(model, x)
    monkeypatch.setattr(lrp_module, "canonizers", lambda: [lrp_module.MergeBatchNorm()])
    relevance = get_method("lrp").attribute(model, x, target, "input")
    assert not torch.allclose(relevance.sum(dim=(1, 2)), logit, rtol=1e-2)


def fold_batchnorm(model):
    """A copy of the tiny ResNet with each BatchNorm folded by hand into the conv before it."""
    folded = copy.deepcopy(model)
    net = folded.net
    for parent, conv, bn in [(net.stem, "0", "1"), (net.block, "conv1", "bn1"), (net.block, "conv2", "bn2"),
                             (net.last, "0", "1")]:
        c, b = getattr(parent, conv), getattr(parent, bn)
        scale = b.weight / torch.sqrt(b.running_var + b.eps)
        c.weight.data = c.weight.data * scale[:, None, None, None]
        c.bias = nn.Parameter(b.bias - b.running_mean * scale, requires_grad=False)
        setattr(parent, bn, nn.Identity())
    return folded


@pytest.mark.parametrize("layer", LAYERS)
def test_batchnorm_merge_equals_hand_folded_network(layer):
    model = tiny_model(seed=1)  # non-trivial BN statistics and shifts
    folded = fold_batchnorm(model)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)
    lrp = get_method("lrp")
    torch.testing.assert_close(lrp.attribute(model, x, 2, layer), lrp.attribute(folded, x, 2, layer),
                               rtol=1e-4, atol=1e-7)


def test_final_layer_on_gap_linear_head_is_input_times_gradient():
    """Epsilon on the linear layer and Norm on the pooling: R_A = A * w_y / (h w) * z / (z + eps) = IxG."""
    model = tiny_model(seed=2)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(get_method("lrp").attribute(model, x, 4, "final"),
                               get_method("ixg").attribute(model, x, 4, "final"), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make", [tiny_model, tiny_vgg_model])
def test_no_hooks_or_changes_leak(make):
    model = make()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks, modules = hook_count(model), len(list(model.modules()))
    lrp = get_method("lrp")
    first = [lrp.attribute(model, x, 1, layer) for layer in LAYERS]
    for _ in range(3):
        again = [lrp.attribute(model, x, 1, layer) for layer in LAYERS]
        assert hook_count(model) == hooks and len(list(model.modules())) == modules
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any("forward" in m.__dict__ for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_canonizers_are_undone_after_an_error():
    model = tiny_model()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    with pytest.raises(RuntimeError):
        get_method("lrp").attribute(model, x, 99, "input")  # target out of range: fails inside the context
    assert hook_count(model) == 0
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_undefined_and_parameters():
    vit = load_model("vit_b_16", "random")
    with pytest.raises(UndefinedAttribution, match="lrp: LRP rules for attention"):
        get_method("lrp").attribute(vit, torch.rand(1, 3, 224, 224), 0, "final")
    for bad in (0, -1e-6, float("nan"), "1e-6"):
        with pytest.raises(CertattrError, match="epsilon="):
            get_method("lrp", epsilon=bad)


# --- real architectures (random weights, small images: one batch of 2 each) ------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_real_architectures_conserve_and_canonize(name):
    """All residual sums of torchvision ResNets and timm EfficientNet-Lite are canonized: the canonized
    network computes the same logits, and relevance is conserved at both layers (biases zeroed)."""
    model = zero_biases(load_model(name, "random"))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # fixed input: relative leakage ~3e-4 here, up to 1.1e-3 on unlucky draws
    target, logit = target_logit(model, x)
    blocks = [m for m in model.modules() if isinstance(m, (DepthwiseSeparableConv, InvertedResidual))]
    skips = [m.has_skip for m in blocks]
    in_place = [getattr(m, "inplace", None) for m in model.modules()]
    assert True in in_place  # in-place activations, run out of place while hooked
    view = model.view(model.normalize(x), "input")
    with lrp_module.composite(view, 1e-6).context(view.module), torch.no_grad():
        canonized = view.forward(view.inputs)
        sums = sum(isinstance(m, Sum) for m in model.modules())
    assert sums == (8 if name == "resnet18" else sum(skips)) and sums > 0  # resnet18: 8 BasicBlocks
    torch.testing.assert_close(canonized, model(x), rtol=1e-4, atol=1e-5)
    assert hook_count(model) == 0 and not any(isinstance(m, Sum) for m in model.modules())
    assert [m.has_skip for m in blocks] == skips
    for layer in LAYERS:
        relevance = get_method("lrp").attribute(model, x, target, layer)
        torch.testing.assert_close(relevance.sum(dim=(1, 2)), logit, rtol=1e-3, atol=1e-5)
    assert [getattr(m, "inplace", None) for m in model.modules()] == in_place


@pytest.mark.parametrize("name,layer", [("tiny", "input"), ("tiny", "final"), ("tiny_vgg", "input"),
                                        ("tiny_vgg", "final"), ("efficientnet_lite0", "input"), ("resnet18", "input")])
def test_relayed_rules_equal_zennits_own_wiring(name, layer, monkeypatch):
    """certattr's wiring (no wasted ordinary backward, one-term ZPlus on non-negative inputs) gives the
    relevance of zennit's own hooks with two-term ZPlus; and it does take the one-term path."""
    model = {"tiny": tiny_model, "tiny_vgg": tiny_vgg_model}.get(name, lambda: load_model(name, "random"))()
    size = 32 if name.startswith("tiny") else 96
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    target, _ = target_logit(model, x)
    terms = []
    original = lrp_module.RelayedZPlus.terms
    monkeypatch.setattr(lrp_module.RelayedZPlus, "terms", lambda self, x: terms.append(original(self, x)) or terms[-1])
    fast = get_method("lrp").attribute(model, x, target, layer)
    assert layer == "final" and name.startswith("tiny") or {len(t) for t in terms} >= {1}
    assert hook_count(model) == 0
    real = lrp_module.composite
    monkeypatch.setattr(lrp_module, "composite", lambda view, eps: real(view, eps, relayed=False))
    reference = get_method("lrp").attribute(model, x, target, layer)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-6 * reference.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stabilizer_equals_zennits_bit_for_bit(dtype):
    """The fast stabilizer gives zennit's values exactly, signed zeros and values near +-eps included."""
    from zennit.core import Stabilizer
    special = torch.tensor([0.0, -0.0, 1e-7, -1e-7, 1e-6, -1e-6, 5e-7, -5e-7], dtype=dtype)
    x = torch.cat([torch.randn(4096, dtype=dtype, generator=torch.Generator().manual_seed(0)), special])
    ours, theirs = lrp_module.stabilizer(1e-6)(x), Stabilizer(1e-6)(x)
    assert ours.dtype == dtype
    assert torch.equal(ours, theirs) and torch.equal(torch.signbit(ours), torch.signbit(theirs))


@pytest.mark.parametrize("kind,groups,signed", [("conv", 1, True), ("conv", 4, True), ("conv", 8, True),
                                                ("conv", 4, False), ("same", 1, True), ("same", 8, False)])
def test_relayed_zplus_equals_zennits_on_one_convolution(kind, groups, signed):
    """One convolution with a bias: the stacked [x+, x-] path (signed inputs, any groups, timm's Conv2dSame)
    and the one-term path give zennit's ZPlus relevance."""
    from timm.layers import Conv2dSame
    from zennit.rules import ZPlus
    torch.manual_seed(groups)
    make = {"conv": lambda: nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=groups),
            "same": lambda: Conv2dSame(8, 16, 3, stride=2, groups=groups)}[kind]
    conv = make()
    x = torch.randn(2, 8, 9, 9) if signed else torch.rand(2, 8, 9, 9)
    grad = torch.randn(2, 16, 5, 5)

    def relevance(rule):
        handles = rule.register(conv)
        try:
            inputs = x.clone().requires_grad_(True)
            return torch.autograd.grad(conv(inputs), inputs, grad)[0]
        finally:
            handles.remove()

    ours, theirs = relevance(lrp_module.RelayedZPlus(1e-6)), relevance(ZPlus())
    assert (ours[x < 0] != 0).any() if signed else (x >= 0).all()  # the x- term is there
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.abs().max().item())
