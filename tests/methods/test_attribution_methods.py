"""The twelve attribution methods against oracles on the tiny test models, and their contracts:
defined/undefined combinations, batch-size invariance, hyperparameter checks, real-model shapes."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from certattr.methods import get_method, method_names
from certattr.methods.gradient import guided_activations
from certattr.methods.perturbation import OCCLUSION_DEFAULTS, rise_masks, window_starts
from certattr.models.registry import LAYERS, load_model, model_names
from certattr.engine.noise import sample_seed
from certattr.models.testing import tiny_model, tiny_vgg_model
from certattr.engine.validation import CertattrError, UndefinedAttribution

ALL = ["grad", "gb", "ixg", "intgrad", "lrp", "rise", "occlusion", "cam", "gradcam", "gradcampp", "layercam",
       "ablationcam"]
#: small settings that keep every method fast on 32x32 inputs; chunk sizes chosen to split the batches
FAST = {"rise": {"n_masks": 40, "pass_batch": 7}, "occlusion": {"pass_batch": 5},
        "intgrad": {"pass_batch": 7}, "ablationcam": {"pass_batch": 3}}
TINY = {"tiny_resnet": tiny_model, "tiny_vgg": tiny_vgg_model}


def images(batch=5, seed=0, size=32):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def layer_input(model, x, layer):
    """What the methods explain, computed without LayerView: (A, A -> logits)."""
    xn = model.normalize(x)
    if layer == "input":
        return xn, model.net
    with torch.no_grad():
        act, _ = model.features(xn)
    return act, model.head


def autograd_grad(model, x, target, layer):
    """(A, d y_target / d A) with plain torch.autograd."""
    act, forward = layer_input(model, x, layer)
    act = act.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(forward(act)[torch.arange(len(x)), target].sum(), act)
    return act.detach(), grad


# --- registry, hyperparameters, defined combinations ----------------------------------------------
def test_registry_has_the_twelve_methods():
    assert sorted(method_names()) == sorted(ALL)
    for name in ALL:
        cls = type(get_method(name))
        assert cls.name == name and cls.title and cls.family in ("backprop", "activation", "perturbation")


def test_reference_defaults():
    assert get_method("intgrad").params["steps"] == 20
    assert get_method("lrp").params["epsilon"] == 1e-6
    rise = get_method("rise").params
    assert (rise["n_masks"], rise["grid"], rise["p"]) == (1000, 6, 0.1)
    assert OCCLUSION_DEFAULTS == {"input": (16, 8), "final": (5, 2)}


def test_auto_pass_batch_fits_the_device_budget():
    from certattr.methods.base import PASS_ELEMENTS, PASS_ROWS, pass_batch

    image_rows = torch.zeros(10, 3, 224, 224)
    assert pass_batch(None, image_rows) == PASS_ELEMENTS["cpu"] // (3 * 224 * 224) == 8
    assert pass_batch(None, torch.zeros(2, 1280, 7, 7)) == PASS_ELEMENTS["cpu"] // (1280 * 49)
    assert pass_batch(None, torch.zeros(1, 10 ** 7)) == 1  # never 0
    digits = torch.zeros(1, 1, 32, 32)  # the budget alone would give 1176 rows: capped
    assert PASS_ELEMENTS["cpu"] // digits[0].numel() > PASS_ROWS["cpu"] == pass_batch(None, digits) == 32
    assert pass_batch(3, image_rows) == 3  # an explicit batch wins
    for name, key in [("rise", "pass_batch"), ("occlusion", "pass_batch"), ("intgrad", "pass_batch"),
                      ("ablationcam", "pass_batch")]:
        assert get_method(name).params[key] is None


@pytest.mark.parametrize("name", ["rise", "occlusion", "intgrad", "ablationcam"])
def test_auto_pass_batch_gives_the_maps_of_an_explicit_one(name):
    """On the 32x32 tiny model the CPU budget means all rows in one pass (at most PASS_ROWS): compare with 1 row
    per pass."""
    model, x = tiny_model(), images(4, seed=3)
    key = "pass_batch"
    fixed = {"rise": {"n_masks": 20}}.get(name, {})
    for layer in LAYERS:
        if get_method(name).undefined_reason(model, layer):
            continue
        auto = get_method(name, **fixed).attribute(model, x, 2, layer, image_id="a")
        one = get_method(name, **fixed, **{key: 1}).attribute(model, x, 2, layer, image_id="a")
        torch.testing.assert_close(auto, one, rtol=1e-4, atol=1e-6 * one.abs().max().item())


@pytest.mark.parametrize("name", ALL)
def test_unknown_hyperparameter_is_rejected(name):
    with pytest.raises(CertattrError, match=f"{name}: unknown hyperparameter.*bogus"):
        get_method(name, bogus=1)


@pytest.mark.parametrize("name,param,value", [
    ("intgrad", "steps", 0), ("intgrad", "steps", 2.5), ("intgrad", "pass_batch", -1), ("lrp", "epsilon", 0.0),
    ("lrp", "epsilon", float("inf")), ("ablationcam", "pass_batch", 0), ("rise", "n_masks", 0), ("rise", "grid", True),
    ("rise", "p", 0.0), ("rise", "p", 1.5), ("rise", "p", "0.1"), ("rise", "pass_batch", 0),
    ("occlusion", "window", 0), ("occlusion", "stride", 1.0), ("occlusion", "pass_batch", 2.5),
])
def test_bad_hyperparameter_values_are_rejected(name, param, value):
    with pytest.raises(CertattrError, match=f"^{param}={value!r} is not allowed") as info:
        get_method(name, **{param: value})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model_name", TINY)
@pytest.mark.parametrize("name", ALL)
def test_every_combination_is_defined_or_says_why(model_name, name):
    model = TINY[model_name]()
    method = get_method(name, **FAST.get(name, {}))
    x = images(3)
    for layer in LAYERS:
        undefined = name == "cam" and (layer == "input" or model_name == "tiny_vgg")
        if undefined:
            with pytest.raises(UndefinedAttribution, match="cam: .*(Input layer|not GAP->linear)"):
                method.attribute(model, x, 1, layer)
            assert method.undefined_reason(model, layer)
            continue
        assert method.undefined_reason(model, layer) is None
        maps = method.attribute(model, x, 1, layer)
        h, w = (32, 32) if layer == "input" else model.features(model.normalize(x))[0].shape[2:]
        assert maps.shape == (3, h, w) and maps.dtype == torch.float32 and torch.isfinite(maps).all()


@pytest.mark.parametrize("model_name", TINY)
@pytest.mark.parametrize("name", ALL)
def test_batch_size_invariance(model_name, name):
    """B rows at once (with chunking inside the method) give the rows of B = 1 calls."""
    model, method = TINY[model_name](), get_method(name, **FAST.get(name, {}))
    x, target = images(5, seed=1), torch.tensor([0, 3, 3, 7, 9])
    for layer in LAYERS:
        if method.undefined_reason(model, layer):
            continue
        together = method.attribute(model, x, target, layer, seed=4, image_id="img")
        alone = torch.cat([method.attribute(model, x[i:i + 1], target[i:i + 1], layer, seed=4, image_id="img")
                           for i in range(5)])
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6 * together.abs().max().item())


# --- backprop methods -----------------------------------------------------------------------------
@pytest.mark.parametrize("layer", LAYERS)
def test_grad_and_ixg_against_autograd(tiny, layer):
    x, target = images(4), torch.tensor([1, 2, 3, 4])
    act, grad = autograd_grad(tiny, x, target, layer)
    torch.testing.assert_close(get_method("ixg").attribute(tiny, x, target, layer), (act * grad).sum(1))
    torch.testing.assert_close(get_method("grad").attribute(tiny, x, target, layer), grad.abs().sum(1))


@pytest.mark.parametrize("model_name,layer", [("tiny_resnet", "input"), ("tiny_vgg", "input"), ("tiny_vgg", "final")])
def test_intgrad_completeness(model_name, layer):
    """sum IG = f(A) - f(0), with an error that shrinks with more Gauss-Legendre steps."""
    model, x, target = TINY[model_name](), images(4, seed=2), 5
    act, forward = layer_input(model, x, layer)
    with torch.no_grad():
        gap = forward(act)[:, target] - forward(torch.zeros_like(act))[:, target]
    errors = {steps: (get_method("intgrad", steps=steps).attribute(model, x, target, layer).sum(dim=(1, 2)) - gap)
              .abs().mean().item() for steps in (20, 300)}
    assert errors[20] < 0.05 * gap.abs().mean().item()
    assert errors[300] < errors[20] / 4


def test_intgrad_is_exact_for_a_linear_head(tiny):
    """The tiny ResNet's head (GAP -> linear) is linear: IG = IxG at the Final layer."""
    x = images(3)
    torch.testing.assert_close(get_method("intgrad").attribute(tiny, x, 6, "final"),
                               get_method("ixg").attribute(tiny, x, 6, "final"), rtol=1e-5, atol=1e-7)


