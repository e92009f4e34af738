"""Command line: ``certattr certify``, ``certattr list``, ``certattr book`` and ``certattr assignments``."""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

from .book.build import (CHAPTERS, PROFILES, ROOT, build_book, chapter_parameters, check_overrides, check_root,
    parse_overrides)
from .book.plotting import save_overlay_png
from .course.notebooks import build_assignments
from .engine.cache import SampleCache, default_cache_dir
from .engine.config import CertConfig, DEFAULT_CERT, DEFAULT_SAMPLING, SamplingConfig, check_fits
from .engine.files import check_writable_folder, os_cause, refuse_foreign_files, write_file_set
from .engine.smoothing import SmoothedAttribution
from .engine.validation import CORRECTIONS, CertattrError, check_choice, check_sigma
from .methods import METHODS, get_method, method_names
from .models.data import BUNDLED_PHOTOS, bundled_photo, load_image_file
from .models.registry import LAYERS, MODELS, load_model, model_names
from .sweeps.cli import add_parser as _add_sweep

__all__ = ["main"]

OUTPUT_FILES = ("certificate.npz", "certificate.json", "overlay.png")  #: what `certattr certify` writes into --out


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``certattr: error: ...`` (exit 2), no usage block."""

    def error(self, message):
        self.exit(2, f"certattr: error: {' '.join(str(message).split())} (see {self.prog} --help)\n")


class _Once(argparse.Action):
    """A flag that may be given once: a repeated flag is an error (it would silently keep the last value)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given", set())
        if self.dest in seen:
            parser.error(f"{option_string} was given twice; give it once")
        seen.add(self.dest)
        setattr(namespace, self.dest, values)


class _Merge(argparse.Action):
    """A list flag that may be repeated: the values of every occurrence are merged (``--k 50 --k 25`` is
    ``--k 50 25``); the default applies only when the flag is absent."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = namespace.__dict__.setdefault("_given", set())
        current = list(getattr(namespace, self.dest) or []) if self.dest in seen else []
        seen.add(self.dest)
        setattr(namespace, self.dest, current + list(values))


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    print(f"certattr: warning: {text}", file=sys.stderr if file is None else file)


def _image_arg(value: str):
    """A bundled photo id (e.g. ``chelsea``, or ``photo:chelsea``) or an image file path."""

    name = value[len("photo:"):] if value.startswith("photo:") else value
    if name in BUNDLED_PHOTOS and not Path(value).exists():
        photo = bundled_photo(name)
        return photo.id, photo.tensor
    return Path(value).stem, load_image_file(value)


def _add_certify(sub):
    p = sub.add_parser("certify", help="certify the top-K pixels of one image's attribution map",
                       description="Certify which pixels are in the top K%% of an attribution map under l2 "
                                   "perturbations (Anani et al., ICML 2025). Writes overlay.png and certificate.json "
                                   "(and certificate.npz) into --out.")
    p.add_argument("image", help="an image file, or a bundled photo id (chelsea, coffee, camera, ...)")
    p.add_argument("--model", action=_Once, default="efficientnet_lite0", choices=model_names())
    p.add_argument("--weights", action=_Once, default="pretrained", choices=["pretrained", "random"])
    p.add_argument("--method", action=_Once, default="gradcam", type=str.lower, help="attribution method (see `certattr list`)")
    p.add_argument("--layer", action=_Once, default="final", choices=LAYERS, type=str.lower)
    p.add_argument("--sigma", action=_Once, type=float, default=0.15, help="noise level in [0,1] pixel units (> 0)")
    # the defaults are certattr.engine.config's DEFAULT_SAMPLING and DEFAULT_CERT (written there once)
    p.add_argument("--k", type=float, nargs="+", default=list(DEFAULT_CERT.ks),
                   action=_Merge, help="top-K percentages, 0 < K <= 100 (repeating --k merges the values: --k 50 "
                                       "--k 25 is --k 50 25)")
    p.add_argument("--n", action=_Once, type=int, default=DEFAULT_SAMPLING.n, help="noise samples")
    p.add_argument("--n0", action=_Once, type=int, default=DEFAULT_CERT.n0, help="selection samples (1 <= n0 < n)")
    p.add_argument("--tau", action=_Once, type=float, default=DEFAULT_CERT.tau, help="threshold, 0.5 <= tau < 1")
    p.add_argument("--alpha", action=_Once, type=float, default=DEFAULT_CERT.alpha,
                   help="failure probability, 0 < alpha < 1")
    p.add_argument("--correction", action=_Once, default=DEFAULT_CERT.correction, choices=list(CORRECTIONS))
    p.add_argument("--target", action=_Once, type=int, default=None, help="class index (default: the model's top-1)")
    p.add_argument("--seed", action=_Once, type=int, default=DEFAULT_SAMPLING.seed)
    p.add_argument("--chunk-size", action=_Once, type=int, default=DEFAULT_SAMPLING.chunk_size,
                   help="noisy copies per model call and per cache file (bounds memory)")
    p.add_argument("--device", action=_Once, default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--cache", action=_Once, default=str(default_cache_dir()), help="sample cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the sample cache")
    p.add_argument("--keep-maps", action="store_true",
                   help="also keep the float32 maps in the cache (default: only the compact top-K codes the "
                        "certificate needs; kept maps let another K be certified without resampling)")
    p.add_argument("--out", action=_Once, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_certify)


def _certify(args) -> int:
    import torch

    # validate everything cheap before loading a model: the samples' settings and the certificate's
    check_sigma(args.sigma)
    sampling = SamplingConfig(n=args.n, seed=args.seed, chunk_size=args.chunk_size, keep_maps=args.keep_maps)
    config = CertConfig(n0=args.n0, tau=args.tau, alpha=args.alpha, correction=args.correction, ks=tuple(args.k))
    check_fits(sampling, config)
    method = get_method(args.method)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise CertattrError(f"device={args.device!r} is not allowed: give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CertattrError(f"device={args.device!r} is not available here: no CUDA GPU was found; use --device cpu")
    image_id, image = _image_arg(args.image)
    out = Path(args.out)
    _check_out(out)
    if not args.no_cache:
        SampleCache(args.cache).check_writable()
    model = load_model(args.model, args.weights, device)
    engine = SmoothedAttribution(model, method, args.layer, args.sigma, sampling, config,
                                 cache=None if args.no_cache else args.cache, progress=not args.quiet)
    cert = engine.certify(image, image_id, args.target)  # at the config's ks, tau, alpha and correction
    summary = cert.summary()
    title = f"{model.spec.title} {method.title}@{args.layer}, R={cert.radius:.3f}"
    png = io.BytesIO()
    save_overlay_png(cert, image, png, title)
    # the three files replace the previous three as one set (see certattr.engine.files.write_file_set)
    write_file_set(out, {"certificate.npz": cert.to_bytes(),
                         "certificate.json": (json.dumps(summary, indent=2) + "\n").encode(),
                         "overlay.png": png.getvalue()}, what="--out")
    print(f"R = {cert.radius:.3f}; " + "; ".join(
        f"K={k:g}%: {100 * f['certified_1']:.1f}% certified 1, {100 * f['certified_0']:.1f}% certified 0, "
        f"{100 * f['abstain']:.1f}% abstain" for k, f in cert.fractions().items()))
    if cert.degenerate:
        print(f"degenerate maps: {cert.degenerate}")
    print(f"wrote {out / 'overlay.png'}, {out / 'certificate.json'}, {out / 'certificate.npz'}")
    return 0


def _check_out(out: Path) -> None:
    """Before any work: --out must be a writable folder (or creatable) holding nothing but certattr's outputs."""

    check_writable_folder(out, "--out")
    if out.is_dir():  # the new set is staged next to it and swapped in: its parent must be writable too
        check_writable_folder(out.resolve().parent, f"--out's parent folder (for {str(out)!r})")
    refuse_foreign_files(out, OUTPUT_FILES, "--out")


