"""Cosine certificates of uniformly smoothed attributions (the ICLR 2025 submission arXiv 2405.06361).

**Smoothing.** h(x) = E_{eta ~ Uniform(B(0; r))}[g(x + eta)], B an l2 ball of radius r in the input's
d = 3*H*W dimensions ([0,1] pixel units, not clamped), g(x) the flattened attribution map of a registry
method, **normalised** to norm M (g <- M g/||g||, a zero map stays zero; ``bound="clip"`` instead scales
only maps with ||g|| > M down to M). Either way ||g|| <= M, as the theorem needs. The estimate
h_hat = mean of g(x + eta_j) over N exact uniform samples eta_j = r U^(1/d) z/||z|| (z Gaussian, U
uniform, both seeded per (seed, image id, sample index)).

**Ball geometry.** For two radius-r balls whose centres are eps apart,
V_U/V_S = 2 (1 - I_{1-eps^2/(4r^2)}((d+1)/2, 1/2)) = 2 I_{eps^2/(4r^2)}(1/2, (d+1)/2) (the second,
complementary form is what is computed: it is accurate in high d), and 2 when eps >= 2r.

**Guarantee (corrected Theorem 1).** For every ||delta||_2 <= eps, h(x+delta) = h(x) + w with
||w|| <= A = M V_U/V_S (the paper's own step, eq. 18-23). The smallest cosine between h(x) and any vector
of that ball is **sqrt(1 - (A/||h(x)||)^2)** (A < ||h||; no claim, -1, otherwise): the worst w is
perpendicular to h(x) + w, not to h(x). The paper's Theorem 1, ||h|| / sqrt(||h||^2 + A^2), assumes the
worst w is perpendicular to h(x) (its Lagrange step drops the stationary point cos(theta) = -a/c); it is
larger than the true minimum and is violated by an explicit bounded g (tests/certificates/test_cosine.py
builds one in d = 2). It is kept as :func:`paper_cosine_bound` for comparison only. Corollary 1 is
provided for both bounds: for the corrected one, Z uses T*||h|| in place of ||h||.

**Monte-Carlo term.** The paper's appendix C.1 uses a CLT (generalised chi-square) approximation, which
is not a finite-sample guarantee. Here: McDiarmid's inequality on ||h_hat - h|| (one sample changes it by
at most 2M/N) and E||h_hat - h|| <= M/sqrt(N) give, with probability >= 1 - alpha over the N samples,
||h_hat - h|| <= t = M (1 + sqrt(2 ln(1/alpha))) / sqrt(N). The certificate then holds with probability
>= 1 - alpha, using ||h(x)|| >= ||h_hat|| - t; it also bounds the cosine between the displayed h_hat(x)
and h(x + delta) (angles add: arcsin(t/||h_hat||) + arcsin(A/(||h_hat|| - t))).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betainc, betaincc, betaincinv

from ..engine.config import DEFAULT_CERT, SamplingConfig
from ..engine.encodings import BoundedSum, bound_norm
from ..engine.noise import UniformBall, uniform_ball_noise
from ..engine.smoothing import SmoothedAttribution
from ..engine.validation import CertattrError, check_alpha, check_choice, check_finite_number, check_image, check_interval, check_positive_int
from .checks import check_eps, check_radius, check_settings
from .provenance import SampledFrom
from .settings import MethodAtLayer, UniformSmoothing

__all__ = [
    "check_radius", "check_threshold", "uniform_ball_noise", "ball_symdiff_fraction", "ball_overlap_fraction",
    "cosine_lower_bound", "paper_cosine_bound", "certified_eps", "min_radius", "mc_error",
    "UniformSmoothed", "CosineCertificate", "smooth_uniform", "certify_cosine", "bound_norm",
]

BOUNDS = ("corrected", "paper")


# --- checks (check_radius is the certificates' shared check, .checks) -------------------------------------
def check_threshold(T) -> float:
    return check_interval("T", T, 0, 1, what="the cosine threshold")


def _check_norm_ratio(norm_h, M) -> tuple[float, float]:
    M = check_finite_number("M", M)
    if M <= 0:
        raise CertattrError(f"M={M!r} is not allowed: the bound on ||g|| must be > 0")
    c = check_finite_number("norm_h", norm_h)
    if c < 0 or c > M * (1 + 1e-9):
        raise CertattrError(f"norm_h={norm_h!r} is not allowed with M={M!r}: it must satisfy 0 <= ||h|| <= M")
    return min(c, M), M


def _check_dim(d) -> int:
    return check_positive_int("d", d)


# --- sampling -----------------------------------------------------------------------------------------
# --- geometry -----------------------------------------------------------------------------------------
def ball_symdiff_fraction(eps, r, d):
    """V_U/V_S = 2 I_{eps^2/(4r^2)}(1/2, (d+1)/2): the symmetric difference of B(x; r) and B(x+delta; r),
    ||delta|| = eps, over one ball's volume (2 when eps >= 2r). Vectorised over eps."""
    r, d = check_radius(r), _check_dim(d)
    e = np.asarray(eps, dtype=np.float64)
    if not np.isfinite(e).all() or (e < 0).any():
        raise CertattrError(f"eps={eps!r} is not allowed: the perturbation size must be finite and >= 0")
    x = np.minimum(e * e / (4 * r * r), 1.0)
    out = 2.0 * betainc(0.5, (d + 1) / 2.0, x)
    return float(out) if np.ndim(eps) == 0 else out


