"""A torch.export program cut at its Final layer's output (certattr.models.exported): the head runs alone.

Oracles: the whole program (the cut program's head applied to its features must give the program's and the
module's logits); the module the program was exported from, wrapped the usual way (same RISE, Occlusion and
AblationCam maps at the Final layer, same seed); the head run as a graph (the closed-form GAP->linear head must
equal it); the activation handed to the head (never changed in place); one-line errors naming what was looked
for and what is allowed.
"""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

from certattr.engine.targets import in_train_mode
from certattr.engine.validation import CertattrError
from certattr.methods import get_method
from certattr.models.exported import check_final_layer, load_program, program_graph, program_split
from certattr.models.registry import GapLinearHead
from certattr.models.sources import load_source
from certattr.models.split import HookHead, gap_linear_of, recorded_paths
from certattr.models.tiny_nets import TinyResNet
from certattr.models.wrap import wrap

SIZE = 64
SPEC = dict(mean=(0.5,) * 3, std=(0.25,) * 3, input_size=SIZE)
# timm's test architectures (random weights): a GAP->linear head (ResNet, EfficientNet), a LayerNorm head
# (ConvNeXt), and a token layer (ViT, with a CLS token)
ARCHITECTURES = {"test_resnet": "layer4", "test_efficientnet": "bn2", "test_convnext": "stages"}


