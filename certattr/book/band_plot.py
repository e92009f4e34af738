"""The band map of a certificate as one figure: each pixel's certified band of the top-K ladder, one claim at alpha.

Colours: the K colours of :mod:`certattr.book.plotting` for "certified in the top K%" (the smallest such K), a
blue scale for "certified outside the top K%" (the largest such K) where the pixel is in no certified top set, and
the overlays' light/dark stripes for abstain (no claim at any K), which show on any photo.
"""
from __future__ import annotations

import numpy as np

from ..engine.certificate import Certificate
from .plotting import _image_hwc, abstain_legend_patch, abstain_stripes, k_colors

__all__ = ["band_rgba", "plot_band_map", "OUTSIDE_COLORS"]

#: "certified outside the top K%": darker for a larger K (a stronger claim: outside a larger set)
OUTSIDE_COLORS = ((0.62, 0.75, 0.90), (0.35, 0.52, 0.78), (0.16, 0.30, 0.60), (0.08, 0.16, 0.40), (0.03, 0.06, 0.22))


def _outside_colors(count: int) -> list:
    if count <= len(OUTSIDE_COLORS):
        return list(OUTSIDE_COLORS[len(OUTSIDE_COLORS) - count:])
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
    """The image (dimmed) under the band map; a pixel in a certified top set shows its smallest such K."""
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
                  bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