def ball_overlap_fraction(eps, r, d):
    """V_intersection/V_S = I_{1-eps^2/(4r^2)}((d+1)/2, 1/2) (computed as the complementary regularised
    upper incomplete beta of (1/2, (d+1)/2), accurate at both ends). ~ 2 Phi(-eps sqrt(d)/(2r)) in high d."""
    r, d = check_radius(r), _check_dim(d)
    e = np.asarray(eps, dtype=np.float64)
    if not np.isfinite(e).all() or (e < 0).any():
        raise CertattrError(f"eps={eps!r} is not allowed: the perturbation size must be finite and >= 0")
    x = np.minimum(e * e / (4 * r * r), 1.0)
    out = betaincc(0.5, (d + 1) / 2.0, x)
    return float(out) if np.ndim(eps) == 0 else out


# --- the bounds ---------------------------------------------------------------------------------------
def cosine_lower_bound(norm_h, M, eps, r, d):
    """min cos(h(x), h(x+delta)) over ||delta|| <= eps: sqrt(1 - (A/||h||)^2), A = M V_U/V_S; -1 if A >= ||h||."""
    c, M = _check_norm_ratio(norm_h, M)
    A = M * np.asarray(ball_symdiff_fraction(eps, r, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c > 0, A / c, np.inf)
        out = np.where(ratio < 1, np.sqrt(np.clip(1 - ratio ** 2, 0.0, 1.0)), -1.0)
    return float(out) if np.ndim(eps) == 0 else out


def paper_cosine_bound(norm_h, M, eps, r, d):
    """Theorem 1 of arXiv 2405.06361 as printed: ||h|| / sqrt(||h||^2 + (M V_U/V_S)^2).

    NOT a valid lower bound in general (see the module docstring); for comparison only.
    """
    c, M = _check_norm_ratio(norm_h, M)
    A = M * np.asarray(ball_symdiff_fraction(eps, r, d))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(c > 0, c / np.sqrt(c * c + A * A), 0.0)
    out = np.where(A == 0, 1.0, out)
    return float(out) if np.ndim(eps) == 0 else out


def _w(c: float, M: float, T: float, bound: str) -> float:
    """The largest allowed V_U/(2 V_S) = I_{eps^2/4r^2}(1/2, (d+1)/2) for cos >= T (1 - Z of Corollary 1)."""
    check_choice("bound", bound, BOUNDS)
    if bound == "paper":
        return c / (2 * M) * math.sqrt(1 / T ** 2 - 1)
    return c / (2 * M) * math.sqrt(1 - T ** 2)


def certified_eps(norm_h, M, T, r, d, bound: str = "corrected") -> float:
    """Corollary 1(i): the largest eps with bound >= T: 2r sqrt(1 - I^-1_Z((d+1)/2, 1/2)), computed as
    2r sqrt(I^-1_{1-Z}(1/2, (d+1)/2)); inf when every eps qualifies (paper bound only), 0 when ||h|| = 0."""
    c, M = _check_norm_ratio(norm_h, M)
    T, r, d = check_threshold(T), check_radius(r), _check_dim(d)
    w = _w(c, M, T, bound)
    if w >= 1:
        return math.inf
    if w <= 0:
        return 0.0
    return 2 * r * math.sqrt(float(betaincinv(0.5, (d + 1) / 2.0, w)))


def min_radius(norm_h, M, T, eps, d, bound: str = "corrected") -> float:
    """Corollary 1(ii): the smallest r with bound >= T at eps: eps / (2 sqrt(1 - I^-1_Z((d+1)/2, 1/2)));
    inf when no radius works (||h|| = 0), 0 when eps = 0 or every radius works."""
    c, M = _check_norm_ratio(norm_h, M)
    T, eps, d = check_threshold(T), check_eps(eps), _check_dim(d)
    w = _w(c, M, T, bound)
    if eps == 0 or w >= 1:
        return 0.0
    if w <= 0:
        return math.inf
    return eps / (2 * math.sqrt(float(betaincinv(0.5, (d + 1) / 2.0, w))))


def mc_error(N, M, alpha) -> float:
    """t = M (1 + sqrt(2 ln(1/alpha))) / sqrt(N): P(||h_hat - h|| > t) <= alpha for N iid samples, ||g|| <= M."""
    N = check_positive_int("N", N)
    alpha = check_alpha(alpha)
    M = check_finite_number("M", M)
    if M <= 0:
        raise CertattrError(f"M={M!r} is not allowed: the bound on ||g|| must be > 0")
    return M * (1 + math.sqrt(2 * math.log(1 / alpha))) / math.sqrt(N)


# --- from a model -------------------------------------------------------------------------------------
@dataclass
class UniformSmoothed(SampledFrom):
    """The estimate h_hat (h, w) of a uniformly smoothed attribution, with everything that made it."""

    h_hat: np.ndarray
    N: int
    r: float
    M: float
    bound: str
    d_input: int

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(self.h_hat))


