"""What a plan costs before it runs: model passes, device time from a measured rate, and cache bytes.

Model passes, counted per noisy sample (:func:`passes_per_sample`):

* **full** passes (the whole network, forward and backward) at the Input layer: one per sample, plus IntGrad's
  further steps;
* **forward** passes (the whole network, forward only, batched) for RISE's masks and Occlusion's windows at the
  Input layer, shared by every target of an image (the four cells of a grid: the masked passes do not depend
  on the target);
* **body** passes (forward to the Final layer) for the Final-layer methods: one per sample and image, shared by
  every Final-layer method of the image (the model's activation memo, as in a chapter and a sweep task);
* **head** passes (the network after the Final layer, forward and backward): one per sample and method at the
  Final layer, plus IntGrad's steps and, for a head that is not GAP->linear (VGG, ViT), RISE's masks,
  Occlusion's windows and AblationCam's channels; through a GAP->linear head (ResNets, EfficientNet) those are
  computed in closed form (counted as **closed-form** evaluations, at no cost in the estimate).

**Device time** = full x ``full_s`` + (forward + body) x ``body_s`` + head x ``head_s``, per model and image size, from
:func:`measure_rates` (one timed batch per model and image size on this machine) or from a rates file written by
an earlier measurement on the same device (``certattr sweep --dry-run --rates FILE``). **Cache bytes** = the
chunk files of every work in the encodings its readers take (:mod:`certattr.engine.encodings`: 3 bits per input pixel and
sample for the Input-layer top-K codes of the default ladder, one bit per map element for Sparsified SmoothGrad's
sets, float32 maps where raw maps are kept or are the smallest), each kind times a compression ratio measured on
chunk files of that kind already in the cache (1.0, the uncompressed size, where there are none), plus about
1 KiB per entry; next to it, what float32 maps of every sample would take (the reference code's cache).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..engine.encodings import encoding_from_spec
from ..methods import get_method
from .plans import cache_keys, compare_with_cache

__all__ = ["passes_per_sample", "layer_shape", "measure_rates", "device_label", "compression_ratio", "compression_ratios",
           "announce",
           "work_bytes", "estimate"]


#: methods whose extra passes at the Final layer go through a GAP->linear head in closed form
CLOSED_FORM = {"rise", "occlusion", "ablationcam"}


def passes_per_sample(method, model, layer: str, layer_hw: tuple[int, int]) -> tuple[int, int]:
    """(passes, extra passes) from ``layer`` on that ``method`` needs for one noisy sample: 1 (the sample's own)
    and RISE's masks, Occlusion's windows, IntGrad's further steps or AblationCam's channels (Final layer).

    ``layer_hw``: the (h, w) of the map at ``layer`` (the image's H x W at the Input layer)."""
    name, params = method.name, method.params
    extra = 0
    if name == "intgrad":
        extra = int(params["steps"]) - 1
    elif name == "rise":
        extra = int(params["n_masks"])
    elif name == "occlusion":
        extra = int(method.windows(layer, tuple(layer_hw))[0])
    elif name == "ablationcam" and layer == "final":
        extra = int(layer_channels(model))
    return 1, extra


_FINAL: dict = {}


def _final_shape(model, image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """(C, h, w) of the model's Final activation for an image of ``image_hw`` (one forward pass, remembered)."""
    key = (model.name, tuple(int(v) for v in image_hw))
    if key not in _FINAL:
        with torch.no_grad():
            act, _ = model.features(model.normalize(torch.zeros(1, getattr(model, "channels", 3), *key[1],
                                                                device=model.device)))
        _FINAL[key] = tuple(int(v) for v in act.shape[1:4])
    return _FINAL[key]


def layer_channels(model, image_hw: tuple[int, int] | None = None) -> int:
    """Channels C of the model's Final activation (one ablated copy per channel for AblationCam)."""
    return _final_shape(model, image_hw or (model.spec.crop, model.spec.crop))[0]


def layer_shape(model, layer: str, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of the maps the cache stores for ``layer``: the image's at the Input layer, the Final
    activation's otherwise (e.g. 7 x 7 for a ResNet on 224 x 224)."""
    if layer == "input":
        return tuple(int(v) for v in image_hw)
    return _final_shape(model, image_hw)[1:]


def device_label(device) -> str:
    """The hardware a rate was measured on, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu: <model>, 2 threads'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def _timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up (allocations, cuDNN autotuning)
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure_rates(model, image_hw: tuple[int, int], batch: int | None = None) -> dict:
    """Seconds per image of: a full pass (Gradient at the Input layer, forward and backward, ``batch`` images at
    once), a body pass (forward to the Final layer) and a head pass (Gradient at the Final layer on the
    activations, 8 x ``batch`` of them at once) of ``model``."""

    batch = batch or (8 if model.device.type == "cuda" else 4)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, getattr(model, "channels", 3), *image_hw, generator=gen).to(model.device)
    grad = get_method("grad")
    full = _timed(lambda: grad.attribute(model, images, 0, "input")) / batch
    with torch.no_grad():
        body = _timed(lambda: model.features(model.normalize(images))) / batch
        act, context = model.features(model.normalize(images))
    many = act.repeat(8, *([1] * (act.dim() - 1)))
    ctx = tuple(c.repeat(8, *([1] * (c.dim() - 1))) for c in context)

    def head_pass():
        a = many.detach().requires_grad_(True)
        model.logits_from_final(a, *ctx)[:, 0].sum().backward()

    head = _timed(head_pass) / many.shape[0]
    return {"full_s": full, "body_s": body, "head_s": head, "batch": batch,
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


_META = {"sha256", "format", "encoding", "key", "chunk"}  #: the arrays of a chunk file that are not data


def _kind(spec_or_tag: str) -> str:
    """raw, topk, topset or sum: the kind of an encoding spec (``topk:50,...``) or file tag (``topk-50-...``)."""
    head = spec_or_tag.replace(":", "-").split("-")[0]
    return head or "raw"


def compression_ratios(cache_dir, limit: int = 40) -> dict:
    """``{kind: (stored bytes / uncompressed bytes, how it was obtained)}`` per encoding kind, from up to
    ``limit`` chunk files of each kind in ``cache_dir``; a kind without files is left out (its uncompressed
    size, an upper bound, is used)."""
    stored, raw, count = {}, {}, {}
    if cache_dir and Path(cache_dir).is_dir():
        for path in Path(cache_dir).rglob("chunk_*.npz"):
            parts = path.name.split(".")
            kind = _kind(parts[1]) if len(parts) == 3 else "raw"
            if count.get(kind, 0) >= limit:
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    size = sum(data[name].nbytes for name in data.files if name not in _META)
                stored[kind] = stored.get(kind, 0) + path.stat().st_size
            except (OSError, ValueError, KeyError):
                continue
            raw[kind] = raw.get(kind, 0) + size
            count[kind] = count.get(kind, 0) + 1
    return {kind: (stored[kind] / raw[kind], f"{kind}: compression {stored[kind] / raw[kind]:.2f} measured on "
                   f"{count[kind]} chunk files") for kind in raw if raw[kind]}


def compression_ratio(cache_dir, limit: int = 40) -> tuple[float, str]:
    """(stored bytes / float32 bytes, how it was obtained) of the raw-map chunk files in ``cache_dir``."""
    ratios = compression_ratios(cache_dir, limit)
    if "raw" not in ratios:
        return 1.0, "no chunk in the cache to measure the compression on: the uncompressed size, an upper bound"
    return ratios["raw"]


def work_bytes(work, layer_hw, ratios: dict | None = None) -> tuple[dict, int]:
    """(``{kind: bytes}`` the work's chunk files take, compressed by ``ratios`` where measured, and the bytes
    float32 maps of all its samples at the layer's resolution would take)."""

    ratios = ratios or {}
    image_hw = tuple(work.shape[1:])
    out: dict = {}
    for _, size, specs in work.chunk_files:
        for spec in specs:
            enc = encoding_from_spec(spec)
            kind = _kind(spec)
            b = enc.bytes_per_sample(layer_hw, image_hw) * size + getattr(enc, "bytes_per_chunk", lambda hw: 0)(layer_hw)
            out[kind] = out.get(kind, 0.0) + b * ratios.get(kind, (1.0, ""))[0]
    return {k: int(v) for k, v in out.items()}, int(work.samples * layer_hw[0] * layer_hw[1] * 4)


def _load_rates(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def estimate(plan, pool_get, *, rates_file=None, measure: bool = True, device=None) -> dict:
    """Counts and estimates of ``plan`` (see the module docstring).

    ``pool_get(work)`` returns the loaded model of a work; rates are looked up in ``rates_file`` under this
    machine's :func:`device_label` and measured (then stored there) when missing and ``measure`` is true."""

    device = device or plan.device
    label = device_label(device)
    table = _load_rates(rates_file) if rates_file else {}
    rates = {k: v for k, v in table.get(label, {}).items() if {"full_s", "body_s", "head_s"} <= set(v)}
    stored = set(rates)  # rates read from the file (the others are measured now)
    measured, read, missing = [], [], set()
    counts = {"full": 0, "forward": 0, "body": 0, "head": 0, "closed_form": 0}
    masked: set = set()  # (group, method, params): RISE's and Occlusion's masked passes, shared by the targets
    per_model: dict = {}
    raw_bytes = 0
    ratios = compression_ratios(plan.cache_dir)
    by_kind: dict = {}
    shapes: dict = {}  # (model, method, layer, image size) -> (model, layer (h, w), passes, extra passes)
    bodies: dict = {}  # Final-layer body passes: one per sample of each (model, image, sigma, seed, chunk size)
    for work in plan.works:
        image_hw = tuple(work.shape[1:])
        memo_key = (work.model_key, work.method, work.method_params, work.layer, image_hw)
        if memo_key not in shapes:
            model = pool_get(work)
            method = get_method(work.method, **json.loads(work.method_params))
            hw = layer_shape(model, work.layer, image_hw)
            shapes[memo_key] = (model, hw, *passes_per_sample(method, model, work.layer, hw))
        model, hw, f, e = shapes[memo_key]
        samples = work.samples
        kinds, raw = work_bytes(work, hw, ratios)
        raw_bytes += raw
        for k, v in kinds.items():
            by_kind[k] = by_kind.get(k, 0) + v
        mine = {"full": 0, "forward": 0, "body": 0, "head": 0}
        group = (work.model_key, work.image_key, work.sigma, work.seed, work.chunk_size)
        if work.layer == "input":
            shared = work.method in ("rise", "occlusion")
            mine["full"] = samples * (f + (0 if shared else e))
            if shared and (group, work.method, work.method_params, samples) not in masked:
                masked.add((group, work.method, work.method_params, samples))
                mine["forward"] = samples * e
        else:
            before = bodies.get(group, 0)
            bodies[group] = max(before, samples)
            mine["body"] = bodies[group] - before
            closed = work.method in CLOSED_FORM and getattr(model, "gap_linear", None) is not None
            mine["head"] = samples * (f + (0 if closed else e))
            counts["closed_form"] += samples * e if closed else 0
        for k, v in mine.items():
            counts[k] += v
        key = f"{work.model}|{image_hw[0]}x{image_hw[1]}"
        if key in stored and key not in read:
            read.append(key)
        if key not in rates:
            if not measure:
                missing.add(key)
                continue
            rates[key] = measure_rates(model, image_hw)
            measured.append(key)
        r = rates[key]
        s = mine["full"] * r["full_s"] + (mine["forward"] + mine["body"]) * r["body_s"] + mine["head"] * r["head_s"]
        per_model[work.model] = per_model.get(work.model, 0.0) + s
    if measured and rates_file:
        table[label] = {**table.get(label, {}), **rates}
        Path(rates_file).parent.mkdir(parents=True, exist_ok=True)
        Path(rates_file).write_text(json.dumps(table, indent=1, sort_keys=True))
    stored = sum(by_kind.values()) + 1024 * len(plan.works)
    ratio_text = "; ".join(text for _, text in ratios.values()) or \
        "no chunk in the cache to measure the compression on: uncompressed sizes, an upper bound"
    return {"device": label, "full_passes": counts["full"], "forward_passes": counts["forward"],
            "body_passes": counts["body"],
            "head_passes": counts["head"], "closed_form": counts["closed_form"], "seconds": sum(per_model.values()),
            "per_model_seconds": per_model, "rates_measured": measured, "rates_read": read,
            "rates_missing": sorted(missing), "rates_file": str(rates_file) if rates_file else None,
            "raw_bytes": int(raw_bytes), "bytes_by_encoding": by_kind, "ratio_text": ratio_text,
            "bytes": int(stored), "ratio": stored / raw_bytes if raw_bytes else 1.0}


def announce(plan, *, rates_file=None) -> str:
    """What a chapter is about to sample, before it samples: the cache entries of ``plan`` still to compute, their
    model passes and the estimated time on this machine (rates from ``rates_file``, measured and stored there when
    missing: one timed batch per model and image size). Printed by each chapter before it certifies."""
    pool = plan.pool
    if plan.cache_dir:
        missing, _ = compare_with_cache(plan, pool)
        todo = [w for k, w in cache_keys(plan, pool).items() if k in missing]
    else:
        todo = list(plan.works)
    if not todo:
        return (f"[sampling plan] {len(plan.works)} cache entries, every one already in the sample cache: nothing to "
                f"compute.")
    sub = replace(plan, works=todo)
    est = estimate(sub, lambda w: pool.get(*w.model_key), rates_file=rates_file, measure=True)
    passes = (f"{est['full_passes']:,} full (forward+backward) passes, {est['forward_passes']:,} forward-only, "
              f"{est['body_passes']:,} to the Final layer and {est['head_passes']:,} through the head")
    return (f"[sampling plan] {len(plan.works)} cache entries, {len(todo)} still to compute "
            f"({sum(w.samples for w in todo):,} noisy samples): {passes}; about {est['seconds'] / 60:.1f} min on "
            f"this machine ({est['device']}).")
