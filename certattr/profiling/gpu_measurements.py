"""The GPU check's five measurements (:mod:`certattr.profiling.gpu_check` runs them in this order): the model's
limit, every method in fp32, reduced precision, the batching gain and the largest chunk that fits; each records
into the :class:`~certattr.profiling.gpu_run.Run` it is given, under its time guard.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ..engine.noise import noisy_copies
from ..engine.smoothing import SmoothedAttribution
from ..methods import get_method
from .gpu_run import Run
from .passes import FORWARD_ONLY, passes_per_map
from .stage_clock import StageClock, clear_memos, transfer_seconds

#: the methods certified again in bf16 (and fp16 on CUDA), at both layers, against their fp32 certificates
PRECISION_METHODS = ["grad", "lrp", "rise", "gradcam"]
#: (method, layer) whose maps/s are measured batched against one copy per call
BATCHING = [("grad", "input"), ("lrp", "input"), ("gradcam", "final")]


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def method_overrides(settings: dict, name: str, layer: str) -> dict:
    """The method's hyperparameters at these settings ("half": half the image's side)."""
    overrides = settings["overrides"]
    params = {**overrides.get(name, {}), **overrides.get(f"{name}@{layer}", {})}
    return {k: settings["image_size"] // 2 if v == "half" else v for k, v in params.items()}


def peak_reset(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device):
    return int(torch.cuda.max_memory_allocated(device)) if torch.device(device).type == "cuda" else None


# --- 1. the model's limit ------------------------------------------------------------------------------------
def pass_seconds(model, x, kind: str, device, repeats: int = 3) -> float:
    """Best seconds of one batched pass: "forward" (inference mode) or "forward_backward" (input gradient)."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up (allocator, cuDNN's choice of kernels)
        synchronize(device)
        start = time.perf_counter()
        if kind == "forward":
            with torch.inference_mode():
                model(x)
        else:
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xg)[:, 0].sum(), xg)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def measure_limits(run: Run, models: dict, image, device) -> None:
    """images/s per precision, pass kind and batch size; the limit is the fastest batch size."""
    for precision, model in models.items():
        entry = {}
        for kind in ("forward", "forward_backward"):
            rates = {}
            for batch in run.settings["limit_batches"]:
                if not run.allowed(f"limit {precision} {kind} batch {batch}"):
                    break
                x = noisy_copies(image, run.settings["sigma"], 0, "limit", range(batch)).to(device)
                try:
                    rates[str(batch)] = round(batch / pass_seconds(model, x, kind, device), 3)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    break
            best = max(rates, key=rates.get) if rates else None
            entry[kind] = {"images_per_s": rates, "best_batch": None if best is None else int(best),
                           "best_images_per_s": None if best is None else rates[best]}
        run.result["limits"][precision] = entry
        run.save()


