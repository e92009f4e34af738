"""Certifying at the Final layer from a torch.export program (.pt2) against the same network as a module.

For each timm architecture (random weights, ``torch.manual_seed(0)``) the script exports the network with a dynamic
batch dimension at ``--size`` (``torch.export.export`` + ``torch.export.save``) and certifies the bundled "coffee"
photo at that size at the Final layer with RISE (1000 masks), Occlusion (5/2), AblationCam, GradCam and Grad
(n = ``--n``, n0 = 5, sigma = 0.15, no sample cache, chunk_size 10), three ways:

* ``module``: ``certattr.wrap(net, layer)``, the network as a module (a torch.fx split);
* ``program``: ``load_source(path.pt2)``, the program cut at its Final layer's output
  (:mod:`certattr.models.exported`): the head runs alone, a GAP->linear head in closed form;
* ``before``: the program through the forward-hook split (what loading a ``.pt2`` did before the cut: every head
  call runs the whole network): the seconds of one noisy copy's map times n, an estimate (a whole certificate
  took minutes per method). ``--before-copies 0`` skips it.

``module`` and ``program`` certify in alternation, ``--rounds`` times each per method (the best is kept: the
first pays one-time costs such as hashing the weights), in one run; ``program / module`` is the ratio to read. The
labels of the two certificates are compared (``labels equal``). Reference for the machine's speed:
EfficientNet-Lite0's preset (BatchNorm folded, channels-last, eager) forward images/s at batch 8, 224x224,
measured at the start and the end of the run (the machine is shared: its speed moves 2x from day to day, and
10x within one run was seen).

    nice -n 10 python benchmarks/bench_export.py                     # -> benchmarks/results/export.json
    python benchmarks/bench_export.py --architectures resnet18 --methods rise gradcam --n 10

The JSON is rewritten after every architecture, so a stopped run keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from certattr.book.execution import model_speed
from certattr import SmoothedAttribution
from certattr.methods import get_method
from certattr.methods.perturbation import MASKED_LOGITS
from certattr.models.data import bundled_photo
from certattr.models.sources import load_source
from certattr.models.wrap import wrap

OUT = Path(__file__).parent / "results" / "export.json"
#: architecture -> (Final layer, drop_tokens, timm keyword arguments); the last spatial output before the head
#: (ConvNeXt's norm_pre and RegNet's final_conv are identities, which a program does not record: their input)
ARCHITECTURES = {
    "resnet18": ("layer4", 0, {}),
    "resnet50": ("layer4", 0, {}),
    "convnext_atto": ("stages", 0, {}),
    "regnety_002": ("s4", 0, {}),
    "efficientnet_b0": ("bn2", 0, {}),
    "mobilenetv3_small_100": ("blocks", 0, {}),
    "vit_tiny_patch16_224": ("blocks.10", 1, {"img_size": None}),  # img_size: --size
}
METHODS = ("rise", "occlusion", "ablationcam", "gradcam", "grad")
SPEC = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=list(ARCHITECTURES))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--size", type=int, default=128, help="input side (pixels)")
    p.add_argument("--n", type=int, default=20, help="noisy samples per certificate")
    p.add_argument("--before-copies", type=int, default=1,
                   help="noisy copies timed through the hook split (0: skip 'before')")
    p.add_argument("--rounds", type=int, default=3, help="certificates per way, in alternation (best of them)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(OUT))
    return p.parse_args(argv)


def export(name: str, size: int, folder: Path):
    """(the timm module, the path of its program)."""
    import timm

    kwargs = {k: (size if v is None else v) for k, v in ARCHITECTURES[name][2].items()}
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, **kwargs).eval()
    x = torch.rand(2, 3, size, size)
    program = torch.export.export(net, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = folder / f"{name}.pt2"
    torch.export.save(program, str(path))
    return net, path


def certify(model, method: str, image, n: int) -> tuple[float, np.ndarray]:
    """(seconds, labels) of one certificate at the Final layer, nothing remembered from an earlier one."""
    model.forget_memos()
    MASKED_LOGITS.clear()
    engine = SmoothedAttribution(model, get_method(method), "final", 0.15, n=n, n0=5, progress=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate maps of random weights: not what is timed
        cert = engine.certify(image, "coffee")
    return time.perf_counter() - start, cert.labels


def one_copy(model, method: str, image, copies: int) -> float:
    """Seconds of ``copies`` noisy copies' maps at the Final layer (one call)."""
    model.forget_memos()
    MASKED_LOGITS.clear()
    images = (image[None] + 0.15 * torch.randn(copies, *image.shape, generator=torch.Generator().manual_seed(1)))
    start = time.perf_counter()
    get_method(method).attribute(model, images, 0, "final", seed=0, image_id="coffee")
    return time.perf_counter() - start


