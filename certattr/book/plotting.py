"""The book's figures: certified maps with abstention and their overlays (smaller K wins), the bar charts, curves and
scatters of the evaluation chapters, and the styles they share (one colour and marker per method, legends that fit
their figure).

Every figure function draws at the book's width (:data:`~certattr.book.chapter.TEXT_WIDTH` or
:data:`~certattr.book.chapter.WIDE_WIDTH` inches at :data:`~certattr.book.chapter.DPI`), keeps its texts apart and
its fonts at 8 pt or more, gives each series a colour of its own (series that are identical are drawn once and named
together) and draws an interval where a point is a mean; ``tests/book/test_figure_legibility.py`` checks each on a crowded
case.
"""
from __future__ import annotations

import numpy as np

from ..engine.certificate import ABSTAIN, Certificate
from ..evaluation.findings.stats import MIN_CLUSTERS
from ..evaluation.tables import flagged
from .chapter import TEXT_WIDTH, WIDE_WIDTH, layer_title

__all__ = ["K_COLORS", "k_colors", "ABSTAIN_COLOR", "label_rgb", "overlay_rgba", "show_image", "plot_certificate",
           "plot_overlay", "save_overlay_png", "OUTCOME_COLORS", "outcome_bars", "outcome_legend", "interval_bars",
           "draw_not_run", "draw_zero", "abstain_stripes", "abstain_legend_patch", "overlay_legend",
           "METHOD_COLORS", "METHOD_MARKERS", "SERIES_COLORS", "method_style", "series_title", "fit_legend",
           "mean_interval", "NOT_DEFINED_LABEL", "NOT_RUN_LABEL"]

ABSTAIN_COLOR = (0.62, 0.62, 0.62)
ZERO_COLOR = (0.08, 0.08, 0.16)
ONE_COLOR = (1.0, 0.85, 0.2)
K_COLORS = ((0.99, 0.91, 0.15), (0.96, 0.48, 0.15), (0.80, 0.10, 0.25), (0.45, 0.05, 0.45), (0.15, 0.15, 0.55))

NOT_DEFINED_LABEL = "not defined"  #: a method that the model does not define at a layer (e.g. Cam at the Input layer)
NOT_RUN_LABEL = "not run"  #: a method that could run but was left out of this profile

#: one colour per method, the same in every figure of the book; pairwise at least 27 apart in CIELAB (ΔE76), so
#: any two methods can be told apart by colour alone, and a marker each (:data:`METHOD_MARKERS`) as a second cue
METHOD_COLORS = {"Grad": "#1f77b4", "GB": "#17becf", "IxG": "#2ca02c", "IntGrad": "#bcbd22", "LRP": "#d62728",
                 "Cam": "#8c564b", "GradCam": "#ff7f0e", "GradCam++": "#e377c2", "LayerCam": "#9467bd",
                 "AblationCam": "#7f7f7f", "RISE": "#000000", "Occlusion": "#e6ab02"}
METHOD_MARKERS = {"Grad": "o", "GB": "v", "IxG": "s", "IntGrad": "D", "LRP": "^", "Cam": "P", "GradCam": "X",
                  "GradCam++": "*", "LayerCam": "h", "AblationCam": "<", "RISE": ">", "Occlusion": "p"}
#: colours for series that are not methods (λ values, bounds, images), in order; pairwise at least 27 apart
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf", "#000000", "#e6ab02")
_SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def series_title(titles) -> str:
    """The name of a series that stands for several identical ones: "IxG = IntGrad = LRP"."""
    return " = ".join(dict.fromkeys(str(t) for t in titles))


def method_style(title: str) -> dict:
    """{"color", "marker"} of a method title (of a series named by :func:`series_title`, its first method); a title
    that is not a method gets a series colour of its own, the same for the same title."""
    lead = str(title).split(" = ")[0].split(" (= ")[0].strip()
    if lead in METHOD_COLORS:
        return {"color": METHOD_COLORS[lead], "marker": METHOD_MARKERS[lead]}
    index = sum(map(ord, lead)) % len(SERIES_COLORS)
    return {"color": SERIES_COLORS[index], "marker": _SERIES_MARKERS[index]}


