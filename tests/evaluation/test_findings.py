"""Verdicts on the paper's findings: each check agrees on data built to agree, disagrees on data built
to disagree, and is inconclusive or 'not tested' where the data cannot decide."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, spearmanr

from certattr.evaluation import findings as F
from certattr.evaluation.tables import pooled
from certattr.evaluation.metrics import certified_components, pooled_fractions

RNG = np.random.default_rng(0)


def rob_rows(values, *, sigmas=(0.15,), ks=(50.0,), taus=(0.75,), n_pixels=10000, components=None,
             methods=("grad", "ixg", "lrp", "rise", "occlusion")):
    """values(image, method, layer, sigma, k, tau) -> (certified_1 fraction, abstain fraction)."""
    rows = []
    for image in [f"im{i}" for i in range(8)]:
        for method in methods:
            for layer in ("input", "final"):
                for sigma in sigmas:
                    for tau in taus:
                        for k in ks:
                            c1, ab = values(image, method, layer, sigma, k, tau)
                            n1, na = int(round(c1 * n_pixels)), int(round(ab * n_pixels))
                            row = {"image_id": image, "model": "m", "method": method, "layer": layer, "sigma": sigma,
                                   "tau": tau, "k": k, "radius": sigma * 0.6745, "n_pixels": n_pixels,
                                   "n_certified_1": n1, "n_abstain": na, "n_certified_0": n_pixels - n1 - na,
                                   "certified_1": n1 / n_pixels, "abstain": na / n_pixels, "robustness": 1 - na / n_pixels}
                            if components:
                                row.update(components(image, method, layer, k, n1))
                            rows.append(row)
    return pd.DataFrame(rows)


def test_sign_test_and_bootstrap_match_independent_computations():
    d = np.array([1.0, 2.0, -0.5, 3.0, 0.0, 4.0, 1.5])
    pos, neg, p = F.sign_test(d)
    assert (pos, neg) == (5, 1) and math.isclose(p, binomtest(5, 6, 0.5).pvalue)
    x = RNG.normal(1.0, 1.0, 400)
    est, low, high = F.bootstrap_interval(x, np.mean)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert est == pytest.approx(x.mean()) and low == pytest.approx(x.mean() - 1.96 * se, abs=0.03)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.03)
    assert F.bootstrap_interval(x, np.mean) == (est, low, high)  # seeded


@pytest.mark.parametrize("shift, expected", [(0.05, "agrees"), (-0.05, "disagrees"), (0.0, "inconclusive")])
def test_direction_verdict(shift, expected):
    d = shift + np.random.default_rng(1).normal(0, 0.02, 60)
    if shift == 0.0:
        d = np.r_[d[:30], -d[:30]]  # symmetric: no direction
    assert F.direction_verdict(d)[0] == expected


@pytest.mark.parametrize("slope, expected", [(-0.2, "agrees"), (0.2, "disagrees")])
def test_sigma_trend(slope, expected):
    def values(image, method, layer, sigma, k, tau):
        base = 0.5 + 0.01 * RNG.normal()
        return 0.1, float(np.clip(0.4 - slope * (sigma - 0.15) * 5 + 0.005 * RNG.normal(), 0, 0.9))
    rob = rob_rows(values, sigmas=(0.15, 0.33))
    v = F.check_sigma_trend(rob)
    assert v.verdict == expected and v.statistics["units"] == 8 * 5 * 2
    assert "nan" not in v.measured


def test_sigma_trend_not_tested_with_one_sigma():
    rob = rob_rows(lambda *a: (0.1, 0.2))
    assert F.check_sigma_trend(rob).verdict == "not tested"


def test_tau_trend_agrees_when_more_abstain_at_larger_tau():
    rob = rob_rows(lambda im, m, l, s, k, tau: (0.1, 0.2 + (tau - 0.75) * 2 + 0.01 * RNG.random()), taus=(0.75, 0.9))
    assert F.check_tau_trend(rob).verdict == "agrees"


@pytest.mark.parametrize("share, expected", [(0.01, "agrees"), (0.4, "disagrees")])
def test_gradient_input(share, expected):
    def values(image, method, layer, sigma, k, tau):
        c1 = share * k / 100 if method in F.GRADIENT_METHODS else 0.3
        return float(np.clip(c1 * (1 + 0.1 * RNG.normal()), 0, 1)), 0.5
    v = F.check_gradient_input(rob_rows(values, methods=F.GRADIENT_METHODS + ("lrp", "rise")))
    assert v.verdict == expected
    for m in F.GRADIENT_METHODS:
        assert v.statistics[m]["share"] == pytest.approx(share, rel=0.1)


def test_gradient_input_not_tested_without_gradient_methods():
    rob = rob_rows(lambda *a: (0.1, 0.2))
    assert F.check_gradient_input(rob[~rob.method.isin(["grad", "ixg"])]).verdict == "not tested"


@pytest.mark.parametrize("small_px, expected", [(20.0, "agrees"), (5000.0, "disagrees")])
def test_small_k_detail(small_px, expected):
    def comps(image, method, layer, k, n1):
        size = (small_px if k == 10 else 1000.0) * (1 + 0.2 * RNG.random())
        return {"n_components_1": 3, "mean_component_px_1": size}
    rob = rob_rows(lambda im, m, l, s, k, t: (k / 200, 0.3), ks=(50.0, 10.0), components=comps)
    assert F.check_small_k_detail(rob).verdict == expected


def test_small_k_detail_is_inconclusive_when_small_k_certifies_nothing():
    """An empty certificate is no evidence about the size of what a small K certifies."""
    rob = rob_rows(lambda im, m, l, s, k, t: (0.0 if k == 10 else 0.2, 0.3), ks=(50.0, 10.0),
                   components=lambda im, m, l, k, n1: {"n_components_1": int(n1 > 0),
                                                       "mean_component_px_1": 100.0 if n1 else 0.0})
    assert F.check_small_k_detail(rob).verdict == "inconclusive"


def loc_rows(gridpg, *, methods=("grad", "gb", "ixg", "lrp", "rise", "occlusion"), layers=("input", "final"),
             n_targets=40, robustness=0.95):
    rows = []
    for t in range(n_targets):
        for m in methods:
            for layer in layers:
                g = float(np.clip(gridpg(m, layer) + 0.05 * RNG.normal(), 0, 1))
                rows.append({"grid_id": f"g{t // 4}", "target_cell": t % 4, "model": "m", "method": m, "layer": layer,
                             "sigma": 0.15, "k": 50.0, "certified_gridpg": g, "robustness": robustness})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("value, expected", [(0.02, "agrees"), (0.25, "inconclusive"), (0.8, "disagrees")])
def test_gradgb_final(value, expected):
    """Constant, as robust as any method, and Certified GridPG below chance: agrees; at chance: undecided (the
    interval contains 0.25); far above: they localize, which contradicts the claim."""
    loc = loc_rows(lambda m, l: value if m in ("grad", "gb") else 0.5)
    rob = rob_rows(lambda *a: (0.2, 0.02), methods=("grad", "gb", "ixg", "lrp", "rise"))
    rob["degenerate"] = np.where(rob.method.isin(["grad", "gb"]) & (rob.layer == "final"), "constant", "")
    assert F.check_gradgb_final(loc, rob).verdict == expected


def test_gradgb_final_disagrees_when_not_robust_or_not_constant():
    loc = loc_rows(lambda m, l: 0.02)
    rob = rob_rows(lambda im, m, l, s, k, t: (0.2, 0.5 if m in ("grad", "gb") else 0.02),
                   methods=("grad", "gb", "ixg", "lrp", "rise"))
    rob["degenerate"] = np.where(rob.method.isin(["grad", "gb"]) & (rob.layer == "final"), "constant", "")
    assert F.check_gradgb_final(loc, rob).verdict == "disagrees"
    not_constant = rob_rows(lambda *a: (0.2, 0.02), methods=("grad", "gb", "ixg")).assign(degenerate="")
    v = F.check_gradgb_final(loc, not_constant)
    assert v.verdict == "disagrees" and "almost constant" in v.why


def faith_rows(score, methods=("grad", "ixg", "lrp", "rise", "occlusion")):
    rows = []
    for i in range(8):
        for m in methods:
            for layer in ("input", "final"):
                rel = float(np.clip(1 - score(m) + 0.02 * RNG.normal(), 0, 2))
                for step in (0, 1):
                    rows.append({"model": "m", "image_id": f"im{i}", "method": m, "layer": layer, "step": step,
                                 "relative_probability": 1.0 if step == 0 else rel})
    return pd.DataFrame(rows)


ORDER = {"grad": 0.1, "ixg": 0.2, "occlusion": 0.3, "lrp": 0.6, "rise": 0.7}


@pytest.mark.parametrize("sign, expected", [(1, "agrees"), (-1, "disagrees")])
def test_localization_faithfulness(sign, expected):
    loc = loc_rows(lambda m, l: ORDER.get(m, 0.25), methods=tuple(ORDER))
    faith = faith_rows(lambda m: 0.5 + sign * (ORDER[m] - 0.4))
    v = F.check_localization_faithfulness(loc, faith)
    assert v.verdict == expected
    g = loc[(loc.layer == "input")].groupby("method").certified_gridpg.mean()
    from certattr.evaluation.metrics import faithfulness_scores
    f = faithfulness_scores(faith)
    f = f[f.layer == "input"].groupby("method").faithfulness.mean()
    assert v.statistics["rho"] == pytest.approx(spearmanr(g[sorted(ORDER)], f[sorted(ORDER)]).statistic)


def test_spearman_permutation_p_is_exact():
    rho, p_pos, _ = F.spearman_permutation(np.arange(5.0), np.arange(5.0))
    assert rho == pytest.approx(1.0) and p_pos == pytest.approx(1 / 120)


@pytest.mark.parametrize("leaders, expected", [(("rise", "lrp"), "agrees"), (("occlusion", "grad"), "disagrees")])
def test_rise_lrp_balance(leaders, expected):
    good = lambda m: 0.8 if m in leaders else 0.3
    rob = rob_rows(lambda im, m, l, s, k, t: (0.1, 1 - good(m)))
    loc = loc_rows(lambda m, l: good(m), methods=("grad", "ixg", "lrp", "rise", "occlusion"))
    faith = faith_rows(good)
    v = F.check_rise_lrp_balance(rob, loc, faith)
    assert v.verdict == expected, v.measured


def test_rise_lrp_balance_not_tested_without_rise():
    rob = rob_rows(lambda *a: (0.1, 0.2))
    loc = loc_rows(lambda m, l: 0.3, methods=("grad", "ixg", "lrp"))
    assert F.check_rise_lrp_balance(rob, loc, faith_rows(lambda m: 0.4)).verdict == "not tested"


def test_rise_lrp_balance_is_inconclusive_when_both_ran_but_no_third_method_is_ranked():
    """RISE and LRP measured on all three measures, every other method's first step removed nothing: measured but
    undecidable, so "inconclusive" (the labelling rule), not "not tested", and both balances are shown."""
    level = {"grad": 0.1, "ixg": 0.2, "lrp": 0.3, "rise": 0.4}  # distinct methods (equal ones would count once)
    rob = rob_rows(lambda im, m, *a: (0.1, level[m]), methods=tuple(level))
    loc = loc_rows(lambda m, l: level[m], methods=tuple(level))
    faith = faith_rows(lambda m: level[m], methods=tuple(level))
    faith["n_removed"] = np.where(faith.method.isin(["lrp", "rise"]) & (faith.step == 1), 100, 0)
    v = F.check_rise_lrp_balance(rob, loc, faith)
    assert v.verdict == "inconclusive", v.measured
    assert not v.measured.startswith("not measured") and "RISE" in v.measured and "LRP" in v.measured
    assert set(v.statistics["balance"]) == {"lrp", "rise"}


def _book_claims():
    """[(chapter stem, its Finding objects)] as the build passes them, from the chapters' declarations."""
    from certattr.book.chapters import chapters
    from certattr.book.chapters.declaration import PAPER_DOMAIN

    return [(c.stem, list(c.findings)) for c in chapters(PAPER_DOMAIN.name) if c.findings]


