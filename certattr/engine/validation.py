"""Checks at the edges of the public API.

Every check raises :class:`CertattrError` (a ``ValueError``) with a one-line message that names the
parameter, the value it got, and what is allowed, so that a CLI or a notebook can show it as is.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "CertattrError",
    "UndefinedAttribution",
    "check_sigma",
    "check_tau",
    "check_alpha",
    "check_n",
    "check_sample_count",
    "check_layer",
    "LAYERS",
    "check_ks",
    "check_correction",
    "check_positive_int",
    "check_choice",
    "check_image",
    "match_channels",
    "check_model",
    "check_device",
    "check_finite_number",
    "check_interval",
    "check_bound",
    "ANYTIME_BOUNDS",
]

CORRECTIONS = ("bonferroni", "holm")
#: the anytime bounds of sequential certification (certattr.engine.anytime_bounds), by name
ANYTIME_BOUNDS = ("mixture", "prior", "betting", "looks")
LAYERS = ("input", "final")  #: where a map is explained: the normalized image, or the model's Final activation


class CertattrError(ValueError):
    """A parameter or an input is outside what certattr allows; the message says what is allowed."""


class UndefinedAttribution(CertattrError):
    """An attribution method is not defined for this model or layer (the message gives the reason)."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_finite_number(name: str, value) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):
        raise CertattrError(f"{name}={value!r} is not allowed: it must be a finite number")
    return float(value)


def check_interval(name: str, value, low: float, high: float | None = None, *, low_open: bool = True,
                   high_open: bool = True, what: str = "it", unit: str = "") -> float:
    """A finite number in an interval; ``high=None`` means no upper bound. Returns it as a float.

    The message reads e.g. "tau=0.3 is not allowed: the certification threshold must satisfy 0.5 <= tau < 1".
    """
    v = check_finite_number(name, value)
    above = v > low if low_open else v >= low
    below = high is None or (v < high if high_open else v <= high)
    if not (above and below):
        lo = f"{low:g} {'<' if low_open else '<='} {name}"
        if high is None:
            bounds = f"be {'>' if low_open else '>='} {low:g}"
        else:
            bounds = f"satisfy {lo} {'<' if high_open else '<='} {high:g}"
        raise CertattrError(f"{name}={value!r} is not allowed: {what} must {bounds}{' ' + unit if unit else ''}")
    return v


def check_sigma(sigma) -> float:
    """Noise level in [0,1] pixel units: finite and > 0."""
    return check_interval("sigma", sigma, 0, what="the noise level", unit="(pixel units of [0,1] images)")


def check_tau(tau) -> float:
    return check_interval("tau", tau, 0.5, 1, low_open=False, what="the certification threshold")


def check_alpha(alpha) -> float:
    return check_interval("alpha", alpha, 0, 1, what="the failure probability")


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CertattrError(f"{name}={value!r} is not allowed: it must be an integer >= {minimum}")
    return int(value)


MAX_N = 10_000_000  #: more noise samples than this is refused at once (days of compute and TBs of cache)


def check_sample_count(n, name: str = "n") -> int:
    """A number of noisy samples: 1 <= n <= MAX_N."""
    n = check_positive_int(name, n, 1)
    if n > MAX_N:
        # at the fastest (about 1 ms per sample on a GPU) and 200 KB per 224x224 float32 map
        raise CertattrError(f"{name}={n} is not allowed: {name} must be at most {MAX_N} (at 1 ms per sample this n "
                            f"would take {_duration(n * 1e-3)} and its 224x224 maps {n * 224 * 224 * 4 / 1e12:.3g} TB)")
    return n


def check_n(n, n0) -> tuple[int, int]:
    """n noisy samples of which the first n0 choose each pixel's label: 1 <= n0 < n <= MAX_N."""
    n = check_sample_count(n)
    n0 = check_positive_int("n0", n0, 1)
    if n0 >= n:
        raise CertattrError(f"n0={n0} is not allowed with n={n}: the selection samples must satisfy 1 <= n0 < n")
    return n, n0


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600)):
        if seconds >= size:
            return f"about {seconds / size:.3g} {unit}"
    return f"about {seconds:.3g} seconds"


def check_ks(ks) -> tuple[float, ...]:
    """Top-K percentages: each 0 < K <= 100, no duplicates; returned sorted descending (largest first)."""
    if _is_number(ks):
        ks = [ks]
    try:
        values = list(ks)
    except TypeError:
        raise CertattrError(f"k={ks!r} is not allowed: give one or more percentages with 0 < K <= 100") from None
    if not values:
        raise CertattrError("k=[] is not allowed: give one or more percentages with 0 < K <= 100")
    out = []
    for k in values:
        if not _is_number(k) or not math.isfinite(float(k)) or not 0 < float(k) <= 100:
            raise CertattrError(f"k={k!r} is not allowed: each top-K percentage must satisfy 0 < K <= 100")
        out.append(float(k))
    if len(set(out)) != len(out):
        raise CertattrError(f"k={values!r} is not allowed: the top-K percentages must be distinct")
    return tuple(sorted(out, reverse=True))


