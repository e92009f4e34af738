"""Every figure function the chapters use stays legible at the book's width on a crowded case: twelve methods with
their longest names, both layers, several models, identical series, degenerate and undefined slots.

Each figure is drawn with the book's style (:func:`certattr.book.chapter.figure_style`) on the Agg backend and saved
as the book saves it (``bbox_inches="tight"`` at :data:`~certattr.book.chapter.DPI`). The checks, on the artists
themselves:

* **no collisions**: the window extents of any two visible texts (titles, labels, tick labels, legend entries,
  annotations) overlap by at most one pixel;
* **fonts**: every visible text is at least 9 px high on the page, where a figure wider than the cell that shows
  it (650 px in the text column, 930 px full width) is shrunk to fit;
* **colours**: in every legend, two entries that stand for plotted series differ by at least 20 in CIELAB (ΔE76),
  so a reader can tell them apart by colour alone; and no axes draws the same line twice (identical series are
  drawn once and named together);
* where a point is a mean, the figure draws its interval (checked per figure).
"""
from __future__ import annotations

import io
import itertools
import struct

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from certattr.book import chapter, plotting  # noqa: E402
from certattr.engine.certify import certify_maps  # noqa: E402

TEXT_PX = chapter.TEXT_WIDTH * chapter.DPI  #: the text column
WIDE_PX = chapter.WIDE_WIDTH * chapter.DPI  #: a full-width cell
MIN_PX = 9.0
TOLERANCE_PX = 1.0
MIN_DELTA_E = 20.0

#: the twelve methods with the names a reader sees
METHODS = ["Grad", "GB", "IxG", "IntGrad", "LRP", "Cam", "GradCam", "GradCam++", "LayerCam", "AblationCam", "RISE",
           "Occlusion"]
MODELS = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
          "efficientnet_lite2": "EfficientNet-Lite2"}


@pytest.fixture(autouse=True)
def book_style():
    chapter.figure_style()
    yield
    plt.close("all")


