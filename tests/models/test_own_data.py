"""Other data: any number of classes, other input sizes, 1-channel models; bad inputs to the Python API.

Oracles: the conversion done by hand (the certificate of a colour image for a greyscale model is that of its luma
image), shapes at the model's resolution, the class count of the logits, and one-line errors.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from certattr.engine.certificate import ABSTAIN
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.validation import LUMA, CertattrError, check_image
from certattr.methods import get_method
from certattr.models.wrap import wrap


class GreyNet(nn.Module):
    """1-channel CNN, GAP->linear head: (B, 1, S, S) -> (B, classes); Final layer 'features' at S/4."""

    def __init__(self, classes: int = 10, channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def grey_model(classes=10, size=64, seed=0):
    torch.manual_seed(seed)
    return wrap(GreyNet(classes).eval(), "features", mean=(0.5,), std=(0.25,), input_size=size, name="grey")


def test_a_1_channel_64x64_10_class_model_certifies_end_to_end(tmp_path):
    model = grey_model()
    assert model.channels == 1 and model.head_classes() == 10
    colour = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    grey = (colour * torch.tensor(LUMA).view(3, 1, 1)).sum(0, keepdim=True).clamp(0, 1)
    for layer, side in (("input", 64), ("final", 16)):
        engine = SmoothedAttribution(model, "gradcam", layer, 0.1, n=64, n0=4, ks=(50, 10), alpha=0.05,
                                     cache=tmp_path, progress=False)
        cert = engine.certify(colour, "photo")
        assert cert.labels.shape == (2, 64, 64)  # at the image's (the model's) resolution
        assert set(np.unique(cert.labels)) <= {0, 1, ABSTAIN} and (cert.labels != ABSTAIN).any()
        # the colour image is converted to grey before the noise: the same samples as the grey image itself
        same = SmoothedAttribution(model, "gradcam", layer, 0.1, n=64, n0=4, ks=(50, 10), alpha=0.05, cache=None,
                                   progress=False).certify(grey, "photo")
        assert np.array_equal(cert.labels, same.labels)
        maps = get_method("gradcam").attribute(model, grey[None], 0, layer)
        assert maps.shape == (1, side, side)
    from certattr.book.plotting import save_overlay_png

    save_overlay_png(cert, grey, tmp_path / "overlay.png", "grey")  # a 1-channel image is drawn grey
    assert (tmp_path / "overlay.png").stat().st_size > 0


def test_a_grey_image_for_a_colour_model_is_repeated_to_rgb():
    grey = torch.rand(1, 5, 6)
    rgb = check_image(grey)
    assert rgb.shape == (3, 5, 6) and all(torch.equal(rgb[c], grey[0]) for c in range(3))
    luma = check_image(torch.stack([torch.full((2, 2), v) for v in (1.0, 0.0, 0.0)]), channels=1)
    assert luma.shape == (1, 2, 2) and torch.allclose(luma, torch.full((1, 2, 2), LUMA[0]))


@pytest.mark.parametrize("size", [32, 64, 512])
def test_other_input_sizes_certify_at_the_models_resolution(size):
    torch.manual_seed(0)
    model = wrap(GreyNet(3, channels=3).eval(), "features", mean=(0.5,) * 3, std=(0.25,) * 3, input_size=size)
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(size))
    cert = SmoothedAttribution(model, "grad", "input", 0.1, n=60, n0=4, ks=(25,), tau=0.6, alpha=0.2, progress=False,
                               chunk_size=20).certify(image, f"s{size}")
    assert cert.labels.shape == (1, size, size) and (cert.labels != ABSTAIN).any()
    final = get_method("cam").attribute(model, image[None], 0, "final")
    assert final.shape == (1, size // 4, size // 4)


@pytest.mark.parametrize("classes", [2, 37])
def test_any_number_of_classes(classes):
    model = grey_model(classes=classes, size=32)
    image = torch.rand(1, 32, 32)
    engine = SmoothedAttribution(model, "cam", "final", 0.1, n=40, n0=4, ks=(50,), tau=0.6, alpha=0.3, progress=False)
    assert engine.certify(image, "x", classes - 1).metadata["target"] == classes - 1
    with pytest.raises(CertattrError, match=f"the model has classes 0..{classes - 1}"):
        engine.certify(image, "x", classes)


# --- bad inputs to the Python API: one line each ---------------------------------------------------------
def _one_line(call, match):
    with pytest.raises(CertattrError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_a_plain_module_where_a_certattr_model_is_expected():
    net = GreyNet()
    _one_line(lambda: SmoothedAttribution(net, "grad", "input", 0.1), r"GreyNet is not a certattr model: .*certattr\.wrap")
    _one_line(lambda: get_method("grad").attribute(net, torch.rand(1, 1, 8, 8), 0, "input"), "not a certattr model")


def test_method_none_is_one_line():
    _one_line(lambda: SmoothedAttribution(grey_model(size=32), None, "input", 0.1), "method=None is unknown: allowed are")


@pytest.mark.parametrize("image, match", [
    (torch.rand(3, 0, 0), r"has shape \(3, 0, 0\), which is not allowed: an image needs at least one pixel"),
    (torch.rand(3, 8, 8, device="meta"), "is on the meta device"),
    (torch.rand(3, 8, 8).to_sparse(), "is a sparse_coo tensor, which is not allowed: give a dense tensor"),
    (torch.rand(2, 8, 8), r"has shape \(2, 8, 8\), which is not allowed: give shape \(3, H, W\)"),
])
def test_bad_images_are_one_line(image, match):
    engine = SmoothedAttribution(grey_model(size=32), "grad", "input", 0.1, n=4, n0=2, progress=False)
    _one_line(lambda: engine.certify(image, "x"), match)


def test_more_than_six_k_values_get_distinct_colours():
    from certattr.book.plotting import K_COLORS, k_colors, overlay_rgba
    from certattr.engine.certificate import Certificate

    ks = (90, 80, 70, 60, 50, 40, 30, 20)
    assert k_colors(5) == list(K_COLORS)  # up to five K: the colours as before
    colours = k_colors(len(ks))
    assert len(set(colours)) == len(ks)
    # pixel i certified '1' at the K of index <= i (top sets are nested): its smallest K, drawn, is ks[i]
    labels = np.zeros((len(ks), 1, len(ks)), dtype=np.int8)
    for i in range(len(ks)):
        labels[:i + 1, 0, i] = 1

    class Cert:  # what overlay_rgba reads of a certificate
        pass

    cert = Cert()
    cert.labels, cert.ks = labels, ks
    cert.overlay = lambda: Certificate.overlay(cert)
    drawn = overlay_rgba(cert)[0, :, :3]
    assert [tuple(c) for c in drawn] == colours
