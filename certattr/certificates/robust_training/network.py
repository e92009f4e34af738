"""The small CNN of Levine et al.'s MNIST experiment (their Fig. 8), its softplus twin, and its gradient maps.

Architecture (for ``size`` x ``size`` digits): grey = mean of the 3 input channels -> conv 3x3 (c1) -> act ->
avg-pool 2 -> conv 3x3 (c2) -> act -> avg-pool 2 -> fc (hidden) -> act -> fc (10). Their network has the
same shape (two convolutions, two fully connected layers, an activation after both convolutions and the first
fully connected layer); their kernel sizes and widths are not given in the seed text, these are chosen small.

``activation="relu"``: the classifier is a ReLU network, and the saliency attack runs on its **softplus twin**
(the same weights, every ReLU replaced by softplus with sharpness ``beta``), because the input gradient of a
ReLU network is piecewise constant in the input and gives the attack no second-order signal (what Levine et
al. do for their CIFAR-10 ResNet). ``activation="softplus"``: the classifier itself uses softplus (their MNIST
network); the twin then uses the twin's own ``beta``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...engine.validation import check_choice, check_positive_int
from ...models.digits import one_thread
from ...models.registry import LoadedModel, ModelSpec

__all__ = ["ACTIVATIONS", "DigitCNN", "saliency_maps", "digit_model", "DIGIT_MODEL_NAME", "one_thread"]

ACTIVATIONS = ("relu", "softplus")
DIGIT_MODEL_NAME = "digit_cnn"
_NET_BETA = 1.0  #: softplus sharpness of a softplus classifier (activation="softplus"; PyTorch's default)


class DigitCNN(nn.Module):
    """Two convolutions and two fully connected layers on (B, 3, size, size) images in [0, 1] -> logits (B, 10).

    ``forward(x, beta=None)``: ``beta=None`` is the classifier; a number runs the softplus twin with that
    sharpness on the same weights (no copy: the twin is always the current network).
    """

    def __init__(self, size: int = 16, channels: tuple = (16, 32), hidden: int = 64, classes: int = 10,
                 activation: str = "relu"):
        super().__init__()
        self.size = check_positive_int("size", size, 4)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        c1, c2 = (check_positive_int("channels", c) for c in channels)
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.fc1 = nn.Linear(c2 * (size // 4) ** 2, check_positive_int("hidden", hidden))
        self.fc2 = nn.Linear(hidden, classes)

    def act(self, h: torch.Tensor, beta: float | None) -> torch.Tensor:
        if beta is not None:
            return F.softplus(h, beta=beta)
        return F.relu(h) if self.activation == "relu" else F.softplus(h, beta=_NET_BETA)

    def features(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        """The Final layer: the activation after the second convolution, (B, c2, size/2, size/2)."""
        grey = x.mean(dim=1, keepdim=True)
        h = F.avg_pool2d(self.act(self.conv1(grey), beta), 2)
        return self.act(self.conv2(h), beta)

    def head(self, act: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        h = F.avg_pool2d(act, 2).flatten(1)
        return self.fc2(self.act(self.fc1(h), beta))

    def forward(self, x: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        return self.head(self.features(x, beta), beta)


def saliency_maps(net: DigitCNN, images: torch.Tensor, target: torch.Tensor, *, beta: float | None = None,
                  create_graph: bool = False) -> torch.Tensor:
    """Gradient maps (B, size, size): |d logit_target / d x| summed over the 3 channels.

    The engine's ``grad`` at the Input layer of :func:`digit_model` (captum's Saliency) gives the same maps.
    ``create_graph=True`` keeps the graph, so the maps can be differentiated again: w.r.t. the weights (the
    regulariser) or the input (the attack). ``beta``: the softplus twin's sharpness (None: the network itself).
    """
    with torch.enable_grad():
        x = images if images.requires_grad else images.detach().clone().requires_grad_(True)
        score = net(x, beta).gather(1, target.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(score, x, create_graph=create_graph)
    return grad.abs().sum(dim=1)


class _Body(nn.Module):
    def __init__(self, net: DigitCNN):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


class _Head(nn.Module):
    def __init__(self, net: DigitCNN):
        super().__init__()
        self.net = net

    def forward(self, act):
        return self.net.head(act)


def digit_model(net: DigitCNN, name: str = DIGIT_MODEL_NAME) -> LoadedModel:
    """``net`` as a model the engine accepts: [0, 1] images, no normalization (mean 0, std 1), Final layer =
    the second convolution's activation. ``name`` becomes part of every sample-cache key (with the weights'
    fingerprint), so give each trained network its own. The model holds a frozen copy: ``net`` stays trainable."""
    net = copy.deepcopy(net).eval()
    size = net.size
    spec = ModelSpec(name, "Digit CNN (Levine et al.'s MNIST network, on scikit-learn digits)",
                     lambda _weights: net, lambda n: (_Body(n), _Head(n), None),
                     f"the activation after the second convolution ({net.conv2.out_channels}x{size // 2}x{size // 2})",
                     mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize=size, crop=size,
                     head_kind="other", head_note="a fully connected head, not GAP->linear, so Cam is undefined",
                     lrp="LRP rules for this network are not wired (functional activations, no canonizer)")
    return LoadedModel(spec, net, "trained")