# --- the checks -----------------------------------------------------------------------------------------------
def saved_size(fig) -> tuple[int, int]:
    """(width, height) in pixels of the PNG the book shows (saved as the inline backend saves it)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=chapter.DPI, bbox_inches="tight")
    return struct.unpack(">II", buffer.getvalue()[16:24])


def _shown(artist) -> bool:
    while artist is not None:
        if not artist.get_visible():
            return False
        artist = getattr(artist, "axes", None) if artist is not getattr(artist, "axes", None) else None
    return True


def drawn_texts(fig) -> list[Text]:
    """Every text the saved figure shows: non-empty, visible, in a visible axes, and for tick labels only those of
    ticks inside the view limits of an axis that is drawn."""
    fig.canvas.draw()
    tick_labels, texts = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            every = axis.get_major_ticks() + axis.get_minor_ticks()
            tick_labels |= {id(label) for t in every for label in (t.label1, t.label2)}
            if not (ax.get_visible() and ax.axison and axis.get_visible()):
                continue
            for tick in axis._update_ticks():
                texts += [label for label in (tick.label1, tick.label2)
                          if label.get_visible() and label.get_text().strip()]
    for text in fig.findobj(Text):
        if id(text) in tick_labels or not text.get_visible() or not text.get_text().strip():
            continue
        if text.axes is not None and not text.axes.get_visible():
            continue
        legend = next((a for a in _parents(text) if isinstance(a, Legend)), None)
        if legend is not None and not legend.get_visible():
            continue
        texts.append(text)
    return list(dict.fromkeys(texts))


def _parents(text):
    root = text.get_figure(root=True)
    return [lg for lg in legends(root) if text in lg.get_texts() or text is lg.get_title()]


def collisions(fig, texts=None) -> list[str]:
    texts = drawn_texts(fig) if texts is None else texts
    renderer = fig.canvas.get_renderer()
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    out = []
    for (a, ba), (b, bb) in itertools.combinations(boxes, 2):
        dx = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        dy = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        if dx > TOLERANCE_PX and dy > TOLERANCE_PX:
            out.append(f"{a.get_text()!r} overlaps {b.get_text()!r} by {dx:.0f} x {dy:.0f} px")
    return out


def small_fonts(fig, cell_px: float, texts=None, width=None) -> list[str]:
    width = saved_size(fig)[0] if width is None else width
    scale = min(1.0, cell_px / width)
    out = []
    for text in (drawn_texts(fig) if texts is None else texts):
        px = text.get_fontsize() * fig.dpi / 72 * scale
        if px < MIN_PX - 1e-9:
            out.append(f"{text.get_text()!r}: {px:.1f} px (figure {width} px wide, shown at {cell_px:.0f})")
    return out


def _lab(colour) -> np.ndarray:
    """sRGB -> CIELAB (D65), written out here so the test does not trust the code it checks."""
    rgb = np.array(mcolors.to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a, b) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def _handle_colour(handle):
    if isinstance(handle, Line2D):
        return handle.get_color() if handle.get_linestyle() not in ("None", "", " ") else handle.get_markerfacecolor()
    if isinstance(handle, Patch):
        return handle.get_facecolor()
    if isinstance(handle, LineCollection):
        return handle.get_colors()[0]
    colours = getattr(handle, "get_facecolor", lambda: None)()
    return colours[0] if colours is not None and len(colours) else None


def legends(fig) -> list[Legend]:
    """Every legend: of an axes, of the figure or of one of its subfigures."""
    return list(dict.fromkeys(fig.findobj(Legend)))


def colour_clashes(fig, ignore=()) -> list[str]:
    """Pairs of entries of one legend whose colours are closer than MIN_DELTA_E (entries whose label is in
    ``ignore``, e.g. a reference line, and hatched patches, which are told apart by their hatch, are left out)."""
    out = []
    for legend in legends(fig):
        entries = [(t.get_text(), _handle_colour(h)) for t, h in zip(legend.get_texts(), legend.legend_handles)
                   if t.get_text() not in ignore and not (isinstance(h, Patch) and h.get_hatch())]
        for (la, ca), (lb, cb) in itertools.combinations(entries, 2):
            if ca is None or cb is None:
                continue
            d = delta_e(ca, cb)
            if d < MIN_DELTA_E:
                out.append(f"{la!r} and {lb!r}: ΔE {d:.1f}")
    return out


def repeated_lines(fig) -> list[str]:
    """Lines of one axes (three points or more; not the caps of error bars) drawn twice with the same data."""
    out = []
    for ax in fig.axes:
        series = [ln for ln in ax.get_lines() if ln.get_visible() and len(ln.get_xdata()) > 2
                  and not (ln.get_linestyle() in ("None", "") and ln.get_marker() in ("_", "|"))]
        for a, b in itertools.combinations(series, 2):
            xa, ya = np.asarray(a.get_xdata(), float), np.asarray(a.get_ydata(), float)
            xb, yb = np.asarray(b.get_xdata(), float), np.asarray(b.get_ydata(), float)
            if xa.shape == xb.shape and np.allclose(xa, xb) and np.allclose(ya, yb, equal_nan=True):
                out.append(f"{ax.get_title()!r}: {a.get_label()!r} and {b.get_label()!r} are the same line")
    return out


def assert_legible(fig, cell_px: float, *, ignore_colours=()):
    """Every check of the module docstring on one figure."""
    width, _ = saved_size(fig)
    texts = drawn_texts(fig)
    problems = (collisions(fig, texts) + small_fonts(fig, cell_px, texts, width) + colour_clashes(fig, ignore_colours)
                + repeated_lines(fig))
    assert not problems, f"{len(problems)} problems (figure {width} px wide):\n" + "\n".join(problems[:25])


# --- the checks check something -------------------------------------------------------------------------------
def test_the_checks_catch_collisions_small_fonts_and_close_colours():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, "one label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    ax.set_xticks([0, 0.02], ["clean", "-top 50%"])
    ax.set_title("tiny", fontsize=5)
    ax.plot([0, 1, 2], [0, 1, 2], color="#aec7e8", label="a")
    ax.plot([0, 1, 2], [0, 1, 2], color="#c5b0d5", label="b")
    ax.legend()
    assert any("'one label' overlaps 'another label'" in p for p in collisions(fig))
    assert any("'clean' overlaps '-top 50%'" in p for p in collisions(fig))
    assert small_fonts(fig, TEXT_PX) == ["'tiny': 6.9 px (figure %d px wide, shown at 650)" % saved_size(fig)[0]]
    assert colour_clashes(fig) and repeated_lines(fig)
    # a figure twice as wide as the column is shown at half size: its 8-pt ticks (11 px) become 5.6 px
    wide, ax = plt.subplots(figsize=(2 * chapter.TEXT_WIDTH, 2))
    ax.plot([0, 1], [0, 1])
    assert small_fonts(wide, TEXT_PX) and not small_fonts(wide, 2 * TEXT_PX + 50)
    assert delta_e("#000000", "#ffffff") == pytest.approx(100, abs=0.1)


def test_the_book_palettes_are_distinct():
    for palette in (list(plotting.METHOD_COLORS.values()), list(plotting.SERIES_COLORS), plotting.k_colors(5),
                    plotting.ordered_colors(5), list(plotting.OUTCOME_COLORS.values())):
        worst = min(delta_e(a, b) for a, b in itertools.combinations(palette, 2))
        assert worst >= MIN_DELTA_E, palette
    assert set(plotting.METHOD_COLORS) == set(METHODS) == set(plotting.METHOD_MARKERS)
    assert len(set(plotting.METHOD_MARKERS.values())) == len(METHODS)


# --- the crowded cases ----------------------------------------------------------------------------------------
def _bar_frame(kind: str, layer: str, xs) -> pd.DataFrame:
    """Three models, every method at every x, except: Cam undefined at the Input layer, Occlusion not run at the
    second x, Grad and GB degenerate at the Final layer, the third model without LayerCam."""
    rng = np.random.default_rng(0)
    rows = []
    for model, title in MODELS.items():
        for method in METHODS:
            if (method == "Cam" and layer == "input") or (method == "LayerCam" and model.endswith("2")):
                continue
            for j, x in enumerate(xs):
                if method == "Occlusion" and j == 1:
                    continue
                row = {"model": model, "model_title": title, "method_title": method, "layer": layer, "R": x,
                       "K": x, "degenerate": layer == "final" and method in ("Grad", "GB")}
                if kind == "outcome":
                    c1, c0 = rng.uniform(0, 0.5, 2)
                    row.update(certified_1=c1, certified_0=c0, abstain=1 - c1 - c0)
                else:
                    v = rng.uniform(0.1, 0.9)
                    row.update(value=v, low=v - 0.08, high=min(1, v + 0.08))
                rows.append(row)
    return pd.DataFrame(rows)


R_LEVELS, K_LEVELS = ["0.10", "0.17", "0.22"], ["50", "30", "20", "10"]


@pytest.mark.parametrize("kind,layer,x_col,xs", [("outcome", "input", "R", R_LEVELS), ("outcome", "final", "K", K_LEVELS),
                                                 ("gridpg", "input", "K", K_LEVELS), ("gridpg", "final", "R", R_LEVELS)])
def test_method_bars_figure_is_legible_with_twelve_methods_on_three_models(kind, layer, x_col, xs):
    fig = plotting.method_bars_figure(
        _bar_frame(kind, layer, xs), layer, models=list(MODELS), model_titles=MODELS, method_order=METHODS,
        undefined_pairs={("Cam", "input")}, x_col=x_col, xs=xs,
        title=f"%certified at K = 50% against {x_col}" if kind == "outcome" else "Certified GridPG against R",
        kind=kind)
    assert_legible(fig, WIDE_PX, ignore_colours=("random GridPG 0.25",))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert (texts.count("not\ndefined") == 1) == (layer == "input")
    assert "not run" in texts and (DEGENERATE in texts) == (layer == "final")


DEGENERATE = plotting.DEGENERATE_LABEL


def _deletion_table(n_images: int = 9) -> pd.DataFrame:
    """Deletion curves of three models: seven methods at the Input layer, all twelve at the Final layer, where IxG,
    IntGrad, LRP, Cam and GradCam have identical curves (a GAP->linear head) and Grad and GB remove nothing."""
    rng = np.random.default_rng(1)
    ks = [10.0, 30.0, 50.0]
    same = ("IxG", "IntGrad", "LRP", "Cam", "GradCam")
    rows = []
    for model, title in MODELS.items():
        for layer, methods in (("input", ["Grad", "GB", "IxG", "IntGrad", "LRP", "RISE", "GradCam"]),
                               ("final", METHODS)):
            shared = {i: np.sort(rng.uniform(0, 0.9, 3))[::-1] for i in range(n_images)}
            for method in methods:
                for i in range(n_images):
                    clean = 0.92
                    drops = shared[i] if (layer == "final" and method in same) else np.sort(rng.uniform(0, 0.9, 3))[::-1]
                    nothing = layer == "final" and method in ("Grad", "GB")
                    probs = [clean] + ([clean] * 3 if nothing else list(drops))
                    for step, p in enumerate(probs):
                        rows.append({"model": model, "model_title": title, "image_id": f"photo{i}",
                                     "method_title": method, "layer": layer, "step": step,
                                     "k": np.nan if step == 0 else ks[step - 1], "probability": p,
                                     "removed_fraction": 0.0 if nothing or step == 0 else ks[step - 1] / 100})
    return pd.DataFrame(rows)


def test_deletion_figure_is_legible_and_draws_identical_curves_once_with_intervals():
    fig = plotting.deletion_figure(_deletion_table(), layers=["input", "final"], method_order=METHODS)
    assert_legible(fig, TEXT_PX)
    labels = [t.get_text() for lg in legends(fig) for t in lg.get_texts()]
    assert "IxG = IntGrad = LRP = Cam = GradCam" in labels and "Grad = GB (removes nothing)" in labels
    assert labels.count("IxG") == 1  # the Input layer's IxG, a series of its own there
    final = [ax for ax in fig.axes if ax.figure._suptitle.get_text() == "Final layer"]  # its column
    assert len(final) == 3 and all(len(ax.containers) == 7 for ax in final)  # 12 methods, 7 distinct series
    # every point is a mean over 9 images: each series has its whiskers
    assert all(c.has_yerr for ax in fig.axes for c in ax.containers)


def test_deletion_figure_leaves_every_plot_its_height_under_a_long_legend():
    """One model, eleven distinct Input-layer series (the digits page): the legend under the column must not
    squash the plot above it (it was 40 px high)."""
    table = _deletion_table()
    table = table[table.model == next(iter(MODELS))]
    rng = np.random.default_rng(5)
    table = table.assign(probability=table.probability * rng.uniform(0.5, 1.0, len(table)))  # all series distinct
    extra = table[(table.layer == "final") & table.method_title.isin(["Cam", "GradCam++", "LayerCam", "AblationCam",
                                                                      "Occlusion"])].assign(layer="input")
    table = pd.concat([table, extra], ignore_index=True)
    table.loc[table.layer == "input", "removed_fraction"] = 0.0  # long labels: "GradCam++ (removes nothing)"
    fig = plotting.deletion_figure(table, layers=["input", "final"], method_order=METHODS)
    fig.canvas.draw()
    heights = [ax.get_window_extent().height for ax in fig.axes]
    assert min(heights) >= 0.6 * max(heights) and min(heights) > 100, heights
    assert_legible(fig, TEXT_PX)


def test_deletion_figure_names_degenerate_series_instead_of_drawing_them():
    table = _deletion_table(3)
    constant = (table.layer == "final") & table.method_title.isin(["Grad", "GB"])
    table["degenerate"] = np.where(constant, "the top-K set is decided by rounding", "")
    fig = plotting.deletion_figure(table, layers=["input", "final"], method_order=METHODS)
    labels = [t.get_text() for lg in legends(fig) for t in lg.get_texts()]
    assert "Grad = GB: constant maps (degenerate), not drawn" in labels
    def series(axes):
        return {c.get_label().split(" (")[0] for ax in axes for c in ax.containers}

    input_axes, final_axes = fig.axes[:len(MODELS)], fig.axes[len(MODELS):]  # one column per layer
    assert {"Grad", "GB"} <= series(input_axes)  # the same methods are drawn where their maps are not constant
    assert not series(final_axes) & {"Grad", "GB", "Grad = GB"} and "RISE" in series(final_axes)
    # the named-only entry has no colour (an empty patch): it cannot be confused with a drawn series
    assert_legible(fig, TEXT_PX, ignore_colours=("Grad = GB: constant maps (degenerate), not drawn",))


def test_deletion_figure_draws_no_interval_below_eight_images():
    fig = plotting.deletion_figure(_deletion_table(3), layers=["input"], method_order=METHODS)
    assert not any(c.has_yerr for ax in fig.axes for c in ax.containers)
    assert_legible(fig, TEXT_PX)


def _tradeoff_points(with_intervals: bool = True) -> pd.DataFrame:
    """Both layers; at the Final layer five methods share one point (identical certificates) and three more pile up
    near it, as they do on a GAP->linear head."""
    rng = np.random.default_rng(2)
    rows = []
    for layer, titles in (("input", ["Grad", "GB", "IxG", "IntGrad", "LRP", "RISE", "GradCam", "Occlusion"]),
                          ("final", ["Grad (= GB)", "LRP (= IxG = IntGrad = Cam = GradCam)", "GradCam++", "LayerCam",
                                     "AblationCam", "RISE", "Occlusion"])):
        for title in titles:
            r, g = (rng.uniform(0.85, 0.9), rng.uniform(0.6, 0.65)) if layer == "final" else rng.uniform(0, 1, 2)
            row = {"layer": layer, "title": title, "robustness": r, "certified_gridpg": g}
            if with_intervals:
                row.update(robustness_low=r - 0.05, robustness_high=min(1, r + 0.04), gridpg_low=g - 0.1,
                           gridpg_high=min(1, g + 0.1))
            rows.append(row)
    return pd.DataFrame(rows)


def test_tradeoff_figure_is_legible_with_piled_points_and_draws_intervals():
    fig = plotting.tradeoff_figure(_tradeoff_points(), layers=["input", "final"])
    assert_legible(fig, TEXT_PX, ignore_colours=("random GridPG 0.25",))  # a dashed reference line, not a method
    labels = [t.get_text() for lg in legends(fig) for t in lg.get_texts()]
    # the chance line is named in each panel's legend, not by a label on the plot where points lie
    assert labels.count("random GridPG 0.25") == 2 and not any("random" in t.get_text() for ax in fig.axes
                                                               for t in ax.texts)
    assert "LRP = IxG = IntGrad = Cam = GradCam" in labels and len(labels) == 17
    containers = [c for ax in fig.axes for c in ax.containers]
    assert len(containers) == 15 and all(c.has_xerr and c.has_yerr for c in containers)
    # the Final-layer panel spans its piled points, their whiskers and the baseline, not the whole unit square
    points = _tradeoff_points()
    final = points[points.layer == "final"]
    ax = next(a for a in fig.axes if a.get_title() == "Final layer")
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= min(0.25, final.gridpg_low.min()) and x1 >= final.gridpg_high.max() and x1 - x0 < 0.8
    assert y0 <= final.robustness_low.min() and y1 >= final.robustness_high.max() and y1 - y0 < 0.5
    bare = plotting.tradeoff_figure(_tradeoff_points(False), layers=["input", "final"])
    assert not any(c.has_xerr or c.has_yerr for ax in bare.axes for c in ax.containers)


def _certificate(ks=(50, 40, 30, 20, 10), size: int = 48, seed: int = 0):
    """A certificate with every outcome: a smooth map plus noise over 40 samples (some pixels certified '1', some
    '0', the rest abstain)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.05)
    maps = base[None] + 0.25 * rng.standard_normal((40, size, size))
    return certify_maps(maps.astype(np.float32), list(ks), sigma=0.25, n0=8, tau=0.6, alpha=0.05)