@dataclass
class CosineCertificate:
    """A cosine certificate at one eps (and the largest certified eps at a threshold T)."""

    norm_hat: float
    N: int
    r: float
    M: float
    d: int
    alpha: float
    t: float  #: Monte-Carlo term: ||h_hat - h|| <= t with probability >= 1 - alpha
    eps: float
    cos_bound: float  #: lower bound on cos(h(x), h(x + delta)), corrected Theorem 1 at ||h|| >= norm_hat - t
    displayed_bound: float  #: lower bound on cos(h_hat(x), h(x + delta))
    paper_bound: float  #: Theorem 1 as printed, at the same ||h|| lower bound (not a valid bound; comparison)
    T: float | None = None
    eps_at_T: float | None = None  #: largest eps with cos_bound >= T
    metadata: dict = field(default_factory=dict)

    @property
    def norm_lower(self) -> float:
        return max(0.0, self.norm_hat - self.t)

    def statement(self) -> str:
        text = (f"With probability at least 1 - alpha = {1 - self.alpha:g} over the N = {self.N} uniform samples "
                f"of the l2 ball of radius r = {self.r:g} in d = {self.d} dimensions (||g|| <= M = {self.M:g}; "
                f"||h_hat|| = {self.norm_hat:.4f}, Monte-Carlo term t = {self.t:.4f}), for every perturbation "
                f"||delta||_2 <= eps = {self.eps:g} ([0,1] pixel units): cos(h(x), h(x+delta)) >= {self.cos_bound:.4f} "
                f"and cos(h_hat(x), h(x+delta)) >= {self.displayed_bound:.4f} (h: the population smoothed map).")
        if self.T is not None:
            text += f" cos(h(x), h(x+delta)) >= T = {self.T:g} holds for all ||delta||_2 <= {self.eps_at_T:.4g}."
        return text

    def summary(self) -> dict:
        return {"norm_hat": self.norm_hat, "N": self.N, "r": self.r, "M": self.M, "d": self.d, "alpha": self.alpha,
                "t": self.t, "eps": self.eps, "cos_bound": self.cos_bound, "displayed_bound": self.displayed_bound,
                "paper_bound": self.paper_bound, "T": self.T, "eps_at_T": self.eps_at_T,
                "guarantee": self.statement(), "metadata": self.metadata}


