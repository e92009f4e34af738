"""What every chapter of the book does before its first figure, in one place: warnings, the figure style
(fonts that stay legible at the page's width), the results folder, and display names for tables.

A chapter starts with ``start = certattr.book.chapter.setup(results_dir)``. Figure widths are in inches at
:data:`DPI`; the book shows a figure at its pixel width up to the text column (about :data:`TEXT_WIDTH`
inches) or, in a cell tagged ``full-width``, up to :data:`WIDE_WIDTH` inches, so fonts of at least 8 pt stay
at least 8 pt on the page.
"""
from __future__ import annotations

import dataclasses

import os
import re
import time
import warnings
from pathlib import Path

from ..engine.certify import DegenerateMapWarning
from ..engine.config import CertConfig
from ..evaluation.names import k_text, layer_title, method_title
from ..evaluation.findings import findings_html
from .chapters import chapter_plan, get
from .costs import announce
from .plans import certify_plan
from .table import numbered_caption, reset_numbering

__all__ = ["setup", "degenerate_note", "DPI", "TEXT_WIDTH", "WIDE_WIDTH", "method_title", "layer_title", "k_text", "display_frame", "glue_figure", "reduction_notes", "reduction_text",
           "undefined_frame", "identical_maps_text",
           "NOT_RUN", "elapsed"]

DPI = 100  #: figure.dpi of the inline backend: 1 inch = 100 px on the page
TEXT_WIDTH = 6.5  #: inches that fit the text column unscaled (650 px; the column is about 655 px at a 1280-px window)
WIDE_WIDTH = 9.3  #: inches that fit a full-width cell unscaled (the full-width figure is about 930 px there)
NOT_RUN = "not run"


#: the repository (notebooks/, book/, .cache/): where a chapter's default paths point, whatever the working folder
REPOSITORY = Path(__file__).resolve().parents[2]
#: the parameters cell's defaults for the two folders (relative to where `certattr book` runs chapters)
DEFAULT_CACHE_DIR, DEFAULT_RESULTS_DIR = "../../.cache/samples", "results"


def repository_paths(cache_dir, results_dir, profile: str) -> tuple[str, str]:
    """The chapter's folders with its parameters cell's defaults resolved against the repository, not the working
    folder (papermill runs a notebook wherever it is started): the default cache is ``$CERTATTR_CACHE`` or
    ``<repository>/.cache/samples``, the default results folder ``<repository>/book/chapters/results/<profile>`` (as
    ``certattr book`` passes them). Any other value is kept as given (a relative one is relative to the working
    folder, as the user typed it)."""
    if cache_dir == DEFAULT_CACHE_DIR:
        cache_dir = os.environ.get("CERTATTR_CACHE") or str(REPOSITORY / ".cache" / "samples")
    if results_dir == DEFAULT_RESULTS_DIR:
        results_dir = str(REPOSITORY / "book" / "chapters" / "results" / str(profile))
    return cache_dir, results_dir


def setup(results_dir, *, style: str = "whitegrid") -> float:
    """Silence the known third-party notices, set the figure style, make ``results_dir``; returns the start
    time (for the chapter's own timing)."""
    import pandas as pd
    import torch

    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    # a degenerate certificate is flagged (cert.degenerate) and named in the text by degenerate_note()
    warnings.filterwarnings("ignore", category=DegenerateMapWarning)
    if hasattr(pd.errors, "Pandas4Warning"):
        warnings.filterwarnings("ignore", category=pd.errors.Pandas4Warning)
    figure_style(style)
    torch.manual_seed(0)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    reset_numbering()
    return time.time()


#: the smallest font of a figure, in points: 8 pt at :data:`DPI` is 11 px, at least 9 px on the page as long as the
#: figure is shown at 80% of its size or more (figures are drawn at most as wide as the cell that shows them)
MIN_FONT_PT = 8