def _image(size: int = 48, seed: int = 0):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def test_band_map_figure_is_legible_and_its_bands_are_distinct():
    cert = _certificate()
    fig = plotting_band_map_figure(cert, _image(), "band map, K = 50/40/30/20/10%")
    assert_legible(fig, TEXT_PX)
    labels = [t.get_text() for lg in legends(fig) for t in lg.get_texts()]
    assert len(labels) == 11 and labels[-1] == "abstain"  # five K inside, five outside, abstain


def plotting_band_map_figure(*args):
    from certattr.book.band_plot import band_map_figure

    return band_map_figure(*args)


def _constant_certificate(ks=(50, 30, 10)):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps: flagged degenerate, and too few samples to certify
        constant = certify_maps(np.ones((20, 16, 16), np.float32), list(ks), sigma=0.2, n0=5, tau=0.75, alpha=0.05)
    assert constant.degenerate
    return constant


def test_overlay_panels_figure_is_legible_with_every_method_undefined_and_degenerate_slots():
    image, cert, flat = _image(), _certificate((50, 30, 20, 10)), _constant_certificate((50, 30, 20, 10))
    panels = []
    for i, method in enumerate(METHODS):
        title = f"{method} @ Final, target {i % 4}\nespresso maker; GridPG 0.25"
        if method == "Cam":
            panels.append({"title": title, "status": plotting.NOT_DEFINED_LABEL})
        elif method == "Occlusion":
            panels.append({"title": title, "status": plotting.NOT_RUN_LABEL})
        else:
            panels.append({"title": title, "image": image, "cert": flat if method in ("Grad", "GB") else cert,
                           "outline": (slice(0, 24), slice(24, 48))})
    fig = plotting.overlay_panels_figure(panels, (50, 30, 20, 10))
    assert_legible(fig, WIDE_PX)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("not defined") == 1 and texts.count("not run") == 1
    assert texts.count("degenerate:\nconstant map") == 2


