"""Anytime (sequential) certification with each anytime bound against a fixed n, and the band certificate against
per-K at alpha/m.

For each photo (default: coffee, chelsea and camera) and method (default: Grad, LRP and RISE at the Input layer,
GradCam at the Final layer; sigma = 0.25, EfficientNet-Lite0, tau = 0.75, alpha = 0.001, K = 50/25/5) the script
draws n = 1000 samples once (the engine's cache; every run below reads them, none resamples) and measures:

* ``fixed``: %certified of the paper's per-K certificates (each K at alpha) at n = 1000 and at the budgets
  (default 100, 150, 200), their band certificate (all K at alpha together) and the per-K certificates at
  alpha/3 (the same joint guarantee as the band by the union bound): "how many more" the band certifies;
* ``bounds``: for every anytime bound (``mixture``, ``prior`` with its weights from the first 20 samples,
  ``prior:clean`` with its prior from the clean image's map, ``betting``, ``looks``), one anytime run to
  n_max = 1000 with undecided = 0, fed from one pass over the cached samples. Its history (%certified after every
  chunk) gives the samples it needs to reach the fixed n = 1000 %certified within one point, its %certified at
  each budget, and where the stopping rule ``undecided`` (default 0.05, 0.1, 0.2) would have stopped it;
* ``ceiling``: the same from a one-sided binomial test at alpha/(2P) read at every chunk. It is *not* valid at a
  stopping time; at a fixed t no anytime test at that level can certify more (Neyman-Pearson), so it bounds
  what any anytime bound can reach;
* ``engine_check``: the default bound through ``SmoothedAttribution.certify(sequential=True)`` must give the
  history of its one-pass run.

%certified is the fraction of (K, pixel) pairs certified (either label), averaged over the K. The anytime
certificates hold for all K at once at alpha; the per-K fixed certificate only per K. The summary's ``targets``
are: mean (over the GradCam, LRP and RISE pairs) samples-to-reach / n at most 50%, and at most one point
lost to the fixed n at each budget. EfficientNet-Lite0 eager forward images/s at batch 8 is measured at the start
and the end (the machine's speed varies; the counts and ratios reported do not depend on it).

    nice -n 10 python benchmarks/bench_sequential.py               # the measured setting (-> results/sequential.json)
    python benchmarks/bench_sequential.py --crop 112 --photos chelsea --out /tmp/s.json   # a quick look

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
from scipy.stats import binom

from certattr.book.execution import model_speed
from certattr import SmoothedAttribution
from certattr.engine.bets import prior_from_map
from certattr.engine.certificate import ABSTAIN
from certattr.engine.confseq import anytime_level
from certattr.engine.sequential import DEFAULT_BOUND, AnytimeCounter
from certattr.engine.sparsify import upsample_maps
from certattr.engine.validation import check_image
from certattr.evaluation.jobs import method_for
from certattr.models.data import BUNDLED_PHOTOS, bundled_photo
from certattr.models.registry import load_model

OUT = Path(__file__).parent / "results" / "sequential.json"
BOUND_VARIANTS = ("mixture", "prior", "prior:clean", "betting", "looks")
TARGET_METHODS = ("gradcam@final", "lrp@input", "rise@input")  #: the pairs the targets average over
PHOTOS = ("coffee", "chelsea", "camera")  #: the photos of the measured results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=list(BUNDLED_PHOTOS))
    p.add_argument("--methods", nargs="+", default=["gradcam@final", "grad@input", "lrp@input", "rise@input"])
    p.add_argument("--bounds", nargs="+", default=list(BOUND_VARIANTS), choices=BOUND_VARIANTS)
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
    p.add_argument("--note", default="", help="a sentence about the machine's load, stored in meta")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows already in --out (other photos/methods) and add this run's")
    return p.parse_args(argv)


def certified(labels) -> float:
    return float((np.asarray(labels) != ABSTAIN).mean())


class Ceiling:
    """%certified by a one-sided binomial test at ``level`` on the counts at each look (not an anytime bound)."""

    def __init__(self, shape, tau: float, level: float):
        self.ones, self.t, self.tau, self.level = np.zeros(shape, dtype=np.int64), 0, tau, level

    def add(self, binary) -> float:
        self.ones += binary.sum(axis=1)
        self.t += binary.shape[1]
        c = np.arange(self.t + 1)
        one = binom.sf(c - 1, self.t, self.tau) <= self.level  # P(Bin(t, tau) >= c)
        zero = binom.cdf(c, self.t, 1 - self.tau) <= self.level  # P(Bin(t, 1 - tau) <= c)
        return float((one[self.ones] | zero[self.ones]).mean())


def reach_of(history, target: float):
    """The first sample count whose %certified is within one point of ``target`` (None: never)."""
    return next((int(t) for t, share, _ in history if share >= target - 0.01), None)


def read_history(history, budgets, undecided, n: int, target: float) -> dict:
    """Samples-to-reach, %certified at each budget and where the stopping rule would stop, from one history."""
    stops = {}
    for u in undecided:
        row = next((r for r in history if r[2] <= u), history[-1])
        stops[str(u)] = {"samples": int(row[0]), "certified": float(row[1])}
    return {"samples_to_reach_fixed_within_1pt": reach_of(history, target), "certified_at_n": float(history[-1][1]),
            "budgets": {str(b): float(next(share for t, share, _ in history if t >= b)) for b in budgets},
            "stopping_rule": stops, "history": history}


def anytime_runs(engine, image, image_id, target, method, layer, model, args) -> dict:
    """One pass over the cached samples feeding every bound's counter (and the ceiling): {variant: history}."""
    ks, shape = tuple(sorted(args.ks, reverse=True)), tuple(image.shape[1:])
    counters = {}
    for variant in args.bounds:
        name, _, source = variant.partition(":")
        prior = None
        if source == "clean":
            clean = upsample_maps(method.attribute(model, image[None], target, layer), shape)[0].numpy()
            prior = prior_from_map(clean, ks)
        counters[variant] = AnytimeCounter(ks, shape, tau=args.tau, alpha=args.alpha, bound=name, n_max=args.n,
                                           prior=prior)
    ceiling = Ceiling((len(ks), *shape), args.tau, anytime_level(args.alpha, shape[0] * shape[1], len(ks), "looks"))
    histories = {v: [] for v in counters} | {"ceiling": []}
    seconds = {v: 0.0 for v in counters}
    for binary, flat in engine.sparsified(image, image_id, target, ks, n=args.n):
        for variant, counter in counters.items():
            began = time.perf_counter()
            counter.add(binary, flat)
            histories[variant].append([counter.seen, certified(counter.labels()), float(counter.undecided().mean())])
            seconds[variant] += time.perf_counter() - began
        histories["ceiling"].append([ceiling.t + binary.shape[1], ceiling.add(binary), 0.0])
    return histories, seconds


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
    target = certified(full.labels)
    image = check_image(photo.tensor)
    target_class = engine(args.n).resolve_target(image, None)
    histories, seconds = anytime_runs(engine(args.n), image, photo.id, target_class, method, layer, model, args)
    check = engine(args.n).certify(photo.tensor, photo.id, sequential=True, undecided=0.0)
    row = {"photo": photo.id, "method": spec, "params": dict(method.params), "sampling_s": round(sampling_s, 1),
           "image_side": args.crop, "threads": args.threads,
           "fixed": {"n": args.n, "certified": target, "band_certified": certified(full.band_labels),
                     "per_k_alpha_over_m_certified": certified(third.labels),
                     "band_gain_pixels": int(((full.band_labels != ABSTAIN) & (third.labels == ABSTAIN)).sum()),
                     "band_per_k": {str(k): certified(full.band_labels[i]) for i, k in enumerate(full.ks)},
                     "per_k": {str(k): certified(full.labels[i]) for i, k in enumerate(full.ks)},
                     "budgets": {str(b): certified(engine(b).certify(photo.tensor, photo.id).labels)
                                 for b in args.budgets}},
           "bounds": {v: {**read_history(h, args.budgets, args.undecided, args.n, target),
                          **({"bound_seconds": round(seconds[v], 2)} if v in seconds else {})}
                      for v, h in histories.items()},
           "engine_check": {"bound": check.metadata["bound"],
                            "same_history": check.metadata["history"] == histories.get(DEFAULT_BOUND)}}
    return row


