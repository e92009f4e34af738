"""The paper's findings, checked against a run: what the paper reported, what the run measured, and a
verdict computed from the run's numbers with a stated criterion.

Each finding has one function ``check_<id>(...) -> Verdict`` that takes the tidy tables the chapters write
(``robustness.csv``, ``localization.csv``, ``faithfulness.csv``; see :mod:`certattr.evaluation.experiments`) and decides:

* ``agrees`` / ``disagrees``: the stated criterion is met in the paper's direction / in the opposite one,
  at the stated confidence (bootstrap intervals over images or grid targets, or a paired sign test);
* ``inconclusive``: the run's data do not decide (an interval that straddles the threshold);
* ``not tested``: the run lacks what the criterion needs (a layer, a method, a second σ), with the reason.

The statistics are stated, not implied: every verdict carries its criterion, its statistic and its
confidence level. A chapter shows its rows with :func:`findings_frame`; :func:`write_findings` saves them
as JSON in the results folder, and :func:`summary_markdown` assembles the table of the introduction page
from every chapter's file. Bootstrap resampling is seeded, so the same tables give the same verdicts.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..engine.config import DEFAULT_CERT
from ..engine.files import atomic_write_bytes

__all__ = ["Finding", "Verdict", "FINDINGS", "bootstrap_interval", "sign_test", "direction_verdict",
           "check_gradient_input", "check_sigma_trend", "check_tau_trend", "check_small_k_detail",
           "check_gradgb_final", "check_rise_lrp_balance", "check_localization_faithfulness",
           "faithfulness_scores", "findings_frame", "write_findings", "read_findings", "summary_markdown",
           "CONFIDENCE", "GRADIENT_METHODS", "findings_html"]

CONFIDENCE = 0.95  #: level of every bootstrap interval
TEST_LEVEL = 0.05  #: significance level of every sign / permutation test
N_BOOT = 2000
GRADIENT_METHODS = ("grad", "gb", "ixg", "intgrad")
TITLES = {"grad": "Grad", "gb": "GB", "ixg": "IxG", "intgrad": "IntGrad", "lrp": "LRP", "cam": "Cam",
          "gradcam": "GradCam", "gradcampp": "GradCam++", "layercam": "LayerCam", "ablationcam": "AblationCam",
          "rise": "RISE", "occlusion": "Occlusion"}


@dataclass(frozen=True)
class Finding:
    """One finding of the paper (or its rebuttal): ``paper`` says what was reported, ``criterion`` how a
    run decides it, ``chapter`` where it is checked."""

    id: str
    title: str
    paper: str
    criterion: str
    chapter: str


@dataclass
class Verdict:
    finding: Finding
    verdict: str  #: "agrees" | "disagrees" | "inconclusive" | "not tested"
    measured: str  #: what the run measured, in words with its numbers
    why: str  #: one sentence: why the verdict came out so
    statistics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self.finding), "verdict": self.verdict, "measured": self.measured, "why": self.why,
                "statistics": self.statistics}


FINDINGS: dict[str, Finding] = {f.id: f for f in [
    Finding("rise_lrp_balance", "RISE and LRP balance robustness, localization and faithfulness best",
            "At the Input layer, RISE and LRP combine high %certified, the highest Certified GridPG and the steepest "
            "deletion drop on all five models (paper, rebuttal Fig. 3, 5, 8).",
            "Balance = geometric mean of certified robustness (1 - abstain, pooled over images, mean over K), "
            "Certified GridPG (mean over grid targets and K) and deletion faithfulness (1 - p after the first "
            "deletion step / p clean, mean over images) at the Input layer and the smallest R. Agrees if the 95% "
            "bootstrap interval (images and grid targets resampled) of min(RISE, LRP) - max(any other method) is "
            "above 0; disagrees if it is below 0; otherwise inconclusive.", "tradeoff"),
    Finding("gradient_input", "Gradient methods certify almost nothing as important at the Input layer",
            "Grad, GB, IxG and IntGrad certify almost no pixel as important ('1') at the Input layer (paper, Sec. 5).",
            "Share of the top-K budget certified '1' (certified-'1' pixels / (K% of the pixels)), pooled over the "
            "gradient methods run and the images, at the smallest R and the largest K. 'Almost nothing' = below "
            "10% of the budget. Agrees if the 95% bootstrap interval over images lies below 0.10; disagrees if it "
            "lies above; otherwise inconclusive.", "robustness"),
    Finding("sigma_trend", "Larger σ gives a larger R and fewer certified pixels",
            "R = σ·Φ⁻¹(τ) grows with σ, and %certified falls as R grows, for every model and layer (rebuttal Fig. 1).",
            "Paired over (image, method, layer) units certified at both the smallest and the largest σ: the "
            "difference of certified robustness (1 - abstain) at the largest K, smallest σ minus largest σ. "
            "Agrees if a two-sided sign test gives p < 0.05 with more positive differences and the 95% bootstrap "
            "interval of the mean difference is above 0; disagrees if the same holds in the opposite direction; "
            "otherwise inconclusive. (R grows with σ by its closed form.)", "robustness"),
    Finding("tau_trend", "Larger τ likewise gives a larger R and fewer certified pixels",
            "A larger τ certifies a larger radius R = σ·Φ⁻¹(τ) but needs more agreeing samples, so fewer pixels "
            "are certified (paper, Sec. 4).",
            f"The same samples certified at τ = {DEFAULT_CERT.tau:g} and at a larger τ (no resampling), paired over (image, "
            "method, layer) units at the smallest σ and the largest K; the same sign test and bootstrap rule as for σ.",
            "robustness"),
    Finding("small_k_detail", "A small K certifies fine detail",
            "At a small K (5-10%) the certified important pixels are fine structures of the object, at a large K "
            "coarse regions (paper, Fig. 1 and 6-7).",
            "At the Input layer, paired over (image, method) units that certify at least one pixel '1' at both the "
            "smallest and the largest K: the log-ratio of the mean size (pixels) of the 4-connected certified-'1' "
            "components, smallest K over largest K. Agrees if a sign test gives p < 0.05 with smaller components at "
            "the small K and the 95% bootstrap interval of the mean log-ratio is below 0, and at least half of the "
            "units certify something at the smallest K; disagrees if the interval is above 0 or fewer than a "
            "quarter certify anything; otherwise inconclusive.", "robustness"),
    Finding("gradgb_final", "Grad and GB at the Final layer look robust but localize at chance",
            "On CNNs, Grad and GB are among the most robust methods at the Final layer, but their grid-like, "
            "nearly constant maps have random Certified GridPG (rebuttal Fig. 1, 3).",
            "Robust: pooled certified robustness at the Final layer (smallest R, largest K) >= 0.9. At chance: the "
            "95% bootstrap interval over grid targets of the mean Certified GridPG (largest K) lies within "
            "0.25 +- 0.10. Agrees if both hold for each of Grad and GB; disagrees if robustness < 0.9 or the "
            "interval lies wholly outside the band; otherwise inconclusive.", "localization"),
    Finding("localization_faithfulness", "Localization and faithfulness align at the Input layer",
            "Methods that localize better at the Input layer (Certified GridPG) are also more faithful (steeper "
            "deletion drop): LRP and RISE lead both, GradCam trails both (rebuttal Sec. 2.1).",
            "Across the methods run at the Input layer: Spearman's rank correlation between the mean Certified "
            "GridPG (largest K) and deletion faithfulness (1 - p after step 1 / p clean). Agrees if rho > 0 with an "
            "exact one-sided permutation p < 0.05; disagrees if rho < 0 with the opposite one-sided p < 0.05; "
            "otherwise inconclusive (at least 4 methods needed).", "faithfulness"),
]}


# --- statistics ---------------------------------------------------------------------------------
def bootstrap_interval(groups: Sequence[np.ndarray] | np.ndarray, statistic: Callable, *, n_boot: int = N_BOOT,
                       level: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): the percentile bootstrap interval of ``statistic(*resampled)``.

    ``groups`` is one array (resampled along axis 0) or a list of arrays resampled *independently* (e.g.
    images and grid targets); ``statistic`` takes as many arrays as there are groups.
    """
    single = isinstance(groups, np.ndarray)
    arrays = [np.asarray(groups)] if single else [np.asarray(g) for g in groups]
    estimate = float(statistic(*arrays))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    values = np.empty(n_boot)
    for b in range(n_boot):
        resampled = [a[rng.integers(0, len(a), len(a))] for a in arrays]
        values[b] = statistic(*resampled)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return estimate, float(low), float(high)


