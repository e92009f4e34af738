"""Command line: ``certattr certify``, ``certattr list``, ``certattr book``, ``certattr findings-check``,
``certattr assignments`` and ``certattr sweep``."""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

from .book.build import (PROFILE_NAMES, ROOT, chapter_names, build_book, chapter_parameters, check_overrides, check_root,
    parse_overrides)
from .book.plotting import save_overlay_png
from .book.chapters import course as book_course
from .course.notebooks import build_assignments
from .engine.cache import SampleCache, default_cache_dir
from .engine.config import CertConfig, DEFAULT_CERT, DEFAULT_SAMPLING, SamplingConfig, check_fits
from .engine.files import check_writable_folder, os_cause, refuse_foreign_files, write_file_set
from .engine.smoothing import SmoothedAttribution
from .engine.validation import CORRECTIONS, CertattrError, check_choice, check_device, check_sigma
from .methods import METHODS, get_method
from .models.data import BUNDLED_PHOTOS, bundled_photo, load_image_file
from .models.registry import LAYERS, MODELS, model_names
from .models.sources import SOURCE_FORMS, load_from_arguments
from .sweeps.cli import add_parser as _add_sweep
from .sweeps.images import FolderJob, certify_folder, list_images
from .models.labelled import is_labelled, labelled_files

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


def _image_arg(value: str, resize: int = 256, crop: int = 224):
    """A bundled photo id (e.g. ``chelsea``, or ``photo:chelsea``) or an image file path, read at the model's
    size (shorter side to ``resize``, center crop ``crop``)."""

    name = value[len("photo:"):] if value.startswith("photo:") else value
    if name in BUNDLED_PHOTOS and not Path(value).exists():
        photo = bundled_photo(name, resize, crop)
        return photo.id, photo.tensor
    return Path(value).stem, load_image_file(value, resize, crop)


def _is_folder(value: str) -> bool:
    """IMAGE names several images: a folder (plain, or one subfolder per class), a glob pattern, or a CSV of
    (file, label)."""
    return Path(value).is_dir() or any(c in value for c in "*?[") or Path(value).suffix.lower() == ".csv"


def _source_args(args, device) -> dict:
    """The model arguments of the flags (:func:`certattr.models.sources.load_from_arguments`)."""
    return {"source": args.model, "weights": args.weights, "device": str(device), "final_layer": args.final_layer,
            "mean": args.mean, "std": args.std, "input_size": args.input_size, "classes": args.classes,
            "drop_tokens": args.drop_tokens, "trust_pickle": args.trust_pickle, "precision": args.precision,
            "compilation": args.compilation}


def _check_cache(args) -> None:
    """A cache folder that exists is used as it is (a read-only one that holds every chunk a run needs is only
    read; a run that must write to it stops at its first write with one line); a missing one must be creatable."""
    if not args.no_cache and not Path(args.cache).is_dir():
        SampleCache(args.cache).check_writable()


def _certify_folder(args, source: dict, sampling, config) -> int:
    """``certattr certify DIR_OR_GLOB --out RESULTS/``: certattr.sweeps.images does the work."""
    if args.workers is not None and args.workers < 1:
        raise CertattrError(f"--workers {args.workers} is not allowed: give a positive number of workers")
    if args.workers is not None and args.scheduler:
        raise CertattrError("--scheduler joins a running cluster: it cannot be combined with --workers")
    labelled = is_labelled(args.image)
    if labelled and args.target is not None:
        raise CertattrError(f"--target cannot be given with {args.image!r}: its labels are the targets (give a plain "
                            f"folder of images for one --target)")
    paths = None if labelled else list_images(args.image)
    out = Path(args.out)
    check_writable_folder(out, "--out")
    _check_cache(args)
    model = load_from_arguments(source)  # every model error now, in one line, before any worker starts
    targets, names = None, None
    if labelled:  # every label checked against the model's classes before any image is certified
        found = labelled_files(args.image, model)
        paths, targets = list(found.files), list(found.labels)
        if not model.spec.notes.get("classes"):
            names = tuple(found.class_names.get(i, str(i)) for i in range(model.head_classes()))
        print(f"{len(paths)} images in {len(found.class_names)} classes ("
              + ", ".join(f"{found.class_names[c]}: {found.labels.count(c)}" for c in sorted(found.class_names))
              + "); each image's label is its target")
    job = FolderJob(source, args.method, args.layer, args.sigma, sampling, config, args.target,
                    None if args.no_cache else str(Path(args.cache).resolve()), names)
    result = certify_folder(paths, out, job, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.quiet, targets=targets)
    print(f"{result['done']} certified, {result['skipped']} already done, {result['bad']} unreadable "
          f"(see {out / 'log.txt'})" if result["bad"] else
          f"{result['done']} certified, {result['skipped']} already done")
    print("wrote " + ", ".join(str(p) for p in result["tables"]) + f" ({result['rows']} images) and "
          f"{out / 'certificates'}/")
    return 0


