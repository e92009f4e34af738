"""Model sources: torch.export programs, weights files, torchvision:/timm: names offline, pickles only when trusted.

Oracles: the module an exported program came from (same certificates), the weights written into the file (found
again in the loaded network), and one-line errors naming what to change.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.validation import CertattrError
from certattr.methods import get_method
from certattr.models.sources import guess_final_layer, load_source
from certattr.models.tiny_nets import TinyResNet
from certattr.models.wrap import wrap

SPEC = dict(mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)


def _tiny():
    torch.manual_seed(0)
    return TinyResNet(10, 8).eval()


def _export(net, path, dynamic=True):
    x = torch.rand(2, 3, 32, 32)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), str(path))
    return path


def test_an_exported_program_certifies_the_same_as_its_module(tmp_path):
    """Bit for bit against the module split by torch.fx (the program is cut at the same layer and its GAP->linear
    head found, so both apply the head in closed form); the labels also against the module's hook split (whose
    full passes change the perturbation methods' maps at float rounding only: at most 1% of the labels, pixels on
    a tie of the top-K boundary)."""
    net = _tiny()
    exported = load_source(str(_export(net, tmp_path / "tiny.pt2")), final_layer="last", **SPEC)
    hooked, traced = wrap(net, "last", split="hooks", **SPEC), wrap(net, "last", **SPEC)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    certified = 0
    for layer, method in (("input", get_method("grad")), ("input", get_method("rise", n_masks=8)),
                          ("final", get_method("gradcam")), ("final", get_method("rise", n_masks=8)),
                          ("final", get_method("cam"))):
        settings = dict(n=30, n0=4, ks=(50, 20), tau=0.6, alpha=0.2, progress=False)
        a = SmoothedAttribution(exported, method, layer, 0.1, **settings).certify(image, "i")
        b = SmoothedAttribution(hooked, method, layer, 0.1, **settings).certify(image, "i") \
            if method.name != "cam" else a
        c = SmoothedAttribution(traced, method, layer, 0.1, **settings).certify(image, "i")
        assert np.array_equal(a.labels, c.labels) and np.array_equal(a.counts, c.counts), (method.name, layer)
        # the hook split's full passes sum in another order than the closed-form head: a pixel on a tie of the
        # top-K boundary may go either way, and no more than that (it is exact for the gradient methods)
        differ = float((a.labels != b.labels).mean())
        assert differ == 0.0 if method.family != "perturbation" else differ <= 0.01, (method.name, layer, differ)
        certified += int((a.labels >= 0).sum())
    assert certified > 0
    assert exported.spec.notes["split"] == "torch.fx"  # the program's own graph, cut at 'last': no hooks
    assert exported.gap_linear is not None and exported.spec.head_kind == "gap_linear"
    assert "torch.export program" in exported.spec.lrp


def test_an_export_with_a_static_batch_is_refused(tmp_path):
    path = _export(_tiny(), tmp_path / "static.pt2", dynamic=False)
    with pytest.raises(CertattrError, match="export it with a dynamic batch dimension"):
        load_source(str(path), final_layer="last", **SPEC)


def test_pickled_modules_need_trust_and_weights_need_an_architecture(tmp_path):
    net = _tiny()
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(CertattrError, match="is a pickled module: loading it runs code named in the file, so it needs "
                                            "--trust-pickle"):
        load_source(f"file:{tmp_path / 'whole.pt'}", final_layer="last", **SPEC)
    trusted = load_source(f"file:{tmp_path / 'whole.pt'}", final_layer="last", trust_pickle=True, **SPEC)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(trusted(x), wrap(net, "last", **SPEC)(x))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CertattrError, match="holds weights only .* --model torchvision:resnet18 --weights"):
        load_source(f"file:{tmp_path / 'weights.pt'}", final_layer="last", **SPEC)


@pytest.mark.parametrize("source, kwargs, message", [
    ("file:/nonexistent/model.pt2", SPEC, "model file '/nonexistent/model.pt2' does not exist: give the path of a file"),
    ("/nonexistent/model.pt2", SPEC, "does not exist"),
    ("resnet", {}, "model='resnet' is unknown: give a registry name, torchvision:NAME"),
    ("torchvision:resnet9000", {}, "torchvision:resnet9000 is unknown"),
    ("timm:not_a_model", {}, "timm:not_a_model is unknown"),
    ("resnet18", {"final_layer": "layer3"}, "final_layer cannot be given with the preset model 'resnet18'"),
    ("file:/dev/null", {"input_size": 32}, "a model file needs mean, std (--mean, --std, --input-size)"),
    ("torchvision:resnet18", {"weights": "/nonexistent/w.pt"}, "weights file '/nonexistent/w.pt' does not exist"),
])
def test_bad_sources_are_one_line_errors(source, kwargs, message):
    with pytest.raises(CertattrError) as err:
        load_source(source, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_torchvision_name_loads_its_pretrained_weights_offline_from_torch_home(tmp_path, monkeypatch):
    import torch.hub
    import torchvision

    weights = torchvision.models.ResNet18_Weights.DEFAULT
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        reference.fc.bias.copy_(torch.arange(1000, dtype=torch.float32))  # recognisable
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    model = load_source("torchvision:resnet18")
    assert float(model.net.fc.bias[999]) == 999.0 and model.spec.crop == 224 and model.spec.resize == 256
    assert model.spec.mean == (0.485, 0.456, 0.406) and model.spec.notes["final_layer"] == "layer4"
    assert model.gap_linear is model.net.fc
    with pytest.raises(CertattrError, match="could not be loaded .* copy .* there, or use weights='random'"):
        load_source("torchvision:resnet34")  # not in the cache, and no network


def test_timm_name_with_a_local_weights_file(tmp_path):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("test_efficientnet", pretrained=False)
    torch.save(reference.state_dict(), tmp_path / "w.pt")
    model = load_source("timm:test_efficientnet", weights=str(tmp_path / "w.pt"))
    x = torch.rand(1, 3, model.spec.crop, model.spec.crop)
    assert torch.equal(model(x), reference.eval()(model.normalize(x)))


def test_the_final_layer_is_guessed_as_the_last_spatial_top_level_module():
    import torchvision

    assert guess_final_layer(torchvision.models.resnet18(weights=None), 3, 64) == "layer4"
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert guess_final_layer(net, 3, 16) == "1"


def test_classes_file(tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(f"digit {i}" for i in range(10)) + "\n\n")
    torch.save(_tiny(), tmp_path / "whole.pt")
    model = load_source(str(tmp_path / "whole.pt"), final_layer="last", trust_pickle=True,
                        classes=tmp_path / "classes.txt", **SPEC)
    assert model.spec.notes["classes"][9] == "digit 9"
    (tmp_path / "few.txt").write_text("a\nb\n")
    with pytest.raises(CertattrError, match="classes has 2 names but the model gives 10 logits"):
        load_source(str(tmp_path / "whole.pt"), final_layer="last", trust_pickle=True, classes=tmp_path / "few.txt",
                    **SPEC)