def measure(name: str, args, folder: Path) -> dict:
    layer, drop, _ = ARCHITECTURES[name]
    net, path = export(name, args.size, folder)
    spec = dict(SPEC, input_size=args.size, final_layer=layer, drop_tokens=drop)
    start = time.perf_counter()
    program = load_source(str(path), **spec)
    load_seconds = time.perf_counter() - start
    module = wrap(net, layer, SPEC["mean"], SPEC["std"], args.size, drop_tokens=drop, name=name)
    image = bundled_photo("coffee", args.size, args.size).tensor
    row = {"final layer": layer, "split": program.spec.notes["split"],
           "closed form": {"program": program.gap_linear is not None, "module": module.gap_linear is not None},
           "load seconds (program)": round(load_seconds, 2), "methods": {}}
    before = None
    if args.before_copies:
        before = wrap(torch.export.unflatten(torch.export.load(str(path))), layer, SPEC["mean"], SPEC["std"],
                      args.size, drop_tokens=drop, name=f"{name}-hooks", split="hooks")
    for method in args.methods:
        times = {"program": [], "module": []}
        labels = {}
        for _ in range(args.rounds):  # in alternation, so that the machine's drift hits both ways alike
            for way, model in (("program", program), ("module", module)):
                seconds, labels[way] = certify(model, method, image, args.n)
                times[way].append(seconds)
        t_program, t_module = min(times["program"]), min(times["module"])
        entry = {"module s": round(t_module, 2), "program s": round(t_program, 2),
                 "program / module": round(t_program / t_module, 2),
                 "labels equal": bool(np.array_equal(labels["program"], labels["module"])),
                 "rounds": {way: [round(t, 2) for t in ts] for way, ts in times.items()}}
        if before is not None:
            per_copy = one_copy(before, method, image, args.before_copies) / args.before_copies
            entry["before s (est.)"] = round(per_copy * args.n, 1)
            entry["before / program"] = round(per_copy * args.n / t_program, 1)
        row["methods"][method] = entry
        print(f"{name:24s} {method:12s} {entry}", flush=True)
    return row


def table(result: dict) -> str:
    lines = ["| architecture | method | module s | program s | program / module | before s (est.) | labels equal |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["architectures"].items():
        for method, e in row["methods"].items():
            lines.append(f"| {name} | {method} | {e['module s']} | {e['program s']} | {e['program / module']} | "
                         f"{e.get('before s (est.)', '-')} | {e['labels equal']} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"settings": {"size": args.size, "n": args.n, "n0": 5, "sigma": 0.15, "threads": args.threads,
                           "rounds": args.rounds,
                           "rise masks": 1000, "occlusion": "5/2", "before copies": args.before_copies,
                           "torch": torch.__version__, "machine": platform.platform(),
                           "note": "shared 2-core CPU; the machine's speed moves 2x from day to day: read the "
                                   "ratios of one run"},
              "lite0 images/s at batch 8 (start)": round(model_speed(threads=torch.get_num_threads())["forward"], 1), "architectures": {}}
    print(f"EfficientNet-Lite0 eager images/s at batch 8: {result['lite0 images/s at batch 8 (start)']}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.architectures:
            result["architectures"][name] = measure(name, args, Path(folder))
            Path(args.out).write_text(json.dumps(result, indent=1))
    result["lite0 images/s at batch 8 (end)"] = round(model_speed(threads=torch.get_num_threads())["forward"], 1)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"EfficientNet-Lite0 eager images/s at batch 8: {result['lite0 images/s at batch 8 (start)']} (start), "
          f"{result['lite0 images/s at batch 8 (end)']} (end)")


if __name__ == "__main__":
    main()