def test_summary_lists_every_finding_and_reads_saved_verdicts(tmp_path):
    rob = rob_rows(lambda im, m, l, s, k, t: (0.1, 0.2 + s), sigmas=(0.15, 0.33))
    F.write_findings([F.check_sigma_trend(rob)], tmp_path, "robustness")
    text = F.summary_markdown(tmp_path, "cpu", _book_claims())
    paper_part = text.split("**Beyond the paper.**")[0]
    for finding in F.FINDINGS.values():
        assert finding.title in paper_part
    assert "**agrees**:" in text and paper_part.count("was not executed in this build") == len(F.FINDINGS) - 1
    assert "nan" not in text.lower().replace("finan", "")


def test_summary_gives_every_related_claim_a_row_with_its_saved_verdict(tmp_path):
    from certattr.book.build import write_findings_page

    groups = _book_claims()
    where = {f.id: stem for stem, claims in groups for f in claims}
    related = [f for _, claims in groups for f in claims if f.id not in F.FINDINGS]
    first = related[0]
    F.write_findings([F.Verdict(first, "disagrees", "measured 0.12", "because 0.12 < 0.5")], tmp_path, where[first.id])
    text = F.summary_markdown(tmp_path, "cpu", groups)
    paper_part, related_part = text.split("**Beyond the paper.**")
    assert f"{len(related)} claims" in related_part and "1 disagrees" in related_part
    for finding in related:
        assert finding.title in related_part and finding.title not in paper_part
        assert f"<chapters/{where[finding.id]}>" in related_part
    assert "**disagrees**: because 0.12 < 0.5" in related_part
    assert related_part.count("was not executed in this build") == len(related) - 1
    # the book's page (written by the build) lists them too
    results = tmp_path / "root" / "book" / "chapters" / "results" / "cpu"
    F.write_findings([F.Verdict(first, "agrees", "measured 0.9", "because 0.9 > 0.5")], results, where[first.id])
    page = write_findings_page("cpu", root=tmp_path / "root").read_text()
    assert all(f.title in page for f in related) and "**agrees**: because 0.9 > 0.5" in page


