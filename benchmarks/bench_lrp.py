"""LRP at the Input layer: certattr's wiring of zennit's rules against zennit's own hooks, and against the
bound that ZPlus sets for any implementation.

ZPlus needs a model's convolutions three times (the forward pass, a forward pass with W+ for the
denominators, and the transposed pass), where the input gradient needs them twice. An LRP with no other
cost would therefore take at least forward + (forward + backward) per map, i.e. run at most at

    bound = t(forward + backward) / (t(forward + backward) + t(forward))

of the model's forward+backward rate (approximately: the model's backward also does BatchNorm and
activation work that LRP skips). The script times, in alternation and best of the rounds, on the same
noisy copies and batch size as ``bench_methods.py``: the model's forward, its forward + input gradient,
certattr's LRP and the same rules wired by zennit's hooks (``composite(..., relayed=False)``, the tests'
reference). EfficientNet-Lite0 uses its pretrained weights (offline), ResNet-18 random weights.

    python benchmarks/bench_lrp.py        # table + benchmarks/results/lrp.json
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import certattr.methods.lrp_rules as lrp_rules
from certattr.engine.noise import noisy_copies
from certattr.methods import get_method
from certattr.models.data import bundled_photo
from certattr.models.registry import load_model
from certattr.profiling.passes import WEIGHTS, model_passes, paired


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(WEIGHTS), choices=list(WEIGHTS))
    parser.add_argument("--n", type=int, default=8, help="noisy copies")
    parser.add_argument("--chunk-size", type=int, default=8, help="noisy copies per call")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--min-seconds", type=float, default=20.0, help="time all four in alternation this long")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "lrp.json"))
    return parser.parse_args(argv)


def zennit_wired(method, model, chunk, target):
    """The same LRP rules and canonizers, wired by zennit's own hooks."""
    certattr_composite = lrp_rules.composite
    lrp_rules.composite = lambda view, eps: certattr_composite(view, eps, relayed=False)
    try:
        return method.attribute(model, chunk, target, "input")
    finally:
        lrp_rules.composite = certattr_composite


def bench(args) -> list[dict]:
    rows = []
    for name in args.models:
        model = load_model(name, WEIGHTS[name])
        image = bundled_photo("coffee", model.spec.resize, model.spec.crop).tensor
        with torch.no_grad():
            target = int(model(image[None]).argmax())
        copies = noisy_copies(image, 0.15, 0, "coffee", range(args.n))
        passes = model_passes(model, copies, args.chunk_size)
        method = get_method("lrp")

        def ours():
            for chunk in copies.split(args.chunk_size):
                method.attribute(model, chunk, target, "input")

        def zennits():
            for chunk in copies.split(args.chunk_size):
                zennit_wired(method, model, chunk, target)

        ours(), zennits()  # warm-up
        forward, forward_backward, t_ours, t_zennit = paired(
            [passes["forward"], passes["forward_backward"], ours, zennits], args.min_seconds)
        row = {"model": name, "forward_img_per_s": args.n / forward,
               "forward_backward_img_per_s": args.n / forward_backward,
               "certattr_maps_per_s": args.n / t_ours, "zennit_maps_per_s": args.n / t_zennit,
               "certattr_ratio": forward_backward / t_ours, "zennit_ratio": forward_backward / t_zennit,
               "speedup_over_zennit": t_zennit / t_ours, "bound": forward_backward / (forward_backward + forward)}
        rows.append(row)
        print(f"{name}: certattr {row['certattr_maps_per_s']:.2f} maps/s ({row['certattr_ratio']:.2f} x fwd+bwd), "
              f"zennit's hooks {row['zennit_maps_per_s']:.2f} ({row['zennit_ratio']:.2f}), "
              f"x{row['speedup_over_zennit']:.2f}; bound {row['bound']:.2f}", flush=True)
    return rows


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = bench(args)
    print("| model | certattr maps/s (x fwd+bwd) | zennit's hooks maps/s (x fwd+bwd) | speed-up | bound |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['certattr_maps_per_s']:.2f} ({r['certattr_ratio']:.2f}) | "
              f"{r['zennit_maps_per_s']:.2f} ({r['zennit_ratio']:.2f}) | {r['speedup_over_zennit']:.2f} | {r['bound']:.2f} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "args": {k: v for k, v in vars(args).items() if k != "json"}}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
