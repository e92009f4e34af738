"""The share of each certificate's time spent outside the model, on this machine, as ratios measured in one run.

For each (method, layer), one certificate of a bundled photo on EfficientNet-Lite0 (pretrained, offline; the cpu
profile's reduced settings for RISE, Occlusion and IntGrad at the Input layer), with no sample cache (every sample
is computed), under :class:`certattr.profiling.StageClock`: seconds per stage (the model's passes; noise drawing with
its seed hashing, scale-and-add, host-device copies, memo hashing, upsampling, sparsification, encoding, decoding,
counting, testing) and ``outside / model``, the issue's measure (target: at most about 0.10). Each certificate
follows an untimed warm-up one, and the methods' memos are emptied first, so that each pays for its own model
passes.

It also times the noise of 100 copies of a 224x224 image on its own: the seed hashing (BLAKE2b + SeedSequence +
PCG64, per copy), and the whole draw by one thread and by torch's thread count (the engine's way); and the steps
made cheaper, the old way against the new way in alternation (``changes``).

    python benchmarks/bench_overhead.py                      # markdown + benchmarks/results/overhead.json
    python benchmarks/bench_overhead.py --methods grad gradcam --layers final --n 30
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
import warnings
from pathlib import Path

import torch

from certattr.engine.memo import tensor_key
from certattr.engine.noise import gaussian_noise, noisy_copies
from certattr.engine.smoothing import SmoothedAttribution
from certattr.methods import get_method, method_names
from certattr.models.data import bundled_photo
from certattr.models.registry import LAYERS, load_model
from certattr.profiling import STAGES, StageClock, clear_memos, noise_seconds

#: the cpu profile's reduced Input-layer settings (certattr/book/build.py)
CPU_OVERRIDES = {"intgrad@input": {"steps": 5}, "rise@input": {"n_masks": 12},
                 "occlusion@input": {"window": 75, "stride": 75}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=method_names(), choices=method_names())
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--n", type=int, default=50, help="noisy samples per certificate")
    parser.add_argument("--n0", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=10, help="noisy copies per model call (the default)")
    parser.add_argument("--photo", default="coffee")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "overhead.json"))
    return parser.parse_args(argv)


def certificate_breakdown(model, method_name: str, layer: str, image, image_id: str, *, n: int, n0: int,
                          chunk_size: int, overrides: dict | None = None, device="cpu") -> dict:
    """One certificate of ``method_name`` at ``layer`` under the stage clock (after an untimed warm-up one)."""
    method = get_method(method_name, **(overrides or {}))
    settings = dict(sigma=0.15, n=n, n0=n0, chunk_size=chunk_size, cache=None, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate maps and too-small n are expected at tiny settings
        warm = SmoothedAttribution(model, method, layer, **{**settings, "n": min(n, chunk_size), "n0": 1})
        warm.top_k_frequencies(image, f"{image_id}-warm-up", None, (50,))
        clear_memos(model)
        engine = SmoothedAttribution(model, method, layer, **settings)
        with StageClock(engine.method, device) as clock:
            clock.run(engine.certify, image, image_id, ks=(50, 30, 10))
    return {"method": method_name, "layer": layer, "params": dict(method.params), **clock.report()}


def _old_tensor_key(prefix: str, *tensors) -> str:
    """The memo key as it was before: every tensor copied to NCHW order, then to bytes, then hashed."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prefix.encode())
    for t in tensors:
        h.update(f"|{tuple(t.shape)}|{t.dtype}|{t.device}".encode())
        h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def changes(image: torch.Tensor, copies: int, rounds: int = 5) -> dict:
    """The steps this benchmark's findings changed, old way against new way on one chunk of ``copies`` noisy
    copies, timed in alternation (best of ``rounds``): the noise by one thread against torch's threads, x + sigma *
    eps with copies against in place, and the memo key of a channels_last batch copied to NCHW against hashed as it
    lies."""
    threads = torch.get_num_threads()
    indices = list(range(copies))
    batch = noisy_copies(image, 0.15, 0, "changes", indices).contiguous(memory_format=torch.channels_last)

    def noise_one_thread():
        torch.set_num_threads(1)
        try:
            gaussian_noise(image.shape, 0, "changes", indices)
        finally:
            torch.set_num_threads(threads)

    eps = gaussian_noise(image.shape, 0, "changes", indices)
    pairs = {
        "noise drawing (1 thread -> torch's threads)": (noise_one_thread,
                                                        lambda: gaussian_noise(image.shape, 0, "changes", indices)),
        "scale and add (copies -> in place)": (lambda: image.unsqueeze(0) + 0.15 * eps.clone(),
                                               lambda: eps.clone().mul_(0.15).add_(image.unsqueeze(0))),
        "memo key of a channels_last chunk (NCHW copy -> as it lies)": (lambda: _old_tensor_key("k", batch),
                                                                         lambda: tensor_key("k", batch)),
    }
    out = {}
    for name, (old, new) in pairs.items():
        best_old = best_new = float("inf")
        for _ in range(rounds):
            for fn, which in ((old, "old"), (new, "new")):
                start = time.perf_counter()
                fn()
                spent = time.perf_counter() - start
                if which == "old":
                    best_old = min(best_old, spent)
                else:
                    best_new = min(best_new, spent)
        out[name] = {"old_s": round(best_old, 6), "new_s": round(best_new, 6), "speedup": round(best_old / best_new, 2)}
    return {"copies": copies, "threads": threads, "steps": out}


