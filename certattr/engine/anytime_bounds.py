"""The anytime bounds of the sequential certificate, one class per name in :data:`BOUNDS`.

Each keeps, for every K and pixel (arrays (len(ks), *shape)), the state of two one-sided claims, "q >= tau"
(**important**) and "q <= 1 - tau" (**unimportant**), each tested at level ``level`` = delta (alpha/(2P) for a
ladder), valid at every stopping time; :class:`certattr.engine.sequential.AnytimeCounter` feeds them block by block
(:meth:`update` after each look) and reads:

* ``crossed_one`` / ``crossed_zero``: bool, the claim's test has rejected at some look so far;
* ``p_one`` / ``p_zero``: float64, the smallest anytime p-value of the claim so far (<= delta once crossed);
* :meth:`bounds`: (lower, upper) float64 bounds of q for the per-pixel radii (lower >= tau where crossed_one);
* :meth:`screen`: (lower, upper) bounds used only to stop early ("no longer certifiable"; not a claim).

The bounds (the mathematics page gives each argument):

* ``mixture``: Robbins' beta-binomial mixture, a two-sided confidence sequence (:mod:`certattr.engine.confseq`);
* ``prior``: one-sided mixtures of likelihood ratios over a grid of alternatives, with per-pixel weights from a
  prior fixed before the samples they weigh: a given map (e.g. from the clean image), or the first ``n0`` samples
  (tested with even weights; the weights they give apply to the samples after them);
* ``betting``: one-sided betting with a predictable bet: before each block of samples, the Kelly bet at the
  posterior mean of q given the pixel's earlier samples;
* ``looks``: exact one-sided binomial tests at a schedule of looks fixed before sampling, delta split evenly over
  the looks (Bonferroni spending).
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from scipy.stats import binom

from .bets import (
    PRIOR_WIDTH,
    alternatives,
    kelly_bet,
    log_lr_table,
    look_schedule,
    predictive_table,
    prior_log_weights,
    radius_levels,
)
from .confseq import anytime_bounds, bound_table, log_mixture
from .statistics import clopper_pearson_lower
from .validation import ANYTIME_BOUNDS, CertattrError

__all__ = ["BOUNDS", "make_bound", "MixtureBound", "PriorBound", "BettingBound", "LooksBound", "DEFAULT_PRIOR_N0"]

DEFAULT_PRIOR_N0 = 20  #: samples whose counts set the ``prior`` bound's weights when no prior map is given


class _Bound:
    """Common state: ``shape`` = (len(ks), *pixels), level delta, threshold tau."""

    name = ""

    def __init__(self, shape, *, tau: float, level: float, n_max: int | None = None):
        self.shape, self.tau, self.level = tuple(shape), float(tau), float(level)
        self.n_max = n_max
        self.crossed_one = np.zeros(self.shape, dtype=bool)
        self.crossed_zero = np.zeros(self.shape, dtype=bool)
        self.p_one = np.ones(self.shape)
        self.p_zero = np.ones(self.shape)

    def cuts(self) -> tuple[int, ...]:
        """Sample counts (besides the multiples of the block) at which a look must fall."""
        return ()

    def update(self, ones: np.ndarray, t: int, block: np.ndarray, b: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def screen(self, ones: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounds for the stopping rule only: the mixture's interval at S_t (valid, though not used for claims)."""
        if t == 0:
            return np.zeros(self.shape), np.ones(self.shape)
        return anytime_bounds(ones, t, self.level)


class MixtureBound(_Bound):
    """The beta-binomial mixture confidence sequence, intervals intersected over the looks."""

    name = "mixture"

    def __init__(self, shape, **kw):
        super().__init__(shape, **kw)
        self.lower, self.upper = np.zeros(self.shape), np.ones(self.shape)

    def update(self, ones, t, block, b):
        lower, upper = anytime_bounds(ones, t, self.level)
        np.maximum(self.lower, lower, out=self.lower)
        np.minimum(self.upper, upper, out=self.upper)
        above, below = ones >= self.tau * t, ones <= (1 - self.tau) * t
        if above.any():
            p1 = np.exp(-log_mixture(ones[above], t, self.tau))
            self.p_one[above] = np.minimum(self.p_one[above], np.minimum(p1, 1.0))
        if below.any():
            p0 = np.exp(-log_mixture(ones[below], t, 1 - self.tau))
            self.p_zero[below] = np.minimum(self.p_zero[below], np.minimum(p0, 1.0))
        self.crossed_one, self.crossed_zero = self.lower >= self.tau, self.upper <= 1 - self.tau

    def bounds(self):
        return self.lower, self.upper

    def screen(self, ones, t):
        return self.lower, self.upper