def test_guided_backprop_equals_gradient_without_activations(tiny):
    """The tiny ResNet's head has no activation: GB = |gradient| at the Final layer."""
    x = images(3)
    torch.testing.assert_close(get_method("gb").attribute(tiny, x, 1, "final"),
                               get_method("grad").attribute(tiny, x, 1, "final"))


def test_guided_backprop_differs_with_activations(tiny):
    x = images(3)
    gb, grad = (get_method(m).attribute(tiny, x, 1, "input") for m in ("gb", "grad"))
    assert not torch.allclose(gb, grad, rtol=0.05)


@pytest.mark.parametrize("model_name", TINY)
def test_guided_backprop_equals_captum_on_relu_networks(model_name):
    from captum.attr import GuidedBackprop

    model, x = TINY[model_name](), images(3)
    xn = model.normalize(x).requires_grad_(True)
    with pytest.warns(UserWarning, match="backward hooks on ReLU"):
        expected = GuidedBackprop(model.net).attribute(xn, target=2).abs().sum(1)
    torch.testing.assert_close(get_method("gb").attribute(model, x, 2, "input"), expected)


@pytest.mark.parametrize("act,derivative", [
    (nn.ReLU(inplace=True), lambda z: (z > 0).float()),
    (nn.ReLU6(), lambda z: ((z > 0) & (z < 6)).float()),
    (nn.GELU(), lambda z: torch.special.ndtr(z) + z * torch.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)),
])
def test_guided_rule_on_a_two_layer_network(act, derivative):
    """f = v . act(W2 act(W1 x)) (one activation module, reused): the guided gradient is
    W1^T [act'(z1) * relu(W2^T [act'(z2) * relu(v)])], only positive gradients pass back."""
    torch.manual_seed(0)
    lin1, lin2, out = nn.Linear(6, 5, bias=False), nn.Linear(5, 4, bias=False), nn.Linear(4, 1, bias=False)
    lin1.weight.data *= 4  # bring GELU's and ReLU6's interesting ranges into play
    net = nn.Sequential(lin1, act, lin2, act, out)
    x = torch.randn(3, 6, requires_grad=True)
    with guided_activations(net):
        (guided,) = torch.autograd.grad(net(x).sum(), x)
    z1 = x.detach() @ lin1.weight.T
    z2 = act.__class__()(z1) @ lin2.weight.T
    upper = derivative(z2) * torch.relu(out.weight)
    expected = (derivative(z1) * torch.relu(upper @ lin2.weight)) @ lin1.weight
    torch.testing.assert_close(guided, expected, rtol=1e-5, atol=1e-6)
    assert "forward" not in act.__dict__  # restored
    (plain,) = torch.autograd.grad(net(x).sum(), x)
    assert not torch.allclose(plain, guided)


