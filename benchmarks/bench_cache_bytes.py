"""Bytes the sample cache takes per (configuration, image) at n = 100, compact encodings against float32 maps.

    .venv/bin/python benchmarks/bench_cache_bytes.py [--model efficientnet_lite0] [--photos coffee chelsea]

For each photo and (method, layer): one engine with ``keep_maps=True`` computes the n samples once and writes both
the compact encoding the certificate reads (top-K codes of the default ladder at the Input layer, raw 7x7 maps at
the Final layer) and the float32 maps (what the reference code caches, 18.8 to 20 MB per Input-layer entry at n =
100); the files of each kind are summed. A second engine without kept maps then certifies from the compact files
alone, and the certificate is checked equal to the one computed from the raw maps. Prints a markdown table and
writes benchmarks/results/cache_bytes.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

REFERENCE_BYTES = 18.8e6  #: the reference code's cache per Input-layer (configuration, image) at n = 100


def _sizes(entry: Path) -> tuple[int, int]:
    raw = sum(p.stat().st_size for p in entry.glob("chunk_?????.npz"))
    compact = sum(p.stat().st_size for p in entry.glob("chunk_?????.*.npz"))
    return raw, compact


def _no_resampling(*args, **kwargs):
    raise RuntimeError("the compact cache did not serve the certificate: a chunk was resampled")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--photos", nargs="+", default=["coffee", "chelsea"])
    parser.add_argument("--configs", nargs="+", default=["grad@input", "lrp@input", "rise@input", "gradcam@final"])
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args(argv)

    import torch

    from certattr.engine.cache import cache_key
    from certattr.engine.certify import certify_maps
    from certattr.models.data import bundled_photos
    from certattr.methods import get_method
    from certattr.models.registry import load_model
    from certattr.engine.smoothing import SmoothedAttribution

    torch.manual_seed(0)
    model = load_model(args.model)
    rows = []
    for photo in bundled_photos(args.photos):
        for config in args.configs:
            name, layer = config.split("@")
            method = get_method(name, **({"n_masks": 50} if name == "rise" else {}))
            with tempfile.TemporaryDirectory() as cache, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kept = SmoothedAttribution(model, method, layer, 0.15, n=args.n, cache=cache, keep_maps=True,
                                           progress=False)
                target = kept.resolve_target(photo.tensor, None)
                kept.certify(photo.tensor, photo.id, target)
                entry = kept.cache.entry(cache_key(kept.identity(photo.tensor, photo.id, target)))
                raw, compact = _sizes(entry)
                if layer != "input":  # Final-layer maps are their own compact encoding (7x7 floats)
                    rows.append({"photo": photo.id, "method": name, "layer": layer, "n": args.n, "raw_bytes": raw,
                                 "compact_bytes": raw, "raw_over_compact": 1.0, "reference_over_compact": None,
                                 "identical_certificate": True})
                    print(rows[-1], flush=True)
                    continue
                maps = kept.sample(photo.tensor, photo.id, target)
                for path in entry.glob("chunk_?????.npz"):
                    path.unlink()  # certify from the compact files alone
                compact_only = SmoothedAttribution(model, method, layer, 0.15, n=args.n, cache=cache, progress=False)
                compact_only.attribute_chunk = _no_resampling
                cert = compact_only.certify(photo.tensor, photo.id, target)
                same = cert == certify_maps(maps, cert.ks, sigma=0.15, metadata=cert.metadata)
            rows.append({"photo": photo.id, "method": name, "layer": layer, "n": args.n, "raw_bytes": raw,
                         "compact_bytes": compact, "raw_over_compact": raw / compact if compact else None,
                         "reference_over_compact": REFERENCE_BYTES / compact if compact else None,
                         "identical_certificate": bool(same)})
            print(rows[-1], flush=True)
    out = Path(__file__).parent / "results" / "cache_bytes.json"
    out.write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))
    print("\n| photo | method@layer | float32 maps | compact | ratio | reference / compact | identical |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['raw_over_compact']:.1f}" if r["raw_over_compact"] else "-"
        ref = f"{r['reference_over_compact']:.1f}" if r["layer"] == "input" else "-"
        print(f"| {r['photo']} | {r['method']}@{r['layer']} | {r['raw_bytes'] / 1e6:.2f} MB | "
              f"{r['compact_bytes'] / 1e6:.3f} MB | {ratio} | {ref} | {r['identical_certificate']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
