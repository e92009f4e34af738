"""The GPU check: paper settings on EfficientNet-Lite0, measured in one run, written as one JSON and one table.

    python -m certattr.profiling.gpu_check OUTDIR             # paper settings, on CUDA when there is one
    python -m certattr.profiling.gpu_check OUTDIR --tiny      # tiny settings: the CPU rehearsal (a minute or two)
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
   backward for the others; ``passes_per_map`` as :mod:`certattr.profiling.passes` counts them); the share of the
   certificate's time spent outside the model, per stage (:mod:`certattr.profiling.stage_clock`); the peak GPU
   memory;
3. **reduced precision**: Grad, LRP, RISE and GradCam at both layers in bf16 (and fp16 on CUDA) against fp32:
   the speed-up, the share of pixels whose certified label (1, 0 or abstain) differs from fp32's, per K and over
   all K, and how many certified-'1' pixels became certified-'0' (and the reverse);
4. **the batching gain**: maps/s attributing ``chunk_size`` noisy copies per call against one copy per call;
5. **memory**: the largest chunk of noisy copies (doubling from 64) whose Guided Backprop at the Input layer (a
   forward + backward pass like Grad's, the most memory per copy of the single-pass methods) fits on the GPU, with
   its peak memory (CUDA only; "n/a" on the CPU, where the host's peak RSS is given instead).

A time guard (``--budget-seconds``, default 480 s: about 8 minutes on an H100 leaves room inside a 10-minute call)
skips what would start too late, and says so in the outputs. Each phase must start its steps within its share of the
budget (limits by 15%, fp32 methods by 65%, precision by 88%, batching by 95%, memory by 100%), so a slow phase
leaves time to the next. The JSON and the table are rewritten after every step, so a run killed from outside still
leaves what it measured.

This module is the command (the settings, the arguments, the order of the phases); the measurements are in
:mod:`certattr.profiling.gpu_measurements`, the guard and the outputs in :mod:`certattr.profiling.gpu_run`.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from ..methods import method_names
from ..models.data import bundled_photo
from ..models.registry import LAYERS, load_model
from .gpu_measurements import (
    measure_batching,
    measure_limits,
    measure_memory,
    measure_methods,
    measure_precision,
)
from .gpu_run import Run

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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m certattr.profiling.gpu_check",
                                     description=__doc__.split("\n\n")[0])
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
