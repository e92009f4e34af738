"""Figures of certificates: per-K certified maps with abstention, and the overlay (smaller K wins)."""
from __future__ import annotations

import numpy as np

from .result import ABSTAIN, Certificate

__all__ = ["K_COLORS", "ABSTAIN_COLOR", "label_rgb", "overlay_rgba", "show_image", "plot_certificate",
           "plot_overlay", "save_overlay_png"]

ABSTAIN_COLOR = (0.62, 0.62, 0.62)
ZERO_COLOR = (0.08, 0.08, 0.16)
ONE_COLOR = (1.0, 0.85, 0.2)
K_COLORS = ((0.99, 0.91, 0.15), (0.96, 0.48, 0.15), (0.80, 0.10, 0.25), (0.45, 0.05, 0.45), (0.15, 0.15, 0.55))


def _image_hwc(image) -> np.ndarray:
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return np.clip(arr.transpose(1, 2, 0), 0, 1)


def label_rgb(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels in {1, 0, ABSTAIN} -> (H, W, 3): 1 yellow, 0 dark, abstain grey."""
    out = np.empty(labels.shape + (3,))
    out[labels == 1], out[labels == 0], out[labels == ABSTAIN] = ONE_COLOR, ZERO_COLOR, ABSTAIN_COLOR
    return out


def overlay_rgba(cert: Certificate) -> np.ndarray:
    """(H, W, 4): colour of the smallest K at which a pixel is certified '1' (K sorted largest first gets
    the lightest colour); grey where it is certified '1' at no K and abstains at some K; else transparent."""
    out = np.zeros(cert.labels.shape[1:] + (4,))
    overlay = cert.overlay()
    abstain = (cert.labels == ABSTAIN).any(axis=0) & np.isnan(overlay)
    out[abstain] = (*ABSTAIN_COLOR, 0.55)
    for i, k in enumerate(sorted(cert.ks, reverse=True)):
        out[overlay == k] = (*K_COLORS[i % len(K_COLORS)], 0.85)
    return out


def show_image(ax, image, title: str | None = None) -> None:
    ax.imshow(_image_hwc(image))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def plot_certificate(cert: Certificate, k: float, ax, title: str | None = None) -> None:
    """The certified map at one K: '1' yellow, '0' dark, abstain grey."""
    ax.imshow(label_rgb(cert.label_map(k)), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"top {k:g}%", fontsize=9)


def plot_overlay(cert: Certificate, image, ax, title: str | None = None, legend: bool = True) -> None:
    """The image (dimmed) under the overlay of the certified top-K maps (smaller K wins)."""
    grey = _image_hwc(image).mean(axis=2)
    ax.imshow(0.15 + 0.6 * grey, cmap="gray", vmin=0, vmax=1)
    ax.imshow(overlay_rgba(cert), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        from matplotlib.patches import Patch

        handles = [Patch(color=K_COLORS[i % len(K_COLORS)], label=f"top {k:g}%")
                   for i, k in enumerate(sorted(cert.ks, reverse=True))]
        handles.append(Patch(color=ABSTAIN_COLOR, label="abstain"))
        ax.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.8)


def save_overlay_png(cert: Certificate, image, path, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=150)
    plot_overlay(cert, image, ax, title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