def test_certificate_rows_figure_fits_the_page_with_five_k():
    cert = _certificate()
    rows = [(f"{m} @ Final", cert) for m in ("GradCam++", "AblationCam")] + [("Grad @ Input", _constant_certificate(
        (50, 40, 30, 20, 10)))]
    fig = plotting.certificate_rows_figure(rows, (50, 40, 30, 20, 10), 50, _image())
    assert_legible(fig, WIDE_PX)
    width, height = saved_size(fig)
    assert width <= WIDE_PX  # shown at its own size: no panel shrinks
    panels = [ax for ax in fig.axes if ax.images or ax.texts]
    renderer = fig.canvas.get_renderer()
    assert min(ax.get_window_extent(renderer).width for ax in panels) >= 100  # each map at least 100 px wide


def test_pipeline_figure_is_legible():
    cert = _certificate((50, 25, 5))
    rng = np.random.default_rng(3)
    fig = plotting.pipeline_figure(_image(), "rocket (space shuttle, long name)", rng.random((48, 48)),
                                   rng.random((5, 48, 48)), cert.mean_sparsified[0], cert, (50, 25, 5))
    assert_legible(fig, WIDE_PX)


LAMS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0]


def _levine_frames():
    rng = np.random.default_rng(4)
    attacks, correct, cert, sparse = [], [], [], []
    for lam in LAMS:
        for i in range(10):
            for eps in (0.5, 1.0, 1.5, 2.0):
                attacks.append({"lam": lam, "eps": eps, "image": f"test{i}", "attack": rng.uniform(0.2, 0.7),
                                "random": rng.uniform(0.7, 1.0)})
                sparse.append({"lam": lam, "eps": eps / 4, "image": f"test{i}", "certified_overlap": rng.uniform(0, 1)})
            for kk in (50, 30, 10):
                cert.append({"lam": lam, "image": f"test{i}", "K": kk, "certified": rng.uniform(0.5, 1),
                             "certified_1": rng.uniform(0, 0.3)})
        correct += [{"lam": lam, "image": f"test{i}", "correct": bool(rng.random() < 0.9)} for i in range(200)]
    return pd.DataFrame(attacks), pd.DataFrame(correct), pd.DataFrame(cert), pd.DataFrame(sparse)