def _mean(xs):
    return float(np.mean(xs)) if len(xs) else None


def summarize(rows: list, args) -> dict:
    out = {"per_method": {}, "targets": {}}
    variants = list(rows[0]["bounds"]) if rows else []
    for spec in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == spec]
        per = {"photos": len(rs), "fixed_n_certified_mean": _mean([r["fixed"]["certified"] for r in rs]),
               "fixed_budgets": {b: _mean([r["fixed"]["budgets"][b] for r in rs]) for b in rs[0]["fixed"]["budgets"]},
               "band_vs_per_k_alpha_over_m": [_mean([r["fixed"]["band_certified"] for r in rs]),
                                              _mean([r["fixed"]["per_k_alpha_over_m_certified"] for r in rs])],
               "bounds": {}}
        for v in variants:
            reach = [r["bounds"][v]["samples_to_reach_fixed_within_1pt"] for r in rs]
            per["bounds"][v] = {
                "reached_within_1pt": f"{sum(x is not None for x in reach)} of {len(rs)}",
                "samples_to_reach": reach,
                "reach_share_mean": _mean([(x if x is not None else args.n) / args.n for x in reach]),
                "at_n_minus_fixed_points": _mean([100 * (r["bounds"][v]["certified_at_n"] - r["fixed"]["certified"])
                                                  for r in rs]),
                "budget_minus_fixed_points": {b: _mean([100 * (r["bounds"][v]["budgets"][b] - r["fixed"]["budgets"][b])
                                                        for r in rs]) for b in rs[0]["fixed"]["budgets"]},
                "stopping_rule": {u: {k: _mean([r["bounds"][v]["stopping_rule"][u][k] for r in rs])
                                      for k in ("samples", "certified")} for u in rs[0]["bounds"][v]["stopping_rule"]}}
        out["per_method"][spec] = per
    pairs = [r for r in rows if r["method"] in TARGET_METHODS]
    for v in variants:
        if not pairs:
            break
        reach = [r["bounds"][v]["samples_to_reach_fixed_within_1pt"] for r in pairs]
        losses = [100 * (r["fixed"]["budgets"][b] - r["bounds"][v]["budgets"][b]) for r in pairs
                  for b in r["fixed"]["budgets"]]
        out["targets"][v] = {
            "pairs": len(pairs), "reached": sum(x is not None for x in reach),
            "reach_share_mean": _mean([(x if x is not None else args.n) / args.n for x in reach]),
            "reach_share_is_lower_bound": None in reach,
            "budget_loss_points_mean": _mean(losses), "budget_loss_points_worst": float(max(losses)),
            "meets_reach_target": None not in reach and _mean([x / args.n for x in reach]) <= 0.5,
            "meets_budget_target": float(max(losses)) <= 1.0}
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    model = load_model("efficientnet_lite0", "pretrained", args.device)
    began, rows = time.perf_counter(), []
    if args.merge and Path(args.out).exists():
        rows = json.loads(Path(args.out).read_text())["rows"]
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(), "note": args.note,
            "default_bound": DEFAULT_BOUND, "lite0 images/s at batch 8 (start)": round(model_speed(threads=torch.get_num_threads())["forward"], 1),
            "args": {k: v for k, v in vars(args).items() if k not in ("cache", "out", "note")}}
    print(f"EfficientNet-Lite0 eager images/s at batch 8: {meta['lite0 images/s at batch 8 (start)']}", flush=True)
    skipped = []
    for photo_id in args.photos:
        photo = bundled_photo(photo_id, args.resize, args.crop)
        for spec in args.methods:
            if args.time_limit is not None and time.perf_counter() - began > args.time_limit:
                skipped.append(f"{photo_id}:{spec}")
                continue
            row = measure(model, photo, spec, args)
            rows = [r for r in rows if (r["photo"], r["method"]) != (photo_id, spec)] + [row]
            reach = {v: b["samples_to_reach_fixed_within_1pt"] for v, b in row["bounds"].items()}
            print(f"{photo_id:>8} {spec:>14}: fixed n={args.n} {100 * row['fixed']['certified']:.1f}% | reach within "
                  f"1pt: {reach} | engine check {row['engine_check']['same_history']} | {row['sampling_s']} s",
                  flush=True)
            meta["wall_s"] = round(time.perf_counter() - began, 1)
            result = {"meta": meta, "skipped": skipped, "summary": summarize(rows, args), "rows": rows}
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    meta["wall_s"] = round(time.perf_counter() - began, 1)
    meta["lite0 images/s at batch 8 (end)"] = round(model_speed(threads=torch.get_num_threads())["forward"], 1)
    result = {"meta": meta, "skipped": skipped, "summary": summarize(rows, args) if rows else {}, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"]["targets"] if rows else {}, indent=1))
    print(f"EfficientNet-Lite0 eager images/s at batch 8: {meta['lite0 images/s at batch 8 (start)']} (start), "
          f"{meta['lite0 images/s at batch 8 (end)']} (end)")


if __name__ == "__main__":
    main()