def sign_test(differences: np.ndarray) -> tuple[int, int, float]:
    """(positives, negatives, two-sided p) of the sign test of ``differences`` (zeros dropped)."""
    from scipy.stats import binomtest

    d = np.asarray(differences, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    p = 1.0 if pos + neg == 0 else float(binomtest(pos, pos + neg, 0.5).pvalue)
    return pos, neg, p


def direction_verdict(differences: np.ndarray, *, seed: int = 0) -> tuple[str, dict]:
    """The verdict of a paired comparison whose expected direction is positive: agrees if the sign test
    is significant with more positives and the bootstrap interval of the mean is above 0, disagrees if
    both hold the other way, inconclusive otherwise."""
    d = np.asarray(differences, dtype=float)
    pos, neg, p = sign_test(d)
    mean, low, high = bootstrap_interval(d, np.mean, seed=seed)
    stats = {"units": int(len(d)), "positive": pos, "negative": neg, "sign_test_p": p, "mean": mean,
             "ci_low": low, "ci_high": high, "confidence": CONFIDENCE}
    if p < TEST_LEVEL and pos > neg and low > 0:
        return "agrees", stats
    if p < TEST_LEVEL and neg > pos and high < 0:
        return "disagrees", stats
    return "inconclusive", stats


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _not_tested(finding_id: str, reason: str) -> Verdict:
    return Verdict(FINDINGS[finding_id], "not tested", f"not measured: {reason}", reason[0].upper() + reason[1:] + ".")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _titles(methods) -> str:
    names = [TITLES.get(m, m) for m in methods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --- checks on the robustness tables --------------------------------------------------------------
def _select(frame, **equal):
    keep = np.ones(len(frame), dtype=bool)
    for col, value in equal.items():
        keep &= np.isclose(frame[col].to_numpy(dtype=float), value) if isinstance(value, float) else (
            frame[col].to_numpy() == value)
    return frame[keep]


def check_gradient_input(rob, *, seed: int = 0) -> Verdict:
    """Finding ``gradient_input`` from robustness rows (one per image x method x layer x sigma x K)."""
    fid = "gradient_input"
    if rob is None or not len(rob):
        return _not_tested(fid, "no robustness rows")
    sigma0, k = float(rob.sigma.min()), float(rob.k.max())
    part = _select(rob, sigma=sigma0, k=k, layer="input")
    part = part[part.method.isin(GRADIENT_METHODS)]
    if not len(part):
        return _not_tested(fid, "no gradient method (Grad, GB, IxG, IntGrad) ran at the Input layer")
    budget = k / 100.0
    per_image = part.groupby("image_id")[["n_certified_1", "n_pixels"]].sum()
    c1, px = per_image.n_certified_1.to_numpy(float), per_image.n_pixels.to_numpy(float)
    idx = np.arange(len(c1))
    share, low, high = bootstrap_interval(idx, lambda i: c1[i].sum() / px[i].sum() / budget, seed=seed)
    per_method = part.groupby("method")[["n_certified_1", "n_pixels"]].sum()
    detail = "; ".join(f"{TITLES.get(m, m)} {100 * r.n_certified_1 / r.n_pixels / budget:.1f}%"
                       for m, r in per_method.iterrows())
    others = _select(rob, sigma=sigma0, k=k, layer="input")
    others = others[~others.method.isin(GRADIENT_METHODS)].groupby("method")[["n_certified_1", "n_pixels"]].sum()
    other_text = ("; for comparison " + ", ".join(f"{TITLES.get(m, m)} {100 * r.n_certified_1 / r.n_pixels / budget:.1f}%"
                                                  for m, r in others.iterrows())) if len(others) else ""
    measured = (f"{100 * share:.1f}% of the top-{k:g}% budget certified '1' (95% CI {100 * low:.1f}-{100 * high:.1f}%, "
                f"{_count(len(c1), 'image')}; {detail}{other_text})")
    stats = {"share": share, "ci_low": low, "ci_high": high, "images": int(len(c1)), "k": k, "sigma": sigma0,
             "threshold": 0.10, "confidence": CONFIDENCE}
    if high < 0.10:
        verdict, why = "agrees", (f"The whole interval lies below a tenth of the budget: at the Input layer the "
                                  f"gradient maps' top-{k:g}% set changes from one noisy copy to the next.")
    elif low > 0.10:
        verdict, why = "disagrees", "The whole interval lies above a tenth of the budget."
    else:
        verdict, why = "inconclusive", "The interval straddles a tenth of the budget."
    return Verdict(FINDINGS[fid], verdict, measured, why, stats)


def _paired_robustness(frame, by: str, small, large, *, k: float):
    """Per (image, method, layer) unit: robustness at ``by`` = small minus at ``by`` = large (largest K)."""
    part = _select(frame, k=k)
    a = _select(part, **{by: float(small)}).set_index(["image_id", "method", "layer"]).robustness
    b = _select(part, **{by: float(large)}).set_index(["image_id", "method", "layer"]).robustness
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner")
    return (joined.a - joined.b).to_numpy(float), joined


def _trend(fid: str, frame, by: str, symbol: str, whys: dict, *, note: str = "", seed: int = 0) -> Verdict:
    """Paired trend of certified robustness from the smallest to the largest value of column ``by``."""
    if frame is None or not len(frame) or frame[by].nunique() < 2:
        return _not_tested(fid, f"the run certified at one {symbol} only")
    small, large, k = float(frame[by].min()), float(frame[by].max()), float(frame.k.max())
    diffs, joined = _paired_robustness(frame, by, small, large, k=k)
    if len(diffs) < 2:
        return _not_tested(fid, f"fewer than two (image, method, layer) units were certified at both {symbol}")
    verdict, stats = direction_verdict(diffs, seed=seed)
    r_small = float(frame[np.isclose(frame[by], small)].radius.iloc[0])
    r_large = float(frame[np.isclose(frame[by], large)].radius.iloc[0])
    units = joined.reset_index()
    measured = (f"R {r_small:.2f} -> {r_large:.2f} ({symbol} {small:g} -> {large:g}{note}); certified robustness at "
                f"K = {k:g}% falls in {stats['positive']} and rises in {stats['negative']} of {len(diffs)} (image, "
                f"method, layer) units ({_count(units.image_id.nunique(), 'image')}, "
                f"{_count(units.method.nunique(), 'method')}); mean drop {100 * stats['mean']:.1f} points (95% CI "
                f"{100 * stats['ci_low']:.1f} to {100 * stats['ci_high']:.1f}), sign test p = "
                f"{_fmt_p(stats['sign_test_p'])}")
    return Verdict(FINDINGS[fid], verdict, measured, whys[verdict], {**stats, f"{by}_small": small, f"{by}_large": large})


def check_sigma_trend(rob, *, seed: int = 0) -> Verdict:
    return _trend("sigma_trend", rob, "sigma", "σ", {
        "agrees": "More noise makes each pixel's top-K membership less stable, so fewer pixels pass the test.",
        "disagrees": "Here more pixels certify at the larger σ, against the paper.",
        "inconclusive": "The paired differences do not have a clear sign at this run's size."}, seed=seed)


def check_tau_trend(rob_tau, *, seed: int = 0) -> Verdict:
    """From rows with a ``tau`` column holding at least two τ for the same samples."""
    return _trend("tau_trend", rob_tau, "tau", "τ", {
        "agrees": "A larger τ asks more of the test samples to agree, so fewer pixels pass, and it can never certify "
                  "a pixel that the smaller τ did not.",
        "disagrees": "Here more pixels certify at the larger τ, which the test's monotonicity forbids: a bug.",
        "inconclusive": "Few pixels change status between the two τ at this run's size."}, note=", same samples",
        seed=seed)


def check_small_k_detail(rob, *, seed: int = 0) -> Verdict:
    """From robustness rows with ``n_components_1`` and ``mean_component_px_1`` (certified-'1' components)."""
    fid = "small_k_detail"
    if rob is None or not len(rob) or "mean_component_px_1" not in rob:
        return _not_tested(fid, "no component statistics in the robustness rows")
    if rob.k.nunique() < 2:
        return _not_tested(fid, "the run certified at one K only")
    sigma0, k_small, k_large = float(rob.sigma.min()), float(rob.k.min()), float(rob.k.max())
    part = _select(rob, sigma=sigma0, layer="input")
    if not len(part):
        return _not_tested(fid, "the Input layer was not run")
    small = _select(part, k=k_small).set_index(["image_id", "method"])
    large = _select(part, k=k_large).set_index(["image_id", "method"])
    nonempty = float((small.n_certified_1 > 0).mean())
    both = small.merge(large, left_index=True, right_index=True, how="inner", suffixes=("_s", "_l"))
    both = both[(both.n_certified_1_s > 0) & (both.n_certified_1_l > 0)]
    measured_base = (f"at K = {k_small:g}%, {100 * nonempty:.0f}% of the {len(small)} Input-layer (image, method) units "
                     f"certify at least one pixel '1'")
    if len(both) < 2:
        verdict = "disagrees" if nonempty < 0.25 else "inconclusive"
        return Verdict(FINDINGS[fid], verdict, measured_base + "; too few units certify at both K to compare sizes",
                       "Small K rarely certifies anything here." if verdict == "disagrees" else
                       "Too few units certify at both K.", {"nonempty_small_k": nonempty, "units": int(len(both))})
    log_ratio = np.log(both.mean_component_px_1_s.to_numpy(float)) - np.log(both.mean_component_px_1_l.to_numpy(float))
    direction, stats = direction_verdict(-log_ratio, seed=seed)
    med_s, med_l = float(np.median(both.mean_component_px_1_s)), float(np.median(both.mean_component_px_1_l))
    measured = (f"{measured_base}; median certified-'1' component {med_s:.0f} px at K = {k_small:g}% vs {med_l:.0f} px "
                f"at K = {k_large:g}% (smaller in {stats['positive']} of {len(both)} units, mean size ratio "
                f"{math.exp(-stats['mean']):.2f}, 95% CI {math.exp(-stats['ci_high']):.2f}-{math.exp(-stats['ci_low']):.2f}, "
                f"sign test p = {_fmt_p(stats['sign_test_p'])})")
    if direction == "agrees" and nonempty >= 0.5:
        verdict, why = "agrees", "The certified important pixels at a small K form smaller structures than at a large K."
    elif direction == "disagrees" or nonempty < 0.25:
        verdict, why = "disagrees", ("The small-K certified structures are not smaller." if direction == "disagrees"
                                     else "A small K rarely certifies anything here.")
    else:
        verdict, why = "inconclusive", ("Fewer than half the units certify anything at the small K."
                                        if nonempty < 0.5 else "The sizes do not differ clearly at this run's size.")
    return Verdict(FINDINGS[fid], verdict, measured, why, {**stats, "nonempty_small_k": nonempty,
                                                           "median_px_small": med_s, "median_px_large": med_l})


# --- localization and faithfulness ----------------------------------------------------------------
def check_gradgb_final(loc, rob=None, *, seed: int = 0) -> Verdict:
    """From localization rows (one per grid target x method x layer x sigma x K) and, for robustness,
    robustness rows on single images (else the grids' own robustness)."""
    fid = "gradgb_final"
    if loc is None or not len(loc):
        return _not_tested(fid, "no localization rows")
    sigma0, k = float(loc.sigma.min()), float(loc.k.max())
    part = _select(loc, sigma=sigma0, k=k, layer="final")
    methods = [m for m in ("grad", "gb") if m in set(part.method)]
    if not methods:
        return _not_tested(fid, "neither Grad nor GB ran at the Final layer")
    texts, stats, robust_ok, chance_ok, outside = [], {}, True, True, False
    for m in methods:
        g = part[part.method == m].certified_gridpg.to_numpy(float)
        mean, low, high = bootstrap_interval(g, np.mean, seed=seed)
        if rob is not None and len(rob) and len(_select(rob, sigma=float(rob.sigma.min()), k=float(rob.k.max()),
                                                        layer="final", method=m)):
            r = _select(rob, sigma=float(rob.sigma.min()), k=float(rob.k.max()), layer="final", method=m)
            robustness, where = 1 - r.n_abstain.sum() / r.n_pixels.sum(), "images"
        else:
            robustness, where = float(part[part.method == m].robustness.mean()), "grids"
        robust_ok &= robustness >= 0.9
        chance_ok &= (low >= 0.15) and (high <= 0.35)
        outside |= (high < 0.15) or (low > 0.35)
        stats[m] = {"robustness": float(robustness), "gridpg": mean, "ci_low": low, "ci_high": high, "targets": len(g)}
        texts.append(f"{TITLES[m]}: robustness {100 * robustness:.0f}% ({where}), Certified GridPG {mean:.2f} "
                     f"(95% CI {low:.2f}-{high:.2f}, {len(g)} targets)")
    measured = "; ".join(texts) + f" (K = {k:g}%)"
    if robust_ok and chance_ok:
        verdict, why = "agrees", ("Their Final-layer maps of a GAP->linear head are constant up to float rounding, "
                                  "so they are stable under noise and carry no information about the target cell.")
    elif not robust_ok or outside:
        verdict = "disagrees"
        why = ("They are not robust here." if not robust_ok else
               "Their Certified GridPG lies outside the chance band: with a tie-exact threshold a near-constant map "
               "certifies little or nothing as '1', and an empty certificate scores 0.")
    else:
        verdict, why = "inconclusive", "The GridPG interval is too wide to place inside the chance band."
    return Verdict(FINDINGS[fid], verdict, measured, why, stats)


def faithfulness_scores(faith):
    """Per (model, image, method, layer): 1 - p after the first deletion step / p clean, clipped to [0, 1]."""
    first = faith[faith.step == 1]
    out = first[["model", "image_id", "method", "layer", "relative_probability"]].copy()
    out["faithfulness"] = (1.0 - out.relative_probability).clip(0.0, 1.0)
    return out


def _gridpg_means(loc, layer: str):
    sigma0, k = float(loc.sigma.min()), float(loc.k.max())
    part = _select(loc, sigma=sigma0, k=k, layer=layer)
    return part.groupby("method").certified_gridpg.mean()


def check_localization_faithfulness(loc, faith) -> Verdict:
    fid = "localization_faithfulness"
    if loc is None or faith is None or not len(loc) or not len(faith):
        return _not_tested(fid, "the localization or the faithfulness table is missing")
    g = _gridpg_means(loc, "input")
    f = faithfulness_scores(faith)
    f = f[f.layer == "input"].groupby("method").faithfulness.mean()
    common = sorted(set(g.index) & set(f.index))
    if len(common) < 4:
        return _not_tested(fid, f"only {len(common)} methods have both measures at the Input layer (4 needed)")
    x, y = g[common].to_numpy(float), f[common].to_numpy(float)
    rho, p_pos, p_neg = _spearman_permutation(x, y)
    order = sorted(common, key=lambda m: -g[m])
    measured = (f"Spearman rho = {rho:.2f} over {len(common)} Input-layer methods (one-sided permutation p = "
                f"{_fmt_p(p_pos)}); by Certified GridPG: " + ", ".join(
                    f"{TITLES.get(m, m)} {g[m]:.2f}/{f[m]:.2f}" for m in order) + " (GridPG/faithfulness)")
    if rho > 0 and p_pos < TEST_LEVEL:
        verdict, why = "agrees", "The methods that put their certified pixels on the target also remove its evidence."
    elif rho < 0 and p_neg < TEST_LEVEL:
        verdict, why = "disagrees", "The better-localizing methods are the less faithful ones here."
    else:
        verdict, why = "inconclusive", "With this few methods and images the rank correlation is not significant."
    return Verdict(FINDINGS[fid], verdict, measured, why, {"rho": rho, "p_positive": p_pos, "p_negative": p_neg,
                                                           "methods": common})


def _spearman_permutation(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Spearman's rho and its exact one-sided permutation p-values (rho >= observed, rho <= observed)."""
    import itertools

    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)

    def rho_of(a, b):
        a, b = a - a.mean(), b - b.mean()
        denom = math.sqrt((a * a).sum() * (b * b).sum())
        return float((a * b).sum() / denom) if denom > 0 else 0.0

    observed = rho_of(rx, ry)
    if len(x) <= 8:
        perms = [rho_of(rx, ry[list(p)]) for p in itertools.permutations(range(len(x)))]
    else:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(0)))
        perms = [rho_of(rx, rng.permutation(ry)) for _ in range(20000)]
    perms = np.asarray(perms)
    return observed, float((perms >= observed - 1e-12).mean()), float((perms <= observed + 1e-12).mean())