def _add_certify(sub):
    p = sub.add_parser("certify", help="certify the top-K pixels of one image's attribution map",
                       description="Certify which pixels are in the top K%% of an attribution map under l2 "
                                   "perturbations (Anani et al., ICML 2025). Writes overlay.png and certificate.json "
                                   "(and certificate.npz) into --out; both files also hold the band certificate "
                                   "(one claim for all K at 1 - alpha: band_labels, band_fractions).")
    p.add_argument("image", help="an image file, a bundled photo id (chelsea, coffee, camera, ...), or a folder or "
                                 "glob of images, a folder with one subfolder per class, or a CSV of (file, label) "
                                 "(then --out gets one certificate per image and results.csv; labels are the targets)")
    p.add_argument("--model", action=_Once, default="efficientnet_lite0",
                   help=f"{SOURCE_FORMS}; presets: {', '.join(model_names())}")
    p.add_argument("--weights", action=_Once, default="pretrained",
                   help="pretrained, random (seeded), or a state-dict file for a torchvision:/timm:/file model")
    p.add_argument("--final-layer", action=_Once, default=None,
                   help="module path of the Final layer of a torchvision:/timm:/file model (default: guessed)")
    p.add_argument("--mean", action=_Once, type=float, nargs="+", default=None, help="normalization mean per channel")
    p.add_argument("--std", action=_Once, type=float, nargs="+", default=None, help="normalization std per channel")
    p.add_argument("--input-size", action=_Once, type=int, default=None, help="side of the model's square input")
    p.add_argument("--classes", action=_Once, default=None, metavar="FILE", help="class names, one per line")
    p.add_argument("--drop-tokens", action=_Once, type=int, default=0,
                   help="leading non-patch tokens of a token Final layer (1 for a CLS token)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a pickled whole module (unpickling runs code named in the file; see README)")
    p.add_argument("--workers", action=_Once, type=int, default=None,
                   help="a folder of images: certify on this many Dask LocalCluster workers")
    p.add_argument("--scheduler", action=_Once, default=None, metavar="ADDRESS",
                   help="a folder of images: certify on a running Dask scheduler (e.g. tcp://host:8786)")
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
    p.add_argument("--precision", action=_Once, default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="of the model passes: fp32 (default), bf16 (CPU and CUDA), fp16 (CUDA); part of the cache key")
    p.add_argument("--compilation", action=_Once, default="auto", choices=["auto", "off", "on"],
                   help="torch.compile for RISE's and Occlusion's forward-only passes: auto (default: where the "
                        "measured saving repays the compile time), off, on; part of the cache key")
    p.add_argument("--cache", action=_Once, default=str(default_cache_dir()), help="sample cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the sample cache")
    p.add_argument("--keep-maps", action="store_true",
                   help="also keep the float32 maps in the cache (default: only the compact top-K codes the "
                        "certificate needs; kept maps let another K be certified without resampling)")
    p.add_argument("--out", action=_Once, required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_certify)


def _certify(args) -> int:
    # validate everything cheap before loading a model: the samples' settings and the certificate's
    check_sigma(args.sigma)
    sampling = SamplingConfig(n=args.n, seed=args.seed, chunk_size=args.chunk_size, keep_maps=args.keep_maps)
    config = CertConfig(n0=args.n0, tau=args.tau, alpha=args.alpha, correction=args.correction, ks=tuple(args.k))
    check_fits(sampling, config)
    method = get_method(args.method)
    device = check_device(args.device)
    source = _source_args(args, device)
    if _is_folder(args.image):
        return _certify_folder(args, source, sampling, config)
    if args.workers is not None or args.scheduler is not None:
        raise CertattrError("--workers and --scheduler spread a folder of images: give a folder or a glob as IMAGE")
    if not Path(args.image).exists() and args.image.removeprefix("photo:") not in BUNDLED_PHOTOS:
        load_image_file(args.image)  # the one-line error naming the missing file, before the model loads
    out = Path(args.out)
    _check_out(out)
    _check_cache(args)
    model = load_from_arguments(source)
    image_id, image = _image_arg(args.image, model.spec.resize, model.spec.crop)
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
    # the band certificate (always written: band_labels in certificate.npz, band_fractions in certificate.json)
    print(f"bands (all K together at 1 - alpha = {1 - cert.alpha:g}): " + "; ".join(
        f"K={k:g}%: {100 * f['certified_1']:.1f}% certified 1, {100 * f['certified_0']:.1f}% certified 0"
        for k, f in cert.band_fractions().items()))
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
    p.add_argument("--profile", action=_Once, default="cpu", choices=list(PROFILE_NAMES))
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