class LooksBound(_Bound):
    """One-sided Clopper-Pearson bounds at the looks of :func:`certattr.engine.bets.look_schedule`, each at
    delta/L, intersected over the looks."""

    name = "looks"

    def __init__(self, shape, **kw):
        super().__init__(shape, **kw)
        if self.n_max is None:
            raise CertattrError("the looks bound needs n_max: its looks are spread over the samples up to n_max")
        self.looks = look_schedule(self.n_max, self.tau, self.level)
        self.share = self.level / max(len(self.looks), 1)  #: delta_l, the level of each look
        self.done = 0  #: looks already used
        self.lower, self.upper = np.zeros(self.shape), np.ones(self.shape)

    def cuts(self):
        return self.looks

    def update(self, ones, t, block, b):
        due = sum(1 for look in self.looks[self.done:] if look <= t)
        if not due:
            return
        self.done += due
        level = self.share * due  # looks skipped by a chunk that jumped over them are spent here
        c = np.arange(t + 1)
        lower_table = clopper_pearson_lower(c, t, level)
        p_table = np.minimum(binom.sf(c - 1, t, self.tau) * (self.level / level), 1.0)
        np.maximum(self.lower, lower_table[ones], out=self.lower)
        np.minimum(self.upper, 1.0 - lower_table[t - ones], out=self.upper)
        np.minimum(self.p_one, p_table[ones], out=self.p_one)
        np.minimum(self.p_zero, p_table[t - ones], out=self.p_zero)
        self.crossed_one, self.crossed_zero = self.lower >= self.tau, self.upper <= 1 - self.tau

    def bounds(self):
        return self.lower, self.upper

    def screen(self, ones, t):
        return self.lower, self.upper