def test_levine_figures_are_legible_with_six_lambdas_and_draw_intervals():
    attacks, correct, cert, sparse = _levine_frames()
    fig = plotting.levine_robustness_figure(attacks, correct, k=26)
    assert_legible(fig, TEXT_PX, ignore_colours=("their attack", "random δ, same norm"))
    assert all(c.has_yerr for ax in fig.axes for c in ax.containers)  # every point is a mean over digits
    styles = {c.lines[0].get_linestyle() for c in fig.axes[0].containers}
    assert styles == {"-", "--"}  # the attack solid, the random control dashed
    fig = plotting.levine_certified_figure(cert, sparse, k=26)
    assert_legible(fig, TEXT_PX, ignore_colours=("certified (either label)", "certified '1'"))
    assert all(c.has_yerr for ax in fig.axes for c in ax.containers)


def test_scaled_vs_sparsified_figure_uses_the_whole_scale_and_solid_lines():
    rows = [{"method": m, "image": im, "eps": e, "certified_overlap": (0.0 if m.startswith("scaled") else 0.9 - e)}
            for m in ("Sparsified SmoothGrad", "scaled SmoothGrad") for im in ("rocket", "coffee")
            for e in (0.01, 0.05, 0.1, 0.2)]
    fig = plotting.scaled_vs_sparsified_figure(pd.DataFrame(rows))
    assert_legible(fig, TEXT_PX)
    assert [ax.get_title() for ax in fig.axes] == ["rocket", "coffee"]  # one panel per photo
    assert all(ax.get_ylim()[1] >= 1.0 and {ln.get_linestyle() for ln in ax.get_lines()} == {"-"} for ax in fig.axes)
    labels = [t.get_text() for lg in legends(fig) for t in lg.get_texts()]
    assert labels == ["Sparsified SmoothGrad", "scaled SmoothGrad"]  # no raw "method" / "image" headers