def check_correction(correction: str) -> str:
    return check_choice("correction", correction, CORRECTIONS)


def check_bound(bound) -> str:
    """The name of an anytime bound of sequential certification: one of :data:`ANYTIME_BOUNDS`."""
    return check_choice("bound", bound, ANYTIME_BOUNDS)


def check_layer(layer: str) -> str:
    """"input" or "final" (any case)."""
    return check_choice("layer", layer.lower() if isinstance(layer, str) else layer, LAYERS)


def check_choice(name: str, value, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise CertattrError(f"{name}={value!r} is unknown: allowed are {', '.join(map(str, allowed))}")
    return value


def check_device(device):
    """A torch.device that this machine has (cpu; cuda, cuda:N below the GPU count; mps where available), else one
    line saying what is available. The meta device is refused: it holds shapes, no values."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CertattrError(f"device={device!r} is not allowed: give cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CertattrError(f"device={str(device)!r} is not available here: no CUDA GPU was found; use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise CertattrError(f"device={str(device)!r} is not available here: this machine has {count} CUDA GPU(s), "
                                f"cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise CertattrError(f"device={str(device)!r} is not available here: no Apple GPU (MPS) was found; use "
                                f"--device cpu")
    elif dev.type == "meta":
        raise CertattrError("device='meta' is not allowed: the meta device holds shapes, not values, so nothing can be "
                            "computed on it; use cpu, cuda or mps")
    elif dev.type != "cpu":
        raise CertattrError(f"device={str(device)!r} is not supported: give cpu, cuda, cuda:N or mps")
    return dev


def check_model(model, name: str = "model"):
    """A certattr model (a ``LoadedModel``: ``load_model(name)`` or ``certattr.wrap(module, ...)``), else one line
    saying how to make one. Duck-typed (this layer does not import the models)."""
    if not all(hasattr(model, attr) for attr in ("view", "fingerprint", "normalize", "spec")):
        raise CertattrError(f"{name} of type {type(model).__name__} is not a certattr model: load one with "
                            f"certattr.load_model(name) or wrap your network with certattr.wrap(module, final_layer=..., "
                            f"mean=..., std=..., input_size=...)")
    return model


#: ITU-R BT.601 luma weights of (R, G, B), as Pillow's "L" conversion: a colour image for a 1-channel model
LUMA = (0.299, 0.587, 0.114)


def match_channels(image, channels: int):
    """``image`` (C, H, W) with C in (1, 3) as ``channels`` channels: RGB -> grey by :data:`LUMA`, grey -> RGB by
    repeating it; unchanged (the same tensor) when C == channels."""
    if image.shape[0] == channels:
        return image
    if channels == 1:
        return (image[0] * LUMA[0] + image[1] * LUMA[1] + image[2] * LUMA[2]).clamp(0, 1).unsqueeze(0).contiguous()
    return image.expand(channels, -1, -1).contiguous()


def check_image(image, name: str = "image", spatial: Sequence[int] | None = None, channels: int = 3):
    """A float image tensor (3, H, W) or (1, H, W) with values in [0, 1], no NaN or inf, H and W >= 1, dense, on a
    real device.

    Returns it as a contiguous float32 CPU tensor with ``channels`` channels (converted by :func:`match_channels`:
    a colour image for a 1-channel model is made grey, a grey image for a 3-channel one RGB). ``spatial``
    optionally fixes (H, W).
    """
    import torch

    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise CertattrError(f"{name} of type {type(image).__name__} is not allowed: give a float tensor of shape (3, H, W) in [0, 1]")
    if not torch.is_floating_point(image):
        raise CertattrError(f"{name} has dtype {image.dtype}, which is not allowed: give a float tensor in [0, 1] (divide uint8 images by 255)")
    if image.layout != torch.strided:
        raise CertattrError(f"{name} is a {str(image.layout).replace('torch.', '')} tensor, which is not allowed: give a "
                            f"dense tensor (image.to_dense())")
    if image.device.type == "meta":
        raise CertattrError(f"{name} is on the meta device (shapes only, no values), which is not allowed: give an "
                            f"image with values, e.g. on the CPU")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise CertattrError(f"{name} has shape {tuple(image.shape)}, which is not allowed: give shape (3, H, W)")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise CertattrError(f"{name} has shape {tuple(image.shape)}, which is not allowed: an image needs at least one "
                            f"pixel (H, W >= 1)")
    if spatial is not None and tuple(image.shape[1:]) != tuple(spatial):
        raise CertattrError(f"{name} has size {tuple(image.shape[1:])}, which is not allowed here: expected (H, W) = {tuple(spatial)}")
    if not torch.isfinite(image).all():
        raise CertattrError(f"{name} contains NaN or inf, which is not allowed: give finite values in [0, 1]")
    lo, hi = float(image.min()), float(image.max())
    if lo < 0 or hi > 1:
        raise CertattrError(f"{name} has values in [{lo:.3g}, {hi:.3g}], which is not allowed: pixel values must lie in [0, 1] (before normalization)")
    return match_channels(image.detach().to("cpu", torch.float32).contiguous(), channels)