def _add_list(sub):
    p = sub.add_parser("list", help="list models, methods, layers and bundled photos")
    p.set_defaults(func=_list)


def _list(args) -> int:
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
    p = sub.add_parser("book", help="run the chapters with papermill and build the Jupyter Book")
    p.add_argument("--profile", action=_Once, default="cpu", choices=list(PROFILES))
    p.add_argument("--only", nargs="*", default=None, action=_Merge,
                   help="run only these chapters (file stems; repeating --only merges the lists)")
    p.add_argument("--no-build", action="store_true", help="run the chapters, do not build the HTML")
    p.add_argument("--force", action="store_true", help="re-execute chapters even if nothing changed")
    p.add_argument("--root", action=_Once, default=None, help="the book's folder (default: this repository)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a chapter parameter (VALUE is YAML with YAML 1.2 numbers, e.g. -p device cuda, "
                        "-p alpha 1e-3, -p layers [final]); the name must be a parameter of a chapter that runs, "
                        "the value of its type, and each name may be given once")
    p.set_defaults(func=_book)


def _book(args) -> int:
    root = check_root(args.root or ROOT)
    chapters = [check_choice("chapter", c, CHAPTERS) for c in args.only] if args.only else CHAPTERS
    overrides = check_overrides(parse_overrides(args.parameter), args.profile, chapters, root)
    check_writable_folder(root / "book" / "chapters", "the book's output folder")
    return build_book(args.profile, only=args.only, build_html=not args.no_build, force=args.force,
                      overrides=overrides, root=root)


def _add_assignments(sub):
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
    root = Path(args.root) if args.root else ROOT
    chapters = {c: chapter_parameters(args.profile, c, root=root) for c in (args.only or CHAPTERS)}
    written = build_assignments(args.out, chapters=chapters, profile=args.profile, root=root,
                                cache_dir=args.cache_dir, course=not args.no_course)
    students = [p for p in written if p.name.endswith("-student.ipynb") and p.parent == Path(args.out)]
    print(f"wrote {len(students)} student and {len(students)} instructor notebooks into {args.out}"
          + ("" if args.no_course else f", and the nbgrader course {Path(args.out) / 'nbgrader'}"))
    return 0


def main(argv=None) -> int:
    parser = _Parser(prog="certattr", description="Pixel-level certified attributions via randomized smoothing")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_certify(sub)
    _add_list(sub)
    _add_book(sub)
    _add_assignments(sub)
    _add_sweep(sub)
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning  # every warning is one line on stderr
    try:
        return args.func(args)
    except CertattrError as err:
        print(f"certattr: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # a file-system fault nothing above turned into a CertattrError: still one line

        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"certattr: error: {os_cause(err)}{where}; nothing was replaced", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("certattr: interrupted; finished sample chunks are kept in the cache and reused on the next run",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
