"""The GPU check: paper settings on EfficientNet-Lite0, measured in one run, written as one JSON and one table.

    python benchmarks/gpu_check.py OUTDIR                     # paper settings, on CUDA when there is one
    python benchmarks/gpu_check.py OUTDIR --tiny              # tiny settings: the CPU rehearsal (a minute or two)
    bash benchmarks/gpu_check.sh OUTDIR                       # the same, with the environment set up (README there)

What it measures, in this order (the most important first, so that a time guard cuts the least important):

1. **the model's limit**: EfficientNet-Lite0's own batched forward pass (no grad) and forward + input gradient, at
   several batch sizes, in every precision (fp32, bf16, and fp16 on CUDA); the limit of a precision is its
   fastest batch size (images/s);
2. **every method at both layers at the paper's settings** (n = 100, n0 = 10, sigma = 0.15, K = 50/30/10,
   tau = 0.75, alpha = 0.001, Bonferroni, chunk_size = 50 as the paper profile, the methods' reference
   hyperparameters: RISE 1000 masks, Occlusion 16/8 at the Input layer, IntGrad 20 steps), one certificate of a
   bundled photo each, fp32: seconds per image, and the ratio to the model's limit, ``limit_s / seconds``, where
   ``limit_s = n * passes_per_map / limit rate`` (forward for RISE, Occlusion, AblationCam and Cam, forward +
   backward for the others; ``passes_per_map`` as ``benchmarks/bench_methods.py`` counts them); the share of the
   certificate's time spent outside the model, per stage (``benchmarks/overhead.py``); the peak GPU memory;
3. **reduced precision**: Grad, LRP, RISE and GradCam at both layers in bf16 (and fp16 on CUDA) against fp32:
   the speed-up, the share of pixels whose certified label (1, 0 or abstain) differs from fp32's, per K and over
   all K, and how many certified-'1' pixels became certified-'0' (and the reverse);
4. **the batching gain**: maps/s attributing ``chunk_size`` noisy copies per call against one copy per call;
5. **memory**: the largest chunk of noisy copies (doubling from 64) whose Guided Backprop at the Input layer (a
   forward + backward pass like Grad's, the most memory per copy of the single-pass methods) fits on the GPU, with its peak memory (CUDA only; "n/a" on the CPU, where
   the host's peak RSS is given instead).

A time guard (``--budget-seconds``, default 480 s: about 8 minutes on an H100 leaves room inside a 10-minute call)
skips what would start too late, and says so in the outputs. Each phase must start its steps within its share of the
budget (limits by 15%, fp32 methods by 65%, precision by 88%, batching by 95%, memory by 100%), so a slow phase
leaves time to the next. The JSON and the table are rewritten after every step, so a run killed from outside still
leaves what it measured.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import FORWARD_ONLY, passes_per_map  # noqa: E402
from overhead import StageClock, clear_memos, transfer_seconds  # noqa: E402

from certattr.engine.noise import noisy_copies  # noqa: E402
from certattr.engine.smoothing import SmoothedAttribution  # noqa: E402
from certattr.methods import get_method, method_names  # noqa: E402
from certattr.models.data import bundled_photo  # noqa: E402
from certattr.models.registry import LAYERS, load_model  # noqa: E402

#: the paper's settings (certattr/book/build.py, paper profile: chunk_size 50; the methods' reference defaults)
PAPER = {"n": 100, "n0": 10, "sigma": 0.15, "ks": [50, 30, 10], "tau": 0.75, "alpha": 0.001,
         "correction": "bonferroni", "chunk_size": 50, "image_size": 224, "overrides": {},
         "limit_batches": [1, 8, 32, 64, 128, 256, 512], "single_copies": 10, "budget_seconds": 480.0,
         "largest_chunk_cap": 8192}
#: the CPU rehearsal: every step, a few copies, the costly methods reduced
TINY = {"n": 6, "n0": 2, "sigma": 0.15, "ks": [50, 30, 10], "tau": 0.75, "alpha": 0.001, "correction": "bonferroni",
        "chunk_size": 3, "image_size": 224, "limit_batches": [1, 3], "single_copies": 2, "budget_seconds": 600.0,
        "largest_chunk_cap": 8,
        "overrides": {"rise": {"n_masks": 4}, "occlusion@input": {"window": "half", "stride": "half"},
                      "intgrad": {"steps": 2}}}
PRECISION_METHODS = ["grad", "lrp", "rise", "gradcam"]
BATCHING = [("grad", "input"), ("lrp", "input"), ("gradcam", "final")]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder for gpu_check.json and gpu_check.md (created)")
    parser.add_argument("--tiny", action="store_true", help="tiny settings (the CPU rehearsal)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--methods", nargs="+", default=method_names(), choices=method_names())
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--photo", default="coffee")
    parser.add_argument("--image-size", type=int, help="square input size (default 224; smaller only to rehearse)")
    parser.add_argument("--budget-seconds", type=float, help="time guard (default: 480 paper, 600 tiny)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


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


class Run:
    """The outputs being filled, the clock and the guard."""

    def __init__(self, out: Path, settings: dict, meta: dict):
        self.out, self.settings, self.start = out, settings, time.perf_counter()
        self.budget = self.deadline = settings["budget_seconds"]
        self.result = {"meta": meta, "limits": {}, "methods": [], "precision": [], "batching": [], "memory": {},
                       "skipped": [], "failed": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def phase(self, until: float) -> None:
        """The steps that follow must start before ``until`` (a fraction of the budget), so that a slow step
        leaves time to the later ones."""
        self.deadline = until * self.budget

    def allowed(self, what: str, estimate: float = 0.0) -> bool:
        """False (and the step recorded as skipped) when starting ``what`` would pass the phase's deadline."""
        if self.elapsed() + estimate <= self.deadline:
            return True
        self.result["skipped"].append({"what": what, "reason": f"time guard: {self.elapsed():.0f} s spent, about "
                                       f"{estimate:.0f} s more needed, this phase ends at {self.deadline:.0f} s "
                                       f"of {self.budget:.0f} s"})
        return False

    def failed(self, what: str, err: Exception) -> None:
        """Record a step that raised (the run goes on with the next one)."""
        self.result["failed"].append({"what": what, "error": f"{type(err).__name__}: {err}"})
        print(f"  {what} failed: {type(err).__name__}: {err}", flush=True)
        if isinstance(err, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        self.save()

    def save(self) -> None:
        self.result["meta"]["elapsed_s"] = round(self.elapsed(), 2)
        self.result["memory"]["host_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1))
        (self.out / "gpu_check.md").write_text(markdown(self.result))


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
    common = dict(sigma=settings["sigma"], n0=settings["n0"], chunk_size=settings["chunk_size"], cache=None,
                  progress=False)
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
            except Exception as err:  # one failing method must not cost the rest of a one-shot GPU run
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
                except Exception as err:  # e.g. fp16 overflowing to inf in a map
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

        def timed(batches) -> float:
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
        except Exception as err:
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


# --- the table ---------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# GPU check: {meta['model']} on {meta['device_name']} ({meta['settings_name']} settings)", "",
             f"n = {meta['settings']['n']}, n0 = {meta['settings']['n0']}, sigma = {meta['settings']['sigma']}, "
             f"K = {meta['settings']['ks']}, chunk_size = {meta['settings']['chunk_size']}, image "
             f"{meta['image']}; torch {meta['torch']}; {meta.get('elapsed_s', 0):.0f} s in all.",
             f"Execution: {meta['execution']}; TF32 allowed in cuDNN convolutions: {meta['cudnn_allow_tf32']}, "
             f"in matmuls: {meta['matmul_allow_tf32']}.", "",
             "## The model's limit (images/s at the fastest batch size)", "",
             "| precision | forward | (batch) | forward+backward | (batch) |", "|---|---|---|---|---|"]
    for precision, entry in result["limits"].items():
        f, b = entry.get("forward", {}), entry.get("forward_backward", {})
        lines.append(f"| {precision} | {f.get('best_images_per_s')} | {f.get('best_batch')} | "
                     f"{b.get('best_images_per_s')} | {b.get('best_batch')} |")
    lines += ["", "## Every method, fp32", "",
              "| method@layer | s / image | limit s / image (reference) | x limit | outside the model / model | "
              "peak GPU MB |", "|---|---|---|---|---|---|"]
    for r in result["methods"]:
        if "undefined" in r:
            lines.append(f"| {r['method']}@{r['layer']} | undefined | | | | |")
            continue
        ref = "fwd" if r["reference"] == "forward" else "fwd+bwd"
        peak = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"
        lines.append(f"| {r['method']}@{r['layer']} | {r['seconds_per_image']:.3f} | {r['limit_seconds_per_image']} "
                     f"({ref}, {r['passes_per_map']} passes/map) | {r['ratio_to_limit']} | "
                     f"{r['overhead']['outside_over_model']} | {peak} |")
    lines += ["", "## Reduced precision against fp32", "",
              "| method@layer | precision | s / image | speed-up | labels differing | per K | 1 -> 0 | 0 -> 1 | "
              "majority differing |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["precision"]:
        per_k = ", ".join(f"{k}: {v:.4f}" for k, v in r["differing_share_per_k"].items())
        lines.append(f"| {r['method']}@{r['layer']} | {r['precision']} | {r['seconds_per_image']:.3f} | "
                     f"{r['speedup_vs_fp32']} | {r['differing_share']:.4f} | {per_k} | {r['one_to_zero']} | "
                     f"{r['zero_to_one']} | {r['majority_differing_share']:.4f} |")
    lines += ["", "## Batching: chunk_size copies per call against one per call", "",
              "| method@layer | batched maps/s | one at a time maps/s | gain |", "|---|---|---|---|"]
    for r in result["batching"]:
        lines.append(f"| {r['method']}@{r['layer']} | {r['batched_maps_per_s']} | {r['single_maps_per_s']} | "
                     f"{r['gain']} |")
    memory = result["memory"]
    lines += ["", "## Memory", "", f"* largest chunk (GB at the Input layer, doubling from 64) that fits: "
              f"{memory.get('largest_chunk')}"
              f"{'' if not memory.get('peak_bytes_by_chunk') else ' (peak bytes by chunk: ' + str(memory['peak_bytes_by_chunk']) + ')'}",
              f"* copy of one chunk to the device: {memory.get('transfer_seconds_per_chunk')} s",
              f"* host peak RSS: {memory.get('host_peak_rss_mb')} MB"]
    if result["failed"]:
        lines += ["", "## Failed", ""] + [f"* {s['what']}: {s['error']}" for s in result["failed"]]
    if result["skipped"]:
        lines += ["", "## Skipped by the time guard", ""] + [f"* {s['what']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    settings = dict(TINY if args.tiny else PAPER)
    if args.image_size:
        settings["image_size"] = args.image_size
    if args.budget_seconds is not None:
        settings["budget_seconds"] = args.budget_seconds
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    models = {p: load_model("efficientnet_lite0", "pretrained", device, precision=p) for p in precisions}
    size = settings["image_size"]
    photo = bundled_photo(args.photo, round(size * 256 / 224), size)
    meta = {"model": "efficientnet_lite0 (pretrained, fast=True)", "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
            (platform.processor() or platform.machine()),
            "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "settings_name": "tiny" if args.tiny else "paper", "settings": settings,
            "image": f"{args.photo} {tuple(photo.tensor.shape)}", "execution": models["fp32"].execution.describe(),
            # on CUDA, torch's default lets cuDNN run "fp32" convolutions in TF32 (matmuls stay fp32)
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    run = Run(Path(args.out), settings, meta)
    run.save()
    certificates: dict = {}
    print(f"limits ({device})", flush=True)
    run.phase(0.15)
    measure_limits(run, models, photo.tensor, device)
    print("methods (fp32)", flush=True)
    run.phase(0.65)
    measure_methods(run, models["fp32"], photo.tensor, args.photo, args.methods, args.layers, device, certificates)
    print("precision", flush=True)
    run.phase(0.88)
    measure_precision(run, models, photo.tensor, args.photo, args.layers, device, certificates)
    print("batching and memory", flush=True)
    run.phase(0.95)
    measure_batching(run, models["fp32"], photo.tensor, args.photo, device)
    run.phase(1.0)
    measure_memory(run, models["fp32"], photo.tensor, device)
    run.save()
    print(f"wrote {run.out / 'gpu_check.json'} and {run.out / 'gpu_check.md'} ({run.elapsed():.0f} s)")
    return run.result


if __name__ == "__main__":
    main()
