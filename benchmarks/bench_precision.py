"""What reduced precision buys and costs: certificates at bf16 (or fp16 on CUDA) against float32, per method and layer.

For each bundled photo, method and layer, the same certificate (same seed, σ, n, K, τ, α) is computed with the model
passes in float32 and in ``--precision``, timed in alternation (photo by photo, so that load on the machine falls on
both alike). Reported per (method, layer), over the photos:

* ``speedup``: float32 seconds / reduced-precision seconds, summed over the photos (sampling + certification, cold:
  no sample cache);
* ``certified``: the share of (K, pixel) labels float32 certifies (either label): a comparison where nothing is
  certified says nothing, so keep n large enough (at n = 50 and alpha = 0.001 nearly every pixel abstains);
* ``changed``: the share of (K, pixel) labels that differ between the two certificates;
* ``one_to_zero``: the number of (K, pixel) labels certified important (1) in float32 and certified not important
  (0) at the reduced precision, or the reverse; these are the changes a reader would care about (a change to or
  from abstain is the usual effect of rounding at a pixel near τ);
* ``top1_same``: whether the predicted class is the same (the target is float32's top-1);
* ``degenerate``: a certificate was flagged degenerate (its top-K sets are decided by rounding, e.g. the gradient
  at the Final layer through a GAP->linear head): its label changes say nothing about the precision.

    python benchmarks/bench_precision.py                      # markdown + benchmarks/results/precision.json
    python benchmarks/bench_precision.py --photos chelsea --n 30 --methods grad --layers final   # a quick look
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from certattr.engine.certificate import ABSTAIN
from certattr.engine.smoothing import SmoothedAttribution
from certattr.methods import get_method
from certattr.models.data import BUNDLED_PHOTOS, bundled_photos
from certattr.models.registry import load_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default="pretrained")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--photos", nargs="+", default=list(BUNDLED_PHOTOS)[:3])
    parser.add_argument("--methods", nargs="+", default=["grad", "lrp", "rise", "gradcam"])
    parser.add_argument("--layers", nargs="+", default=["input", "final"])
    parser.add_argument("--rise-masks", type=int, default=50, help="RISE's masks per noisy copy (forward passes)")
    parser.add_argument("--sigma", type=float, default=0.15)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--n0", type=int, default=10)
    parser.add_argument("--ks", type=float, nargs="+", default=[50, 25, 5])
    parser.add_argument("--tau", type=float, default=0.75)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--chunk-size", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "precision.json"))
    return parser.parse_args(argv)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Label changes between two certificates' labels (len(ks), H, W)."""
    return {"labels": int(a.size), "certified": int((a != ABSTAIN).sum()), "changed": int((a != b).sum()),
            "one_to_zero": int(((a == 1) & (b == 0)).sum()), "zero_to_one": int(((a == 0) & (b == 1)).sum()),
            "to_abstain": int(((a != ABSTAIN) & (b == ABSTAIN)).sum()),
            "from_abstain": int(((a == ABSTAIN) & (b != ABSTAIN)).sum())}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    nets = {p: load_model(args.model, args.weights, args.device, precision=p) for p in ("fp32", args.precision)}
    photos = bundled_photos(args.photos)
    rows = []
    for method in args.methods:
        attribution = get_method(method, **({"n_masks": args.rise_masks} if method == "rise" else {}))
        for layer in args.layers:
            seconds = {p: 0.0 for p in nets}
            totals: dict = {}
            top1_same, degenerate = True, False
            for photo in photos:
                x = photo.tensor[None].to(args.device)
                with torch.no_grad():
                    target = int(nets["fp32"](x).argmax())
                    top1_same &= int(nets[args.precision](x).argmax()) == target
                labels = {}
                for precision, net in nets.items():
                    engine = SmoothedAttribution(net, attribution, layer, args.sigma, n=args.n, n0=args.n0,
                                                 ks=args.ks, chunk_size=args.chunk_size, progress=False)
                    start = time.perf_counter()
                    cert = engine.certify(photo.tensor, photo.id, target, tau=args.tau, alpha=args.alpha)
                    seconds[precision] += time.perf_counter() - start
                    labels[precision] = cert.labels
                    degenerate |= bool(cert.degenerate)
                for key, value in compare(labels["fp32"], labels[args.precision]).items():
                    totals[key] = totals.get(key, 0) + value
            row = {"method": method, "layer": layer, "speedup": seconds["fp32"] / seconds[args.precision],
                   "seconds_fp32": seconds["fp32"], f"seconds_{args.precision}": seconds[args.precision],
                   "changed_share": totals["changed"] / totals["labels"], "top1_same": top1_same,
                   "degenerate": degenerate, **totals}
            rows.append(row)
            print(f"  {method:8s} {layer:5s} speed-up {row['speedup']:.2f}x, labels changed "
                  f"{100 * row['changed_share']:.2f}%, 1<->0 {row['one_to_zero']}+{row['zero_to_one']}", flush=True)
    return {"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                        "load_average": list(__import__("os").getloadavg())}}


def markdown(result: dict) -> str:
    p = result["settings"]["precision"]
    lines = [f"| method | layer | {p} speed-up | certified in fp32 | labels changed | certified 1 -> 0 | 0 -> 1 | "
             "to / from abstain | degenerate |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['layer']} | {r['speedup']:.2f}x | {100 * r['certified'] / r['labels']:.1f}% | "
                     f"{100 * r['changed_share']:.2f}% | "
                     f"{r['one_to_zero']} | {r['zero_to_one']} | {r['to_abstain']} / {r['from_abstain']} | "
                     f"{'yes' if r['degenerate'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