def _export(net: nn.Module, path, size: int = SIZE):
    x = torch.rand(2, 3, size, size)
    program = torch.export.export(net.eval(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.export.save(program, str(path))
    return path


def _timm(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, **kwargs).eval()
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), so that a skipped BatchNorm would show
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """(module, path of its .pt2, the program loaded by --model, the module wrapped) per architecture, once."""
    folder = tmp_path_factory.mktemp("programs")
    found = {}
    for name, layer in ARCHITECTURES.items():
        net = _timm(name)
        path = _export(net, folder / f"{name}.pt2")
        found[name] = (net, path, load_source(str(path), final_layer=layer, **SPEC), wrap(net, layer, **SPEC))
    return found


def _images(batch: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_cut_programs_head_of_its_features_is_the_whole_program(programs, name):
    net, _, model, _ = programs[name]
    layer = ARCHITECTURES[name]
    assert model.spec.notes["split"] == "torch.fx"  # cut, not the hook fallback
    assert not in_train_mode(model)  # the cut's parameter containers follow the network's eval mode
    body, head, n_context = program_split(model.net, layer)
    assert not isinstance(head, HookHead) and n_context == 0
    xn = model.normalize(_images())  # a batch of 3, the program was exported with 2
    with torch.no_grad():
        act = body(xn)
        whole = net(xn)
        assert act.shape[0] == 3 and act.dim() == 4 and act.shape[2] * act.shape[3] > 1
        torch.testing.assert_close(head(act), whole, rtol=1e-4, atol=1e-4)
        feats, context = model.features(xn)
        torch.testing.assert_close(model.logits_from_final(feats, *context), whole, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(_images()), whole, rtol=1e-4, atol=1e-4)
        # the head alone, on a different number of rows than the body ran on (the masked passes do that)
        many = torch.cat([act, act * 0.5])
        torch.testing.assert_close(head(many), torch.cat([whole, head(act * 0.5)]), rtol=1e-5, atol=1e-5)


def test_a_gap_linear_head_is_found_in_the_program_and_its_closed_form_equals_the_graph(programs):
    model = programs["test_resnet"][2]
    assert isinstance(model.head, GapLinearHead) and model.gap_linear is not None
    assert model.gap_linear.weight is model.net.get_parameter("fc.weight")  # the network's own, shared
    _, graph_head, _ = program_split(model.net, "layer4")
    linear = gap_linear_of(graph_head)
    assert linear is not None and linear.weight is model.gap_linear.weight
    act = torch.randn(5, *model.features(model.normalize(_images(1)))[0].shape[1:],
                      generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(GapLinearHead(linear)(act), graph_head(act), rtol=1e-5, atol=1e-5)
    # a head that is not GAP->linear (ConvNeXt's pooling, LayerNorm, linear) is run as its graph; Cam says why
    convnext = programs["test_convnext"][2]
    assert convnext.gap_linear is None and convnext.spec.head_kind == "other" and "layer_norm" in convnext.spec.head_note
    assert gap_linear_of(program_split(convnext.net, "stages")[1]) is None


@pytest.mark.parametrize("name, method", [
    ("test_resnet", "rise"), ("test_resnet", "occlusion"), ("test_resnet", "ablationcam"),
    ("test_convnext", "rise"), ("test_convnext", "occlusion"), ("test_convnext", "ablationcam"),
    ("test_efficientnet", "gradcam"), ("test_convnext", "grad"),
])
def test_final_layer_maps_from_the_program_equal_the_modules(programs, name, method):
    _, _, program, module = programs[name]
    assert isinstance(program.head, GapLinearHead) == isinstance(module.head, GapLinearHead)  # both closed form or not
    overrides = {"rise": dict(n_masks=40), "occlusion": dict(window=1, stride=1)}.get(method, {})
    images, target = _images(2), torch.tensor([3, 7])
    a = get_method(method, **overrides).attribute(program, images, target, "final", seed=4, image_id="x")
    b = get_method(method, **overrides).attribute(module, images, target, "final", seed=4, image_id="x")
    assert a.shape == b.shape == (2, *module.features(module.normalize(images))[0].shape[2:])
    assert float(b.abs().max()) > 0
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


class _InPlaceAfterTheLayer(nn.Module):
    """The Final layer's output is changed in place after it (``+=``, ``relu_``), the batch size is read with
    ``x.size(0)`` after the cut, and a tensor from before the layer is read after it (a skip connection)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.final = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.fc = nn.Linear(6 * 4, 5)

    def forward(self, x):
        skip = self.stem(x)
        out = self.final(skip)
        out += skip
        out = torch.relu_(out)
        pooled = nn.functional.adaptive_avg_pool2d(out, 2)
        return self.fc(pooled.view(pooled.size(0), -1))


def test_a_head_that_writes_in_place_reads_a_skip_and_the_batch_size(tmp_path):
    torch.manual_seed(0)
    net = _InPlaceAfterTheLayer().eval()
    spec = dict(SPEC, input_size=16)
    model = load_source(str(_export(net, tmp_path / "inplace.pt2", 16)), final_layer="final", **spec)
    body, head, n_context = program_split(model.net, "final")
    assert n_context == 1  # the skip; the batch size is taken from the activation, not carried as context
    xn = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        act, skip = body(xn)
        kept = act.clone(), skip.clone()
        torch.testing.assert_close(head(act, skip), net(xn), rtol=1e-5, atol=1e-5)
        assert torch.equal(act, kept[0]) and torch.equal(skip, kept[1])  # the head copied what it writes to
        torch.testing.assert_close(head(torch.cat([act] * 2), torch.cat([skip] * 2)), torch.cat([net(xn)] * 2),
                                   rtol=1e-5, atol=1e-5)
    module = wrap(net, "final", **spec)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    for method in ("rise", "ablationcam"):
        a = get_method(method).attribute(model, images, 1, "final", seed=1)
        b = get_method(method).attribute(module, images, 1, "final", seed=1)
        assert a.shape == (2, 8, 8) and float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


def test_the_whole_program_runs_as_generated_code_where_that_gives_the_same_output(programs, tmp_path):
    """The Input layer's passes: the unflattened graphs run as code, not interpreted, unless torch's code fails
    (a module called twice, as TinyResNet's ReLU); either way the logits are the module's."""
    def interpreted(model):
        return [m for m in model.net.modules() if getattr(m, "_run_with_interpreter", False)]

    net, _, model, _ = programs["test_resnet"]
    assert not interpreted(model)
    torch.manual_seed(0)
    tiny = TinyResNet(10, 8).eval()
    loaded = load_source(str(_export(tiny, tmp_path / "tiny.pt2", 32)), final_layer="last", **dict(SPEC, input_size=32))
    assert interpreted(loaded)
    for module, program, size in ((net, model, SIZE), (tiny, loaded, 32)):
        x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            torch.testing.assert_close(program(x), module(program.normalize(x)), rtol=1e-5, atol=1e-5)


def test_a_token_layer_of_a_program_is_cut_too(tmp_path):
    net = _timm("test_vit", img_size=32)
    spec = dict(SPEC, input_size=32)
    model = load_source(str(_export(net, tmp_path / "vit.pt2", 32)), final_layer="blocks.0", drop_tokens=1, **spec)
    module = wrap(net, "blocks.0", drop_tokens=1, **spec)
    images = _images(2)[:, :, :32, :32]
    a = get_method("rise", n_masks=20).attribute(model, images, 2, "final", seed=3)
    b = get_method("rise", n_masks=20).attribute(module, images, 2, "final", seed=3)
    assert model.spec.notes["split"] == "torch.fx" and a.shape == (2, 2, 2)
    assert module.spec.notes["split"] == "forward hooks"  # timm's ViT does not trace; its program is cut all the same
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


class _WithDefaultArgument(nn.Module):
    """forward(x, mask=None), as timm's ViT: certattr never gives ``mask``, so it is no context of the head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 3)

    def forward(self, x, mask=None):
        pooled = self.features(x).mean(dim=(2, 3))
        return self.fc(pooled if mask is None else pooled * mask)


def test_a_forward_argument_with_a_default_is_no_context_of_the_head():
    torch.manual_seed(0)
    net = _WithDefaultArgument().eval()
    spec = dict(SPEC, input_size=8)
    traced, hooked = wrap(net, "features", **spec), wrap(net, "features", split="hooks", **spec)
    assert traced.spec.notes["split"] == "torch.fx" and isinstance(traced.head, GapLinearHead)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = get_method("rise", n_masks=20).attribute(traced, images, 1, "final", seed=2)
    b = get_method("rise", n_masks=20).attribute(hooked, images, 1, "final", seed=2)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


def test_a_final_layer_that_records_no_operation_is_one_line(programs):
    path = programs["test_convnext"][1]
    with pytest.raises(CertattrError) as err:  # ConvNeXt's norm_pre is an identity: the program holds nothing of it
        load_source(str(path), final_layer="norm_pre", **SPEC)
    message = str(err.value)
    assert "\n" not in message and "final_layer='norm_pre' cannot be found in the program test_convnext.pt2" in message
    assert "its top-level ones are stem, stages, head" in message
    net = load_program(path)
    assert "stages.1" in recorded_paths(program_graph(net))
    check_final_layer(net, "stages.1")  # one that records operations passes
    with pytest.raises(CertattrError, match=r"did you mean 'stages.1'"):
        program_split(net, "stages.1x")


def test_a_file_that_is_not_a_program_is_one_line(tmp_path):
    (tmp_path / "not.pt2").write_bytes(b"not a zip archive")
    with pytest.raises(CertattrError, match="is not a torch.export program"):
        load_source(str(tmp_path / "not.pt2"), final_layer="layer4", **SPEC)


def test_a_program_exported_in_train_mode_is_refused_in_one_line(tmp_path):
    def small():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    spec = dict(SPEC, input_size=8)
    x = torch.rand(2, 3, 8, 8)
    for mode, path in (("train", tmp_path / "train.pt2"), ("eval", tmp_path / "eval.pt2")):
        net = small().train(mode == "train")
        torch.export.save(torch.export.export(net, (x,), dynamic_shapes={"input": {0: torch.export.Dim("batch")}}),
                          str(path))
    with pytest.raises(CertattrError) as err:  # its maps would change from call to call: batch statistics, dropout
        load_source(str(tmp_path / "train.pt2"), final_layer="2", **spec)
    assert "\n" not in str(err.value)
    assert "exported in train mode: its graph fixes BatchNorm with batch statistics and dropout in" in str(err.value)
    model = load_source(str(tmp_path / "eval.pt2"), final_layer="2", **spec)
    assert torch.equal(model(x), model(x)) and model.gap_linear is not None