def check_rise_lrp_balance(rob, loc, faith, *, layer: str = "input", seed: int = 0) -> Verdict:
    """Balance = geometric mean of robustness, Certified GridPG and faithfulness; images and grid targets
    are resampled independently in the bootstrap."""
    fid = "rise_lrp_balance"
    if any(t is None or not len(t) for t in (rob, loc, faith)):
        return _not_tested(fid, "the robustness, localization or faithfulness table is missing")
    sigma0 = float(rob.sigma.min())
    r = _select(rob, sigma=sigma0, layer=layer)
    l = _select(loc, sigma=float(loc.sigma.min()), layer=layer)
    f = faithfulness_scores(faith)
    f = f[f.layer == layer]
    methods = sorted(set(r.method) & set(l.method) & set(f.method))
    if not {"rise", "lrp"} <= set(methods):
        missing = _titles(sorted({"rise", "lrp"} - set(methods)))
        verb = "lacks" if len({"rise", "lrp"} - set(methods)) == 1 else "lack"
        return _not_tested(fid, f"{missing} {verb} one of the three measures at the {layer.capitalize()} layer")
    if len(methods) < 3:
        return _not_tested(fid, "no third method to compare with")
    images = sorted(set(r.image_id) & set(f.image_id))
    targets = sorted(set(zip(l.grid_id, l.target_cell)))
    # per-unit matrices (unit x method): robustness per image (mean over K of the pixel fractions), GridPG
    # per target (mean over K), faithfulness per image
    rob_m = r.groupby(["image_id", "method"]).robustness.mean().unstack()[methods].loc[images].to_numpy(float)
    loc_m = l.groupby(["grid_id", "target_cell", "method"]).certified_gridpg.mean().unstack()[methods]
    loc_m = loc_m.loc[targets].to_numpy(float)
    fa_m = f.groupby(["image_id", "method"]).faithfulness.mean().unstack()[methods].loc[images].to_numpy(float)
    i_rise, i_lrp = methods.index("rise"), methods.index("lrp")
    others = [j for j in range(len(methods)) if j not in (i_rise, i_lrp)]

    def balance(img_idx, tgt_idx):
        rb = np.nanmean(rob_m[img_idx], axis=0)
        lc = np.nanmean(loc_m[tgt_idx], axis=0)
        fa = np.nanmean(fa_m[img_idx], axis=0)
        return np.cbrt(np.clip(rb, 0, None) * np.clip(lc, 0, None) * np.clip(fa, 0, None))

    def margin(img_idx, tgt_idx):
        b = balance(img_idx, tgt_idx)
        return min(b[i_rise], b[i_lrp]) - max(b[j] for j in others)

    est, low, high = bootstrap_interval([np.arange(len(images)), np.arange(len(targets))], margin, seed=seed)
    b = balance(np.arange(len(images)), np.arange(len(targets)))
    ranking = sorted(range(len(methods)), key=lambda j: -b[j])
    measured = (f"{layer.capitalize()} layer, balance (robustness x GridPG x faithfulness)^(1/3): " + ", ".join(
        f"{TITLES.get(methods[j], methods[j])} {b[j]:.2f}" for j in ranking) +
        f"; min(RISE, LRP) - best other = {est:+.2f} (95% CI {low:+.2f} to {high:+.2f}; {len(images)} images, "
        f"{len(targets)} grid targets)")
    if low > 0:
        verdict, why = "agrees", "RISE and LRP are ahead of every other method on the combined score."
    elif high < 0:
        verdict = "disagrees"
        best_other = TITLES.get(methods[max(others, key=lambda j: b[j])], "another method")
        why = f"{best_other} balances the three measures better than at least one of RISE and LRP here."
    else:
        verdict, why = "inconclusive", "The margin's interval includes 0: the run cannot separate the leaders."
    return Verdict(FINDINGS[fid], verdict, measured, why, {"margin": est, "ci_low": low, "ci_high": high,
                                                           "balance": dict(zip(methods, map(float, b)))})


