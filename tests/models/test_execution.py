"""The model's fastest exact path (issue 27): BatchNorm folding, memory layout, precision, the shared gradient.

Oracles: the unfolded network's outputs, captum's Saliency and InputXGradient, and the plain (NCHW, unfolded,
fp32) model's maps; the cache keys of the plain way are the ones pinned before this change."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from certattr.engine.validation import CertattrError
from certattr.methods import get_method
from certattr.models.execution import Execution, check_precision, fold_batchnorm
from certattr.models.registry import LoadedModel, load_model


class ConvBN(nn.Module):
    def __init__(self, out_of_order: bool = False):
        super().__init__()
        torch.manual_seed(0)
        if out_of_order:  # defined conv_a, bn, conv_b, but the BatchNorm normalizes conv_b's output
            self.conv_a, self.bn, self.conv_b = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
        else:
            self.conv_a, self.bn, self.conv_b = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1)
        self.out_of_order = out_of_order
        with torch.no_grad():  # statistics far from the identity, so that an unfolded or misfolded BN shows
            self.bn.running_mean.uniform_(-2, 2)
            self.bn.running_var.uniform_(0.2, 3)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        if self.out_of_order:
            return self.bn(self.conv_b(torch.relu(self.conv_a(x)))).mean(dim=(2, 3))
        return self.conv_b(torch.relu(self.bn(self.conv_a(x)))).mean(dim=(2, 3))


def test_folding_matches_the_unfolded_network_and_leaves_it_alone():
    net = ConvBN().eval()
    x = torch.randn(2, 3, 8, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded, count = fold_batchnorm(net, x)
    assert count == 1 and isinstance(folded.bn, nn.Identity) and isinstance(net.bn, nn.BatchNorm2d)
    y = torch.randn(5, 3, 8, 8)
    torch.testing.assert_close(folded(y), net(y), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_folding_refuses_a_network_whose_definition_order_is_not_its_data_flow():
    net = ConvBN(out_of_order=True).eval()
    folded, count = fold_batchnorm(net, torch.randn(2, 3, 8, 8))
    assert count == 0 and folded is net


def test_folding_needs_eval_mode():
    with pytest.raises(CertattrError, match="eval mode"):
        fold_batchnorm(ConvBN().train(), torch.randn(2, 3, 8, 8))


def test_precisions_are_checked_per_device():
    assert check_precision("bf16", "cpu") == "bf16"
    with pytest.raises(CertattrError, match="fp16.*not available on cpu"):
        check_precision("fp16", "cpu")
    with pytest.raises(CertattrError, match="precision"):
        check_precision("fp8", "cpu")


@pytest.fixture(scope="module")
def lite0_pair():
    """EfficientNet-Lite0 the fastest exact way and as built, with its pretrained weights (installed offline): their
    BatchNorm statistics are real, where a random initialisation's (mean 0, variance 1, gamma 1, beta 0) would make
    folding nearly the identity and a wrong fold invisible; and a random deep network amplifies rounding (at one
    thread, 16% of Grad's pixels then differ by more than 1e-3 of the scale, correlation still 0.9998)."""
    return load_model("efficientnet_lite0", "pretrained"), load_model("efficientnet_lite0", "pretrained", fast=False)


def test_the_fast_way_is_declared_and_keyed(lite0_pair):
    fast, plain = lite0_pair
    # compilation "auto" (issue 27 point 3, tests/models/test_compilation.py) where torch.compile is available
    assert fast.execution.compilation in ("auto", "off")
    assert dataclasses.replace(fast.execution, compilation="off") == Execution("channels_last", True, "fp32")
    assert plain.execution == Execution()
    assert plain.execution.key() == "" and fast.execution.key()
    assert fast.fingerprint() != plain.fingerprint()
    x = fast.normalize(torch.rand(2, 3, 224, 224))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.net.modules())


@pytest.mark.parametrize("method, layer", [("grad", "input"), ("ixg", "input"), ("gradcam", "final"),
                                           ("lrp", "input"), ("occlusion", "final")])
def test_the_fast_way_changes_maps_only_at_float_rounding(lite0_pair, method, layer):
    fast, plain = lite0_pair
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    target = int(plain(images[:1]).argmax())
    a = get_method(method).attribute(fast, images, target, layer)
    b = get_method(method).attribute(plain, images, target, layer)
    # float rounding: nearly every pixel agrees to 1e-3 of the map's scale; the few others are where a rounding
    # difference switched a ReLU6's gate (exactly at 0 or 6), which moves one gradient path, not the map
    close = (a - b).abs() <= 1e-3 * b.abs().max()
    assert float(close.float().mean()) > 0.995
    assert float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.999


def test_bf16_maps_stay_close_to_float32(lite0_pair):
    plain = lite0_pair[1]
    low = LoadedModel(plain.spec, plain.net, plain.weights, Execution("channels_last", True, "bf16"))
    assert low.fingerprint() != plain.fingerprint()
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    target = int(plain(images[:1]).argmax())
    a = get_method("gradcam").attribute(low, images, target, "final")
    b = get_method("gradcam").attribute(plain, images, target, "final")
    assert a.dtype == torch.float32 and not torch.equal(a, b)  # it did run in bf16 ...
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr > 0.95  # ... and the map is the same map


def test_grad_and_ixg_share_one_backward_pass_and_equal_captum():
    from captum.attr import InputXGradient, Saliency

    model = load_model("resnet18", "random")
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    memo = model.gradient_memo()
    grad = get_method("grad").attribute(model, images, 5, "input")
    misses, hits = memo.misses, memo.hits
    ixg = get_method("ixg").attribute(model, images, 5, "input")
    assert (memo.misses, memo.hits) == (misses, hits + 1)  # IxG read Grad's backward pass
    xn = model.normalize(images).detach().requires_grad_(True)
    net = model.net
    target = torch.full((3,), 5)
    torch.testing.assert_close(grad, Saliency(net).attribute(xn, target=target, abs=True).sum(1))
    torch.testing.assert_close(ixg, InputXGradient(net).attribute(xn, target=target).sum(1))
    memo.clear()
    torch.testing.assert_close(get_method("ixg").attribute(model, images, 5, "input"), ixg, rtol=0, atol=0)


def test_the_cli_refuses_fp16_on_the_cpu_in_one_line(tmp_path, capsys):
    from certattr.cli import main

    code = main(["certify", "coffee", "--out", str(tmp_path / "out"), "--precision", "fp16", "--weights", "random"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "precision 'fp16' is not available on cpu" in err


def test_set_precision_changes_the_key_and_the_passes():
    model = load_model("resnet18", "random")
    fp32 = model.fingerprint()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    before = model(x)
    model.set_precision("bf16")
    assert model.fingerprint() != fp32 and not torch.equal(model(x), before)
    model.set_precision("fp32")
    assert model.fingerprint() == fp32 and torch.equal(model(x), before)