def test_anytime_figure_keeps_coinciding_fixed_n_markers_apart():
    looks = list(range(20, 420, 20))
    bounds = {name: np.linspace(10, 60 + i, len(looks)) for i, name in enumerate(["mixture", "prior", "betting",
                                                                                   "looks"])}
    fixed = {"fixed n, per K at α": [30, 40, 50], "fixed n, band (all K at α)": [30, 40, 50],
             "fixed n, per K at α/m": [25, 35, 45]}
    fig = plotting.anytime_figure(looks, bounds, "mixture", [100, 200, 400], fixed, [(150, 40.0), (260, 48.0)])
    assert_legible(fig, TEXT_PX)
    ax = fig.axes[0]
    same = [ln for ln in ax.get_lines() if ln.get_label().startswith("fixed n, per K at α") or "band" in ln.get_label()]
    xs = [tuple(ln.get_xdata()) for ln in same]
    assert len(set(xs)) == len(xs)  # equal values at the same n are drawn side by side, not on top of each other


def test_photos_figure_keeps_nine_captions_apart():
    items = [(_image(seed=i), f"photo_with_a_long_name_{i}", "espresso maker with a long class name") for i in range(9)]
    fig = plotting.photos_figure(items, title="The photos and their targets")
    assert_legible(fig, TEXT_PX)


def test_photos_figure_of_one_photo_is_not_a_poster():
    fig = plotting.photos_figure([(_image(), "coffee", "espresso")], title="The photos and their targets")
    width, height = saved_size(fig)
    assert width <= 0.5 * TEXT_PX and height <= 400
    assert_legible(fig, TEXT_PX)
