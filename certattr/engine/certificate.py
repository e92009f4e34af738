"""The certificate of one attribution map: labels, counts, p-values and every parameter."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import norm

from .bands import band_extent, band_labels
from .confseq import anytime_level
from .files import atomic_write_bytes
from .statistics import pixel_radius_table

__all__ = ["ABSTAIN", "Certificate"]

ABSTAIN = -1  #: label of an abstained pixel (the paper's ⊘)
#: what each anytime bound is, for the statement of an anytime certificate (certattr.engine.anytime_bounds)
ANYTIME_BOUND_TEXT = {
    "mixture": "beta-binomial mixture confidence sequence, Ville's inequality",
    "prior": "mixtures of likelihood ratios with per-pixel prior weights fixed before the samples they weigh, "
             "Ville's inequality",
    "betting": "wealth of predictable Kelly bets, Ville's inequality",
    "looks": "exact binomial tests at a schedule of looks fixed before sampling, alpha spent evenly over the looks",
}
FORMAT_VERSION = 4  #: 2 adds the per-pixel radii, 3 the degenerate-map flag, 4 the band labels and the anytime
#: flag; files of format 1-3 still load (their band labels are computed from the stored p-values)
READABLE_FORMATS = (1, 2, 3, 4)


@dataclass
class Certificate:
    """Per-pixel certificates of one image at several K (arrays are (len(ks), H, W), K largest first).

    ``labels``: int8 in {1 (certified important), 0 (certified not important), ABSTAIN = -1}.
    ``majority``: the label chosen on the first n0 samples; ``counts``: c_p, agreeing test samples out
    of n - n0; ``pvalues``: P(Bin(n - n0, tau) >= c_p); ``mean_sparsified``: the mean of the n binary
    top-K maps (the "SS" map of the paper).
    ``radii``: float64, the per-pixel certified radius R_p = sigma Phi^-1(p_lower) of label ``majority``
    (p_lower: one-sided Clopper-Pearson bound of c_p out of n - n0 at level alpha/P), 0 where
    p_lower <= 1/2 (no radius; :meth:`pixel_radius_certified` is the boolean). Computed from the counts
    when not given (see :mod:`certattr.engine.statistics`).
    ``band_labels``: int8 (len(ks), H, W), the band certificate (:mod:`certattr.engine.bands`): labels that hold
    for all K and all pixels together with probability >= 1 - alpha (``labels`` hold per K); computed from
    ``majority`` and ``pvalues`` when not given. :meth:`band_map` reads the band of each pixel.
    ``anytime``: True for a certificate of :func:`certattr.engine.sequential.certify_sequential` (confidence
    sequences, n = the samples drawn when it stopped, n0 = 0, no selection samples); its labels are then already
    joint over all K (``band_labels`` equals ``labels``) and its radii come from the same bounds.
    """

    labels: np.ndarray
    majority: np.ndarray
    counts: np.ndarray
    pvalues: np.ndarray
    mean_sparsified: np.ndarray
    ks: tuple
    sigma: float
    tau: float
    alpha: float
    n: int
    n0: int
    correction: str
    metadata: dict = field(default_factory=dict)
    radii: np.ndarray | None = None
    #: "" for a normal certificate; otherwise one sentence saying why the top-K sets of the noisy maps are
    #: decided by float rounding or ties rather than by the image (see :func:`certattr.engine.certify.degenerate_reason`)
    degenerate: str = ""
    band_labels: np.ndarray | None = None
    anytime: bool = False

    def __post_init__(self):
        # radii are a function of the counts: computed when absent, and recomputed when their shape no longer
        # matches (e.g. ``dataclasses.replace`` keeping some K of the counts but not of the radii)
        if self.anytime:
            if self.radii is None or self.band_labels is None:
                raise ValueError("an anytime certificate needs its radii and band labels: they come from its "
                                 "confidence sequences, not from the counts")
            return
        if self.radii is None or np.shape(self.radii) != np.shape(self.counts):
            self.radii = self.compute_radii()
        if self.band_labels is None or np.shape(self.band_labels) != np.shape(self.labels):
            self.band_labels = band_labels(self.majority, self.pvalues, self.alpha)

    def compute_radii(self) -> np.ndarray:
        """R_p from the counts (float64, (len(ks), H, W)): sigma Phi^-1(p_lower), 0 where p_lower <= 1/2."""
        table = pixel_radius_table(int(self.n) - int(self.n0), self.sigma, self.radius_level)
        return table[np.asarray(self.counts, dtype=np.int64)]

    # --- derived quantities -------------------------------------------------------------------
    @property
    def radius(self) -> float:
        """Certified l2 radius R = sigma * Phi^-1(tau), in [0,1] pixel units."""
        return float(self.sigma * norm.ppf(self.tau))

    @property
    def radius_level(self) -> float:
        """alpha/P: the level of each pixel's Clopper-Pearson bound (Bonferroni, also for Holm certificates);
        for an anytime certificate the level of each anytime test (alpha/(2P); alpha/P for one K with the
        two-sided mixture)."""
        if self.anytime:
            return anytime_level(self.alpha, self.n_pixels, len(self.ks), self.metadata.get("bound", "mixture"))
        return float(self.alpha) / self.n_pixels

    @property
    def n_pixels(self) -> int:
        return int(self.labels.shape[1] * self.labels.shape[2])

    def index(self, k: float) -> int:
        try:
            return [float(x) for x in self.ks].index(float(k))
        except ValueError:
            raise KeyError(f"K={k} was not certified; available: {list(self.ks)}") from None

    def label_map(self, k: float) -> np.ndarray:
        return self.labels[self.index(k)]

    def pixel_radii(self, k: float) -> np.ndarray:
        """(H, W) float64: the largest radius R_p each pixel certifies for its label ``majority`` at this K
        (0 = none). With probability >= 1 - alpha, simultaneously for every pixel, the smoothed label is
        ``majority`` for all ||delta||_2 < R_p; R_p >= R wherever a Bonferroni certificate certifies."""
        return self.radii[self.index(k)]

    def pixel_radius_certified(self, k: float) -> np.ndarray:
        """(H, W) bool: pixels with a positive radius (p_lower > 1/2), a superset of the fixed-tau
        Bonferroni-certified ones."""
        return self.pixel_radii(k) > 0

    def fractions(self) -> dict:
        """Per K: fractions of pixels certified '1', certified '0' and abstained (they sum to 1)."""
        out = {}
        for i, k in enumerate(self.ks):
            lab = self.labels[i]
            out[float(k)] = {"certified_1": float((lab == 1).mean()), "certified_0": float((lab == 0).mean()),
                             "abstain": float((lab == ABSTAIN).mean())}
        return out

    def overlay(self) -> np.ndarray:
        """(H, W) float: the smallest K at which the pixel is certified '1' (smaller K wins), NaN if none.

        As one joint claim over all len(ks) maps this holds with probability >= 1 - len(ks)*alpha.
        """
        out = np.full(self.labels.shape[1:], np.nan, dtype=np.float64)
        for i in np.argsort(-np.asarray(self.ks, dtype=float)):  # largest K first; smaller K overwrite
            out[self.labels[i] == 1] = float(self.ks[i])
        return out

    def band_map(self) -> tuple[np.ndarray, np.ndarray]:
        """The band of each pixel, jointly for all K at level alpha (:func:`certattr.engine.bands.band_extent`):
        (inside, outside) float (H, W): the smallest K whose top set certainly holds the pixel, and the largest K
        whose top set certainly does not (NaN: none)."""
        return band_extent(self.band_labels, self.ks)

    def band_fractions(self) -> dict:
        """Per K: the fractions of pixels the band certificate certifies '1', '0' and abstains on."""
        return {float(k): {"certified_1": float((lab == 1).mean()), "certified_0": float((lab == 0).mean()),
                           "abstain": float((lab == ABSTAIN).mean())} for k, lab in zip(self.ks, self.band_labels)}

    def statement(self) -> str:
        """What this certificate guarantees, with its alpha and correction, in one paragraph."""
        if self.anytime:
            return self._anytime_statement()
        m = len(self.ks)
        corr = {"bonferroni": f"Bonferroni over the P = {self.n_pixels} pixels (each pixel tested at alpha/P)",
                "holm": f"Holm's step-down over the P = {self.n_pixels} pixels"}[self.correction]
        text = (f"For each K, with probability at least 1 - alpha = {1 - self.alpha:g} over the {self.n} noise samples, "
                f"every certified pixel keeps its label (top-K or not) under every perturbation with "
                f"||delta||_2 < R = {self.radius:.3f} ([0,1] pixel units; sigma = {self.sigma:g}, tau = {self.tau:g}; "
                f"strict: at ||delta||_2 = R the bound only gives probability >= 1/2); "
                f"family-wise error controlled by {corr}, n0 = {self.n0} selection samples. "
                f"Abstained pixels carry no claim. Per pixel, the radius R_p = sigma Phi^-1(p_lower) "
                f"(one-sided Clopper-Pearson bound at level alpha/P = {self.radius_level:.3g}, the Bonferroni level"
                f"{' also for this Holm certificate' if self.correction == 'holm' else ''}) is certified for "
                f"||delta||_2 < R_p, for all pixels at once with the same probability; R_p = 0 means no radius.")
        if m > 1:
            text += (f" The overlay of the {m} K values read as one claim holds with probability at least "
                     f"1 - {m}*alpha = {1 - m * self.alpha:g} (union bound). The band certificate (band_labels, "
                     f"band_map) is one claim for all {m} K and all pixels at 1 - alpha = {1 - self.alpha:g}: "
                     f"each pixel's p-value at alpha/P where its n0 labels are the same at every K, at alpha/(2P) "
                     f"where they change (Bonferroni over pixels).")
        if self.degenerate:
            text += f" Degenerate maps: {self.degenerate}; the certified pixels then reflect that, not the image."
        return text

    def _anytime_statement(self) -> str:
        bound = self.metadata.get("bound", "mixture")
        text = (f"Anytime certificate: with probability at least 1 - alpha = {1 - self.alpha:g}, for all K "
                f"({', '.join(f'{float(k):g}%' for k in self.ks)}) and all P = {self.n_pixels} pixels together, every "
                f"certified pixel keeps its label under every perturbation with ||delta||_2 < R = {self.radius:.3f} "
                f"([0,1] pixel units; sigma = {self.sigma:g}, tau = {self.tau:g}; strict). Sampling stopped after "
                f"n = {self.n} samples ({self.metadata.get('stopped', 'see metadata')}); the guarantee holds whatever "
                f"that stopping time: each pixel and K has two one-sided anytime tests (bound {bound!r}: "
                f"{ANYTIME_BOUND_TEXT.get(bound, bound)}) at level {self.radius_level:.3g}, and a pixel is certified "
                f"at a K only if the same claim is certified along the ladder before it. The per-pixel radii R_p come "
                f"from the same bounds and hold per K with probability at least 1 - alpha (all K together: "
                f"1 - {len(self.ks)}*alpha). Abstained pixels carry no claim.")
        if self.degenerate:
            text += f" Degenerate maps: {self.degenerate}; the certified pixels then reflect that, not the image."
        return text

    def summary(self) -> dict:
        """JSON-ready: every parameter, R, the statement and the per-K fractions."""
        return {"ks": [float(k) for k in self.ks], "sigma": self.sigma, "tau": self.tau, "alpha": self.alpha,
                "n": self.n, "n0": self.n0, "correction": self.correction, "radius": self.radius,
                "n_pixels": self.n_pixels, "union_bound_alpha": len(self.ks) * self.alpha,
                "pixel_radius_level": self.radius_level,
                "pixel_radii": {str(float(k)): self._radius_summary(i) for i, k in enumerate(self.ks)},
                "guarantee": self.statement(), "fractions": {str(k): v for k, v in self.fractions().items()},
                "degenerate": self.degenerate, "metadata": self.metadata, "anytime": self.anytime,
                "band_fractions": {str(k): v for k, v in self.band_fractions().items()}}

    def _radius_summary(self, i: int) -> dict:
        r = self.radii[i]
        pos = r[r > 0]
        return {"fraction_with_radius": float((r > 0).mean()), "median_positive": float(np.median(pos)) if pos.size
                else 0.0, "max": float(r.max())}

    # --- persistence ----------------------------------------------------------------------------
    _ARRAYS = ("labels", "majority", "counts", "pvalues", "mean_sparsified", "radii", "band_labels")

    def to_bytes(self) -> bytes:
        params = {"format": FORMAT_VERSION, "ks": [float(k) for k in self.ks], "sigma": self.sigma, "tau": self.tau,
                  "alpha": self.alpha, "n": self.n, "n0": self.n0, "correction": self.correction,
                  "degenerate": self.degenerate, "metadata": self.metadata, "anytime": self.anytime}
        buf = io.BytesIO()
        np.savez_compressed(buf, params=np.frombuffer(json.dumps(params).encode(), dtype=np.uint8),
                            **{name: getattr(self, name) for name in self._ARRAYS})
        return buf.getvalue()

    def save(self, path) -> Path:
        """Save losslessly (compressed .npz holding the arrays and the parameters as JSON), atomically."""
        atomic_write_bytes(path, self.to_bytes())
        return Path(path)

    @classmethod
    def load(cls, path) -> "Certificate":
        """Load a saved certificate; format 1 files (before per-pixel radii) get their radii from the counts,
        files before format 3 load with ``degenerate = ""`` (not checked when they were written)."""
        with np.load(path, allow_pickle=False) as data:
            params = json.loads(bytes(data["params"]).decode())
            fmt = params.pop("format", None)
            if fmt not in READABLE_FORMATS:
                raise ValueError(f"{path}: certificate format {fmt!r} is not understood by this certattr version "
                                 f"(it reads formats {list(READABLE_FORMATS)}); recompute the certificate or "
                                 f"load it with the certattr version that wrote it")
            arrays = {name: data[name] for name in cls._ARRAYS if name in data.files}
        params["ks"] = tuple(params["ks"])
        return cls(**arrays, **params)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Certificate):
            return NotImplemented
        same_params = all(getattr(self, a) == getattr(other, a)
                          for a in ("ks", "sigma", "tau", "alpha", "n", "n0", "correction", "degenerate", "metadata",
                                     "anytime"))
        return same_params and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in self._ARRAYS)
