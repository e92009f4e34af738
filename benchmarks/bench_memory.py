"""Peak resident memory of sampling n noisy maps, against n (each run in a fresh process).

    .venv/bin/python benchmarks/bench_memory.py --ns 10 50 100 200 --method grad --layer input

Memory is bounded by the chunk (``chunk_size`` noisy copies per model call), not by n: the table
shows peak RSS flat in n. Prints a markdown table and writes benchmarks/results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import resource, sys, torch
torch.set_num_threads({threads})
from certattr.models import load_model
from certattr.data import bundled_photo
from certattr.smoothing import SmoothedAttribution
m = load_model({model!r}); im = bundled_photo('coffee')
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
e = SmoothedAttribution(m, {method!r}, {layer!r}, 0.25, n={n}, n0=min(10, {n} - 1), chunk_size={chunk}, cache=None, progress=False)
maps = e.sample(im.tensor, im.id, 967)
print(before / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, maps.nbytes / 2**20)
"""


def peak_rss_mb(model, method, layer, n, chunk, threads=2):
    code = CHILD.format(model=model, method=method, layer=layer, n=n, chunk=chunk, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak, maps = map(float, out.stdout.split())
    return before, peak, maps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--method", default="grad")
    ap.add_argument("--layer", default="input")
    ap.add_argument("--ns", type=int, nargs="+", default=[10, 50, 100, 200])
    ap.add_argument("--chunk-size", type=int, default=10)
    args = ap.parse_args()
    rows = []
    print(f"| n | peak RSS (MB) | after loading the model (MB) | the n maps themselves (MB) |\n|---|---|---|---|")
    for n in args.ns:
        before, peak, maps = peak_rss_mb(args.model, args.method, args.layer, n, args.chunk_size)
        rows.append({"n": n, "peak_rss_mb": peak, "model_loaded_mb": before, "maps_mb": maps})
        print(f"| {n} | {peak:.0f} | {before:.0f} | {maps:.1f} |", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
