"""Figures of certificates: per-K certified maps with abstention, and the overlay (smaller K wins)."""
from __future__ import annotations

import numpy as np

from ..engine.certificate import ABSTAIN, Certificate
from .chapter import WIDE_WIDTH, layer_title

__all__ = ["K_COLORS", "k_colors", "ABSTAIN_COLOR", "label_rgb", "overlay_rgba", "show_image", "plot_certificate",
           "plot_overlay", "save_overlay_png", "OUTCOME_COLORS", "outcome_bars", "outcome_legend", "interval_bars",
           "draw_not_run", "draw_zero", "abstain_stripes", "abstain_legend_patch", "overlay_legend"]

ABSTAIN_COLOR = (0.62, 0.62, 0.62)
ZERO_COLOR = (0.08, 0.08, 0.16)
ONE_COLOR = (1.0, 0.85, 0.2)
K_COLORS = ((0.99, 0.91, 0.15), (0.96, 0.48, 0.15), (0.80, 0.10, 0.25), (0.45, 0.05, 0.45), (0.15, 0.15, 0.55))


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
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=8, frameon=False,
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


def draw_not_run(ax, x: float, width: float, height: float, label: str = "not run") -> None:
    """An empty slot: no bar, only its label written upwards from the axis in grey italics, so missing data
    never looks like data (``width`` and ``height`` are kept for the callers; the label starts at the bottom)."""
    bottom = ax.get_ylim()[0] if ax.get_ylim()[1] > ax.get_ylim()[0] else 0.0
    ax.text(x, bottom + 0.02 * height, label, rotation=90, ha="center", va="bottom", fontsize=8,
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


def outcome_bars(ax, frame, groups, xs, *, group_col: str = "method_title", x_col: str = "R",
                 undefined=(), x_name: str = "R") -> None:
    """Stacked %certified bars ('1' / '0' / abstain, in percent) for each group (method) and x (R or K).

    ``frame`` has one row per (group, x) with the pooled fractions ``certified_1``, ``certified_0``,
    ``abstain`` (and ``degenerate``). A (group, x) without a row is an empty slot labelled "not run", one whose
    certificates are all degenerate an empty slot labelled "degenerate"; a group in ``undefined`` is labelled
    "n/a" (the method is not defined there).
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
            centre = groups.index(g) * step + (len(xs) - 1) / 2
            ax.text(centre, 50, "n/a", ha="center", va="center", fontsize=9, color="0.35")
    ax.set_xticks([pos[(g, x)] for g in groups for x in xs])
    ax.set_xticklabels([str(x) for g in groups for x in xs], rotation=90, fontsize=8)
    for i, g in enumerate(groups):
        ax.text(i * step + (len(xs) - 1) / 2, -0.2, g, transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=9, rotation=0 if len(groups) <= 8 else 30)
    ax.set_xlim(-0.8, len(groups) * step - 1.2)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of pixels")
    ax.set_xlabel("")


def outcome_legend(fig, loc: str = "outside upper center") -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=o) for o, c in OUTCOME_COLORS.items()]
    fig.legend(handles=handles, loc=loc, ncol=len(handles), frameon=False, fontsize=8)


def interval_bars(ax, frame, groups, hues, *, by=("method_title", "R"), bounds=("value", "low", "high"), palette=None,
                  undefined=(), ylim=(0, 1)) -> list:
    """Grouped bars (one group per method, one bar per hue level) with interval whiskers; a missing
    (group, hue) is a hatched "not run" bar. ``by``: the (group, hue) columns of ``frame``; ``bounds``: its
    (value, low, high) columns (low and high None: no whiskers). Returns legend handles for the hue levels."""
    group_col, hue_col = by
    value, low, high = bounds
    from matplotlib.patches import Patch

    import seaborn as sns

    palette = palette or dict(zip(hues, sns.color_palette("crest", len(hues))))
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
            ax.text(groups.index(g) * step + (len(hues) - 1) / 2, 0.5 * top, "n/a", ha="center", fontsize=9, color="0.35")
    ax.set_xticks([groups.index(g) * step + (len(hues) - 1) / 2 for g in groups])
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center",
                       fontsize=9)
    ax.set_xlim(-0.8, len(groups) * step - 1.2)
    ax.set_ylim(*ylim)
    return [Patch(color=palette[h], label=str(h)) for h in hues]


def method_bars_figure(frame, layer: str, *, models, model_titles: dict, method_order, undefined_pairs, x_col: str,
                       xs, title: str, kind: str = "outcome"):
    """One figure for one layer, one row of axes per model, one group of bars per method: the stacked
    outcome bars of the robustness chapter (``kind="outcome"``, :func:`outcome_bars`) or the Certified
    GridPG means with 95% whiskers of the localization chapter (``kind="gridpg"``, :func:`interval_bars`,
    with the random baseline 0.25 dashed and a legend of the ``xs`` levels).

    ``frame``: one row per (model, method_title, layer, ``x_col``) with the columns the bar function reads;
    ``models``: model ids in row order (those without a row at ``layer`` get no axes); ``model_titles``:
    id -> display name; ``method_order``: method titles in group order; ``undefined_pairs``: (method title,
    layer) pairs the model does not define (drawn "n/a"). A method is shown when it has a row at ``layer``
    or is undefined there. Returns the figure, or None when no model has a row at ``layer``. The width is
    in inches: enough for every bar (capped at the full-width cell), at least 4.5.
    """
    import matplotlib.pyplot as plt

    if kind not in ("outcome", "gridpg"):
        raise ValueError(f"kind must be 'outcome' or 'gridpg', not {kind!r}")
    frame = frame[frame.layer == layer]
    models_here = [m for m in models if m in set(frame.model)]
    if not models_here:
        return None
    groups = [m for m in method_order if m in set(frame.method_title) or (m, layer) in undefined_pairs]
    undefined = {m for m in groups if (m, layer) in undefined_pairs}
    if kind == "outcome":
        width = min(WIDE_WIDTH, max(4.5, 0.2 * len(groups) * (len(xs) + 1) + 1.2))
        height = 3.0 * len(models_here) + 0.4  # room for the legend above the axes
    else:
        width = min(WIDE_WIDTH, max(4.5, 0.22 * len(groups) * (len(xs) + 1) + 1.5))
        height = 3.0 * len(models_here)
    fig, axes = plt.subplots(len(models_here), 1, figsize=(width, height), squeeze=False, layout="constrained")
    for ax, model in zip(axes[:, 0], models_here):
        rows = frame[frame.model == model]
        if kind == "outcome":
            outcome_bars(ax, rows, groups, xs, x_col=x_col, undefined=undefined)
        else:
            handles = interval_bars(ax, rows, groups, xs, by=("method_title", x_col), undefined=undefined)
            ax.axhline(0.25, color="crimson", ls="--", lw=1)
            ax.text(1.01, 0.25, "random\n0.25", color="crimson", fontsize=8, ha="left", va="center",
                    transform=ax.get_yaxis_transform())
            ax.set_ylabel("Certified GridPG")
            ax.legend(handles=handles, title=x_col, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_title(f"{model_titles[model]}, {layer_title(layer)} layer: {title}")
    if kind == "outcome":
        outcome_legend(fig)
    return fig


__all__ += ["method_bars_figure", "degenerate_slot", "DEGENERATE_LABEL"]


def overlay_legend(fig, ks) -> None:
    """One legend for a figure of overlays (:func:`plot_overlay` with ``legend=False``), under its panels: the K
    colours, largest K first, and the abstain stripes (a legend beside one panel would widen that column)."""
    from matplotlib.patches import Patch

    ks = sorted((float(k) for k in ks), reverse=True)
    handles = [Patch(color=c, label=f"top {k:g}%") for k, c in zip(ks, k_colors(len(ks)))] + [abstain_legend_patch()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