def test_certified_components_against_a_brute_force_flood_fill():
    lab = (RNG.random((30, 30)) < 0.3).astype(np.int8)
    seen, sizes = np.zeros_like(lab, bool), []
    for y in range(30):
        for x in range(30):
            if lab[y, x] == 1 and not seen[y, x]:
                stack, size = [(y, x)], 0
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    size += 1
                    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < 30 and 0 <= nx < 30 and lab[ny, nx] == 1 and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
                sizes.append(size)
    out = certified_components(lab)
    assert out["n_components_1"] == len(sizes) and out["mean_component_px_1"] == pytest.approx(np.mean(sizes))
    assert certified_components(np.zeros((4, 4))) == {"n_components_1": 0, "mean_component_px_1": 0.0}


def test_pooled_frame_equals_pooled_fractions_of_the_label_maps():
    """The one pooling function of the chapters (tables.pooled, on tidy rows) against metrics'
    pooled_fractions on the label maps themselves."""
    maps = [RNG.choice([-1, 0, 1], size=(8, 9 + i)) for i in range(4)]  # images of different sizes
    rows = []
    for i, lm in enumerate(maps):
        rows.append({"image_id": i, "method": "grad", "n_pixels": lm.size, "n_certified_1": int((lm == 1).sum()),
                     "n_certified_0": int((lm == 0).sum()), "n_abstain": int((lm == -1).sum())})
    out = pooled(pd.DataFrame(rows), ["method"]).iloc[0]
    ref = pooled_fractions(maps)
    for col in ("certified_1", "certified_0", "abstain", "robustness"):
        assert out[col] == pytest.approx(ref[col])
    assert out.n_images == 4