#: parameters that always name a path (a folder, glob, CSV or text file), and those that may (a model file, weights)
_PATH_PARAMETERS, _MAYBE_PATH_PARAMETERS = ("image_dir", "imagenet_dir", "classes"), ("model", "models", "weights")


def _absolute(value, always: bool):
    """A path given on the command line, made absolute against the folder the command runs in (the chapters run in
    the book's folder): ``file:PATH`` and existing files always, other strings where ``always``."""
    if isinstance(value, list):  # a list of models; a list of class names is not a path
        return value if always else [_absolute(v, always) for v in value]
    if not isinstance(value, str) or not value:
        return value
    prefix = "file:" if value.startswith("file:") else ""
    path = Path(value[len(prefix):]).expanduser()
    if path.is_absolute() or not (always or prefix or path.exists()):
        return value
    return prefix + str(Path.cwd() / path)


def _book(args) -> int:
    root = check_root(args.root or ROOT)
    chapters = [check_choice("chapter", c, chapter_names()) for c in args.only] if args.only else chapter_names()
    overrides = check_overrides(parse_overrides(args.parameter), args.profile, chapters, root)
    overrides = {k: _absolute(v, k in _PATH_PARAMETERS) if k in _PATH_PARAMETERS + _MAYBE_PATH_PARAMETERS else v
                 for k, v in overrides.items()}
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
    p.add_argument("--profile", default="smoke", choices=list(PROFILE_NAMES),
                   help="the parameters written into each notebook's parameters cell (default: smoke, minutes "
                        "on a laptop CPU)")
    p.add_argument("--only", nargs="*", default=None, choices=book_course().stems(), metavar="CHAPTER",
                   help="only these chapters (file stems of the chapters with exercises)")
    p.add_argument("--cache-dir", default="certattr-cache",
                   help="the sample cache the notebooks use, relative to the folder they run in or absolute "
                        "(default: certattr-cache)")
    p.add_argument("--no-course", action="store_true", help="do not write the nbgrader course folder")
    p.add_argument("--root", default=None, help="the book's folder (default: this repository)")
    p.set_defaults(func=_assignments)


def _assignments(args) -> int:
    root = Path(args.root) if args.root else ROOT
    course = book_course()
    chapters = {c: chapter_parameters(args.profile, c, root=root) for c in (args.only or course.stems())}
    written = build_assignments(args.out, chapters=chapters, profile=args.profile, root=root, course=course,
                                cache_dir=args.cache_dir, nbgrader=not args.no_course)
    students = [p for p in written if p.name.endswith("-student.ipynb") and p.parent == Path(args.out)]
    print(f"wrote {len(students)} student and {len(students)} instructor notebooks into {args.out}"
          + ("" if args.no_course else f", and the nbgrader course {Path(args.out) / 'nbgrader'}"))
    return 0


def _add_findings_check(sub):
    p = sub.add_parser("findings-check", help="recompute every findings row of a built profile from its CSV tables "
                                               "with a second, plain implementation, and compare")
    p.add_argument("results_dir", help="a built profile's results folder, e.g. book/chapters/results/cpu")
    p.set_defaults(func=_findings_check)


def _findings_check(args) -> int:
    from .evaluation.recheck import recheck

    folder = Path(args.results_dir)
    if not folder.is_dir() or not any(folder.glob("findings_*.json")):
        raise CertattrError(f"{folder} is not a built profile's results folder: it has no findings_*.json (build "
                            f"the book first, e.g. `certattr book --profile cpu`, then give "
                            f"book/chapters/results/cpu)")
    return 1 if recheck(folder) else 0


def main(argv=None) -> int:
    parser = _Parser(prog="certattr", description="Pixel-level certified attributions via randomized smoothing")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_certify(sub)
    _add_list(sub)
    _add_book(sub)
    _add_findings_check(sub)
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