def _chain_lower(crossed: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Fixed-sequence reading of tests at increasing levels (axis 0): the largest m_j such that the tests at
    m_1..m_j all rejected, 0 where the first did not."""
    run = np.logical_and.accumulate(crossed, axis=0)
    count = run.sum(axis=0)
    return np.where(count > 0, levels[np.maximum(count - 1, 0)], 0.0)


class PriorBound(_Bound):
    """Mixtures of likelihood ratios over :func:`certattr.engine.bets.alternatives` (tau), one per claim, with
    per-pixel log weights fixed before the samples they weigh.

    ``prior``: float (len(ks), *pixels), the prior centre of q (e.g. :func:`certattr.engine.bets.prior_from_map`);
    it must not depend on the samples tested. Without it the first ``n0`` samples are tested with even weights,
    and their counts (S_n0 + 1/2)/(n0 + 1) centre the weights for the samples after them (the wealth is the
    product of the two phases)."""

    name = "prior"

    def __init__(self, shape, *, prior=None, n0: int = DEFAULT_PRIOR_N0, **kw):
        super().__init__(shape, **kw)
        self.n0 = 0 if prior is not None else int(n0)
        self.log_w1 = self.log_w0 = None  # even weights until set
        self.base_t, self.base_ones = 0, np.zeros(self.shape, dtype=np.int64)  # counts of the first phase
        self.base_log_one = np.zeros(self.shape)  # log wealth of the first phase (its final value)
        self.base_log_zero = np.zeros(self.shape)
        self.phase = 0 if self.n0 > 0 else 1
        if prior is not None:
            self._set_weights(np.asarray(prior, dtype=np.float64), PRIOR_WIDTH)
        self._t, self._ones = 0, np.zeros(self.shape, dtype=np.int64)

    def _set_weights(self, centre, width):
        if centre.shape != self.shape:
            raise CertattrError(f"a prior of shape {centre.shape} is not allowed: give one value per K and pixel, "
                                f"shape {self.shape}")
        if not np.isfinite(centre).all() or (centre < 0).any() or (centre > 1).any():
            raise CertattrError("the prior must hold probabilities in [0, 1] (the prior centre of each q)")
        self.log_w1 = prior_log_weights(centre, self.tau, width=width)
        self.log_w0 = prior_log_weights(1.0 - centre, self.tau, width=width)

    def cuts(self):
        return (self.n0,) if self.n0 else ()

    def _log_wealth(self, s, t, log_w, m, where=None):
        """log sum_g w_g LR_t(p_g; m) over the alternatives p_g > m (log_w: None = even weights), at the pixels
        ``where`` (bool, default all; -inf elsewhere)."""
        p = alternatives(self.tau)
        keep = p > m
        out = np.full(np.shape(s), -np.inf)
        if not keep.any():
            return out
        table = log_lr_table(t, p[keep], m)  # (t+1, G')
        if log_w is None:
            lw = np.full(keep.sum(), -np.log(p.size))
            values = logsumexp(table + lw, axis=1)
            if where is None:
                return values[s]
            out[where] = values[s[where]]
            return out
        if where is None:
            where = np.ones(np.shape(s), dtype=bool)
        x = np.take(table.T, s[where], axis=1) + log_w[keep][:, where]  # (G', pixels)
        top = x.max(axis=0)
        out[where] = top + np.log(np.exp(x - top).sum(axis=0))
        return out

    def _phase_logs(self, ones, t, m):
        """log wealth of the two claims at level m (m = tau for the labels), both phases."""
        if self.phase == 0:
            return (self._log_wealth(ones, t, None, m), self._log_wealth(t - ones, t, None, m))
        s, dt = ones - self.base_ones, t - self.base_t
        if self.base_t and m == self.tau:
            l1, l0 = self.base_log_one, self.base_log_zero
        elif self.base_t:
            l1 = self._log_wealth(self.base_ones, self.base_t, None, m)
            l0 = self._log_wealth(self.base_t - self.base_ones, self.base_t, None, m)
        else:
            l1 = l0 = 0.0
        if dt == 0:
            return l1 + np.zeros(self.shape), l0 + np.zeros(self.shape)
        # where the counts since the switch sit at or below m, every ratio is <= 1, so the wealth is below the
        # first phase's and cannot newly reach 1/delta: those pixels are not evaluated and count as -inf
        # (conservative: no claim and a p-value of 1 there)
        up, down = s > m * dt, (dt - s) > m * dt
        return (l1 + self._log_wealth(s, dt, self.log_w1, m, up),
                l0 + self._log_wealth(dt - s, dt, self.log_w0, m, down))

    def update(self, ones, t, block, b):
        self._t, self._ones = t, ones.copy()
        l1, l0 = self._phase_logs(ones, t, self.tau)
        self._record(l1, l0)
        if self.phase == 0 and t >= self.n0:  # the first phase ends here: its counts centre the weights
            self.base_t, self.base_ones = t, ones.copy()
            self.base_log_one, self.base_log_zero = l1, l0
            q = (ones + 0.5) / (t + 1.0)
            self._set_weights(q, float(np.sqrt(PRIOR_WIDTH ** 2 + 0.25 / (t + 1.0))))
            self.phase = 1

    def _record(self, l1, l0):
        threshold = -np.log(self.level)
        self.crossed_one |= l1 >= threshold
        self.crossed_zero |= l0 >= threshold
        np.minimum(self.p_one, np.exp(-np.minimum(l1, 700.0)), out=self.p_one)
        np.minimum(self.p_zero, np.exp(-np.minimum(l0, 700.0)), out=self.p_zero)

    def bounds(self):
        """Radii: tests at :func:`certattr.engine.bets.radius_levels` at the current sample count (fixed
        sequence from tau up), at least tau where the label claim was certified."""
        levels = radius_levels(self.tau)
        threshold = -np.log(self.level)
        if self._t == 0:
            return np.zeros(self.shape), np.ones(self.shape)
        c1, c0 = [], []
        for m in levels:
            l1, l0 = self._phase_logs(self._ones, self._t, m)
            c1.append(l1 >= threshold)
            c0.append(l0 >= threshold)
        lower = np.maximum(_chain_lower(np.stack(c1), levels), np.where(self.crossed_one, self.tau, 0.0))
        upper = 1.0 - np.maximum(_chain_lower(np.stack(c0), levels), np.where(self.crossed_zero, self.tau, 0.0))
        return lower, upper


class BettingBound(_Bound):
    """Predictable Kelly bets: before each block, q-hat = the posterior mean of q over the alternatives > tau (even
    prior weights) given the pixel's earlier samples (:func:`certattr.engine.bets.predictive_table`), and the
    bet on "q >= m_j" is :func:`certattr.engine.bets.kelly_bet` (q-hat, m_j) at every radius level m_j; the same on
    1 - X for "q <= 1 - m_j"."""

    name = "betting"

    def __init__(self, shape, **kw):
        super().__init__(shape, **kw)
        self.levels = radius_levels(self.tau)
        full = (len(self.levels), *self.shape)
        self.log_one, self.log_zero = np.zeros(full), np.zeros(full)
        self.ever_one, self.ever_zero = np.zeros(full, dtype=bool), np.zeros(full, dtype=bool)
        self._prev_t, self._prev_ones = 0, np.zeros(self.shape, dtype=np.int64)

    def update(self, ones, t, block, b):
        table = predictive_table(self._prev_t, self.tau)  # bets fixed by the samples before this block
        q1, q0 = table[self._prev_ones], table[self._prev_t - self._prev_ones]
        block = np.asarray(block, dtype=np.float64)
        for j, m in enumerate(self.levels):
            lam = kelly_bet(q1, m)
            self.log_one[j] += block * np.log1p(lam * (1 - m)) + (b - block) * np.log1p(-lam * m)
            lam = kelly_bet(q0, m)
            self.log_zero[j] += (b - block) * np.log1p(lam * (1 - m)) + block * np.log1p(-lam * m)
        threshold = -np.log(self.level)
        self.ever_one |= self.log_one >= threshold
        self.ever_zero |= self.log_zero >= threshold
        self.crossed_one, self.crossed_zero = self.ever_one[0].copy(), self.ever_zero[0].copy()
        np.minimum(self.p_one, np.exp(-np.minimum(self.log_one[0], 700.0)), out=self.p_one)
        np.minimum(self.p_zero, np.exp(-np.minimum(self.log_zero[0], 700.0)), out=self.p_zero)
        self._prev_t, self._prev_ones = t, ones.copy()

    def bounds(self):
        return _chain_lower(self.ever_one, self.levels), 1.0 - _chain_lower(self.ever_zero, self.levels)


BOUNDS = {cls.name: cls for cls in (MixtureBound, PriorBound, BettingBound, LooksBound)}
assert tuple(BOUNDS) == ANYTIME_BOUNDS, "the bound names must match certattr.engine.validation.ANYTIME_BOUNDS"


def make_bound(name: str, shape, *, tau: float, level: float, n_max: int | None = None, prior=None,
               n0: int | None = None) -> _Bound:
    """The bound ``name`` (one of :data:`BOUNDS`) for arrays of ``shape`` = (len(ks), *pixels). ``prior`` and
    ``n0`` are settings of the ``prior`` bound only."""
    if name != "prior" and (prior is not None or n0 is not None):
        raise CertattrError(f"prior and n0 are settings of the prior bound, not of bound={name!r}")
    kw = dict(tau=tau, level=level, n_max=n_max)
    if name == "prior":
        return PriorBound(shape, prior=prior, n0=DEFAULT_PRIOR_N0 if n0 is None else n0, **kw)
    return BOUNDS[name](shape, **kw)


def can_certify(name: str, n_max: int, *, tau: float, level: float) -> bool:
    """Whether a pixel whose n_max samples all select it would be certified by the bound ``name`` (fed in at most
    100 blocks; only used to warn that nothing can be certified)."""
    if name == "mixture":
        lower, _ = bound_table(n_max, level)
        return bool(lower[n_max] >= tau)
    bound = make_bound(name, (1,), tau=tau, level=level, n_max=n_max, n0=None if name != "prior" else 0)
    step = max(10, -(-n_max // 100))
    t = 0
    while t < n_max:
        b = min(step, n_max - t)
        t += b
        bound.update(np.array([t]), t, np.array([b]), b)
    return bool(bound.crossed_one[0])
