"""Small, fast models with the same interface as the registered ones: for tests, benchmarks and teaching.

``tiny_model()`` is a residual CNN with BatchNorm and a GAP->linear head (like a ResNet) on 32x32 images;
``tiny_vgg_model()`` has a fully connected head (Cam undefined, like VGG-11). Random weights, seeded.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import GapLinearHead, LoadedModel, ModelSpec
from .tiny_nets import BasicBlock, TinyResNet, TinyVGG  # the architectures (certattr.models.tiny_nets)

__all__ = ["BasicBlock", "TinyResNet", "TinyVGG", "tiny_model", "tiny_vgg_model"]


class _TinyVGGHead(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.classifier = net.classifier

    def forward(self, act):
        return self.classifier(act)


def _bn_stats(net: nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial running statistics so that canonizers have work to do."""
    gen = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))


def _spec(name, title, builder, split, final_layer, **kw) -> ModelSpec:
    return ModelSpec(name, title, builder, split, final_layer, resize=36, crop=32, **kw)


def tiny_model(seed: int = 0, classes: int = 10, width: int = 8) -> LoadedModel:
    """A residual CNN with BatchNorm and a GAP->linear head on 32x32 images (Final: 16x8x8)."""
    def build(_weights):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = TinyResNet(classes, width)
        _bn_stats(net, seed)
        return net.eval()

    def split(net):
        return nn.Sequential(net.stem, net.block, net.last), GapLinearHead(net.fc), net.fc

    spec = _spec("tiny_resnet", "Tiny ResNet (test model)", build, split, "output of the last conv (16x8x8)",
                 canonizers=("merge_batchnorm", "tiny_resnet", "gap_linear_head"))
    return LoadedModel(spec, build("random"), "random")


def tiny_vgg_model(seed: int = 0, classes: int = 10, width: int = 8) -> LoadedModel:
    """A VGG-like CNN with a fully connected head on 32x32 images (Final: 8x16x16; Cam undefined)."""
    def build(_weights):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TinyVGG(classes, width).eval()

    def split(net):
        return net.features, _TinyVGGHead(net), None

    spec = _spec("tiny_vgg", "Tiny VGG (test model)", build, split, "output of the last ReLU (8x16x16)",
                 head_kind="other", head_note="a fully connected head, not GAP->linear, so Cam is undefined")
    return LoadedModel(spec, build("random"), "random")