# --- 2. every method, fp32 -------------------------------------------------------------------------------------
def certify_timed(model, name: str, layer: str, image, image_id: str, settings: dict, device):
    """(certificate, seconds, the overhead report, peak bytes): one certificate, no sample cache."""
    method = get_method(name, **method_overrides(settings, name, layer))
    common = {"sigma": settings["sigma"], "n0": settings["n0"], "chunk_size": settings["chunk_size"], "cache": None,
              "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate maps and too-small n are expected at tiny settings
        SmoothedAttribution(model, method, layer, n=min(2, settings["n"]), **{**common, "n0": 1}).top_k_frequencies(
            image, f"{image_id}-warm-up", None, (50,))  # warm-up: the method's first call
        clear_memos(model)
        engine = SmoothedAttribution(model, method, layer, n=settings["n"], **common)
        peak_reset(device)
        synchronize(device)
        start = time.perf_counter()
        with StageClock(engine.method, device) as clock:
            cert = clock.run(engine.certify, image, image_id, ks=settings["ks"], tau=settings["tau"],
                             alpha=settings["alpha"], correction=settings["correction"])
        synchronize(device)
        seconds = time.perf_counter() - start
    return method, cert, seconds, clock.report(), peak_bytes(device)


def limit_row(run: Run, precision: str, name: str, layer: str, method, size: int) -> dict:
    reference = "forward" if name in FORWARD_ONLY else "forward_backward"
    rate = run.result["limits"].get(precision, {}).get(reference, {}).get("best_images_per_s")
    passes = passes_per_map(name, layer, method.params, size)
    limit_s = None if not rate else run.settings["n"] * passes / rate
    return {"reference": reference, "passes_per_map": passes, "limit_images_per_s": rate,
            "limit_seconds_per_image": None if limit_s is None else round(limit_s, 6)}


def measure_methods(run: Run, model, image, image_id: str, names, layers, device, certificates: dict) -> None:
    for layer in layers:
        for name in names:
            reason = get_method(name).undefined_reason(model, layer)
            if reason:
                run.result["methods"].append({"method": name, "layer": layer, "undefined": reason})
                continue
            if not run.allowed(f"{name}@{layer} fp32"):
                continue
            try:
                method, cert, seconds, overhead, peak = certify_timed(model, name, layer, image, image_id,
                                                                      run.settings, device)
            except Exception as err:  # one failing method must not cost the rest of a one-shot GPU run  # noqa: BLE001
                run.failed(f"{name}@{layer} fp32", err)
                continue
            row = {"method": name, "layer": layer, "precision": "fp32", "params": dict(method.params),
                   "seconds_per_image": round(seconds, 6),
                   **limit_row(run, "fp32", name, layer, method, image.shape[-1])}
            row["ratio_to_limit"] = None if row["limit_seconds_per_image"] is None else \
                round(row["limit_seconds_per_image"] / row["seconds_per_image"], 6)
            row.update({"overhead": overhead, "peak_memory_bytes": peak,
                        "fractions": {str(k): v for k, v in cert.fractions().items()}})
            run.result["methods"].append(row)
            certificates[(name, layer)] = (cert, seconds)
            run.save()
            print(f"  {name}@{layer}: {seconds:.2f} s/image, x{row['ratio_to_limit']} of the limit, outside the "
                  f"model {overhead['outside_over_model']}", flush=True)


# --- 3. reduced precision ------------------------------------------------------------------------------------------
def label_changes(reference, other) -> dict:
    """How ``other``'s certified labels differ from ``reference``'s (same ks, same pixels); also their majority
    labels over the n0 selection samples (which differ even where, at tiny n, nothing is certified)."""
    a, b = np.asarray(reference.labels), np.asarray(other.labels)
    per_k = {str(k): round(float((a[i] != b[i]).mean()), 6) for i, k in enumerate(reference.ks)}
    majority = float((np.asarray(reference.majority) != np.asarray(other.majority)).mean())
    return {"differing_share": round(float((a != b).mean()), 6), "differing_share_per_k": per_k,
            "one_to_zero": int(((a == 1) & (b == 0)).sum()), "zero_to_one": int(((a == 0) & (b == 1)).sum()),
            "pixels": int(a.size), "majority_differing_share": round(majority, 6)}


def measure_precision(run: Run, models: dict, image, image_id: str, layers, device, certificates: dict) -> None:
    for precision, model in models.items():
        if precision == "fp32":
            continue
        for layer in layers:
            for name in PRECISION_METHODS:
                if (name, layer) not in certificates:
                    continue
                reference, fp32_seconds = certificates[(name, layer)]
                if not run.allowed(f"{name}@{layer} {precision}", estimate=fp32_seconds):
                    continue
                try:
                    method, cert, seconds, overhead, peak = certify_timed(model, name, layer, image, image_id,
                                                                          run.settings, device)
                except Exception as err:  # e.g. fp16 overflowing to inf in a map  # noqa: BLE001
                    run.failed(f"{name}@{layer} {precision}", err)
                    continue
                row = {"method": name, "layer": layer, "precision": precision, "seconds_per_image": round(seconds, 6),
                       "fp32_seconds_per_image": round(fp32_seconds, 6),
                       "speedup_vs_fp32": round(fp32_seconds / seconds, 4),
                       **limit_row(run, precision, name, layer, method, image.shape[-1]),
                       **label_changes(reference, cert), "outside_over_model": overhead["outside_over_model"],
                       "peak_memory_bytes": peak}
                run.result["precision"].append(row)
                run.save()
                print(f"  {name}@{layer} {precision}: x{row['speedup_vs_fp32']} vs fp32, labels differing "
                      f"{row['differing_share']:.4f}, 1->0 {row['one_to_zero']}", flush=True)


# --- 4. batching ---------------------------------------------------------------------------------------------------
def measure_batching(run: Run, model, image, image_id: str, device) -> None:
    chunk, single = run.settings["chunk_size"], run.settings["single_copies"]
    copies = noisy_copies(image, run.settings["sigma"], 0, image_id, range(chunk))
    with torch.no_grad():
        target = int(model(image[None].to(device)).argmax())
    for name, layer in BATCHING:
        if get_method(name).undefined_reason(model, layer) or not run.allowed(f"batching {name}@{layer}"):
            continue
        method = get_method(name, **method_overrides(run.settings, name, layer))

        def timed(batches, method=method, layer=layer) -> float:
            clear_memos(model)
            synchronize(device)
            start = time.perf_counter()
            for batch in batches:
                method.attribute(model, batch, target, layer, image_id=image_id)
            synchronize(device)
            return time.perf_counter() - start

        try:
            timed([copies[:1]])  # warm-up
            batched = min(timed([copies]) for _ in range(2)) / chunk
            one = min(timed(list(copies[:single].split(1))) for _ in range(2)) / single
        except Exception as err:  # recorded, the run goes on  # noqa: BLE001
            run.failed(f"batching {name}@{layer}", err)
            continue
        run.result["batching"].append({"method": name, "layer": layer, "chunk_size": chunk,
                                       "batched_maps_per_s": round(1 / batched, 3), "single_maps_per_s": round(1 / one, 3),
                                       "gain": round(one / batched, 3)})
        run.save()


# --- 5. the largest chunk that fits ------------------------------------------------------------------------------
def measure_memory(run: Run, model, image, device) -> None:
    memory = run.result["memory"]
    copies = noisy_copies(image, run.settings["sigma"], 0, "memory", range(1))
    memory["transfer_seconds_per_chunk"] = round(transfer_seconds(
        copies.expand(run.settings["chunk_size"], -1, -1, -1).contiguous(), device), 6)
    if torch.device(device).type != "cuda":
        memory["largest_chunk"] = "n/a"
        memory["largest_chunk_note"] = "measured on CUDA only (torch.cuda.max_memory_allocated)"
        return
    method = get_method("gb")  # a forward + backward pass like Grad's, without hashing the chunk for a memo
    copies = copies.to(device)  # expanded on the device below: no host copy of the whole chunk
    with torch.no_grad():
        target = int(model(image[None].to(device)).argmax())
    size, fits = 64, {}
    while size <= run.settings["largest_chunk_cap"] and run.allowed(f"largest chunk {size}"):
        clear_memos(model)
        torch.cuda.empty_cache()
        peak_reset(device)
        try:
            method.attribute(model, copies.expand(size, -1, -1, -1), target, "input")
            synchronize(device)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:  # cuDNN may raise a plain RuntimeError
            if "out of memory" not in str(err).lower():
                raise
            break
        fits[str(size)] = peak_bytes(device)
        size *= 2
    clear_memos(model)
    torch.cuda.empty_cache()
    largest = max(fits, key=int) if fits else None
    memory.update({"largest_chunk": None if largest is None else int(largest), "method": "gb@input",
                   "peak_bytes_by_chunk": fits, "stopped_at": size,
                   "device_total_bytes": int(torch.cuda.get_device_properties(device).total_memory)})
    run.save()
