"""LRP (zennit): conservation, canonizers against hand-made equivalents, and no leaked hooks or changes."""
import copy
import dataclasses
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual
from zennit.layer import Sum

import certattr.methods.lrp_rules as lrp_rules
from certattr.methods import get_method
from certattr.models import canonizers as canonizers_module
from certattr.models.canonizers import CANONIZERS, MergeBatchNorm, canonizers_for, missing_canonizer
from certattr.models.registry import MODELS, LoadedModel, load_model
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
    monkeypatch.setattr(lrp_rules, "canonizers_for", lambda spec: [MergeBatchNorm()])
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


# --- canonizers declared per model --------------------------------------------------------------------
def with_canonizers(model, names):
    """The same network under a spec that declares ``names`` instead."""
    return LoadedModel(dataclasses.replace(model.spec, canonizers=tuple(names)), model.net, model.weights)


def test_every_registered_model_declares_known_canonizers():
    for spec in MODELS.values():
        assert set(spec.canonizers) <= set(CANONIZERS), spec.name
        assert len(canonizers_for(spec)) == len(spec.canonizers)
    assert MODELS["vgg11"].canonizers == () and MODELS["resnet18"].canonizers != ()


@pytest.mark.parametrize("declared,layer,uncovered,other_defined", [
    ((), "input", ["TinyResNet (the root) needs 'tiny_resnet'", "BasicBlock (at 'block') needs 'tiny_resnet'",
                   "BatchNorm2d (4 layers, first at 'stem.1') needs 'merge_batchnorm'"], False),
    (("merge_batchnorm",), "input", ["TinyResNet (the root) needs 'tiny_resnet'",
                                     "BasicBlock (at 'block') needs 'tiny_resnet'"], False),
    (("merge_batchnorm", "tiny_resnet"), "final", ["GapLinearHead (the root) needs 'gap_linear_head'"], True),
])
def test_layers_no_declared_canonizer_covers_are_named_in_one_line(declared, layer, uncovered, other_defined):
    model = with_canonizers(tiny_model(), declared)
    lrp = get_method("lrp")
    reason = lrp.undefined_reason(model, layer)
    assert reason is not None and "\n" not in reason
    head, _, listed = reason.partition(" do not cover: ")
    assert head == f"lrp: model 'tiny_resnet' has layers that the canonizers its spec declares " \
                   f"({', '.join(map(repr, declared)) or 'none'})"
    assert sorted(listed.split("; ")) == sorted(uncovered)
    with pytest.raises(UndefinedAttribution, match="do not cover"):
        lrp.attribute(model, torch.rand(1, 3, 32, 32), 0, layer)
    other = "final" if layer == "input" else "input"  # each layer checks only the modules it runs through
    assert (lrp.undefined_reason(model, other) is None) == other_defined


def test_unknown_canonizer_name_is_rejected():
    model = with_canonizers(tiny_model(), ("merge_batchnorm", "merge_batchnrom"))
    with pytest.raises(CertattrError, match="unknown canonizer.*'merge_batchnrom'.*known: merge_batchnorm"):
        get_method("lrp").attribute(model, torch.rand(1, 3, 32, 32), 0, "input")


def test_lrp_applies_the_declared_canonizers_in_order_and_no_others(monkeypatch):
    """A spy canonizer, registered by name: applied (to the explained module, in declared order) only for
    a model that declares it; the maps are those of the model's own declaration (the spy changes nothing)."""
    applied = []

    class Spy(MergeBatchNorm):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def apply(self, root_module):
            applied.append((self.tag, root_module))
            return []

    for tag in ("spy_a", "spy_b"):
        monkeypatch.setitem(CANONIZERS, tag, canonizers_module.CanonizerKind(tag, lambda tag=tag: Spy(tag),
                                                                             lambda m: False, "nothing"))
    model = tiny_model(seed=1)
    spied = with_canonizers(model, ("spy_b", *model.spec.canonizers, "spy_a"))
    x = torch.rand(2, 3, 32, 32)
    lrp = get_method("lrp")
    for layer in LAYERS:
        applied.clear()
        torch.testing.assert_close(lrp.attribute(spied, x, 3, layer), lrp.attribute(model, x, 3, layer), rtol=0, atol=0)
        view_module = spied.head if layer == "final" else spied.net
        assert [tag for tag, _ in applied] == ["spy_b", "spy_a"]
        assert all(root is view_module or getattr(root, "net", None) is view_module for _, root in applied)
    applied.clear()
    lrp.attribute(tiny_vgg_model(), x, 3, "input")  # registered, not declared: not applied
    assert applied == []


def test_importing_the_methods_imports_no_timm():
    code = "import sys, certattr.methods, certattr.models.canonizers; print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


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
    with lrp_rules.composite(view, 1e-6).context(view.module), torch.no_grad():
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
    # the same network declaring no residual canonizer: LRP is undefined, and says which blocks need one
    block, needed = {"resnet18": ("BasicBlock (8 layers", "'torchvision_resnet_sum'"),
                     "efficientnet_lite0": (f"InvertedResidual ({sum(skips)} layers", "'timm_residual_sum'")}[name]
    reason = get_method("lrp").undefined_reason(with_canonizers(model, ("merge_batchnorm", "gap_linear_head")), "input")
    assert block in reason and needed in reason and "\n" not in reason


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
    original = lrp_rules.RelayedZPlus.terms
    monkeypatch.setattr(lrp_rules.RelayedZPlus, "terms", lambda self, x: terms.append(original(self, x)) or terms[-1])
    fast = get_method("lrp").attribute(model, x, target, layer)
    assert layer == "final" and name.startswith("tiny") or {len(t) for t in terms} >= {1}
    assert hook_count(model) == 0
    real = lrp_rules.composite
    monkeypatch.setattr(lrp_rules, "composite", lambda view, eps: real(view, eps, relayed=False))
    reference = get_method("lrp").attribute(model, x, target, layer)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-6 * reference.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stabilizer_equals_zennits_bit_for_bit(dtype):
    """The fast stabilizer gives zennit's values exactly, signed zeros and values near +-eps included."""
    from zennit.core import Stabilizer
    special = torch.tensor([0.0, -0.0, 1e-7, -1e-7, 1e-6, -1e-6, 5e-7, -5e-7], dtype=dtype)
    x = torch.cat([torch.randn(4096, dtype=dtype, generator=torch.Generator().manual_seed(0)), special])
    ours, theirs = lrp_rules.stabilizer(1e-6)(x), Stabilizer(1e-6)(x)
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

    ours, theirs = relevance(lrp_rules.RelayedZPlus(1e-6)), relevance(ZPlus())
    assert (ours[x < 0] != 0).any() if signed else (x >= 0).all()  # the x- term is there
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * theirs.abs().max().item())
