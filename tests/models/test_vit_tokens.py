"""The ViT's Final-layer split (certattr.models.vit_tokens), which the ViT chapter runs: the token grid after the
class token reproduces the network, and torchvision's zero classifier head is redrawn once."""
import numpy as np
import pytest
import torch

from certattr.models.registry import load_model
from certattr.models.testing import tiny_model
from certattr.models.vit_tokens import reinit_zero_head, token_split_check


@pytest.mark.slow
def test_vit_split_reproduces_the_network_and_the_head_is_redrawn():
    net = load_model("vit_b_16", "random", seed=0)
    assert not net.net.heads.head.weight.any()  # torchvision's zero head
    assert reinit_zero_head(net, 0) and not reinit_zero_head(net, 0)  # drawn once, then left alone
    std = float(net.net.heads.head.weight.std())
    assert 0.018 < std < 0.022
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    check = token_split_check(net, image)
    assert (check.side, check.tokens, check.hidden) == (14, 196, 768)
    assert check.split_error < 1e-3 * max(1.0, check.logit_scale)
    assert check.no_layernorm_error > 10 * check.split_error  # the reference code's head is another function
    with torch.no_grad():
        patches, _ = net.body(net.normalize(image[None]))
    np.testing.assert_allclose(check.token_norm, patches[0].abs().sum(dim=0).numpy(), rtol=1e-6)
    assert reinit_zero_head(tiny_model(), 0) is False  # no ViT head
