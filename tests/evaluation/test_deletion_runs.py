"""The model-running helpers of the faithfulness chapter (certattr.evaluation.deletion_runs): the top-1 flip after
the first deletion step and the deletion rows of a set of certificates."""
import numpy as np
import pytest
import torch

from certattr.engine.certify import certify_maps
from certattr.evaluation.deletion_runs import deletion_results, first_step_flipped
from certattr.models.testing import tiny_model

GREY = torch.tensor([0.5, 0.5, 0.5])


class GreyCounter(torch.nn.Module):
    """Two logits: class 0 is 0.2, class 1 is the fraction of pixels that are exactly the grey fill; so the
    top-1 flips from 0 to 1 once more than 20% of the pixels are filled."""

    device = torch.device("cpu")
    name = "grey"

    def forward(self, x):
        grey = (x == 0.5).all(dim=1).flatten(1).float().mean(dim=1)
        return torch.stack([torch.full_like(grey, 0.2), grey], dim=1)


def _certificate(block: slice):
    """A certificate of 16x16 maps whose pixels in rows ``block`` are the largest in every sample: they are
    certified '1' at K = 25% when the block holds 4 of 16 rows, and the rest certified '0'."""
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 0.1, (60, 16, 16))
    maps[:, block] += 10.0
    return certify_maps(maps, [25, 50], sigma=0.1, n0=10, tau=0.75, alpha=0.01)


def test_first_step_flip_follows_the_certified_area():
    image = torch.rand(3, 16, 16) * 0.4  # never exactly 0.5
    model = GreyCounter()
    big = _certificate(slice(0, 4))  # 25% of the pixels certified '1' at K = 25
    assert (big.label_map(25) == 1).mean() == pytest.approx(0.25)
    assert first_step_flipped(model, image, 0, big, [50, 25], GREY)  # 25% grey > 0.2: top-1 becomes 1
    assert not first_step_flipped(model, image, 1, big, [25, 50], GREY)
    small = certify_maps(np.random.default_rng(1).uniform(0, 1, (60, 16, 16)), [25, 50], sigma=0.1, n0=10, tau=0.75,
                         alpha=0.01)  # pure noise: nothing certified '1'
    assert (small.label_map(25) == 1).sum() == 0
    assert not first_step_flipped(model, image, 0, small, [25, 50], GREY)


def test_deletion_results_give_curve_rows_and_one_flip_row_per_certificate():
    net = tiny_model()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = np.random.default_rng(0).uniform(0, 0.1, (80, 32, 32))
    maps[:, :3] += 5.0  # 3 of 32 rows: about 9% of the pixels, certified '1' at K = 10
    cert = certify_maps(maps, [10, 30], sigma=0.1, n0=10, tau=0.75, alpha=0.01)
    assert (cert.label_map(10) == 1).sum() >= 3 * 32
    certs = {("img", "grad", "input", 0.1): cert, ("img", "gradcam", "final", 0.1): cert}
    rows, flips = deletion_results(net, certs, {"img": image}, {"img": 3}, [30, 10], fill=0.5, sigma=0.1)
    assert len(rows) == 2 * 3 and len(flips) == 2  # clean + two steps per certificate
    assert [r["method_title"] for r in rows[:3]] == ["Grad"] * 3 and rows[0]["model"] == net.name
    assert [r["k"] for r in rows[:3]][1:] == [10.0, 30.0]  # smallest K first
    expected = first_step_flipped(net, image, 3, cert, [10, 30], torch.full((3,), 0.5))
    assert [f["flipped"] for f in flips] == [expected, expected]
    # the first step's probability is the model's on the image with the K = 10 certified pixels set to grey
    mask = torch.from_numpy(cert.label_map(10) == 1)
    deleted = torch.where(mask[None], torch.tensor(0.5), image)
    with torch.no_grad():
        p = torch.softmax(net(deleted[None]).double(), dim=1)[0, 3].item()
    assert rows[1]["probability"] == pytest.approx(p, rel=1e-5)


def test_a_degenerate_certificate_marks_its_curve_and_flip_rows_and_the_findings_drop_them():
    """A constant map's certificate: its curve and flip rows carry the flag, so the flip verdict does not count it
    (the deletion rows have no other way to know)."""
    import pandas as pd

    from certattr.evaluation import findings as F

    net = tiny_model()
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    good = certify_maps(np.random.default_rng(0).uniform(0, 1, (40, 32, 32)), [10], sigma=0.1, n0=10, tau=0.75,
                        alpha=0.01)
    constant = certify_maps(np.ones((40, 32, 32)), [10], sigma=0.1, n0=10, tau=0.75, alpha=0.01)
    assert constant.degenerate and not good.degenerate
    certs = {("img", m, "final", 0.1): (constant if m in ("grad", "gb") else good) for m in ("grad", "gb", "cam", "rise")}
    rows, flips = deletion_results(net, certs, {"img": image}, {"img": 3}, [10], fill=0.5, sigma=0.1)
    assert {r["method"] for r in rows if r["degenerate"]} == {"grad", "gb"}
    assert {f["method"] for f in flips if f["degenerate"]} == {"grad", "gb"}
    v = F.check_final_flip(pd.DataFrame(flips), pd.DataFrame(rows))
    assert "Grad" not in v.measured and "GB" not in v.measured.replace("GB at", "")
    assert "Grad at the Final layer" in v.excluded