# --- CAMs ------------------------------------------------------------------------------------------
def test_cam_equals_gradcam_up_to_a_positive_factor(tiny):
    """On a GAP->linear head d y / d A_c = w_{y,c} / (h w) everywhere, so GradCam = Cam / (h w)."""
    x = images(4)
    cam, gradcam = (get_method(m).attribute(tiny, x, 3, "final") for m in ("cam", "gradcam"))
    h, w = cam.shape[1:]
    torch.testing.assert_close(gradcam, cam / (h * w), rtol=1e-5, atol=1e-7)
    k = 10
    for a, b in zip(cam.flatten(1), gradcam.flatten(1)):
        assert set(a.topk(k).indices.tolist()) == set(b.topk(k).indices.tolist())


def test_cam_uses_the_classifier_weights(tiny):
    x = images(2)
    act, _ = layer_input(tiny, x, "final")
    expected = torch.relu(torch.einsum("c,bchw->bhw", tiny.gap_linear.weight[7], act))
    torch.testing.assert_close(get_method("cam").attribute(tiny, x, 7, "final"), expected)


@pytest.mark.parametrize("layer", LAYERS)
def test_layercam_and_gradcampp_against_direct_formulas(layer):
    model, x, target = tiny_vgg_model(), images(3), torch.tensor([2, 4, 6])
    act, g = autograd_grad(model, x, target, layer)
    torch.testing.assert_close(get_method("layercam").attribute(model, x, target, layer),
                               torch.relu((torch.relu(g) * act).sum(1)))
    # GradCam++ as published, on Y = exp(y): dY = e g, d2Y = e g^2, d3Y = e g^3 (y is piecewise linear).
    act_, forward = layer_input(model, x, layer)
    with torch.no_grad():
        e = torch.exp(forward(act_)[torch.arange(3), target])[:, None, None, None]
    d1, d2, d3 = e * g, e * g ** 2, e * g ** 3
    denom = 2 * d2 + act.sum(dim=(2, 3), keepdim=True) * d3
    alpha = torch.where(denom != 0, d2 / denom, torch.zeros_like(denom))
    published = torch.relu(((alpha * torch.relu(d1)).sum(dim=(2, 3), keepdim=True) * act).sum(1))
    torch.testing.assert_close(get_method("gradcampp").attribute(model, x, target, layer) * e[:, 0],
                               published, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layer", LAYERS)
def test_ablationcam_against_a_loop(layer):
    model, x, target = tiny_vgg_model(), images(2), 3
    act, forward = layer_input(model, x, layer)
    expected = []
    with torch.no_grad():
        for a in act:
            y = forward(a[None])[0, target]
            weights = []
            for c in range(a.shape[0]):
                ablated = a.clone()
                ablated[c] = 0
                weights.append((y - forward(ablated[None])[0, target]) / y)
            expected.append(torch.relu((torch.stack(weights)[:, None, None] * a).sum(0)))
    torch.testing.assert_close(get_method("ablationcam", pass_batch=5).attribute(model, x, target, layer),
                               torch.stack(expected), rtol=1e-4, atol=1e-6)


# --- perturbation methods --------------------------------------------------------------------------
def test_rise_masks():
    masks = rise_masks(300, 6, 0.1, (7, 9), seed=5)
    all_at_once = masks(0, 300)
    assert all_at_once.shape == (300, 7, 9)
    assert all_at_once.min() >= 0 and all_at_once.max() <= 1
    assert 0.05 < all_at_once.mean() < 0.15  # keep probability p = 0.1
    torch.testing.assert_close(torch.cat([masks(0, 17), masks(17, 300)]), all_at_once, rtol=0, atol=0)
    torch.testing.assert_close(rise_masks(300, 6, 0.1, (7, 9), seed=5)(0, 300), all_at_once, rtol=0, atol=0)
    assert not torch.equal(rise_masks(300, 6, 0.1, (7, 9), seed=6)(0, 300), all_at_once)


def test_rise_masks_follow_the_recipe():
    """cell = ceil(size / s); a grid upsampled to (s + 1) cells and shifted by less than a cell: every
    mask is a crop of a bilinear upsampling of its grid."""
    masks = rise_masks(50, 4, 0.5, (8, 8), seed=0)(0, 50)  # cell 2, upsampled 10x10
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0)))  # the documented generator
    grids = torch.from_numpy(rng.random((50, 1, 4, 4)) < 0.5).float()
    up = nn.functional.interpolate(grids, size=(10, 10), mode="bilinear", align_corners=False)[:, 0]
    for mask, full in zip(masks, up):
        assert any(torch.equal(mask, full[dy:dy + 8, dx:dx + 8]) for dy in range(2) for dx in range(2))