def markdown(rows: list[dict]) -> str:
    shown = [s for s in STAGES if s not in ("model", "clean prediction")
             and any(r["seconds"][s] >= 0.005 * r["model_s"] for r in rows)]
    lines = ["| method@layer | model s | outside / model | " + " | ".join(shown) + " |",
             "|---|---|---|" + "---|" * len(shown)]
    for r in rows:
        lines.append(f"| {r['method']}@{r['layer']} | {r['model_s']:.2f} | **{r['outside_over_model']:.3f}** | "
                     + " | ".join(f"{r['seconds'][s] / r['model_s']:.3f}" for s in shown) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0", "pretrained", args.device)
    photo = bundled_photo(args.photo, model.spec.resize, model.spec.crop)
    noise = noise_seconds(photo.tensor.shape, 100)
    print(f"noise of 100 copies of {tuple(photo.tensor.shape)}: seed hashing {noise['seed_hashing_s']:.3f} s, "
          f"hashing + drawing {noise['one_thread_s']:.3f} s by one thread, {noise['hashing_and_drawing_s']:.3f} s by "
          f"{noise['threads']}", flush=True)
    changed = changes(photo.tensor, args.chunk_size)
    print(f"old way -> new way, one chunk of {args.chunk_size} copies, {changed['threads']} threads:")
    for name, r in changed["steps"].items():
        print(f"  {name}: {r['old_s']:.4f} s -> {r['new_s']:.4f} s (x{r['speedup']})", flush=True)
    rows = []
    for layer in args.layers:
        for name in args.methods:
            if get_method(name).undefined_reason(model, layer):
                continue
            row = certificate_breakdown(model, name, layer, photo.tensor, args.photo, n=args.n, n0=args.n0,
                                        chunk_size=args.chunk_size, overrides=CPU_OVERRIDES.get(f"{name}@{layer}"),
                                        device=args.device)
            rows.append(row)
            print(f"  {name}@{layer}: model {row['model_s']:.2f} s, outside {row['outside_s']:.2f} s "
                  f"({row['outside_over_model']:.3f} of the model)", flush=True)
    table = markdown(rows)
    print("\nper stage, as a share of the model's time:\n" + table)
    result = {"meta": {"torch": torch.__version__, "threads": args.threads, "device": args.device,
                       "machine": platform.machine(), "processor": platform.processor(),
                       "args": {k: v for k, v in vars(args).items() if k != "json"}},
              "noise_100_copies": noise, "changes": changed, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
