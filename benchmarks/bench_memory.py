"""Peak resident memory of sampling and of certifying, against n (each measurement in a fresh process).

    .venv/bin/python benchmarks/bench_memory.py --ns 20 100 500 1000 --method gradcam --layer final

Two measurements per n: ``sample`` (the n maps returned at image resolution, uncached: it must hold them,
n * H * W * 4 bytes) and ``certify`` from a warm cache (the run the issue measured: it streams the chunks,
so its peak RSS is bounded by one chunk and the image size and is flat in n). The cache is filled once at
the largest n (chunks do not depend on n) before the certify measurements. Prints a markdown table and
writes benchmarks/results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, torch
torch.set_num_threads({threads})
from certattr.models.registry import load_model
from certattr.models.data import bundled_photo
from certattr.engine.smoothing import SmoothedAttribution
m = load_model({model!r}); im = bundled_photo('coffee')
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
e = SmoothedAttribution(m, {method!r}, {layer!r}, 0.25, n={n}, n0=min(10, {n} - 1), chunk_size={chunk}, cache={cache!r}, progress=False)
if {mode!r} == 'sample':
    size = e.sample(im.tensor, im.id, 967).nbytes
else:
    import warnings
    warnings.simplefilter('ignore')
    cert = e.certify(im.tensor, im.id, 967, ks=(50, 25, 5))
    size = cert.labels.nbytes
print(before / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, size / 2**20)
"""


def _child(mode, model, method, layer, n, chunk, cache=None, threads=2):
    code = CHILD.format(model=model, method=method, layer=layer, n=n, chunk=chunk, threads=threads, cache=cache,
                        mode=mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, peak, size = map(float, out.stdout.split())
    return before, peak, size


def peak_rss_mb(model, method, layer, n, chunk, threads=2):
    """(RSS after loading the model, peak RSS, MB of the returned maps) of ``sample`` without a cache."""
    return _child("sample", model, method, layer, n, chunk, None, threads)


def peak_rss_certify_mb(model, method, layer, n, chunk, cache, threads=2):
    """(RSS after loading the model, peak RSS, MB of the labels) of ``certify`` with the cache ``cache``."""
    return _child("certify", model, method, layer, n, chunk, str(cache), threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--layer", default="final")
    ap.add_argument("--ns", type=int, nargs="+", default=[20, 100, 500, 1000])
    ap.add_argument("--chunk-size", type=int, default=10)
    ap.add_argument("--cache", default=None, help="cache folder (default: a temporary one)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or tmp
        _child("certify", args.model, args.method, args.layer, max(args.ns), args.chunk_size, cache)  # fill it
        print("| n | certify, cached: peak RSS (MB) | sample, uncached: peak RSS (MB) | the n maps sample returns (MB) "
              "| after loading the model (MB) |\n|---|---|---|---|---|")
        for n in args.ns:
            before, peak_c, _ = peak_rss_certify_mb(args.model, args.method, args.layer, n, args.chunk_size, cache)
            _, peak_s, maps = peak_rss_mb(args.model, args.method, args.layer, n, args.chunk_size)
            rows.append({"n": n, "certify_cached_peak_rss_mb": peak_c, "sample_peak_rss_mb": peak_s,
                         "maps_mb": maps, "model_loaded_mb": before})
            print(f"| {n} | {peak_c:.0f} | {peak_s:.0f} | {maps:.1f} | {before:.0f} |", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "memory.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
