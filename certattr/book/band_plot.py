"""The band map of a certificate as one figure: each pixel's certified band of the top-K ladder, one claim at alpha.

Colours: the K colours of :mod:`certattr.book.plotting` for "certified in the top K%" (the smallest such K), a
green-to-slate scale for "certified outside the top K%" (the largest such K) where the pixel is in no certified top
set, darker for a larger K, every colour at least 20 apart (CIELAB ΔE76) from the others of the map, and the
overlays' light/dark stripes for abstain (no claim at any K), which show on any photo.
"""
from __future__ import annotations

import numpy as np

from ..engine.certificate import Certificate
from .chapter import TEXT_WIDTH
from .plotting import _image_hwc, abstain_legend_patch, abstain_stripes, k_colors

__all__ = ["band_rgba", "plot_band_map", "band_map_figure", "OUTSIDE_COLORS"]

#: "certified outside the top K%": darker for a larger K (a stronger claim: outside a larger set); light mint, green,
#: steel blue, teal, dark slate (CIELAB lightness 91, 76, 62, 48, 27), none close to a K colour
OUTSIDE_COLORS = ((0.80, 0.93, 0.80), (0.50, 0.80, 0.55), (0.30, 0.62, 0.82), (0.13, 0.50, 0.45), (0.05, 0.28, 0.30))


def _outside_colors(count: int) -> list:
    """``count`` colours of :data:`OUTSIDE_COLORS`, spread over the whole scale (three K: mint, steel blue, slate)."""
    if count <= len(OUTSIDE_COLORS):
        picks = np.round(np.linspace(0, len(OUTSIDE_COLORS) - 1, count)).astype(int) if count > 1 else [2]
        return [OUTSIDE_COLORS[i] for i in picks]
    return [tuple(c) for c in np.linspace(OUTSIDE_COLORS[0], OUTSIDE_COLORS[-1], count)]


def band_rgba(cert: Certificate) -> tuple[np.ndarray, list]:
    """((H, W, 4) colours, legend entries [(label, colour)] of the certified bands) of the band map
    (:meth:`Certificate.band_map`); abstaining pixels are striped (:func:`abstain_stripes`)."""
    inside, outside = cert.band_map()
    out = abstain_stripes(np.isnan(inside) & np.isnan(outside))
    ks = sorted((float(k) for k in cert.ks), reverse=True)
    legend = []
    for k, colour in zip(sorted(ks), _outside_colors(len(ks))):  # smallest K lightest
        out[np.isnan(inside) & (outside == k)] = (*colour, 0.85)
        legend.append((f"outside top {k:g}%", colour))
    for k, colour in zip(ks, k_colors(len(ks))):
        out[inside == k] = (*colour, 0.9)
        legend.append((f"in top {k:g}%", colour))
    return out, legend


def plot_band_map(cert: Certificate, image, ax, title: str | None = None, legend: bool = True) -> None:
    """The image (dimmed) under the band map; a pixel in a certified top set shows its smallest such K. With
    ``legend``, the legend beside the panel (in its figure's font)."""
    rgba, entries = band_rgba(cert)
    grey = _image_hwc(image).mean(axis=2)
    ax.imshow(0.15 + 0.6 * grey, cmap="gray", vmin=0, vmax=1)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=l) for l, c in entries] + [abstain_legend_patch()], loc="center left",
                  bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)


def band_map_figure(cert: Certificate, image, title: str | None = None, width: float = 0.75 * TEXT_WIDTH):
    """The band map of one certificate as a figure: the map, and its legend beside it (in top K%: the K colours,
    smallest K last; outside top K%: the green-to-slate scale; abstain: stripes)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 3.2), layout="constrained")
    plot_band_map(cert, image, ax, title)
    return fig
