"""Command line: ``certattr certify``, ``certattr list``, ``certattr book`` and ``certattr assignments``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _image_arg(value: str):
    """A bundled photo id (e.g. ``chelsea``, or ``photo:chelsea``) or an image file path."""
    from .data import BUNDLED_PHOTOS, bundled_photo, load_image_file

    name = value[len("photo:"):] if value.startswith("photo:") else value
    if name in BUNDLED_PHOTOS and not Path(value).exists():
        photo = bundled_photo(name)
        return photo.id, photo.tensor
    return Path(value).stem, load_image_file(value)


def _add_certify(sub):
    from .cache import default_cache_dir
    from .methods import method_names
    from .models import LAYERS, model_names

    p = sub.add_parser("certify", help="certify the top-K pixels of one image's attribution map",
                       description="Certify which pixels are in the top K%% of an attribution map under l2 "
                                   "perturbations (Anani et al., ICML 2025). Writes overlay.png and certificate.json "
                                   "(and certificate.npz) into --out.")
    p.add_argument("image", help="an image file, or a bundled photo id (chelsea, coffee, camera, ...)")
    p.add_argument("--model", default="efficientnet_lite0", choices=model_names())
    p.add_argument("--weights", default="pretrained", choices=["pretrained", "random"])
    p.add_argument("--method", default="gradcam", type=str.lower, help="attribution method (see `certattr list`)")
    p.add_argument("--layer", default="final", choices=LAYERS, type=str.lower)
    p.add_argument("--sigma", type=float, default=0.15, help="noise level in [0,1] pixel units (> 0)")
    p.add_argument("--k", type=float, nargs="+", default=[50, 25, 5], help="top-K percentages, 0 < K <= 100")
    p.add_argument("--n", type=int, default=100, help="noise samples")
    p.add_argument("--n0", type=int, default=10, help="selection samples (1 <= n0 < n)")
    p.add_argument("--tau", type=float, default=0.75, help="threshold, 0.5 <= tau < 1")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability, 0 < alpha < 1")
    p.add_argument("--correction", default="bonferroni", choices=["bonferroni", "holm"])
    p.add_argument("--target", type=int, default=None, help="class index (default: the model's top-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=10, help="noisy copies per model call and per cache file (bounds memory)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--cache", default=str(default_cache_dir()), help="sample cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the sample cache")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_certify)


def _certify(args) -> int:
    import torch

    from .methods import get_method
    from .models import load_model
    from .plotting import save_overlay_png
    from .smoothing import SmoothedAttribution
    from .validation import CertattrError, check_alpha, check_correction, check_ks, check_n, check_sigma, check_tau

    # validate everything cheap before loading a model
    check_sigma(args.sigma), check_tau(args.tau), check_alpha(args.alpha), check_ks(args.k), check_n(args.n, args.n0)
    check_correction(args.correction)
    method = get_method(args.method)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise CertattrError(f"device={args.device!r} is not allowed: give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CertattrError(f"device={args.device!r} is not available here: no CUDA GPU was found; use --device cpu")
    image_id, image = _image_arg(args.image)
    model = load_model(args.model, args.weights, device)
    engine = SmoothedAttribution(model, method, args.layer, args.sigma, n=args.n, n0=args.n0, seed=args.seed,
                                 chunk_size=args.chunk_size, cache=None if args.no_cache else args.cache,
                                 progress=not args.quiet)
    cert = engine.certify(image, image_id, args.target, ks=args.k, tau=args.tau, alpha=args.alpha,
                          correction=args.correction)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cert.save(out / "certificate.npz")
    summary = cert.summary()
    (out / "certificate.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = f"{model.spec.title} {method.title}@{args.layer}, R={cert.radius:.3f}"
    save_overlay_png(cert, image, out / "overlay.png", title)
    print(f"R = {cert.radius:.3f}; " + "; ".join(
        f"K={k:g}%: {100 * f['certified_1']:.1f}% certified 1, {100 * f['certified_0']:.1f}% certified 0, "
        f"{100 * f['abstain']:.1f}% abstain" for k, f in cert.fractions().items()))
    print(f"wrote {out / 'overlay.png'}, {out / 'certificate.json'}, {out / 'certificate.npz'}")
    return 0


def _add_list(sub):
    p = sub.add_parser("list", help="list models, methods, layers and bundled photos")
    p.set_defaults(func=_list)


def _list(args) -> int:
    from .data import BUNDLED_PHOTOS
    from .methods import METHODS
    from .models import MODELS

    print("models:")
    for name, spec in MODELS.items():
        print(f"  {name:18s} {spec.title}; Final layer: {spec.final_layer}")
    print("methods:")
    for name, cls in METHODS.items():
        params = ", ".join(f"{k}={v!r}" for k, v in cls.defaults.items())
        print(f"  {name:12s} {cls.title} ({cls.family}){': ' + params if params else ''}")
    print("layers: input, final")
    print("bundled photos: " + ", ".join(BUNDLED_PHOTOS))
    return 0


def _add_book(sub):
    from .book import PROFILES

    p = sub.add_parser("book", help="run the chapters with papermill and build the Jupyter Book")
    p.add_argument("--profile", default="cpu", choices=list(PROFILES))
    p.add_argument("--only", nargs="*", default=None, help="run only these chapters (file stems)")
    p.add_argument("--no-build", action="store_true", help="run the chapters, do not build the HTML")
    p.add_argument("--force", action="store_true", help="re-execute chapters even if nothing changed")
    p.add_argument("--root", default=None, help="the book's folder (default: this repository)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a chapter parameter (VALUE is parsed as YAML/JSON), e.g. -p device cuda")
    p.set_defaults(func=_book)


def _book(args) -> int:
    from .book import ROOT, build_book, parse_overrides

    return build_book(args.profile, only=args.only, build_html=not args.no_build, force=args.force,
                      overrides=parse_overrides(args.parameter), root=args.root or ROOT)


def _add_assignments(sub):
    from .book import CHAPTERS, PROFILES

    p = sub.add_parser("assignments", help="write the student and instructor (nbgrader) notebooks of every chapter",
                       description="Write <chapter>-student.ipynb (stubs and checks, no solutions) and "
                                   "<chapter>-instructor.ipynb (solutions between nbgrader's BEGIN/END SOLUTION "
                                   "markers, nbgrader cell metadata) for every chapter into --out, and an nbgrader "
                                   "course folder --out/nbgrader (see the README, 'For instructors').")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--profile", default="smoke", choices=list(PROFILES),
                   help="the parameters written into each notebook's parameters cell (default: smoke, minutes "
                        "on a laptop CPU)")
    p.add_argument("--only", nargs="*", default=None, choices=CHAPTERS, metavar="CHAPTER",
                   help="only these chapters (file stems)")
    p.add_argument("--cache-dir", default="certattr-cache",
                   help="the sample cache the notebooks use, relative to the folder they run in or absolute "
                        "(default: certattr-cache)")
    p.add_argument("--no-course", action="store_true", help="do not write the nbgrader course folder")
    p.add_argument("--root", default=None, help="the book's folder (default: this repository)")
    p.set_defaults(func=_assignments)


def _assignments(args) -> int:
    from .assignments import build_assignments

    written = build_assignments(args.out, chapters=args.only, profile=args.profile, root=args.root,
                                cache_dir=args.cache_dir, course=not args.no_course)
    students = [p for p in written if p.name.endswith("-student.ipynb") and p.parent == Path(args.out)]
    print(f"wrote {len(students)} student and {len(students)} instructor notebooks into {args.out}"
          + ("" if args.no_course else f", and the nbgrader course {Path(args.out) / 'nbgrader'}"))
    return 0


def main(argv=None) -> int:
    from .validation import CertattrError

    parser = argparse.ArgumentParser(prog="certattr", description="Pixel-level certified attributions via randomized smoothing")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_certify(sub)
    _add_list(sub)
    _add_book(sub)
    _add_assignments(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CertattrError as err:
        print(f"certattr: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("certattr: interrupted; finished sample chunks are kept in the cache and reused on the next run",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