@pytest.mark.parametrize("layer", LAYERS)
def test_rise_against_a_loop(layer):
    model, x, target, n, p = tiny_vgg_model(), images(2), 4, 30, 0.1
    rise = get_method("rise", n_masks=n, p=p, pass_batch=8)
    act, forward = layer_input(model, x, layer)
    masks = rise_masks(n, 6, p, tuple(act.shape[2:]), sample_seed(3, "cat", 0, stream="rise"))(0, n)
    expected = torch.zeros(2, *act.shape[2:])
    with torch.no_grad():
        for b in range(2):
            for mask in masks:
                expected[b] += forward((act[b] * mask)[None]).softmax(-1)[0, target] * mask
    torch.testing.assert_close(rise.attribute(model, x, target, layer, seed=3, image_id="cat"),
                               expected / (n * p), rtol=1e-5, atol=1e-7)


def test_rise_masks_depend_on_seed_and_image_only(tiny):
    rise = get_method("rise", n_masks=20)
    x = images(2)
    a = rise.attribute(tiny, x, 1, "final", seed=0, image_id="a")
    torch.testing.assert_close(rise.attribute(tiny, x, 1, "final", seed=0, image_id="a"), a, rtol=0, atol=0)
    assert not torch.equal(rise.attribute(tiny, x, 1, "final", seed=0, image_id="b"), a)
    assert not torch.equal(rise.attribute(tiny, x, 1, "final", seed=1, image_id="a"), a)