# --- presentation -------------------------------------------------------------------------------
VERDICT_LABEL = {"agrees": "agrees", "disagrees": "disagrees", "inconclusive": "inconclusive",
                 "not tested": "not tested"}


def findings_frame(verdicts: Sequence[Verdict]):
    """A DataFrame for display: finding, paper, this run, verdict, why, criterion."""
    import pandas as pd

    return pd.DataFrame([{"finding": v.finding.title, "the paper reported": v.finding.paper,
                          "this run measured": v.measured, "verdict": VERDICT_LABEL[v.verdict], "why": v.why,
                          "criterion": v.finding.criterion} for v in verdicts])


def write_findings(verdicts: Sequence[Verdict], results_dir, chapter: str) -> Path:
    path = Path(results_dir) / f"findings_{chapter}.json"
    atomic_write_bytes(path, json.dumps([v.to_dict() for v in verdicts], indent=1, default=float).encode())
    return path


def read_findings(results_dir) -> dict[str, dict]:
    """Every chapter's saved verdicts, by finding id."""
    out = {}
    for path in sorted(Path(results_dir).glob("findings_*.json")):
        for row in json.loads(path.read_text()):
            out[row["id"]] = row
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(results_dir, profile: str) -> str:
    """The introduction's findings table (MyST Markdown) from the chapters' saved verdicts."""
    saved = read_findings(results_dir)
    lines = [f"Profile **{profile}**. Each verdict is computed in the chapter named in the first column from that "
             f"run's numbers, with the criterion stated there (bootstrap intervals at {CONFIDENCE:.0%}, tests at "
             f"level {TEST_LEVEL}).", "", "```{div} full-width", "",
             "| finding (chapter) | the paper reported | this run measured | verdict: why |",
             "|---|---|---|---|"]
    for fid, finding in FINDINGS.items():
        row = saved.get(fid)
        name = f"**{_cell(finding.title)}** ({{doc}}`{finding.chapter} <chapters/{finding.chapter}>`)"
        if row is None:
            lines.append(f"| {name} | {_cell(finding.paper)} | not run in this build | "
                         f"**{VERDICT_LABEL['not tested']}**: the chapter was not executed. |")
            continue
        why = row["why"]
        lines.append(f"| {name} | {_cell(finding.paper)} | {_cell(row['measured'])} | "
                     f"**{VERDICT_LABEL[row['verdict']]}**: {_cell(why)} |")
    lines += ["", "```"]
    return "\n".join(lines) + "\n"


def findings_html(verdicts: Sequence[Verdict], caption: str = "Findings checked in this chapter"):
    """The chapter's rows of the findings table as HTML (IPython ``HTML``): finding, what the paper reported,
    what this run measured, the verdict with its reason, and under each row the criterion that decided it."""
    from html import escape

    from IPython.display import HTML

    rows = []
    for v in verdicts:
        rows.append(f"<tr><td><b>{escape(v.finding.title)}</b></td><td>{escape(v.finding.paper)}</td>"
                    f"<td>{escape(v.measured)}</td><td><b>{VERDICT_LABEL[v.verdict]}</b>: {escape(v.why)}</td></tr>")
        rows.append(f"<tr class='certattr-criterion'><td colspan='4'><i>Criterion:</i> {escape(v.finding.criterion)}"
                    f"</td></tr>")
    return HTML(f"<table class='certattr-findings'><caption>{escape(caption)}</caption><thead><tr><th>finding</th>"
                f"<th>the paper reported</th><th>this run measured</th><th>verdict: why</th></tr></thead><tbody>"
                + "".join(rows) + "</tbody></table>")
