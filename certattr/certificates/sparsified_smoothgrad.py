"""Top-k certificates of Sparsified SmoothGrad (Levine, Singla, Feizi, "Certifiably Robust Interpretation
in Deep Learning"), for any map-valued method of the registry (grad, ixg, ...).

**Smoothed map.** For n noisy copies x + sigma*eps_j (eps_j from :mod:`certattr.engine.noise`, [0,1] pixel
units, not clamped), a_j = |method(x + sigma*eps_j)| is a 2-D map with d = h*w elements (the method's
layer resolution, not upsampled). Sparsification g(a)_i = 1 if a_i is among the k_s = ceil(tau_frac*d)
largest, else 0; **ties** are broken by the row-major flat index (the lower index ranks higher), so every
sample has exactly k_s ones. The relaxed variant maps |a| <= t_lo (the k_s-th largest value) to 0,
|a| >= t_hi (the ceil(gamma_frac*d)-th largest value) to 1, linearly in the value in between. The
estimate is s_hat = mean_j g(a_j) in [0,1]^d.

**Guarantee.** With c = sqrt(ln(2d/(1-eta))/(2n)) (Hoeffding + union bound over the d elements), with
probability >= eta over the n noise samples, every element satisfies |s_hat_i - s_i(x)| <= c, where s is
the population smoothed map. On that event, for **every** delta with ||delta||_2 <= eps (same units as
sigma), and every pair i, j::

    Phi(Phi^-1(s_hat_i - c) - 2 eps/sigma) - c  >  s_hat_j   ==>   s_i(x + delta) > s_j(x + delta)

(population floor/ceiling of Levine's Theorem 2: s_i(x+delta) >= Phi(Phi^-1(s_i(x)) - eps/sigma) and
s_j(x+delta) <= Phi(Phi^-1(s_j(x)) + eps/sigma)). From this pairwise statement, all with the same
probability >= eta and simultaneously for all ||delta|| <= eps:

* **top-k overlap** (their Corollary 2): with s_hat sorted descending (0-indexed), the number m of
  i < k with Phi(Phi^-1(s_hat_(i) - c) - 2eps/sigma) - c > s_hat_(2k-1-i) (positions >= d count as
  satisfied) is a lower bound on |X ∩ Y|, where X is the top-k set of s_hat(x) (the displayed map, ties
  by index) and Y is any top-k set of the population map s(x + delta) (any tie-breaking);
* **certified rank**: rho_i = #{j : s_hat_j >= Phi(Phi^-1(s_hat_i - c) - 2eps/sigma) - c} (i included):
  at most rho_i - 1 other elements can reach s_i(x + delta), so i is in every top-rho_i set of s(x+delta);
* **median rank** (their Theorem 3, in the form implemented): if the median of element i's ranks over
  the n samples (the ceil(n/2)-th smallest rank; rank 1 = largest) is <= k_s, then s_hat_i >= 1/2 and
  rho_i <= floor(k_s / v) with v = Phi(Phi^-1(1/2 - c) - 2eps/sigma) - c (vacuous, = d, if v <= 0).
  Proof: every element with s_hat_j < v is certified below i; sum_j s_hat_j = k_s (each sample has
  exactly k_s ones), so at most k_s / v elements have s_hat_j >= v. (The relaxed variant has
  sum_j g_j < k_s, so the bound holds there for every element with s_hat_i >= 1/2.)

The single-element empirical floor of Levine's Definition 3.2, Phi(Phi^-1(s_hat - c) - eps/sigma) - c,
bounds a *fresh* estimate s_hat(x + delta) (its last "- c" is the Hoeffding term at x + delta), so as a
claim about both estimates it holds with probability >= 1 - 2(1 - eta).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import norm

from ..engine.config import SamplingConfig
from ..engine.encodings import RAW, TopKSet
from ..engine.noise import Gaussian
from ..engine.smoothing import SmoothedAttribution
from ..engine.sparsify import abs_values, check_fraction, rank_order, sparsify_topk, topk_count
from ..engine.validation import CertattrError, check_finite_number, check_image, check_positive_int, check_sigma
from .checks import check_eps, check_eta, check_settings
from .provenance import SampledFrom
from .settings import MethodAtLayer, SparsifiedSmoothing, TopKCertConfig

__all__ = [
    "check_eps", "check_eta", "check_fraction", "check_k",
    "topk_count", "sparsify_topk", "relaxed_sparsify", "sample_ranks", "median_ranks",
    "population_floor", "population_ceil", "hoeffding_term", "empirical_floor", "empirical_ceil",
    "pair_threshold", "certified_overlap", "overlap_radii", "certified_ranks", "median_rank_bound",
    "SmoothedTopK", "TopKCertificate", "sparsified_smoothgrad", "certify_topk", "topk_certificate",
]


# --- parameter checks (one-line CertattrError naming parameter, value and what is allowed) ------------
# check_eps and check_eta are the certificates' shared checks (.checks); check_k needs the map's size
def check_k(k, d: int, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= d:
        raise CertattrError(f"{name}={k!r} is not allowed: it must be an integer with 1 <= {name} <= {d} "
                            f"(the number of map elements)")
    return int(k)


# --- sparsification (the hard top-k sets are the engine's: certattr.engine.sparsify) ----------------------
_order = rank_order  # the name certattr.certificates.attack imports


def sample_ranks(maps) -> np.ndarray:
    """Ranks (1 = largest |a|, ties by lower flat index) of each element in each map: int64 (n, d).

    ``maps`` is (n, h, w) or (n, d); a single (h, w) map is not accepted here (give it a leading axis).
    """
    a = abs_values(maps)
    if a.ndim < 2:
        raise CertattrError(f"maps of shape {a.shape} are not allowed: give (n, h, w) or (n, d)")
    a = a.reshape(a.shape[0], -1)
    order = rank_order(a)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, a.shape[1] + 1)[None].repeat(a.shape[0], 0), axis=1)
    return ranks


def median_ranks(maps) -> np.ndarray:
    """Median rank of each element over the n maps: the ceil(n/2)-th smallest of its n ranks, (d,)."""
    ranks = np.sort(sample_ranks(maps), axis=0)
    return ranks[math.ceil(ranks.shape[0] / 2) - 1]


def relaxed_sparsify(maps, tau_frac: float, gamma_frac: float):
    """Relaxed sparsification of |a|: 0 at or below t_lo (the ceil(tau_frac*d)-th largest value), 1 at or
    above t_hi (the ceil(gamma_frac*d)-th largest value), (|a| - t_lo)/(t_hi - t_lo) in between.

    Works on numpy arrays and on torch tensors (differentiable almost everywhere, for attacks);
    ``maps`` (h, w) or (B, h, w); returns the same type and shape. Requires gamma_frac < tau_frac; where
    t_hi = t_lo (ties, or ceil(gamma_frac*d) = ceil(tau_frac*d)) only values strictly above t_lo map to 1.
    Each map sums to less than ceil(tau_frac*d).
    """
    tau_frac = check_fraction("tau_frac", tau_frac)
    gamma_frac = check_fraction("gamma_frac", gamma_frac)
    if gamma_frac >= tau_frac:
        raise CertattrError(f"gamma_frac={gamma_frac!r} is not allowed with tau_frac={tau_frac!r}: "
                            f"the clipped top fraction must satisfy 0 < gamma_frac < tau_frac")
    is_numpy = not isinstance(maps, torch.Tensor)
    t = torch.as_tensor(np.asarray(maps, dtype=np.float64)) if is_numpy else maps
    if not torch.isfinite(t).all():
        raise CertattrError("maps contain NaN or inf, which is not allowed: an attribution map must be finite")
    shape = t.shape
    rows = t.abs().reshape(1 if t.dim() <= 2 else shape[0], -1)
    d = rows.shape[1]
    k_lo, k_hi = topk_count(d, tau_frac), topk_count(d, gamma_frac)
    top = torch.topk(rows, k_lo, dim=1).values
    t_lo, t_hi = top[:, k_lo - 1:k_lo], top[:, k_hi - 1:k_hi]
    span = (t_hi - t_lo).clamp_min(torch.finfo(rows.dtype).tiny)
    out = ((rows - t_lo) / span).clamp(0.0, 1.0).reshape(shape)
    return out.numpy() if is_numpy else out


# --- floor / ceiling functions -------------------------------------------------------------------------
def _as_unit(u) -> np.ndarray:
    arr = np.asarray(u, dtype=np.float64)
    if np.isnan(arr).any():
        raise CertattrError("smoothed values contain NaN, which is not allowed: give values in [0, 1]")
    return np.clip(arr, 0.0, 1.0)


def _out(arr: np.ndarray, like):
    return float(arr) if np.ndim(like) == 0 else arr


def population_floor(u, eps, sigma):
    """floor(u) = Phi(Phi^-1(u) - eps/sigma): s_i(x + delta) >= floor(s_i(x)) for ||delta||_2 <= eps."""
    eps, sigma = check_eps(eps), check_sigma(sigma)
    arr = _as_unit(u)
    return _out(np.minimum(norm.cdf(norm.ppf(arr) - eps / sigma), arr), u)


def population_ceil(u, eps, sigma):
    """ceil(u) = Phi(Phi^-1(u) + eps/sigma): s_j(x + delta) <= ceil(s_j(x)) for ||delta||_2 <= eps."""
    eps, sigma = check_eps(eps), check_sigma(sigma)
    arr = _as_unit(u)
    return _out(np.maximum(norm.cdf(norm.ppf(arr) + eps / sigma), arr), u)


def hoeffding_term(n, d, eta) -> float:
    """c = sqrt(ln(2d / (1 - eta)) / (2n)): P(max_i |s_hat_i - s_i| > c) <= 1 - eta for n samples in [0,1]."""
    n = check_positive_int("n", n)
    d = check_positive_int("d", d)
    eta = check_eta(eta)
    return math.sqrt(math.log(2 * d / (1 - eta)) / (2 * n))


def empirical_floor(s_hat, eps, sigma, c):
    """Phi(Phi^-1(s_hat - c) - eps/sigma) - c, clipped to [0, 1] (s_hat - c <= 0 gives 0: no claim).

    ``c`` is the Hoeffding term (:func:`hoeffding_term`). Levine's Definition 3.2: a lower bound on a
    fresh estimate s_hat_i(x + delta); the population value s_i(x + delta) is bounded by the same
    expression without the final "- c".
    """
    eps, sigma = check_eps(eps), check_sigma(sigma)
    c = _check_c(c)
    arr = _as_unit(s_hat)
    val = norm.cdf(norm.ppf(np.clip(arr - c, 0.0, 1.0)) - eps / sigma) - c
    return _out(np.clip(np.minimum(val, arr), 0.0, 1.0), s_hat)


def empirical_ceil(s_hat, eps, sigma, c):
    """Phi(Phi^-1(s_hat + c) + eps/sigma) + c, clipped to [0, 1] (the mirror image of the floor)."""
    eps, sigma = check_eps(eps), check_sigma(sigma)
    c = _check_c(c)
    arr = _as_unit(s_hat)
    val = norm.cdf(norm.ppf(np.clip(arr + c, 0.0, 1.0)) + eps / sigma) + c
    return _out(np.clip(np.maximum(val, arr), 0.0, 1.0), s_hat)


def _check_c(c) -> float:
    value = check_finite_number("c", c)
    if value < 0:
        raise CertattrError(f"c={c!r} is not allowed: the Hoeffding term must be >= 0")
    return value


def pair_threshold(s_hat, eps, sigma, c):
    """v(s_hat_i) = Phi(Phi^-1(s_hat_i - c) - 2 eps/sigma) - c (not clipped below; -c when s_hat_i <= c).

    Every j with s_hat_j < v(s_hat_i) is certified strictly below i at every x + delta, ||delta|| <= eps.
    Never exceeds s_hat_i (guards float round-off, so an element is never certified above itself).
    """
    eps, sigma = check_eps(eps), check_sigma(sigma)
    c = _check_c(c)
    arr = _as_unit(s_hat)
    val = norm.cdf(norm.ppf(np.clip(arr - c, 0.0, 1.0)) - 2 * eps / sigma) - c
    return _out(np.minimum(val, arr), s_hat)


def certified_overlap(s_hat, k, eps, sigma, c) -> int:
    """m = #{i < k : v(s_hat_(i)) > s_hat_(2k-1-i)}, s_hat sorted descending (positions >= d: satisfied).

    With probability >= eta (the level of ``c``), |top-k(s_hat(x)) ∩ top-k(s(x + delta))| >= m for all
    ||delta||_2 <= eps. The satisfied i always form a prefix 0..m-1.
    """
    s = np.sort(_as_unit(s_hat).ravel())[::-1]
    d = s.size
    k = check_k(k, d)
    thresholds = pair_threshold(s[:k], eps, sigma, c)
    partner = 2 * k - 1 - np.arange(k)
    opposite = np.where(partner < d, s[np.minimum(partner, d - 1)], -np.inf)
    return int(np.count_nonzero(thresholds > opposite))


def overlap_radii(s_hat, k, sigma, c) -> np.ndarray:
    """For i < k, the supremum of the eps at which pair i of the overlap certificate still holds:
    sigma/2 * (Phi^-1(s_hat_(i) - c) - Phi^-1(s_hat_(2k-1-i) + c)) (<= 0: never; inf: partner beyond d).

    The certified overlap at eps is #{i < k : radius_i > eps} (up to float round-off at the boundary).
    """
    sigma = check_sigma(sigma)
    c = _check_c(c)
    s = np.sort(_as_unit(s_hat).ravel())[::-1]
    d = s.size
    k = check_k(k, d)
    partner = 2 * k - 1 - np.arange(k)
    hi = norm.ppf(np.clip(s[:k] - c, 0.0, 1.0))
    lo = np.where(partner < d, norm.ppf(np.clip(s[np.minimum(partner, d - 1)] + c, 0.0, 1.0)), -np.inf)
    with np.errstate(invalid="ignore"):
        radii = sigma / 2 * (hi - lo)
    return np.where(np.isnan(radii), -np.inf, radii)


def certified_ranks(s_hat, eps, sigma, c) -> np.ndarray:
    """rho_i = #{j : s_hat_j >= v(s_hat_i)} for every element (same shape as s_hat, int64, i counted).

    With probability >= eta, for all ||delta||_2 <= eps at most rho_i - 1 other elements j have
    s_j(x + delta) >= s_i(x + delta).
    """
    arr = _as_unit(s_hat)
    flat = arr.ravel()
    v = np.asarray(pair_threshold(flat, eps, sigma, c))
    below = np.searchsorted(np.sort(flat), v, side="left")  # #{j : s_hat_j < v_i}
    return (flat.size - below).reshape(arr.shape).astype(np.int64)


def median_rank_bound(k_s, d, eps, sigma, c) -> int:
    """Theorem 3 (as implemented): certified rank <= floor(k_s / v), v = Phi(Phi^-1(1/2 - c) - 2eps/sigma) - c,
    for every element with s_hat_i >= 1/2 (e.g. median rank <= k_s); d (vacuous) when v <= 0."""
    d = check_positive_int("d", d)
    k_s = check_k(k_s, d, "k_s")
    v = float(pair_threshold(0.5, eps, sigma, c))
    if v <= 0:
        return d
    return int(min(d, math.floor(k_s / v + 1e-9)))


# --- from a model: the smoothed map and the certificate ----------------------------------------------
@dataclass
class SmoothedTopK(SampledFrom):
    """The Sparsified SmoothGrad estimate s_hat (h, w) of one image, with everything that made it."""

    s_hat: np.ndarray
    n: int
    sigma: float
    tau_frac: float
    gamma_frac: float | None
    k_s: int

    @property
    def d(self) -> int:
        return int(self.s_hat.size)


@dataclass
class TopKCertificate:
    """A certified top-k overlap and per-element certified ranks at one eps (see the module docstring)."""

    s_hat: np.ndarray
    k: int
    eps: float
    sigma: float
    n: int
    eta: float
    c: float
    overlap: int
    ranks: np.ndarray
    topk: np.ndarray  #: flat indices of the top-k of s_hat (ties: lower index first)
    median_bound: int | None = None  #: Theorem 3 bound on rho_i for s_hat_i >= 1/2 (needs k_s)
    k_s: int | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return int(self.s_hat.size)

    def statement(self) -> str:
        text = (f"With probability at least eta = {self.eta:g} over the n = {self.n} noise samples (sigma = "
                f"{self.sigma:g}; Hoeffding term c = {self.c:.4f} over d = {self.d} elements), for every "
                f"perturbation ||delta||_2 <= eps = {self.eps:g} ([0,1] pixel units), at least {self.overlap} of "
                f"the k = {self.k} top elements of the estimated smoothed map are among the top-{self.k} of the "
                f"population smoothed map at x + delta, and each element i stays within every top-rho_i set "
                f"(rho = certified ranks).")
        if self.median_bound is not None:
            text += (f" Every element with smoothed value >= 1/2 (e.g. median rank <= k_s = {self.k_s}) has "
                     f"certified rank <= {self.median_bound} (Theorem 3).")
        return text

    def summary(self) -> dict:
        return {"k": self.k, "eps": self.eps, "sigma": self.sigma, "n": self.n, "eta": self.eta, "c": self.c,
                "d": self.d, "overlap": self.overlap, "overlap_fraction": self.overlap / self.k,
                "median_bound": self.median_bound, "k_s": self.k_s, "guarantee": self.statement(),
                "metadata": self.metadata}


def sparsified_smoothgrad(model, image, target=None, *, attribution: MethodAtLayer = MethodAtLayer(),
                          smoothing: SparsifiedSmoothing, sampling: SamplingConfig, image_id: str = "", cache=None,
                          progress: bool = False, also_store=()) -> SmoothedTopK:
    """s_hat = mean over j < n of g(|method(x + sigma*eps_j)|) at the layer's resolution (streamed: the n
    maps are never held at once), for ``image`` (3, H, W) in [0,1] and class ``target`` (None: the top-1 class).

    ``attribution``: the method at its layer; ``smoothing``: sigma, tau_frac and ``gamma_frac`` (None: hard
    top-k_s; else the relaxed variant); ``sampling``: n samples of seed ``sampling.seed``, ``sampling.chunk_size``
    copies per model call. The noisy copies and maps are the engine's
    (:meth:`certattr.engine.smoothing.SmoothedAttribution.chunks`, Gaussian noise: the same seed gives the same
    x + sigma*eps_j and the same maps as the paper's certificate). With ``cache`` (a folder or SampleCache) the
    samples are read from and written to the pipeline's sample cache, one file per chunk, as bit-packed top-k_s
    sets (the relaxed variant: raw maps); ``also_store``: further encodings written for each computed chunk (e.g.
    the certificate's top-K codes).
    """
    image = check_image(image)
    check_settings("attribution", attribution, MethodAtLayer)
    check_settings("smoothing", smoothing, SparsifiedSmoothing)
    check_settings("sampling", sampling, SamplingConfig)
    sigma, n, tau_frac, gamma_frac = smoothing.sigma, sampling.n, smoothing.tau_frac, smoothing.gamma_frac
    attr = attribution.method_object()
    engine = SmoothedAttribution(model, attr, attribution.layer, Gaussian(sigma), sampling, cache=cache,
                                 progress=progress, also_store=also_store)
    target = engine.resolve_target(image, target)
    encoding = TopKSet(tau_frac) if gamma_frac is None else RAW
    total = None
    for data in engine.chunks(image, image_id, target, encoding):
        if gamma_frac is None:
            g = encoding.decode(data)
        else:
            g = relaxed_sparsify(torch.as_tensor(data).double(), tau_frac, gamma_frac).numpy()
        part = g.sum(axis=0)
        total = part if total is None else total + part
    k_s = topk_count(total.size, tau_frac)
    return SmoothedTopK(s_hat=total / n, n=n, sigma=sigma, tau_frac=tau_frac, gamma_frac=gamma_frac, k_s=k_s,
                        method=attr.name, layer=attribution.layer, target=target, seed=sampling.seed,
                        image_id=image_id)


def certify_topk(s_hat, k: int, *, eps: float, sigma: float, n: int, eta: float = 0.95,
                 k_s: int | None = None, metadata: dict | None = None) -> TopKCertificate:
    """Certified top-k overlap and ranks of an estimate ``s_hat`` (values in [0,1]) from n samples."""
    arr = np.asarray(s_hat, dtype=np.float64)
    if arr.size == 0 or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise CertattrError("s_hat is not allowed: give a non-empty finite map with values in [0, 1]")
    eps, sigma, eta = check_eps(eps), check_sigma(sigma), check_eta(eta)
    d = arr.size
    k = check_k(k, d)
    c = hoeffding_term(n, d, eta)
    order = rank_order(arr.ravel()[None])[0]
    if k_s is not None and arr.sum() > check_k(k_s, d, "k_s") + 1e-9 * d:
        raise CertattrError(f"k_s={k_s!r} is not allowed with this s_hat: its sum {arr.sum():.6g} exceeds k_s, so it "
                            f"is not a sparsified map with k_s ones per sample (Theorem 3 needs sum(s_hat) <= k_s)")
    median_bound = median_rank_bound(k_s, d, eps, sigma, c) if k_s is not None else None
    return TopKCertificate(s_hat=arr, k=k, eps=eps, sigma=sigma, n=int(n), eta=eta, c=c,
                           overlap=certified_overlap(arr, k, eps, sigma, c),
                           ranks=certified_ranks(arr, eps, sigma, c), topk=order[:k].copy(),
                           median_bound=median_bound, k_s=k_s, metadata=dict(metadata or {}))


def topk_certificate(model, image, target=None, *, cert: TopKCertConfig, attribution: MethodAtLayer = MethodAtLayer(),
                     smoothing: SparsifiedSmoothing, sampling: SamplingConfig, image_id: str = "", cache=None,
                     progress: bool = False) -> TopKCertificate:
    """Sparsified SmoothGrad of ``image`` (:func:`sparsified_smoothgrad`) and its top-k certificate at ``cert``'s
    k, eps and eta (:func:`certify_topk`), in one call."""
    check_settings("cert", cert, TopKCertConfig)
    sm = sparsified_smoothgrad(model, image, target, attribution=attribution, smoothing=smoothing, sampling=sampling,
                               image_id=image_id, cache=cache, progress=progress)
    meta = {"method": sm.method, "layer": sm.layer, "target": sm.target, "seed": sampling.seed, "image_id": image_id,
            "tau_frac": smoothing.tau_frac, "gamma_frac": smoothing.gamma_frac}
    return certify_topk(sm.s_hat, cert.k, eps=cert.eps, sigma=smoothing.sigma, n=sampling.n, eta=cert.eta,
                        k_s=sm.k_s, metadata=meta)