def test_window_starts_cover_every_position():
    assert window_starts(224, 16, 8) == list(range(0, 209, 8))
    assert window_starts(7, 5, 2) == [0, 2]
    assert window_starts(14, 5, 2) == [0, 2, 4, 6, 8, 9]
    assert window_starts(5, 5, 3) == [0]


@pytest.mark.parametrize("layer,window,stride", [("input", None, None), ("final", None, None), ("input", 5, 3),
                                                 ("final", 20, 1)])
def test_occlusion_against_a_loop(layer, window, stride):
    model, x, target = tiny_vgg_model(), images(2), 6
    occlusion = get_method("occlusion", window=window, stride=stride, pass_batch=9)
    act, forward = layer_input(model, x, layer)
    h, w = act.shape[2:]
    size, step = window or OCCLUSION_DEFAULTS[layer][0], stride or OCCLUSION_DEFAULTS[layer][1]
    wh, ww = min(size, h), min(size, w)
    total, covered = torch.zeros(2, h, w), torch.zeros(h, w)
    with torch.no_grad():
        y = forward(act)[:, target]
        for y0 in window_starts(h, wh, step):
            for x0 in window_starts(w, ww, step):
                occluded = act.clone()
                occluded[:, :, y0:y0 + wh, x0:x0 + ww] = 0
                total[:, y0:y0 + wh, x0:x0 + ww] += (y - forward(occluded)[:, target])[:, None, None]
                covered[y0:y0 + wh, x0:x0 + ww] += 1
    assert (covered > 0).all()
    torch.testing.assert_close(occlusion.attribute(model, x, target, layer), total / covered, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("window,stride", [(4, 2), (5, 3), (8, 4)])
def test_occlusion_equals_captum_at_the_input_layer(window, stride):
    """captum.attr.Occlusion on the normalized image (windows over all channels, baseline 0) gives every
    channel of a position the mean drop of the target logit over the windows covering it: ours, per channel.
    The sizes are chosen so that captum's windows (starts 0, s, 2s, ... that fit) are ours (no flush window)."""
    from captum.attr import Occlusion as CaptumOcclusion

    model, x, target = tiny_vgg_model(), images(2), 6
    act, forward = layer_input(model, x, "input")
    h, w = act.shape[2:]
    assert window_starts(h, window, stride) == list(range(0, h - window + 1, stride))
    theirs = CaptumOcclusion(forward).attribute(act, sliding_window_shapes=(act.shape[1], window, window),
                                                strides=(act.shape[1], stride, stride), baselines=0, target=target)
    ours = get_method("occlusion", window=window, stride=stride, pass_batch=9).attribute(model, x, target, "input")
    for c in range(act.shape[1]):
        torch.testing.assert_close(theirs[:, c], ours, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(theirs.sum(dim=1), act.shape[1] * ours, rtol=1e-5, atol=1e-5)


class _ConstantDrop(nn.Module):
    """A 'head' whose target logit drops by exactly 1 whenever anything is occluded: logit 0 =
    1[all of A is nonzero] (A > 0 everywhere here)."""

    def forward(self, a):
        whole = (a != 0).flatten(1).all(dim=1).float()
        return torch.stack([whole, torch.zeros_like(whole)], dim=1)


def test_occlusion_at_a_7x7_final_layer_has_no_centre_bias():
    """5x5 windows at stride 2 on 7x7 (4 windows; the centre 3x3 is covered by all 4, the corners by 1): a
    model whose logit drops by the same amount for every window gives a constant map. Dividing the sum by
    the window area instead (the reference) would give 4/25 at the centre 3x3 and 1/25 at the corners."""
    from types import SimpleNamespace

    act = torch.rand(3, 8, 7, 7) + 0.5
    view = SimpleNamespace(inputs=act, layer="final", module=_ConstantDrop(), context=(),
                           forward=_ConstantDrop())
    occlusion = get_method("occlusion", pass_batch=4)
    count, _, keep = occlusion.windows("final", (7, 7))
    covered = (1 - keep(0, count)).sum(dim=0)
    assert count == 4 and covered[3, 3] == 4 and covered[0, 0] == 1 and covered[2:5, 2:5].eq(4).all()
    saliency = occlusion.explain(view, torch.zeros(3, dtype=torch.long), seed=0, image_id="")
    torch.testing.assert_close(saliency, torch.ones(3, 7, 7), rtol=0, atol=0)


# --- the registered architectures (random weights except EfficientNet-Lite0; batch 1 each) --------
FINAL_SIZE = {"resnet18": 7, "resnet152": 7, "wide_resnet50_2": 7, "vgg11": 14, "vit_b_16": 14,
              "efficientnet_lite0": 7, "efficientnet_lite1": 7, "efficientnet_lite2": 7,
              "digits_cnn": 56}  # at 224x224


@pytest.mark.slow
@pytest.mark.parametrize("name", model_names())
def test_registered_model(name):
    """head(body(x)) reproduces the network's logits exactly; Final maps have the layer's size; the
    undefined combinations are exactly Cam without a GAP->linear head or at the Input layer, and LRP on ViT."""
    model = load_model(name, "pretrained" if name == "efficientnet_lite0" else "random")
    x = images(1, size=224)[:, :model.channels]
    with torch.no_grad():
        act, context = model.features(model.normalize(x))
        assert torch.equal(model.logits_from_final(act, *context), model(x))
    side = FINAL_SIZE[name]
    assert act.shape[2:] == (side, side)
    assert get_method("gradcam").attribute(model, x, 0, "final").shape == (1, side, side)
    for method in ALL:
        for layer in LAYERS:
            reason = get_method(method).undefined_reason(model, layer)
            undefined = ((method == "cam" and (layer == "input" or model.gap_linear is None))
                         or (method == "lrp" and name == "vit_b_16"))
            assert bool(reason) == undefined, (method, layer, reason)


@pytest.mark.slow
@pytest.mark.parametrize("name,kind,layer", [("efficientnet_lite0", nn.ReLU6, "input"), ("vit_b_16", nn.GELU, "final")])
def test_guided_backprop_reaches_relu6_and_gelu(name, kind, layer):
    """captum's GuidedBackprop only handles nn.ReLU; ours also guides EfficientNet's ReLU6 and ViT's GELU."""
    model = load_model(name, "pretrained" if name == "efficientnet_lite0" else "random")
    if name == "vit_b_16":  # torchvision initialises the classifier to zero: every gradient would vanish
        nn.init.normal_(model.net.heads.head.weight, std=0.02)
    x = images(1, size=224)
    assert any(isinstance(m, kind) for m in model.view(model.normalize(x), layer).module.modules())
    gb, grad = (get_method(m).attribute(model, x, 0, layer) for m in ("gb", "grad"))
    assert torch.isfinite(gb).all() and grad.abs().sum() > 0 and not torch.allclose(gb, grad, rtol=1e-3, atol=0)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("name", ["lrp", "gb", "gradcampp", "rise"])
def test_memory_and_hooks_flat_over_repeated_calls(name):
    """Hooks and canonizers are removed after every call: resident memory does not grow with calls."""
    import gc

    model = tiny_model(seed=3)
    method = get_method(name, **({"n_masks": 20} if name == "rise" else {}))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hooks = lambda: sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
                        for m in model.modules())
    for _ in range(5):  # warm-up: allocator pools, lazy imports
        method.attribute(model, x, 1, "input")
    gc.collect()
    before, hooks_before = _rss_mb(), hooks()
    for _ in range(30):
        method.attribute(model, x, 1, "input")
    gc.collect()
    assert hooks() == hooks_before == 0
    assert _rss_mb() - before < 15, f"RSS grew by {_rss_mb() - before:.1f} MB over 30 calls"


@pytest.mark.parametrize("name", ["rise", "occlusion", "ablationcam"])
def test_gap_linear_closed_form_equals_head_passes(name, monkeypatch):
    """At the Final layer of a GAP->linear head, RISE/Occlusion/AblationCam take the head in closed form
    (W . mean(A * M) + b); the same maps as running the head once per mask or channel."""
    import certattr.methods.cam as cam_module
    import certattr.methods.perturbation as perturbation_module

    model, x = tiny_model(), images(3, seed=5)
    method = get_method(name, **({"n_masks": 30} if name == "rise" else {}))
    closed = method.attribute(model, x, torch.tensor([1, 4, 7]), "final", image_id="a")

    class NotAHead:  # nothing is an instance: every mask/channel goes through the head
        pass

    monkeypatch.setattr(perturbation_module, "GapLinearHead", NotAHead)
    monkeypatch.setattr(cam_module, "GapLinearHead", NotAHead)
    passes = method.attribute(model, x, torch.tensor([1, 4, 7]), "final", image_id="a")
    torch.testing.assert_close(closed, passes, rtol=1e-4, atol=1e-6 * passes.abs().max().item())
    assert passes.abs().max() > 0


@pytest.mark.parametrize("name", ["rise", "occlusion"])
@pytest.mark.parametrize("layer", ["input", "final"])
def test_masked_passes_are_shared_across_targets_bit_for_bit(name, layer):
    """The masked passes of RISE/Occlusion do not depend on the target: a second target on the same noisy
    copies replays them from the memo, and gives exactly the maps of a fresh computation."""
    from certattr.methods.perturbation import MASKED_LOGITS

    model, x = tiny_model(seed=4), images(3, seed=6)
    method = get_method(name, **({"n_masks": 12} if name == "rise" else {}))
    MASKED_LOGITS.clear()
    first = method.attribute(model, x, 1, layer, seed=0, image_id="g")
    hits = MASKED_LOGITS.hits
    second = method.attribute(model, x, 2, layer, seed=0, image_id="g")
    assert MASKED_LOGITS.hits == hits + 1
    MASKED_LOGITS.clear()
    assert torch.equal(second, method.attribute(model, x, 2, layer, seed=0, image_id="g"))
    assert torch.equal(first, method.attribute(model, x, 1, layer, seed=0, image_id="g"))
    assert not torch.equal(first, second)
    # other copies or other masks are not confused with these
    other = method.attribute(model, x + 0.01, 2, layer, seed=0, image_id="g")
    assert not torch.equal(other, second)


def test_final_activation_memo_returns_the_forward_it_stands_for():
    model, x = tiny_model(seed=4), images(3, seed=6)
    xn = model.normalize(x)
    a = model.view(xn, "final")
    b = model.view(xn.clone(), "final")
    assert b.inputs is a.inputs  # the memo hit: the same tensor
    with torch.no_grad():
        fresh, _ = model.features(xn)
    assert torch.equal(a.inputs, fresh)
    c = model.view(model.normalize(images(3, seed=7)), "final")
    assert not torch.equal(c.inputs, a.inputs)
    for name in ("grad", "gradcam", "lrp", "ablationcam"):  # no method changes the shared activation
        get_method(name).attribute(model, x, 1, "final")
    assert torch.equal(model.view(xn, "final").inputs, fresh)