def smooth_uniform(model, image, target=None, *, attribution: MethodAtLayer = MethodAtLayer(),
                   smoothing: UniformSmoothing, sampling: SamplingConfig, image_id: str = "", cache=None,
                   progress: bool = False) -> UniformSmoothed:
    """h_hat = mean_j bound_M(method(x + eta_j)), eta_j uniform in B(0; r), for ``image`` (3, H, W) in [0,1] and
    class ``target`` (None: the top-1 class), streamed over the engine's chunks
    (:meth:`certattr.engine.smoothing.SmoothedAttribution.chunks` with :class:`certattr.engine.noise.UniformBall`
    noise, the model in eval mode).

    ``attribution``: the method at its layer; ``smoothing``: the ball's radius r, the norm bound M and how it is
    applied; ``sampling``: N = ``sampling.n`` ball samples of seed ``sampling.seed``, ``sampling.chunk_size`` per
    model call. With ``cache`` the chunks' bounded sums are kept in the pipeline's sample cache."""
    image = check_image(image)
    check_settings("attribution", attribution, MethodAtLayer)
    check_settings("smoothing", smoothing, UniformSmoothing)
    check_settings("sampling", sampling, SamplingConfig)
    r, N = smoothing.r, sampling.n
    encoding = BoundedSum(smoothing.M, smoothing.bound)
    attr = attribution.method_object()
    engine = SmoothedAttribution(model, attr, attribution.layer, UniformBall(r), sampling, cache=cache,
                                 progress=progress)
    target = engine.resolve_target(image, target)
    total = None
    for data in engine.chunks(image, image_id, target, encoding):
        part = encoding.decode(data)
        total = part if total is None else total + part
    return UniformSmoothed(h_hat=total / N, N=N, r=r, M=encoding.M, bound=smoothing.bound,
                           d_input=int(image.numel()), method=attr.name, layer=attribution.layer, target=target,
                           seed=sampling.seed, image_id=image_id)


def certify_cosine(smoothed: UniformSmoothed, *, eps: float, alpha: float = DEFAULT_CERT.alpha, T: float | None = None,
                   metadata: dict | None = None) -> CosineCertificate:
    """The cosine certificate of an estimate at ``eps`` (and, with ``T``, the largest eps certified at T)."""
    eps, alpha = check_eps(eps), check_alpha(alpha)
    t = mc_error(smoothed.N, smoothed.M, alpha)
    norm_hat = min(smoothed.norm, smoothed.M)
    low = max(0.0, norm_hat - t)
    d, r, M = smoothed.d_input, smoothed.r, smoothed.M
    cos_b = cosine_lower_bound(low, M, eps, r, d)
    # displayed map: angle(h_hat, h) <= arcsin(t/||h_hat||); angle(h(x), h(x+delta)) <= arccos(cos_b)
    if cos_b > -1 and t < norm_hat:
        total = math.asin(min(1.0, t / norm_hat)) + math.acos(max(-1.0, min(1.0, cos_b)))
        shown = math.cos(total) if total < math.pi else -1.0
    else:
        shown = -1.0
    eps_T = None
    if T is not None:
        T = check_threshold(T)
        eps_T = certified_eps(low, M, T, r, d)
    meta = {"method": smoothed.method, "layer": smoothed.layer, "target": smoothed.target, "seed": smoothed.seed,
            "image_id": smoothed.image_id, "bound": smoothed.bound, **(metadata or {})}
    return CosineCertificate(norm_hat=norm_hat, N=smoothed.N, r=r, M=M, d=d, alpha=alpha, t=t, eps=eps,
                             cos_bound=cos_b, displayed_bound=shown,
                             paper_bound=paper_cosine_bound(low, M, eps, r, d), T=T, eps_at_T=eps_T,
                             metadata=meta)
