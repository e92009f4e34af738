"""The bad-input catalogue: every entry is rejected with a one-line message naming the parameter,
the value and what is allowed."""
import numpy as np
import pytest
import torch

from certattr import certify_maps
from certattr.engine.certify import CertificationWarning
from certattr.engine.config import CertConfig, SamplingConfig, check_fits
from certattr.engine.statistics import certified_radius
from certattr.models.data import ImageNetFolder, bundled_photo, load_image_file
from certattr.methods import get_method
from certattr.models.registry import load_model
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.sparsify import sparsify
from certattr.book.parameters import check_chapter_parameters
from certattr.engine.validation import CertattrError, UndefinedAttribution, check_image

MAPS = np.random.default_rng(0).random((100, 8, 8))


def _engine(tiny, **kw):
    args = dict(method="gradcam", layer="final", sigma=0.25)
    args.update(kw)
    return SmoothedAttribution(tiny, args.pop("method"), args.pop("layer"), args.pop("sigma"), progress=False, **args)


CATALOGUE = [
    # (name, callable taking the tiny model, message fragment)
    ("sigma <= 0", lambda m: _engine(m, sigma=0.0), "sigma=0.0 is not allowed: the noise level must be > 0"),
    ("sigma negative", lambda m: certified_radius(-0.1, 0.75), "sigma=-0.1"),
    ("sigma inf", lambda m: certify_maps(MAPS, [50], sigma=float("inf")), "sigma=inf is not allowed: it must be a finite number"),
    ("sigma nan", lambda m: _engine(m, sigma=float("nan")), "sigma=nan is not allowed"),
    ("tau < 0.5", lambda m: certify_maps(MAPS, [50], sigma=0.25, tau=0.49), "tau=0.49 is not allowed: the certification threshold must satisfy 0.5 <= tau < 1"),
    ("tau = 1", lambda m: certified_radius(0.25, 1.0), "tau=1.0 is not allowed"),
    ("alpha = 0", lambda m: certify_maps(MAPS, [50], sigma=0.25, alpha=0), "alpha=0 is not allowed: the failure probability must satisfy 0 < alpha < 1"),
    ("alpha = 1", lambda m: certify_maps(MAPS, [50], sigma=0.25, alpha=1.0), "alpha=1.0"),
    ("n0 >= n", lambda m: _engine(m, n=50, n0=50).certify(torch.rand(3, 32, 32), "x", 0),
     "n0=50 is not allowed with n=50: the selection samples must satisfy 1 <= n0 < n"),
    ("n0 >= n of two configs", lambda m: check_fits(SamplingConfig(n=5), CertConfig(n0=5)), "n0=5 is not allowed with n=5"),
    ("unknown engine setting", lambda m: _engine(m, taus=0.9), "taus is not a setting: allowed are sigma, n, seed, "
     "chunk_size, keep_maps, n0, tau, alpha, correction, ks"),
    ("unknown certificate setting", lambda m: CertConfig().replace(n=5), "n is not a certificate setting: allowed are "
     "n0, tau, alpha, correction, ks"),
    ("unknown sampling setting", lambda m: SamplingConfig().replace(tau=0.9), "tau is not a sampling setting"),
    ("sampling at certify", lambda m: _engine(m).certify(torch.rand(3, 32, 32), "x", 0, n=500),
     "n cannot change at certify(): it changes the samples"),
    ("n = 0", lambda m: SamplingConfig(n=0), "n=0 is not allowed: it must be an integer >= 1"),
    ("config of the wrong kind", lambda m: _engine(m, sampling=CertConfig()), "sampling=CertConfig("),
    ("n0 = 0", lambda m: certify_maps(MAPS, [50], sigma=0.25, n0=0), "n0=0 is not allowed: it must be an integer >= 1"),
    ("K = 0", lambda m: certify_maps(MAPS, [0], sigma=0.25), "k=0 is not allowed: each top-K percentage must satisfy 0 < K <= 100"),
    ("K > 100", lambda m: sparsify(MAPS, [150]), "k=150"),
    ("K nan", lambda m: sparsify(MAPS, [float("nan")]), "k=nan"),
    ("K duplicated", lambda m: certify_maps(MAPS, [50, 50], sigma=0.25), "must be distinct"),
    ("correction", lambda m: certify_maps(MAPS, [50], sigma=0.25, correction="fdr"), "correction='fdr' is unknown: allowed are bonferroni, holm"),
    ("image shape", lambda m: check_image(torch.rand(1, 3, 8, 8)), "has shape (1, 3, 8, 8), which is not allowed: give shape (3, H, W)"),
    ("image dtype", lambda m: check_image(torch.zeros(3, 8, 8, dtype=torch.uint8)), "dtype torch.uint8, which is not allowed"),
    ("image range", lambda m: check_image(torch.full((3, 8, 8), 255.0)), "values in [255, 255], which is not allowed: pixel values must lie in [0, 1]"),
    ("image nan", lambda m: check_image(torch.full((3, 8, 8), float("nan"))), "contains NaN or inf"),
    ("image inf", lambda m: _engine(m).certify(torch.full((3, 32, 32), float("inf")), "x", 0), "contains NaN or inf"),
    ("maps nan", lambda m: certify_maps(np.full((100, 4, 4), np.nan), [50], sigma=0.25), "NaN or inf"),
    ("unknown model", lambda m: load_model("resnet50"), "model='resnet50' is unknown: allowed are"),
    ("unknown method", lambda m: get_method("smoothgrad"), "method='smoothgrad' is unknown: allowed are"),
    ("unknown layer", lambda m: _engine(m, layer="layer3"), "layer='layer3' is unknown: allowed are input, final"),
    ("unknown hyperparameter", lambda m: get_method("gradcam", steps=3), "unknown hyperparameter(s) steps"),
    ("Cam at the Input layer", lambda m: _engine(m, method="cam", layer="input"), "Cam"),
    ("unknown photo", lambda m: bundled_photo("lena"), "photo 'lena' is unknown: bundled photos are"),
    ("missing image file", lambda m: load_image_file("/nonexistent/x.png"), "does not exist"),
    ("missing ImageNet folder", lambda m: ImageNetFolder("/nonexistent"), "does not exist or is not a folder"),
    ("target out of range", lambda m: _engine(m).certify(torch.rand(3, 32, 32), "x", 10), "target=10 is not allowed: the model has classes 0..9"),
    ("chunk size", lambda m: _engine(m, chunk_size=0), "chunk_size=0 is not allowed: it must be an integer >= 1"),
    ("chapter device", lambda m: check_chapter_parameters({"device": "tpu"}), "device='tpu' is not allowed"),
    ("chapter sigmas", lambda m: check_chapter_parameters({"sigmas": [0.25, 0]}), "sigma=0"),
]


@pytest.mark.parametrize("name,call,message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(tiny, name, call, message):
    with pytest.raises(CertattrError) as err:
        call(tiny)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_undefined_method_is_its_own_error_with_a_reason(tiny):
    from certattr.models.testing import tiny_vgg_model

    with pytest.raises(UndefinedAttribution, match="Cam"):
        _engine(tiny_vgg_model(), method="cam", layer="final")


def test_too_few_samples_warn_with_the_smallest_useful_n(tiny):
    with pytest.warns(CertificationWarning, match=r"n=30 cannot certify any pixel at tau=0.75, alpha=0.001, P=1024 pixels .* smallest n that could certify is 59"):
        _engine(tiny, n=30).certify(torch.rand(3, 32, 32), "x", 0)