def figure_style(style: str = "whitegrid") -> None:
    """The book's figure style (seaborn's "paper" context at :data:`DPI`, fonts of 8 to 10 pt): what every chapter
    draws with, and what the legibility tests render with."""
    import matplotlib
    import seaborn as sns

    sns.set_theme(context="paper", style=style, rc={
        "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": MIN_FONT_PT,
        "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": 9,
        "figure.titlesize": 10, "figure.dpi": DPI, "savefig.dpi": DPI})
    matplotlib.rcParams["figure.max_open_warning"] = 0


def degenerate_note(certificates) -> str:
    """One sentence naming the (method, layer) pairs whose certificates are flagged degenerate (their noisy maps
    are constant up to float rounding, or select no pixel: the top-K set is decided by rounding or ties, not
    by the image), with how many of their certificates are; "" when none is.

    ``certificates``: Certificates, or a dict whose values are Certificates (e.g. keyed by
    (image, method, layer, sigma)); method and layer are read from each certificate's metadata.
    """
    values = certificates.values() if isinstance(certificates, dict) else certificates
    total, flagged = {}, {}
    for cert in values:
        meta = getattr(cert, "metadata", {}) or {}
        pair = (str(meta.get("method", "?")), str(meta.get("layer", "?")))
        total[pair] = total.get(pair, 0) + 1
        if getattr(cert, "degenerate", ""):
            flagged[pair] = flagged.get(pair, 0) + 1
    if not flagged:
        return ""
    names = [f"{method_title(m)} at the {layer_title(layer)} layer ({flagged[(m, layer)]} of {total[(m, layer)]} "
             f"certificates)" for m, layer in sorted(flagged)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return (f"Degenerate maps: for {listed} the noisy maps are constant up to float rounding (or select no pixel), "
            f"so the top-K set is decided by rounding, not by the image, and these certificates say nothing about "
            f"the image.")


def elapsed(start: float) -> float:
    return float(time.time() - start)


def display_frame(frame, *, missing: str = NOT_RUN):
    """A copy for display: method ids -> titles, layers capitalized, NaN -> ``missing``."""
    out = frame.copy()
    for col in out.columns:
        if col in ("method", "method_title"):
            out[col] = out[col].map(method_title)
        elif col == "layer":
            out[col] = out[col].map(layer_title)
    return out.astype(object).where(out.notna(), missing)


def glue_figure(name: str, fig=None, *, note: str | None = None) -> None:
    """Glue ``fig`` under ``name`` for a numbered ``{glue:figure}`` with a caption in the chapter's text; with
    no figure (nothing of it was run in this profile), a small figure that says so, so that every profile's
    book builds with the same captions."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    if fig is None:
        fig, ax = plt.subplots(figsize=(5.0, 0.8))
        ax.set_axis_off()
        ax.text(0.5, 0.5, note or "not run in this profile", ha="center", va="center", fontsize=10, color="0.35")
    glue(name, fig, display=False)
    plt.close(fig)


def reduction_notes(method_overrides: dict | None, *, offline: bool, methods_run=None) -> list[str]:
    """What a run reduced from the paper's setting, and what each reduction does to the results (one
    clause each, for the chapter's text). ``methods_run``: method names the chapter ran (None: all)."""
    overrides = method_overrides or {}
    ran = (lambda m: True) if methods_run is None else (lambda m: m in set(methods_run))
    notes = []
    if offline:
        notes.append("the images are the bundled photos, not the paper's ImageNet images, and the target is the "
                     "model's top-1 class; where two classes are nearly tied (the cat photo splits its probability "
                     "between two cat breeds) small changes flip the top-1 easily, which makes deletion flips easy and "
                     "some maps unstable for reasons that have nothing to do with the method")

    def setting(name, key):
        for spec in (f"{name}@input", name):
            if key in overrides.get(spec, {}):
                return overrides[spec][key]
        return None

    masks = setting("rise", "n_masks")
    if ran("rise") and masks and masks < 1000:
        notes.append(f"RISE at the Input layer uses {masks} masks instead of 1000; the masks are shared by every noisy "
                     "copy of an image, so with few masks every copy is explained by the same coarse blobs and RISE's "
                     "certified share is inflated compared with the paper's setting")
    window = setting("occlusion", "window")
    stride = setting("occlusion", "stride")
    if ran("occlusion") and window and (window > 16 or (stride or 8) > 8):
        notes.append(f"Occlusion at the Input layer slides a {window}x{window} window with stride {stride} instead of "
                     "16/8, so its maps are coarse blocks that are easy to certify")
    elif ran("occlusion") and window:
        notes.append(f"Occlusion at the Input layer slides a {window}x{window} window with stride {stride} (the paper's "
                     "16x16 window, stride 8, is for 224x224 photos)")
    steps = setting("intgrad", "steps")
    if ran("intgrad") and steps and steps < 20:
        notes.append(f"IntGrad at the Input layer takes {steps} steps instead of 20 (even 20 Gauss-Legendre steps miss "
                     "completeness by up to about 30% on real weights, fewer miss more), so its maps are rougher "
                     "approximations of the integral")
    return notes


def reduction_text(notes: list[str]) -> str:
    return ("What this run reduced, and what that does: " + "; ".join(notes) + ".") if notes else \
        "This run uses the paper's settings."


def undefined_frame(rows):
    """The table of (method, layer) pairs a model does not define, for display: one row per pair with the
    method's and layer's display names and the reason, "why not defined", without the method-id prefix ("cam: ..."
    -> "..."); the model column only when the rows name more than one model. ``rows``: dicts with "method" (id or
    title), "layer", "why n/a" and optionally "model"."""
    import pandas as pd

    out = []
    for row in rows:
        method = str(row["method"])
        reason = str(row["why n/a"])
        reason = re.sub(r"^[a-z0-9_+]+: ", "", reason)  # the registry's messages start with the method id
        reason = reason[:1].upper() + reason[1:]
        out.append({"model": row.get("model"), "method": method_title(method), "layer": layer_title(row["layer"]),
                    WHY_NOT_DEFINED: reason})
    frame = pd.DataFrame(out, columns=["model", "method", "layer", WHY_NOT_DEFINED]).drop_duplicates()
    if frame["model"].nunique(dropna=True) <= 1:
        frame = frame.drop(columns="model")
    return frame.reset_index(drop=True)


WHY_NOT_DEFINED = "why not defined"  #: the reason column of :func:`undefined_frame`


def identical_maps_text(groups) -> str:
    """The robustness chapter's sentence on methods that certify exactly the same pixels at the Final layer
    (``groups``: lists of method titles, from :func:`certattr.evaluation.findings.units.identical_groups`),
    with why that is expected when two of the linear-head methods coincide; "" without groups. ``groups`` may
    also be {model title: groups}, for a run of several models."""
    if isinstance(groups, dict):  # {model title: groups}: one clause per model that has any
        per_model = {m: g for m, g in groups.items() if g}
        if len(per_model) <= 1:
            return identical_maps_text(next(iter(per_model.values()), []))
        listed = " ".join(f"On {m}: " + "; ".join(", ".join(ms[:-1]) + " and " + ms[-1] for ms in g) + "."
                          for m, g in per_model.items())
        text = f"At the Final layer, some methods certify exactly the same pixels. {listed}"
        groups = [ms for g in per_model.values() for ms in g]
    elif not groups:
        return ""
    else:
        listed = "; ".join(", ".join(ms[:-1]) + " and " + ms[-1] for ms in groups)
        text = f"At the Final layer, some methods certify exactly the same pixels: {listed}."
    if any(len(set(ms) & {"IxG", "IntGrad", "LRP", "GradCam", "Cam"}) > 1 for ms in groups):
        text += (" This is expected when the head is global average pooling followed by a linear layer, as here: "
                 "the gradient of the logit with respect to the last feature map A is the classifier weight "
                 "w_y / (hw) at every position, so IxG = A·∇ and IntGrad (exact for a linear head) give the class "
                 "activation map Σ_c w_y,c A_c up to a positive factor, LRP's ε rule through the pooling and the "
                 "linear layer gives the same map, and GradCam and Cam add a ReLU, which leaves the top K unchanged "
                 "as long as at least K% of the map is positive.")
    return text


def plan_of(stem: str, namespace: dict):
    """Chapter ``stem``'s sampling plan (:func:`certattr.book.chapters.chapter_plan`, the same a sweep computes),
    from its parameters as they stand in ``namespace`` (the notebook's globals)."""
    return chapter_plan(stem, {p.name: namespace[p.name] for p in get(stem).parameters if p.name in namespace})


def announce_plan(plan, namespace: dict) -> None:
    """Print what the plan still has to sample: its model passes and the estimated time on this machine (rates
    stored beside the sample cache, in ``sweep_rates.json``)."""
    cache = namespace.get("cache_dir")
    print(announce(plan, rates_file=Path(cache).parent / "sweep_rates.json" if cache else None), flush=True)


def certify(plan, namespace: dict, *, taus=(), tau_sigmas=None, ks=None, only=None):
    """Print the plan's model passes and estimated time (what is not cached yet), then certify its works with the
    chapter's n, n0, τ, α, correction and K (``ks``: in this order, default the namespace's ``ks``), and at each
    further τ of ``taus`` from the same samples (:func:`certattr.book.plans.certify_plan`). ``only``: a predicate
    on a :class:`certattr.book.plans.Work`; the works it refuses are planned (and announced) but not certified
    here (a section that reads its entries its own way, e.g. the anytime runs)."""
    p = namespace
    announce_plan(plan, namespace)
    cert = CertConfig(n0=p["n0"], tau=p["tau"], alpha=p["alpha"], correction=p["correction"],
                      ks=p["ks"] if ks is None else ks)
    if only is not None:
        plan = dataclasses.replace(plan, works=[w for w in plan.works if only(w)])
    return certify_plan(plan, cert, n=p["n"], taus=taus, tau_sigmas=tau_sigmas)


def sample(stem: str, namespace: dict, *, taus=(), tau_sigmas=None, ks=None, only=None):
    """:func:`plan_of` then :func:`certify`: a chapter's sampling, from its notebook. Returns ``(plan, certified)``."""
    plan = plan_of(stem, namespace)
    return plan, certify(plan, namespace, taus=taus, tau_sigmas=tau_sigmas, ks=ks, only=only)


def claims(stem: str) -> tuple:
    """The ids of the claims chapter ``stem`` checks (its declaration's)."""
    return tuple(f.id for f in get(stem).findings)


def findings_table(verdicts, caption: str = "The paper's claims that this chapter checks, with this run's verdicts."):
    """The chapter's findings (:func:`certattr.evaluation.findings.findings_html`) as its next numbered table."""
    return findings_html(verdicts, caption=numbered_caption(caption)[1])


def data_links(results_dir, names):
    """The chapter's tables and findings as download links (a Markdown output that the book renders with MyST's
    ``{download}`` role, which copies each file into the built site): the files of ``names`` that exist in
    ``results_dir``, linked relative to the folder the chapter runs in."""
    from IPython.display import Markdown

    links = []
    for name in names:  # a name may be a glob ("levine_*.csv")
        for path in sorted(Path(results_dir).glob(name)):
            links.append(f"{{download}}`{path.name} <{os.path.relpath(path, os.getcwd())}>`")
    if not links:
        return Markdown("")
    return Markdown("**Data of this chapter** (tidy CSV tables, one row per measurement, and the verdicts with "
                    "their statistics): " + ", ".join(links) + ".")

