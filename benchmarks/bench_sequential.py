"""Anytime (sequential) certification against a fixed n, and the band certificate against per-K at alpha/m.

For each bundled photo and method (default: Grad, LRP and RISE at the Input layer, GradCam at the Final layer,
sigma = 0.25, EfficientNet-Lite0, tau = 0.75, alpha = 0.001, K = 50/25/5) the script draws n = 1000 samples once
(the engine's cache; every run below reads them, none resamples) and measures:

* ``fixed``: %certified of the paper's per-K certificates (each K at alpha) at n = 1000 and at the budgets
  (default 100, 150, 200), their band certificate (all K at alpha together) and the per-K certificates at
  alpha/3 (the same joint guarantee as the band by the union bound): "how many more" the band certifies;
* ``sequential``: one anytime run to n_max = 1000 with undecided = 0, whose history gives %certified after
  every chunk (a sequential run with n_max = t stops exactly there: its bounds do not depend on n_max), hence
  the samples it needs to reach the fixed n = 1000 %certified within one point, and its %certified at each
  budget; and runs with the stopping rule ``undecided`` (default 0.05, 0.1, 0.2): samples used and %certified.

%certified is the fraction of (K, pixel) pairs certified (either label), averaged over the K. The sequential
certificate holds for all K at once at alpha; the per-K fixed certificate only per K.

    python benchmarks/bench_sequential.py                          # the issue's setting (GPU-sized)
    python benchmarks/bench_sequential.py --crop 112 --photos chelsea --time-limit 900   # 2 busy CPU cores

Results: benchmarks/results/sequential.json (rewritten after every photo and method, so a stopped run keeps
what it measured).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from certattr import SmoothedAttribution
from certattr.engine.certificate import ABSTAIN
from certattr.evaluation.jobs import method_for
from certattr.models.data import BUNDLED_PHOTOS, bundled_photo
from certattr.models.registry import load_model

OUT = Path(__file__).parent / "results" / "sequential.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", nargs="+", default=list(BUNDLED_PHOTOS))
    p.add_argument("--methods", nargs="+", default=["gradcam@final", "grad@input", "lrp@input", "rise@input"])
    p.add_argument("--rise-masks", type=int, default=12, help="RISE masks (the book's reduced cpu setting: 12)")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--n", type=int, default=1000, help="the fixed-n reference, also the sequential n_max")
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 150, 200])
    p.add_argument("--undecided", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--ks", type=float, nargs="+", default=[50, 25, 5])
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--tau", type=float, default=0.75)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224, help="image side (a smaller crop is cheaper on a CPU)")
    p.add_argument("--chunk-size", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache", default="/tmp/certattr-bench-sequential", help="sample cache folder")
    p.add_argument("--time-limit", type=float, default=None, help="seconds: start no new photo/method after it")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--merge", action="store_true",
                   help="keep the rows already in --out (other photos/methods) and add this run's")
    return p.parse_args(argv)


def certified(labels) -> float:
    return float((np.asarray(labels) != ABSTAIN).mean())


def measure(model, photo, spec: str, args) -> dict:
    name, layer = spec.split("@")
    method = method_for(name, layer, {"rise": {"n_masks": args.rise_masks}})
    settings = dict(ks=tuple(args.ks), tau=args.tau, alpha=args.alpha)

    def engine(n):
        return SmoothedAttribution(model, method, layer, args.sigma, n=n, chunk_size=args.chunk_size,
                                   cache=args.cache, progress=False, **settings)

    began = time.perf_counter()
    full = engine(args.n).certify(photo.tensor, photo.id)  # draws the n samples (or reads them)
    sampling_s = time.perf_counter() - began
    third = engine(args.n).certify(photo.tensor, photo.id, alpha=args.alpha / len(args.ks))
    seq = engine(args.n).certify(photo.tensor, photo.id, sequential=True, undecided=0.0)
    history = seq.metadata["history"]
    target = certified(full.labels)
    reach = next((t for t, frac, _ in history if frac >= target - 0.01), None)
    row = {"photo": photo.id, "method": spec, "params": dict(method.params), "sampling_s": round(sampling_s, 1),
           "image_side": args.crop, "threads": args.threads,
           "fixed": {"n": args.n, "certified": target, "band_certified": certified(full.band_labels),
                     "per_k_alpha_over_m_certified": certified(third.labels),
                     "band_gain_pixels": int(((full.band_labels != ABSTAIN) & (third.labels == ABSTAIN)).sum()),
                     "band_per_k": {str(k): certified(full.band_labels[i]) for i, k in enumerate(full.ks)},
                     "per_k": {str(k): certified(full.labels[i]) for i, k in enumerate(full.ks)}},
           "sequential": {"samples_to_reach_fixed_within_1pt": reach, "certified_at_n": history[-1][1],
                          "history": history}}
    budgets = {}
    for b in args.budgets:
        fixed_b = engine(b).certify(photo.tensor, photo.id)
        at_b = next(frac for t, frac, _ in history if t >= b)
        budgets[str(b)] = {"fixed_certified": certified(fixed_b.labels), "fixed_band_certified":
                           certified(fixed_b.band_labels), "sequential_certified": at_b}
    row["budgets"] = budgets
    stops = {}
    for u in args.undecided:
        stop = engine(args.n).certify(photo.tensor, photo.id, sequential=True, undecided=u)
        stops[str(u)] = {"samples": stop.n, "certified": certified(stop.labels)}
    row["stopping_rule"] = stops
    return row


def summarize(rows: list, args) -> dict:
    out = {}
    for spec in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == spec]
        reach = [r["sequential"]["samples_to_reach_fixed_within_1pt"] for r in rs]
        out[spec] = {
            "photos": len(rs),
            "fixed_n_certified_mean": float(np.mean([r["fixed"]["certified"] for r in rs])),
            "sequential_at_n_certified_mean": float(np.mean([r["sequential"]["certified_at_n"] for r in rs])),
            "reached_within_1pt": f"{sum(x is not None for x in reach)} of {len(rs)}",
            "samples_to_reach_mean_over_reached": (float(np.mean([x for x in reach if x is not None]))
                                                   if any(x is not None for x in reach) else None),
            "band_vs_per_k_alpha_over_m": [float(np.mean([r["fixed"]["band_certified"] for r in rs])),
                                           float(np.mean([r["fixed"]["per_k_alpha_over_m_certified"] for r in rs]))],
            "budgets": {b: {key: float(np.mean([r["budgets"][b][key] for r in rs])) for key in rs[0]["budgets"][b]}
                        for b in rs[0]["budgets"]},
            "stopping_rule": {u: {key: float(np.mean([r["stopping_rule"][u][key] for r in rs]))
                                  for key in ("samples", "certified")} for u in rs[0]["stopping_rule"]}}
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    model = load_model("efficientnet_lite0", "pretrained", args.device)
    began, rows = time.perf_counter(), []
    if args.merge and Path(args.out).exists():
        rows = json.loads(Path(args.out).read_text())["rows"]
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "args": {k: v for k, v in vars(args).items() if k not in ("cache", "out")}}
    skipped = []
    for photo_id in args.photos:
        photo = bundled_photo(photo_id, args.resize, args.crop)
        for spec in args.methods:
            if args.time_limit is not None and time.perf_counter() - began > args.time_limit:
                skipped.append(f"{photo_id}:{spec}")
                continue
            row = measure(model, photo, spec, args)
            rows = [r for r in rows if (r["photo"], r["method"]) != (photo_id, spec)] + [row]
            s = row["sequential"]
            print(f"{photo_id:>12} {spec:>14}: fixed n={args.n} {100 * row['fixed']['certified']:.1f}% | sequential "
                  f"{100 * s['certified_at_n']:.1f}% at n, reaches fixed-1pt at {s['samples_to_reach_fixed_within_1pt']}"
                  f" | band {100 * row['fixed']['band_certified']:.2f}% vs per-K alpha/m "
                  f"{100 * row['fixed']['per_k_alpha_over_m_certified']:.2f}% | {row['sampling_s']} s", flush=True)
            meta["wall_s"] = round(time.perf_counter() - began, 1)
            result = {"meta": meta, "skipped": skipped, "summary": summarize(rows, args), "rows": rows}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    meta["wall_s"] = round(time.perf_counter() - began, 1)
    result = {"meta": meta, "skipped": skipped, "summary": summarize(rows, args) if rows else {}, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
