"""Does ``torch.compile`` repay its compile time for RISE's and Occlusion's forward-only passes? Ratios, one run.

For each model (BatchNorm folded, its declared layout, fp32, as ``load_model`` gives it), RISE and Occlusion at the
Input layer explain ``--rows`` noisy copies with a pass batch of ``--batch`` images, once eager and once with
``compilation="on"``. The first compiled call's extra time is the compile time; then eager and compiled calls
alternate for ``--min-seconds`` (best per call). Reported per model and method: eager images/s, the compiled
speed-up, the compile seconds, the break-even (forward batches and images after which compiling has paid), the
largest |compiled - eager| over the maps' largest magnitude, and the :class:`CompileEstimate` that
``certattr.models.compilation.ESTIMATES`` should hold. ``--shapes`` also measures the two ways to serve a
smaller last batch: recompiling for its size (static shapes) against one graph with dynamic shapes (its compile
time and rate), to compare with padding it to the pass batch (what certattr does: at most one batch per call).

The machine is often shared: the load average (``os.getloadavg``) is recorded before and after.

    python -u benchmarks/bench_compile.py                      # markdown + benchmarks/results/compile.json
    TORCHINDUCTOR_FX_GRAPH_CACHE=0 TORCHINDUCTOR_AUTOGRAD_CACHE=0 TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) \
        python -u benchmarks/bench_compile.py                  # cold compile times (no inductor cache)
    python benchmarks/bench_compile.py --models resnet18 --min-seconds 5 --no-shapes
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from certattr.methods import get_method
from certattr.methods.perturbation import MASKED_LOGITS
from certattr.models.compilation import CompileEstimate
from certattr.models.registry import load_model

WEIGHTS = {"efficientnet_lite0": "pretrained", "resnet18": "random", "vgg11": "random"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"], choices=list(WEIGHTS))
    parser.add_argument("--rows", type=int, default=8, help="noisy copies explained per call")
    parser.add_argument("--batch", type=int, default=8, help="images per forward pass (the methods' pass_batch)")
    parser.add_argument("--masks", type=int, default=12, help="RISE masks per call")
    parser.add_argument("--stride", type=int, default=64, help="Occlusion stride (window 16) per call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=20.0)
    parser.add_argument("--shapes", action=argparse.BooleanOptionalAction, default=False,
                        help="also measure recompiling for a smaller batch and dynamic shapes (slow: on 2 loaded "
                             "cores EfficientNet-Lite0's dynamic-shape compile had not finished after 25 minutes)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "compile.json"))
    return parser.parse_args(argv)


def _call(method, model, x, round_: int):
    MASKED_LOGITS.clear()  # every call runs its passes (no replay of an earlier call's logits)
    start = time.perf_counter()
    maps = method.attribute(model, x, 1, "input", seed=round_, image_id="bench")
    return time.perf_counter() - start, maps


def _passes(method, rows: int, batch: int) -> int:
    """Forward passes of batch images one call makes (the Occlusion call's unmasked pass included)."""
    per_pass = max(1, batch // rows)
    row_parts = -(-rows // -(-rows // batch))
    count = method.params["n_masks"] if method.name == "rise" else method.windows("input", (224, 224))[0]
    passes = -(-count // per_pass) * -(-rows // row_parts)
    return passes + (-(-rows // (per_pass * row_parts)) if method.name == "occlusion" else 0)


def measure_method(method, eager, compiled, x, args) -> dict:
    passes = _passes(method, args.rows, args.batch)
    _call(method, eager, x, 0)  # warm-up
    first, compiled_maps = _call(method, compiled, x, 0)
    _, eager_maps = _call(method, eager, x, 0)
    best = {"eager": float("inf"), "compiled": float("inf")}
    start, round_ = time.perf_counter(), 1
    while time.perf_counter() - start < args.min_seconds or round_ < 3:
        for name, model in (("eager", eager), ("compiled", compiled)):
            best[name] = min(best[name], _call(method, model, x, round_)[0])
        round_ += 1
    per_batch = {name: seconds / passes for name, seconds in best.items()}
    compile_s = max(0.0, first - best["compiled"])
    saving = per_batch["eager"] - per_batch["compiled"]
    images_per_pass = args.batch
    return {"passes per call": passes, "rounds": round_ - 1,
            "eager images/s": round(images_per_pass / per_batch["eager"], 1),
            "compiled speed-up": round(per_batch["eager"] / per_batch["compiled"], 2),
            "compile s": round(compile_s, 1),
            "break-even batches": round(compile_s / saving) if saving > 0 else None,
            "max |compiled - eager| / max |map|": float((compiled_maps - eager_maps).abs().max()
                                                        / eager_maps.abs().max().clamp_min(1e-30)),
            "estimate": CompileEstimate(round(per_batch["eager"] / images_per_pass, 5),
                                        round(per_batch["eager"] / per_batch["compiled"], 2),
                                        round(compile_s, 1)).__dict__}


def measure_shapes(model, args) -> dict:
    """Serving a smaller last batch: a static graph recompiled for it, or one dynamic-shape graph."""
    net = model.net
    x = model.normalize(torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    small = x[: max(1, args.batch - 3)].clone()
    out = {}
    with torch.inference_mode():
        static = torch.compile(net, dynamic=False)
        static(x)
        t = time.perf_counter()
        static(small)
        out["static: recompile for a smaller batch s"] = round(time.perf_counter() - t, 1)
        dynamic = torch.compile(net, dynamic=True)
        t = time.perf_counter()
        dynamic(x)
        out["dynamic: compile s"] = round(time.perf_counter() - t, 1)
        best = {"static": float("inf"), "dynamic": float("inf"), "eager": float("inf")}
        for _ in range(5):
            for name, fn in (("static", static), ("dynamic", dynamic), ("eager", net)):
                t = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - t)
        out["dynamic speed-up over eager"] = round(best["eager"] / best["dynamic"], 2)
        out["static speed-up over eager"] = round(best["eager"] / best["static"], 2)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "rows": args.rows,
               "batch": args.batch, "torch": torch.__version__, "load average before": os.getloadavg(),
               "models": {}}
    x = torch.rand(args.rows, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    methods = [get_method("rise", n_masks=args.masks, pass_batch=args.batch),
               get_method("occlusion", window=16, stride=args.stride, pass_batch=args.batch)]
    for name in args.models:
        eager = load_model(name, WEIGHTS[name], compilation="off")
        compiled = load_model(name, WEIGHTS[name], compilation="on")
        rows = {m.name: measure_method(m, eager, compiled, x, args) for m in methods}
        if args.shapes:
            rows["shapes"] = measure_shapes(eager, args)
        results["models"][name] = rows
        print(f"\n{name} ({eager.execution.describe()}; {args.rows} rows, pass batch {args.batch}, {args.threads} "
              f"threads; load {os.getloadavg()[0]:.1f})")
        keys = [k for k in rows[methods[0].name] if k != "estimate"]
        print("| method | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for m in methods:
            print(f"| {m.name} | " + " | ".join(str(rows[m.name][k]) for k in keys) + " |")
        if args.shapes:
            print("shapes: " + ", ".join(f"{k} {v}" for k, v in rows["shapes"].items()))
    results["load average after"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