def test_balance_table_against_a_loop():
    """The trade-off chapter's table and the balance verdicts share balance_parts: recompute each number with a
    plain loop (mean over images / grid targets at each K, geometric mean, mean over K)."""
    rob = rob_rows(lambda im, m, l, s, k, t: (0.1, 0.1 + 0.05 * ("rise", "lrp", "grad", "ixg", "occlusion").index(m)),
                   ks=(50.0, 10.0))
    loc = loc_rows(lambda m, l: ORDER.get(m, 0.25), methods=tuple(ORDER))
    loc = pd.concat([loc, loc.assign(k=10.0, certified_gridpg=loc.certified_gridpg * 0.9)])
    faith = faith_rows(lambda m: ORDER[m])
    table, _ = F.balance_table(rob, loc, faith)
    assert len(table) == 2 * len(ORDER)
    for _, p in table.iterrows():
        per_k = []
        for k in (50.0, 10.0):
            r = rob[(rob.method == p.method) & (rob.layer == p.layer) & (rob.k == k)].robustness.mean()
            g = loc[(loc.method == p.method) & (loc.layer == p.layer) & (loc.k == k)].certified_gridpg.mean()
            per_k.append((r, g))
        f = faith[(faith.method == p.method) & (faith.layer == p.layer) & (faith.step == 1)]
        drop = (1 - f.relative_probability).mean()
        assert p.robustness == pytest.approx(np.mean([r for r, _ in per_k]))
        assert p.certified_gridpg == pytest.approx(np.mean([g for _, g in per_k]))
        assert p.faithfulness == pytest.approx(drop)
        assert p.balance == pytest.approx(np.mean([np.sqrt(r * g) for r, g in per_k]))
        assert p.balance3 == pytest.approx(np.mean([np.cbrt(r * g * max(drop, 0)) for r, g in per_k]))
    # the figure's whiskers: intervals around the means (8 images, 40 grid targets), none below 8 clusters
    tol = 1e-12
    assert ((table.robustness_low <= table.robustness + tol) & (table.robustness <= table.robustness_high + tol)).all()
    assert ((table.gridpg_low < table.certified_gridpg) & (table.certified_gridpg < table.gridpg_high)).all()
    few, _ = F.balance_table(rob[rob.image_id.isin(["im0", "im1", "im2"])], loc, None)
    assert few.robustness_low.isna().all() and few.gridpg_low.notna().all()