def fit_legend(owner, handles, labels=None, *, width_in: float | None = None, **kwargs):
    """A legend of ``owner`` (a figure or an axes) with the most columns that fit in ``width_in`` inches (default: the
    figure's width), rows balanced; frameless unless ``frameon`` is given. A legend wider than its figure would be
    cut, or widen the saved figure and shrink every font with it on the page."""
    from matplotlib.figure import Figure

    fig = owner if isinstance(owner, Figure) else owner.figure
    labels = list(labels) if labels is not None else [h.get_label() for h in handles]
    kwargs.setdefault("frameon", False)
    limit = (width_in or fig.get_figwidth()) * fig.dpi * 0.98
    renderer = fig.canvas.get_renderer()
    for ncol in range(len(handles), 0, -1):
        rows = -(-len(handles) // ncol)
        ncol = -(-len(handles) // rows)  # balanced: 7 entries in 2 rows are 4 + 3, not 6 + 1
        legend = owner.legend(handles, labels, ncol=ncol, **kwargs)
        if ncol == 1 or legend.get_window_extent(renderer).width <= limit:
            return legend
        legend.remove()
    return None


def mean_interval(values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0, min_count: int | None = None):
    """(mean, low, high) of ``values`` (NaN ignored) with the percentile bootstrap interval of the mean, or
    (mean, nan, nan) with fewer than ``min_count`` values (default: the findings' minimum number of clusters, below
    which the book prints no interval)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not values.size:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < (MIN_CLUSTERS if min_count is None else min_count):
        return mean, float("nan"), float("nan")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    draws = values[rng.integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return mean, float(low), float(high)



def _image_hwc(image) -> np.ndarray:
    """(C, H, W) in [0, 1], C = 3 or 1 (a greyscale model's image, shown grey) -> (H, W, 3)."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return np.clip(arr.transpose(1, 2, 0), 0, 1)


def k_colors(count: int) -> list[tuple[float, float, float]]:
    """One colour per K, largest K first, all distinct: :data:`K_COLORS` for up to five K, else ``count`` points
    evenly spaced along the path through them (light yellow to dark blue), so no two K share a colour."""
    if count <= len(K_COLORS):
        return list(K_COLORS[:count])
    anchors = np.array(K_COLORS)
    positions = np.linspace(0, len(anchors) - 1, count)
    low = np.minimum(positions.astype(int), len(anchors) - 2)
    frac = (positions - low)[:, None]
    return [tuple(float(v) for v in c) for c in anchors[low] * (1 - frac) + anchors[low + 1] * frac]


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels in {1, 0, ABSTAIN} -> (H, W, 3): 1 yellow, 0 dark, abstain grey."""
    out = np.empty(labels.shape + (3,))
    out[labels == 1], out[labels == 0], out[labels == ABSTAIN] = ONE_COLOR, ZERO_COLOR, ABSTAIN_COLOR
    return out


#: abstention in an overlay: diagonal stripes of white and near-black, ``ABSTAIN_STRIPE`` pixels wide, which show on a
#: dark, a light and a greyscale photo alike (a flat grey tint vanishes on a grey photo)
ABSTAIN_STRIPE = 3
ABSTAIN_LIGHT, ABSTAIN_DARK = (1.0, 1.0, 1.0, 0.75), (0.05, 0.05, 0.05, 0.55)


def abstain_stripes(mask: np.ndarray) -> np.ndarray:
    """(H, W, 4) RGBA drawing the pixels of the bool ``mask`` (H, W) as alternating light and dark diagonal
    stripes of :data:`ABSTAIN_STRIPE` pixels; transparent elsewhere."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    light = ((yy + xx) // ABSTAIN_STRIPE) % 2 == 0
    out = np.zeros((h, w, 4))
    out[mask & light] = ABSTAIN_LIGHT
    out[mask & ~light] = ABSTAIN_DARK
    return out


def abstain_legend_patch():
    """The legend entry of :func:`abstain_stripes`."""
    from matplotlib.patches import Patch

    return Patch(facecolor="white", edgecolor="0.1", hatch="////", label="abstain")


def overlay_rgba(cert: Certificate) -> np.ndarray:
    """(H, W, 4): colour of the smallest K at which a pixel is certified '1' (K sorted largest first gets
    the lightest colour); light/dark stripes (:func:`abstain_stripes`) where it is certified '1' at no K and
    abstains at some K; else transparent (the photo shows through where every K certifies '0')."""
    overlay = cert.overlay()
    abstain = (cert.labels == ABSTAIN).any(axis=0) & np.isnan(overlay)
    out = abstain_stripes(abstain)
    ks = sorted(cert.ks, reverse=True)
    for k, colour in zip(ks, k_colors(len(ks))):
        out[overlay == k] = (*colour, 0.85)
    return out


def show_image(ax, image, title: str | None = None) -> None:
    ax.imshow(_image_hwc(image))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def degenerate_slot(ax, image=None, title: str | None = None) -> None:
    """A panel for a degenerate certificate (its noisy maps are constant): the image dimmed, if given, and the
    label "degenerate: constant map", never a colour that would read as certified pixels."""
    if image is not None:
        ax.imshow(0.15 + 0.6 * _image_hwc(image).mean(axis=2), cmap="gray", vmin=0, vmax=1)
    ax.text(0.5, 0.5, "degenerate:\nconstant map", transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="0.1", style="italic", bbox=dict(facecolor="white", alpha=0.85, edgecolor="0.6", boxstyle="round"))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_certificate(cert: Certificate, k: float, ax, title: str | None = None) -> None:
    """The certified map at one K: '1' yellow, '0' dark, abstain grey; a degenerate certificate is a labelled slot."""
    title = title if title is not None else f"top {k:g}%"
    if cert.degenerate:
        degenerate_slot(ax, None, title)
        return
    ax.imshow(label_rgb(cert.label_map(k)), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)


def plot_overlay(cert: Certificate, image, ax, title: str | None = None, legend: bool = True) -> None:
    """The image (dimmed) under the overlay of the certified top-K maps (smaller K wins); a degenerate
    certificate is a labelled slot over the dimmed image, not an overlay."""
    if cert.degenerate:
        degenerate_slot(ax, image, title)
        return
    grey = _image_hwc(image).mean(axis=2)
    ax.imshow(0.15 + 0.6 * grey, cmap="gray", vmin=0, vmax=1)
    ax.imshow(overlay_rgba(cert), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        from matplotlib.patches import Patch

        ks = sorted(cert.ks, reverse=True)
        handles = [Patch(color=colour, label=f"top {k:g}%") for k, colour in zip(ks, k_colors(len(ks)))]
        handles.append(abstain_legend_patch())
        # below the image, never over it
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=9, frameon=False,
                  ncol=min(len(handles), 4))


def save_overlay_png(cert: Certificate, image, path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=150)
    plot_overlay(cert, image, ax, title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- bar charts of the evaluation chapters ---------------------------------------------------------
OUTCOME_COLORS = {"certified 1": "#f2c14e", "certified 0": "#2d3047", "abstain": "#c4c4c4"}
_OUTCOME_COLUMNS = {"certified 1": "certified_1", "certified 0": "certified_0", "abstain": "abstain"}
NOT_RUN_COLOR = "0.4"


def draw_not_run(ax, x: float, width: float, height: float, label: str = NOT_RUN_LABEL) -> None:
    """An empty slot: no bar, only its label written upwards from the axis in grey italics, so missing data
    never looks like data (``width`` and ``height`` are kept for the callers; the label starts at the bottom)."""
    bottom = ax.get_ylim()[0] if ax.get_ylim()[1] > ax.get_ylim()[0] else 0.0
    ax.text(x, bottom + 0.02 * height, label, rotation=90, ha="center", va="bottom", fontsize=9,
            color=NOT_RUN_COLOR, style="italic")


DEGENERATE_LABEL = "degenerate"  #: the label of a slot whose certificates are all degenerate (constant maps)


def _is_degenerate(row) -> bool:
    return bool(row.get("degenerate", False)) if hasattr(row, "get") else False


def draw_zero(ax, x: float, width: float, color) -> None:
    """A real zero: a thick stub on the axis (a bar of height 0 draws nothing)."""
    ax.plot([x - width / 2, x + width / 2], [0, 0], color=color, lw=3, solid_capstyle="butt", clip_on=False)


def _slots(groups, xs):
    step = len(xs) + 1
    return {(g, x): i * step + j for i, g in enumerate(groups) for j, x in enumerate(xs)}, step


def _text_width_px(text: str, fontsize: float, dpi: float) -> float:
    """A generous estimate of a one-line text's width (DejaVu Sans averages about 0.6 em per character)."""
    return 0.64 * fontsize * dpi / 72 * max((len(line) for line in str(text).split("\n")), default=0)


def _group_labels(ax, centres, groups, *, below_pt: float, fontsize: float = 9) -> None:
    """The names of the groups of bars under their centres, ``below_pt`` points below the axis (under the tick
    labels); where a name is wider than its group, every name is written upwards (rotated 90°), so neighbours
    never touch and all stand at one height."""
    from matplotlib.transforms import offset_copy

    fig = ax.figure
    axes_px = max(1.0, fig.get_figwidth() * fig.dpi - 100)  # the axes' width once the layout has placed the y labels
    span = axes_px / max(1, len(groups))
    widest = max((_text_width_px(g, fontsize, fig.dpi) for g in groups), default=0)
    upright = widest > 0.92 * span
    if upright:  # the names now reach down by their length: the figure grows by it once, so the plots keep theirs
        room = widest / fig.dpi
        grown = getattr(fig, "_certattr_label_room", 0.0)
        if room > grown:
            fig.set_figheight(fig.get_figheight() + room - grown)
            fig._certattr_label_room = room
    for x, g in zip(centres, groups):
        ax.text(x, 0, g, transform=offset_copy(ax.get_xaxis_transform(), fig, y=-below_pt, units="points"),
                ha="center", va="top", fontsize=fontsize, rotation=90 if upright else 0)


def _undefined_label(ax, x: float, y: float) -> None:
    ax.text(x, y, "not\ndefined", ha="center", va="center", fontsize=9, color="0.35", linespacing=1.1)


def outcome_bars(ax, frame, groups, xs, *, group_col: str = "method_title", x_col: str = "R",
                 undefined=(), x_name: str = "R") -> None:
    """Stacked %certified bars ('1' / '0' / abstain, in percent) for each group (method) and x (R or K).

    ``frame`` has one row per (group, x) with the pooled fractions ``certified_1``, ``certified_0``,
    ``abstain`` (and ``degenerate``). A (group, x) without a row is an empty slot labelled "not run", one whose
    certificates are all degenerate an empty slot labelled "degenerate"; a group in ``undefined`` is labelled
    "not defined" (the method is not defined there). The x values are the tick labels (upright), the groups'
    names are written under them.
    """
    pos, step = _slots(groups, xs)
    index = {(r[group_col], r[x_col]): r for _, r in frame.iterrows()}
    for (g, x), slot in pos.items():
        if g in undefined:
            continue
        row = index.get((g, x))
        if row is None:
            draw_not_run(ax, slot, 0.85, 100)
            continue
        if _is_degenerate(row):  # constant maps: no bar that would look like a measurement
            draw_not_run(ax, slot, 0.85, 100, DEGENERATE_LABEL)
            continue
        bottom = 0.0
        for name, col in _OUTCOME_COLUMNS.items():
            value = 100 * float(row[col])
            ax.bar(slot, value, bottom=bottom, width=0.85, color=OUTCOME_COLORS[name], edgecolor="none")
            bottom += value
    for g in undefined:
        if g in groups:
            _undefined_label(ax, groups.index(g) * step + (len(xs) - 1) / 2, 50)
    labels = [str(x) for x in xs]
    ax.set_xticks([pos[(g, x)] for g in groups for x in xs])
    ax.set_xticklabels([str(x) for g in groups for x in xs], rotation=90, fontsize=9)
    ax.tick_params(axis="x", pad=2)
    tick_len = max(_text_width_px(t, 9, 72) for t in labels) if labels else 0  # in points: rotated, width is height
    # below the rotated tick labels: their length, the tick and its pad, and a clear gap
    _group_labels(ax, [i * step + (len(xs) - 1) / 2 for i in range(len(groups))], groups, below_pt=tick_len + 14)
    ax.set_xlim(-0.8, len(groups) * step - 1.2)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of pixels")
    ax.set_xlabel("")


def outcome_legend(fig, loc: str = "outside upper center") -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLORS.items()]
    fig.legend(handles=handles, loc=loc, ncol=len(handles), frameon=False, fontsize=9)


def ordered_colors(count: int) -> list:
    """``count`` colours for ordered levels (R, K), light to dark along viridis, at least 22 apart (ΔE76) up to
    seven levels."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x)[:3] for x in (np.linspace(0.9, 0.05, count) if count > 1 else [0.45])]


def interval_bars(ax, frame, groups, hues, *, by=("method_title", "R"), bounds=("value", "low", "high"), palette=None,
                  undefined=(), ylim=(0, 1)) -> list:
    """Grouped bars (one group per method, one bar per hue level) with interval whiskers; a missing
    (group, hue) is an empty "not run" slot. ``by``: the (group, hue) columns of ``frame``; ``bounds``: its
    (value, low, high) columns (low and high None: no whiskers). Returns legend handles for the hue levels."""
    group_col, hue_col = by
    value, low, high = bounds
    from matplotlib.patches import Patch

    palette = palette or dict(zip(hues, ordered_colors(len(hues))))
    pos, step = _slots(groups, hues)
    index = {(r[group_col], r[hue_col]): r for _, r in frame.iterrows()}
    top = ylim[1] - ylim[0]
    for (g, h), slot in pos.items():
        if g in undefined:
            continue
        row = index.get((g, h))
        if row is None:
            draw_not_run(ax, slot, 0.85, 0.9 * top + ylim[0])
            continue
        if _is_degenerate(row):  # constant maps: no bar, no zero stub
            draw_not_run(ax, slot, 0.85, 0.9 * top + ylim[0], DEGENERATE_LABEL)
            continue
        ax.bar(slot, float(row[value]), width=0.85, color=palette[h], edgecolor="none")
        if float(row[value]) == 0.0:
            draw_zero(ax, slot, 0.85, palette[h])
        if low and high:
            ax.plot([slot, slot], [float(row[low]), float(row[high])], color="0.15", lw=1)
    for g in undefined:
        if g in groups:
            _undefined_label(ax, groups.index(g) * step + (len(hues) - 1) / 2, ylim[0] + 0.5 * top)
    ax.set_xticks([])
    ax.grid(False, axis="x")
    _group_labels(ax, [i * step + (len(hues) - 1) / 2 for i in range(len(groups))], groups, below_pt=4)
    ax.set_xlim(-0.8, len(groups) * step - 1.2)
    ax.set_ylim(*ylim)
    return [Patch(color=palette[h], label=str(h)) for h in hues]


def method_bars_figure(frame, layer: str, *, models, model_titles: dict, method_order, undefined_pairs, x_col: str,
                       xs, title: str, kind: str = "outcome", min_levels: int = 1):
    """One figure for one layer, one row of axes per model, one group of bars per method: the stacked
    outcome bars of the robustness chapter (``kind="outcome"``, :func:`outcome_bars`) or the Certified
    GridPG means with 95% whiskers of the localization chapter (``kind="gridpg"``, :func:`interval_bars`,
    with the random baseline 0.25 dashed and a legend of the ``xs`` levels).

    ``frame``: one row per (model, method_title, layer, ``x_col``) with the columns the bar function reads;
    ``models``: model ids in row order (those without a row at ``layer`` get no axes); ``model_titles``:
    id -> display name; ``method_order``: method titles in group order; ``undefined_pairs``: (method title,
    layer) pairs the model does not define (drawn "not defined"). A model's panel shows the methods that model
    ran at ``layer`` at ``min_levels`` or more ``x_col`` values (2 for a trend: a method run at one R has no trend
    to show; where no method reaches it, every method is drawn), so that no panel is mostly empty "not run" slots;
    "not defined" slots only where the panel shows at least half of the methods. A model with no such method gets
    no panel. Returns the figure, or None when no model has one. The width is in inches: enough for every bar
    (capped at the full-width cell), at least 4.5.
    """
    import matplotlib.pyplot as plt

    if kind not in ("outcome", "gridpg"):
        raise ValueError(f"kind must be 'outcome' or 'gridpg', not {kind!r}")
    frame = frame[frame.layer == layer]
    if len(frame) and frame.groupby(["model", "method_title"])[x_col].nunique().max() < min_levels:
        min_levels = 1  # nothing has a trend (e.g. a run at one σ): every method at the level it has
    undefined_all = [m for m in method_order if (m, layer) in undefined_pairs]
    panels = {}
    for model in models:
        levels = frame[frame.model == model].groupby("method_title")[x_col].nunique()
        ran = [m for m in method_order if levels.get(m, 0) >= min_levels]
        if ran:
            shown_undefined = undefined_all if 2 * len(ran) >= len(set(method_order) - set(undefined_all)) else []
            panels[model] = [m for m in method_order if m in ran or m in shown_undefined]
    if not panels:
        return None
    most = max(len(g) for g in panels.values())
    if kind == "outcome":
        width = min(WIDE_WIDTH, max(4.5, 0.2 * most * (len(xs) + 1) + 1.2))
        height = 3.0 * len(panels) + 0.4  # room for the legend above the axes
    else:
        width = min(WIDE_WIDTH, max(4.5, 0.22 * most * (len(xs) + 1) + 1.5))
        height = 2.8 * len(panels) + 0.4
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, height), squeeze=False, layout="constrained")
    handles = []
    for ax, (model, groups) in zip(axes[:, 0], panels.items()):
        rows = frame[(frame.model == model) & frame.method_title.isin(groups)]
        undefined = set(groups) & set(undefined_all)
        if kind == "outcome":
            outcome_bars(ax, rows, groups, xs, x_col=x_col, undefined=undefined)
        else:
            handles = interval_bars(ax, rows, groups, xs, by=("method_title", x_col), undefined=undefined)
            ax.axhline(0.25, color="crimson", ls="--", lw=1)
            ax.set_ylabel("Certified GridPG")
        ax.set_title(f"{model_titles[model]}, {layer_title(layer)} layer: {title}")
    if kind == "outcome":
        outcome_legend(fig)
    else:
        from matplotlib.lines import Line2D

        handles = handles + [Line2D([], [], color="crimson", ls="--", lw=1, label="random GridPG 0.25")]
        fit_legend(fig, handles, loc="outside upper center", title=f"{x_col} (bars; whiskers: 95% interval)")
    return fig


__all__ += ["method_bars_figure", "degenerate_slot", "DEGENERATE_LABEL"]


def overlay_legend(fig, ks) -> None:
    """One legend for a figure of overlays (:func:`plot_overlay` with ``legend=False``), under its panels: the K
    colours, largest K first, and the abstain stripes (a legend beside one panel would widen that column)."""
    fit_legend(fig, overlay_handles(ks), loc="outside lower center")


# --- curves and scatters of the evaluation chapters ------------------------------------------------------------
def identical_series(frame, key_cols, value: str, *, by: str = "method_title", order=()) -> dict[str, list[str]]:
    """{series name: [the titles it stands for]}: titles of ``frame[by]`` whose ``value`` is the same (to 1e-9) at
    every ``key_cols`` combination are one series, named by :func:`series_title` in ``order`` (then first
    appearance). Such series would be drawn exactly on top of each other."""
    rank = {t: i for i, t in enumerate(order)}
    titles = sorted(dict.fromkeys(frame[by]), key=lambda t: rank.get(t, len(rank)))
    groups: dict = {}
    for title in titles:
        part = frame[frame[by] == title].sort_values(list(key_cols))
        signature = (tuple(map(tuple, part[list(key_cols)].astype(str).to_numpy())),
                     tuple(np.round(part[value].to_numpy(float), 9)))
        groups.setdefault(signature, []).append(title)
    return {series_title(members): members for members in groups.values()}


def _dodge(count: int, width: float = 0.16) -> np.ndarray:
    return np.linspace(-width / 2, width / 2, count) if count > 1 else np.zeros(1)


def deletion_figure(table, *, layers, method_order=(), width: float = TEXT_WIDTH):
    """The faithfulness chapter's deletion curves: one column per layer, one row per model, the target's softmax
    probability after each cumulative deletion step, one series per method (methods with identical curves on every
    model of the layer are one series, named together), the mean over the images with its 95% bootstrap interval
    (from 8 images on; :func:`mean_interval`). Each layer has its legend under its column.

    ``table``: deletion rows (model, model_title, image_id, method_title, layer, step, k, probability,
    removed_fraction; with ``degenerate``, a series whose every map is constant is named in the legend, not drawn).
    A series whose first step removed no pixel on every curve says so in the legend."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    layers = [l for l in layers if l in set(table.layer)]
    models = list(dict.fromkeys(table.model))
    titles = dict(zip(table.model, table.model_title))
    steps = sorted(set(table.step))
    ks = table[table.step > 0].groupby("step").k.first().to_dict()
    tick_labels = ["clean"] + [f"top {float(ks[s]):g}%" for s in steps[1:]]
    # room for the legends under the columns, so that a long legend does not squash its column's plots: a
    # column of width w holds about w / 1.9 in entries per row ("GradCam++ (removes nothing)" is ~1.8 in at 10 pt)
    per_row = max(1, int(width / max(1, len(layers)) / 1.9))
    legend_rows = max((-(-table[table.layer == l].method_title.nunique() // per_row) for l in layers), default=0)
    fig = plt.figure(figsize=(width, 2.25 * len(models) + 1.0 + 0.24 * legend_rows), layout="constrained")
    columns = np.atleast_1d(fig.subfigures(1, max(1, len(layers)), wspace=0.02))
    for sub, layer in zip(columns, layers):
        part = table[table.layer == layer]
        series = identical_series(part, ["model", "image_id", "step"], "probability", order=method_order)
        axes = np.atleast_1d(sub.subplots(len(models), 1, sharex=True, sharey=True))
        handles = {}
        for ax, model in zip(axes, models):
            rows = part[part.model == model]
            ax.set_title(titles[model])
            for offset, (name, members) in zip(_dodge(len(series)), series.items()):
                curves = rows[rows.method_title == members[0]]
                if not len(curves):
                    continue
                if flagged(curves).all():  # constant maps: no curve that reads as data
                    label = f"{name}: constant maps (degenerate), not drawn"
                    handles.setdefault(label, Patch(facecolor="none", edgecolor="none"))
                    continue
                style = method_style(name)
                stats = np.array([mean_interval(curves[curves.step == s].probability) for s in steps])
                first = curves[curves.step == steps[1]] if len(steps) > 1 else curves.iloc[:0]
                label = name + (" (removes nothing)" if len(first) and (first.removed_fraction == 0).all() else "")
                xs = np.arange(len(steps)) + offset
                err = np.abs(stats[:, 1:].T - stats[:, 0]) if np.isfinite(stats[:, 1:]).all() else None
                drawn = ax.errorbar(xs, stats[:, 0], yerr=err, color=style["color"], marker=style["marker"],
                                    markersize=5, lw=1.3, capsize=2, elinewidth=0.9, label=label)
                handles.setdefault(label, drawn)
            ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel("p(target)")
        axes[-1].set_xticks(range(len(steps)), tick_labels)
        axes[-1].set_xlabel("certified top-K% pixels removed\n(cumulative, smallest K first)")
        if len(layers) > 1:
            sub.suptitle(f"{layer_title(layer)} layer", fontsize=9, fontweight="bold")
        fit_legend(sub, list(handles.values()), list(handles), loc="outside lower center",
                   width_in=width / max(1, len(layers)))
    return fig


__all__ += ["identical_series", "deletion_figure", "ordered_colors"]


def _series_name(title: str) -> str:
    """"LRP (= IxG = Cam)" (the findings' group title) -> "LRP = IxG = Cam"."""
    title = str(title)
    return title.replace(" (= ", " = ")[:-1] if title.endswith(")") and " (= " in title else title


def tradeoff_figure(points, *, layers, width: float = TEXT_WIDTH):
    """The trade-off chapter's scatter: one panel per layer, certified robustness against Certified GridPG, one
    marker per method counted (methods with identical certificates share one, named together), with 95% bootstrap
    whiskers in both directions where :func:`certattr.evaluation.findings.balance_table` gives them (from 8 images
    and 8 grid targets), the random GridPG 0.25 dashed. Methods are named by a legend under each panel (colour
    and marker of :func:`method_style`), not by labels next to the points, which pile up where points do.

    ``points``: rows with layer, title, robustness, certified_gridpg and optionally robustness_low/high,
    gridpg_low/high."""
    import matplotlib.pyplot as plt

    layers = [l for l in layers if l in set(points.layer)] or list(layers)[:1]
    fig = plt.figure(figsize=(width, 3.1 + 0.22 * max((points.layer == l).sum() for l in layers) + 0.6),
                     layout="constrained")
    columns = np.atleast_1d(fig.subfigures(1, max(1, len(layers)), wspace=0.03))
    for sub, layer in zip(columns, layers):
        ax = sub.subplots()
        part = points[points.layer == layer]
        handles = []
        for _, r in part.iterrows():
            name = _series_name(r["title"])
            style = method_style(name)
            xerr = yerr = None
            if "gridpg_low" in r and np.isfinite([r.get("gridpg_low", np.nan), r.get("gridpg_high", np.nan)]).all():
                xerr = [[r.certified_gridpg - r.gridpg_low], [r.gridpg_high - r.certified_gridpg]]
            if "robustness_low" in r and np.isfinite([r.get("robustness_low", np.nan),
                                                      r.get("robustness_high", np.nan)]).all():
                yerr = [[r.robustness - r.robustness_low], [r.robustness_high - r.robustness]]
            handles.append(ax.errorbar([r.certified_gridpg], [r.robustness], xerr=xerr, yerr=yerr, ls="none",
                                       marker=style["marker"], markersize=7, color=style["color"],
                                       markeredgecolor="0.15", markeredgewidth=0.5, elinewidth=0.9, capsize=2,
                                       label=name))
        # named in the legend, not by a label on the plot, where points can lie under it
        handles.append(ax.axvline(0.25, color="crimson", ls="--", lw=1, label="random GridPG 0.25"))
        # the axes span the points and their whiskers (and the random baseline), so that close points separate
        ax.set_xlim(*_span(part, "certified_gridpg", "gridpg_low", "gridpg_high", include=0.25))
        ax.set_ylim(*_span(part, "robustness", "robustness_low", "robustness_high"))
        ax.set_title(f"{layer_title(layer)} layer")
        ax.set_xlabel("Certified GridPG (localization)")
        ax.set_ylabel("certified robustness (1 − abstain)")
        if not len(part):
            ax.text(0.5, 0.5, "no method counted", ha="center", va="center", transform=ax.transAxes, color="0.35")
        else:
            fit_legend(sub, handles, [h.get_label() for h in handles], loc="outside lower center",
                       width_in=width / len(layers))
    return fig


def _span(part, value: str, low: str, high: str, *, include=None, pad: float = 0.06) -> tuple[float, float]:
    """Axis limits in [0, 1] (a little beyond, for the markers) that hold ``value`` and its interval columns of
    every row, and ``include``: the whole [0, 1] when there is no row."""
    values = [v for c in (value, low, high) if c in part for v in part[c].to_numpy(float) if np.isfinite(v)]
    values += [include] if include is not None else []
    if not len(part) or not values:
        return -0.02, 1.05
    lo, hi = min(values), max(values)
    pad = max(pad, 0.1 * (hi - lo))
    return max(-0.02, lo - pad), min(1.05, hi + pad)


__all__ += ["tradeoff_figure"]


# --- figures of certified maps ------------------------------------------------------------------------------------
#: the width of a figure of map panels: a full-width cell less the margins the saved figure adds
PANELS_WIDTH = WIDE_WIDTH - 0.3


def certified_map_legend(owner, **kwargs):
    """The legend of the per-K certified maps (:func:`plot_certificate`): '1' yellow, '0' dark, abstain grey."""
    from matplotlib.patches import Patch

    handles = [Patch(color=ONE_COLOR, label="certified '1' (important)"),
               Patch(color=ZERO_COLOR, label="certified '0' (not important)"),
               Patch(color=ABSTAIN_COLOR, label="abstain")]
    return fit_legend(owner, handles, **kwargs)


def overlay_handles(ks) -> list:
    """Legend entries of an overlay: the K colours, largest K first, and the abstain stripes."""
    from matplotlib.patches import Patch

    ks = sorted((float(k) for k in ks), reverse=True)
    return [Patch(color=c, label=f"top {k:g}%") for k, c in zip(ks, k_colors(len(ks)))] + [abstain_legend_patch()]


def overlay_panels_figure(panels, ks, *, cols: int = 4, width: float = PANELS_WIDTH, panel_height: float = 2.45):
    """A grid of certified overlays (:func:`plot_overlay`), ``cols`` per row, with one legend under them.

    ``panels``: dicts with "title", "image" and "cert" (a :class:`Certificate`), or with "status" instead of
    "cert": :data:`NOT_DEFINED_LABEL` or :data:`NOT_RUN_LABEL` (an empty slot saying so); optionally "outline":
    (row slice, column slice) of a cell to outline (a grid's target cell)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width, panel_height * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        if panel.get("cert") is None:
            ax.set_axis_off()
            ax.set_title(panel["title"], fontsize=9)
            ax.text(0.5, 0.5, panel.get("status") or NOT_RUN_LABEL, ha="center", va="center", fontsize=9,
                    transform=ax.transAxes, color="0.35", style="italic")
            continue
        plot_overlay(panel["cert"], panel["image"], ax, panel["title"], legend=False)
        if panel.get("outline") is not None:
            rs, cs = panel["outline"]
            ax.add_patch(Rectangle((cs.start - 0.5, rs.start - 0.5), cs.stop - cs.start, rs.stop - rs.start,
                                   fill=False, edgecolor="#1f5fff", lw=2.5))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fit_legend(fig, overlay_handles(ks), loc="outside lower center")
    return fig


def certificate_rows_figure(rows, ks, k_ss, image, *, width: float = PANELS_WIDTH):
    """One row per certificate: SS (the mean sparsified map at K = ``k_ss``), the certified map at each K, and the
    overlay (smaller K wins); the certified maps' legend under their columns, the overlay's under it.

    ``rows``: [(row title, Certificate)]; a degenerate certificate's panels are labelled slots."""
    import matplotlib.pyplot as plt

    ks = sorted((float(k) for k in ks), reverse=True)
    cols = len(ks) + 2
    panel = width / cols
    fig = plt.figure(figsize=(width, (panel + 0.55) * max(1, len(rows)) + 0.9), layout="constrained")
    maps, overlays = fig.subfigures(1, 2, width_ratios=[cols - 1, 1.25], wspace=0.0)
    left = np.atleast_2d(maps.subplots(max(1, len(rows)), cols - 1, squeeze=False))
    right = np.atleast_1d(overlays.subplots(max(1, len(rows)), 1, squeeze=False)[:, 0])
    for i, (title, cert) in enumerate(rows):
        ax = left[i, 0]
        if cert.degenerate:
            degenerate_slot(ax, None, f"{title}\nSS (K = {float(k_ss):g}%)")
        else:
            ax.imshow(cert.mean_sparsified[cert.index(k_ss)], cmap="viridis", vmin=0, vmax=1)
            ax.set_axis_off()
            ax.set_title(f"{title}\nSS (K = {float(k_ss):g}%)", fontsize=9)
        for j, k in enumerate(ks):
            plot_certificate(cert, k, left[i, 1 + j], f"certified top {k:g}%")
        plot_overlay(cert, image, right[i], "overlay", legend=False)
    certified_map_legend(maps, loc="outside lower center", width_in=width * (cols - 1) / (cols + 0.25))
    fit_legend(overlays, overlay_handles(ks), loc="outside lower center", width_in=width * 1.25 / (cols + 0.25))
    return fig


def pipeline_figure(image, image_title: str, raw, samples, ss, cert, ks, *, width: float = PANELS_WIDTH):
    """The method chapter's teaser, four rows of three panels: the photo, the raw |map| and SS (the share of samples
    in the top largest-K%); three noisy maps; the certified maps at the three largest K; the overlay and the two
    legends. Every map panel has its colour bar (maps divided by their 99.5th percentile read 0 to 1)."""
    import matplotlib.pyplot as plt

    def with_colorbar(ax, img, label, **kwargs):
        handle = ax.imshow(img, **kwargs)
        ax.set_axis_off()
        bar = fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=8)
        bar.set_label(label, fontsize=8)

    ks = sorted((float(k) for k in ks), reverse=True)
    scale = float(np.percentile(np.abs(samples[:3]), 99.5)) or 1.0
    raw_scale = float(np.percentile(np.abs(raw), 99.5)) or 1.0
    fig, axes = plt.subplots(4, 3, figsize=(width, 12.0), layout="constrained")
    show_image(axes[0, 0], image, image_title)
    with_colorbar(axes[0, 1], np.abs(raw) / raw_scale, "|a| / its 99.5th percentile", cmap="magma", vmin=0, vmax=1)
    axes[0, 1].set_title("raw |map| (clean photo)", fontsize=9)
    with_colorbar(axes[0, 2], ss, f"share in top {ks[0]:g}%", cmap="viridis", vmin=0, vmax=1)
    axes[0, 2].set_title(f"SS: mean top-{ks[0]:g}% map", fontsize=9)
    for j in range(3):
        with_colorbar(axes[1, j], np.abs(samples[j]) / scale, "|a| / 99.5th percentile", cmap="magma", vmin=0, vmax=1)
        axes[1, j].set_title(f"noisy sample {j + 1}", fontsize=9)
    for j, k in enumerate(ks[:3]):
        plot_certificate(cert, k, axes[2, j], f"certified top {k:g}%")
    for j in range(len(ks), 3):
        axes[2, j].set_axis_off()
    plot_overlay(cert, image, axes[3, 0], "overlay (smaller K wins)", legend=False)
    for ax in axes[3, 1:]:
        ax.set_axis_off()
    certified_map_legend(axes[3, 1], loc="upper left", title="certified maps", fontsize=9, title_fontsize=9,
                         width_in=width / 3)
    fit_legend(axes[3, 2], overlay_handles(ks), loc="upper left", title="overlay", fontsize=9, title_fontsize=9,
               width_in=width / 3)
    return fig


__all__ += ["PANELS_WIDTH", "certified_map_legend", "overlay_handles", "overlay_panels_figure",
            "certificate_rows_figure", "pipeline_figure"]


# --- line figures: curves of means with their intervals, a legend under the figure -----------------------------------
def _mean_curve(ax, frame, x: str, y: str, *, style: dict, label: str, scale: float = 1.0, ls: str = "-",
                offset: float = 0.0, log_offset: bool = False, min_count: int | None = None, **kwargs):
    """The mean of ``y`` per value of ``x`` (over the rows: images, digits), with its 95% bootstrap interval
    (:func:`mean_interval`), drawn as one line with markers and whiskers; returns the errorbar container."""
    xs = sorted(set(frame[x]))
    stats = np.array([mean_interval(frame[frame[x] == v][y], min_count=min_count) for v in xs]) * scale
    pos = np.asarray(xs, float) * (10 ** offset if log_offset else 1.0) + (0 if log_offset else offset)
    err = np.abs(stats[:, 1:].T - stats[:, 0]) if np.isfinite(stats[:, 1:]).all() else None
    return ax.errorbar(pos, stats[:, 0], yerr=err, color=style["color"], marker=style.get("marker", "o"),
                       markersize=kwargs.pop("markersize", 5), ls=ls, lw=1.3, capsize=2, elinewidth=0.9, label=label,
                       **kwargs)


def levine_robustness_figure(attacks, correct, *, k: int, width: float = TEXT_WIDTH):
    """Levine et al.'s Figure 6 as measured: left, the mean top-k overlap of the gradient map under their attack
    (solid) and under a random δ of the same norm (dashed) against ε, one colour per λ; right, test accuracy against
    λ. Means over the digits with 95% bootstrap intervals; one legend under both panels.

    ``attacks``: rows with lam, eps, image, attack, random; ``correct``: rows with lam, image, correct (bool)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    lams = sorted(set(attacks.lam))
    fig, axes = plt.subplots(1, 2, figsize=(width, 3.2), layout="constrained", gridspec_kw={"width_ratios": [1.5, 1]})
    handles = []
    for i, lam in enumerate(lams):
        part = attacks[attacks.lam == lam]
        colour = SERIES_COLORS[i % len(SERIES_COLORS)]
        shift = (i - (len(lams) - 1) / 2) * 0.004  # a small shift, so the whiskers of neighbouring λ stay apart
        handles.append(_mean_curve(axes[0], part, "eps", "attack", style={"color": colour, "marker": "o"},
                                   label=f"λ = {lam:g}", offset=shift))
        _mean_curve(axes[0], part, "eps", "random", style={"color": colour, "marker": "s"}, label="_random",
                    ls="--", offset=shift, alpha=0.75, markersize=4)
    axes[0].set(xlabel="ε (ℓ2, [0, 1] units)", ylabel=f"top-{k} overlap with the clean map", ylim=(0, 1.02),
                title="gradient maps under attack")
    x = np.arange(len(lams))
    stats = np.array([mean_interval(correct[correct.lam == lam].correct.astype(float)) for lam in lams])
    err = np.abs(stats[:, 1:].T - stats[:, 0]) if np.isfinite(stats[:, 1:]).all() else None
    axes[1].errorbar(x, stats[:, 0], yerr=err, color="0.2", marker="o", capsize=2, lw=1.3)
    axes[1].set_xticks(x, [f"{lam:g}" for lam in lams])
    axes[1].set(xlabel="λ", ylabel="test accuracy", ylim=(0, 1.02), title="accuracy")
    kinds = [Line2D([], [], color="0.3", ls="-", marker="o", label="their attack"),
             Line2D([], [], color="0.3", ls="--", marker="s", label="random δ, same norm")]
    fit_legend(fig, handles + kinds, loc="outside lower center")
    return fig


def levine_certified_figure(paper_cert, sparse, *, k: int, width: float = TEXT_WIDTH):
    """What the networks trained with each λ certify: left, the paper's certificate, the share of pixels certified
    (solid) and certified '1' (dashed) per K against λ; right, Sparsified SmoothGrad's certified top-k overlap
    against ε, one colour per λ. Means over the digits with 95% bootstrap intervals; a legend under each panel.

    ``paper_cert``: rows with lam, image, K, certified, certified_1 (fractions); ``sparse``: rows with lam, image,
    eps, certified_overlap."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    lams = sorted(set(paper_cert.lam) | set(sparse.lam))
    position = {lam: i for i, lam in enumerate(lams)}
    fig = plt.figure(figsize=(width, 4.0), layout="constrained")
    left, right = fig.subfigures(1, 2, wspace=0.03)
    ax = left.subplots()
    handles = []
    for i, kk in enumerate(sorted(set(paper_cert.K), reverse=True)):
        part = paper_cert[paper_cert.K == kk].assign(x=lambda f: f.lam.map(position))
        colour = SERIES_COLORS[i % len(SERIES_COLORS)]
        handles.append(_mean_curve(ax, part, "x", "certified", style={"color": colour, "marker": "o"}, scale=100,
                                   label=f"K = {kk:g}%", offset=0.04 * i))
        _mean_curve(ax, part, "x", "certified_1", style={"color": colour, "marker": "s"}, scale=100, ls="--",
                    label="_one", offset=0.04 * i)
    ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
    ax.set(xlabel="λ", ylabel="% of pixels", ylim=(0, 100), title="the paper's certificate")
    kinds = [Line2D([], [], color="0.3", ls="-", marker="o", label="certified (either label)"),
             Line2D([], [], color="0.3", ls="--", marker="s", label="certified '1'")]
    fit_legend(left, handles + kinds, loc="outside lower center", width_in=width / 2)
    ax = right.subplots()
    handles = []
    for i, lam in enumerate(lams):
        part = sparse[sparse.lam == lam]
        if len(part):
            handles.append(_mean_curve(ax, part, "eps", "certified_overlap",
                                       style={"color": SERIES_COLORS[i % len(SERIES_COLORS)], "marker": "o"},
                                       label=f"λ = {lam:g}"))
    ax.set(xlabel="ε (ℓ2)", ylabel=f"certified top-{k} overlap / k", ylim=(0, 1.02), title="Sparsified SmoothGrad")
    fit_legend(right, handles, loc="outside lower center", width_in=width / 2)
    return fig


def scaled_vs_sparsified_figure(scaled, *, width: float = TEXT_WIDTH):
    """Levine et al.'s Figure 1(b) as measured: the certified top-k overlap / k against ε of Sparsified SmoothGrad
    and of scaled SmoothGrad, one panel per photo, one colour per method, solid lines, the full [0, 1] scale (a
    vacuous certificate lies on 0, not on an axis stretched to its size). ``scaled``: rows with method, image, eps,
    certified_overlap."""
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(scaled.method))
    images = list(dict.fromkeys(scaled.image))
    colours = dict(zip(methods, (SERIES_COLORS[3], SERIES_COLORS[0], *SERIES_COLORS[4:])))
    fig, axes = plt.subplots(1, max(1, len(images)), figsize=(width, 2.9), layout="constrained", sharey=True,
                             squeeze=False)
    handles = {}
    for ax, im in zip(axes[0], images):
        for j, m in enumerate(methods):
            part = scaled[(scaled.method == m) & (scaled.image == im)].sort_values("eps")
            handles[m] = ax.plot(part.eps, part.certified_overlap, color=colours[m], marker=_SERIES_MARKERS[j],
                                 lw=1.3, markersize=5, label=m)[0]
        ax.set(xlabel="ε (ℓ2, [0, 1] units)", ylim=(-0.02, 1.02), title=str(im))
    axes[0, 0].set_ylabel("certified top-k overlap / k")
    fit_legend(fig, list(handles.values()), list(handles), loc="outside lower center")
    return fig


def anytime_figure(looks, bounds: dict, default: str, fixed_n, fixed: dict, stops, *, width: float = TEXT_WIDTH):
    """%certified against the samples drawn: each anytime bound's curve (``bounds``: {name: % per look}; the
    ``default`` thicker), the fixed-n certificates (``fixed``: {label: % at each of ``fixed_n``}, markers joined by
    dotted lines, shifted apart a little so that equal values stay visible) and the stopping rule's results
    (``stops``: [(mean samples, %)], crosses). One legend under the axes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 4.2), layout="constrained")
    handles = []
    for i, (name, curve) in enumerate(bounds.items()):
        handles += ax.plot(looks, curve, color=SERIES_COLORS[i % len(SERIES_COLORS)], lw=2.4 if name == default else 1.3,
                           label=f"anytime, {name}{' (default)' if name == default else ''}")
    start = len(bounds)
    spread = 0.015 * (max(looks) - min(looks) if len(looks) > 1 else 1.0)
    for j, (label, values) in enumerate(fixed.items()):
        shift = (j - (len(fixed) - 1) / 2) * spread
        handles += ax.plot(np.asarray(fixed_n, float) + shift, values, ls=":", lw=1, marker=_SERIES_MARKERS[j + 1],
                           markersize=6, color=SERIES_COLORS[(start + j) % len(SERIES_COLORS)], label=label)
    if stops:
        handles += ax.plot(*zip(*stops), "x", color="#000000", ls="none", markersize=8, mew=2,
                           label=f"{default}, stopped by the rule (mean samples)")
    ax.set_xlabel("noise samples drawn per image")
    ax.set_ylabel("% of (K, pixel) pairs certified")
    fit_legend(fig, handles, loc="outside lower center")
    return fig


__all__ += ["levine_robustness_figure", "levine_certified_figure", "scaled_vs_sparsified_figure", "anytime_figure"]


def photos_figure(items, *, cols: int = 5, width: float = TEXT_WIDTH, title: str | None = None):
    """Photos with their captions, ``cols`` per row at most (each photo at least 1.2 inches wide), a caption on two
    lines ("id", then the class) so that neighbours never touch. ``items``: [(image tensor, id, class name)]."""
    import matplotlib.pyplot as plt

    cols = max(1, min(cols, len(items)))
    rows = -(-len(items) // cols)
    panel = min(width / cols, 2.6)  # a photo at most 2.6 inches wide: one or two photos do not fill the column
    fig, axes = plt.subplots(rows, cols, figsize=(max(panel * cols, 3.0), (panel + 0.45) * rows + (0.3 if title else 0)),
                             squeeze=False, layout="constrained")
    for ax, (image, image_id, name) in zip(axes.flat, items):
        limit = max(8, int(panel * 72 / (0.64 * 9)))  # the characters that fit the panel at 9 pt
        show_image(ax, image, f"{str(image_id)[:limit]}\n{str(name)[:limit]}")
    for ax in list(axes.flat)[len(items):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


__all__ += ["photos_figure"]
