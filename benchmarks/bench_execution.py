"""Which way a model's passes run fastest: memory layout, BatchNorm folding and precision, as ratios.

For each model, the batched forward pass (no grad) and the forward + input-gradient pass of ``--batch`` images are
timed in alternation for every way (contiguous NCHW as built = 1.00; channels_last; BatchNorm folded; both; and
bf16 autocast on top of the fastest fp32 way), best of the rounds; the table gives each way's rate over the plain
way's, measured in the same run. The fastest fp32 layout per model is what ``ModelSpec.layouts`` declares for
the device type (``certattr.models.registry``). It also reports how far each way's logits are from the plain
way's (max |difference| / max |logit|).

    python benchmarks/bench_execution.py                          # markdown + benchmarks/results/execution.json
    python benchmarks/bench_execution.py --models resnet18 --batch 4 --min-seconds 2
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from certattr.models.execution import Execution
from certattr.models.registry import MODELS, load_model

WEIGHTS = {"efficientnet_lite0": "pretrained", "resnet18": "random", "vgg11": "random", "vit_b_16": "random"}
WAYS = {
    "as built (NCHW)": dict(fast=False),
    "channels_last": dict(layout="channels_last"),
    "BatchNorm folded": dict(fold=True),
    "folded + channels_last": dict(fold=True, layout="channels_last"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"], choices=list(WEIGHTS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-seconds", type=float, default=8.0, help="time the ways in alternation this long")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "execution.json"))
    return parser.parse_args(argv)


def build(name: str, device: str, *, fast=True, fold=False, layout="contiguous", precision="fp32"):
    """The model run one way: the plain way (fast=False), or with the given folding / layout / precision."""
    model = load_model(name, WEIGHTS[name], "cpu", fast=False)
    if fast:
        from certattr.models.registry import LoadedModel
        model = LoadedModel(model.spec, model.net, model.weights, Execution(layout, fold, precision))
    return model.to(device)


def forward(model, x):
    with torch.no_grad():
        return model(x)


def forward_grad(model, x):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)
    return grad


def timed(models: dict, x, pass_fn, min_seconds: float) -> dict:
    """Best seconds per call of ``pass_fn`` for each model, alternating between them until min_seconds."""
    best = {name: float("inf") for name in models}
    for model in models.values():  # warm-up (allocator, lazy init, first-call dispatch)
        pass_fn(model, x)
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or min(best.values()) == float("inf"):
        for name, model in models.items():
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            pass_fn(model, x)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
               "device": args.device, "batch": args.batch, "torch": torch.__version__, "models": {}}
    x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(args.device)
    for name in args.models:
        models = {way: build(name, args.device, **kw) for way, kw in WAYS.items()}
        rows = {}
        for kind, fn in (("forward", forward), ("forward+gradient", forward_grad)):
            seconds = timed(models, x, fn, args.min_seconds)
            base = seconds["as built (NCHW)"]
            rows[kind] = {way: round(base / s, 2) for way, s in seconds.items()}
            rows[kind + " images/s (as built)"] = round(args.batch / base, 1)
        fp32_best = max(("contiguous", "channels_last"),
                        key=lambda lay: rows["forward"]["folded + channels_last" if lay == "channels_last"
                                                        else "BatchNorm folded"])
        precision = "bf16"
        low = {"fp32": models["folded + channels_last" if fp32_best == "channels_last" else "BatchNorm folded"],
               precision: build(name, args.device, fold=True, layout=fp32_best, precision=precision)}
        for kind, fn in (("forward", forward), ("forward+gradient", forward_grad)):
            seconds = timed(low, x, fn, args.min_seconds)
            rows[kind][f"{precision} (folded, {fp32_best})"] = round(
                rows[kind]["BatchNorm folded" if fp32_best == "contiguous" else "folded + channels_last"]
                * seconds["fp32"] / seconds[precision], 2)
        plain = forward(models["as built (NCHW)"], x)
        rows["logit error"] = {way: float((forward(m, x) - plain).abs().max() / plain.abs().max().clamp_min(1e-12))
                               for way, m in {**models, precision: low[precision]}.items()}
        rows["fastest fp32 layout"] = fp32_best
        rows["declared"] = MODELS[name].layouts.get(torch.device(args.device).type, "contiguous")
        results["models"][name] = rows
        print(f"\n{name} (batch {args.batch}, {args.threads} threads, {args.device}; ratios to the model as built, "
              f"{rows['forward images/s (as built)']} / {rows['forward+gradient images/s (as built)']} images/s)")
        ways = list(rows["forward"])
        print("| pass | " + " | ".join(ways) + " |")
        print("|---|" + "---|" * len(ways))
        for kind in ("forward", "forward+gradient"):
            print(f"| {kind} | " + " | ".join(f"{rows[kind][w]:.2f}x" for w in ways) + " |")
        print("max logit error: " + ", ".join(f"{w} {e:.1e}" for w, e in rows["logit error"].items()))
        print(f"fastest fp32 layout: {fp32_best} (declared for {args.device}: {rows['declared']})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