def test_gridpg_intervals_cover_the_mean_and_shrink_with_more_targets():
    from certattr.evaluation.tables import gridpg_intervals

    few = gridpg_intervals(loc_rows(lambda m, l: 0.5, n_targets=8), ["method", "layer"])
    many = gridpg_intervals(loc_rows(lambda m, l: 0.5, n_targets=200), ["method", "layer"])
    assert ((few.low <= few.value) & (few.value <= few.high)).all()
    assert (many.high - many.low).mean() < (few.high - few.low).mean() / 2
    assert many.value.sub(0.5).abs().max() < 0.02 and (many.targets == 200).all()


def test_two_and_three_way_balance_average_over_the_same_k():
    """Occlusion certifies nothing '1' in most grid targets at K = 10% (not ranked there, so the two-way comparison
    uses K = 50% only) and its first deletion step removes nothing (left out of the three-way balance): the three-way
    balance still uses the two-way comparison's K, so each row's balance3 is ∛(robustness × GridPG × drop) of the
    row's own columns."""
    methods = ("grad", "ixg", "lrp", "rise", "occlusion")
    rob = rob_rows(lambda im, m, l, s, k, t: (0.1, 0.1 + 0.05 * methods.index(m)), ks=(50.0, 10.0), methods=methods)
    loc = loc_rows(lambda m, l: ORDER.get(m, 0.25), methods=methods).assign(no_certified=0.0)
    small = loc.assign(k=10.0, certified_gridpg=loc.certified_gridpg * 0.5,
                       no_certified=np.where(loc.method == "occlusion", 1.0, 0.0))
    loc = pd.concat([loc, small])
    faith = faith_rows(lambda m: ORDER[m], methods=methods)
    faith["n_removed"] = np.where((faith.method == "occlusion") | (faith.step == 0), 0, 100)
    table, _ = F.balance_table(rob, loc, faith)
    assert set(table.ks) == {"50"}
    for _, p in table[table.balance3.notna()].iterrows():
        assert p.method != "occlusion"
        assert p.balance3 == pytest.approx(np.cbrt(p.robustness * p.certified_gridpg * max(p.faithfulness, 0)))
    v = F.check_rise_lrp_balance(rob, loc, faith)
    rows = table[table.layer == "input"].set_index("method")
    assert v.statistics["balance"]["rise"] == pytest.approx(rows.loc["rise", "balance3"])
