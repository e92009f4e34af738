"""The paper's claims, checked against a run: what the paper and its rebuttal reported, what the run measured,
and a verdict computed from the run's numbers with a stated criterion.

* :mod:`.claims`: the paper's claims (:data:`FINDINGS`), each with its words, source, chapter and criterion;
  :mod:`.levine` and :mod:`.anytime` the related certificates' claims and checks; :mod:`.families` the one
  registry of every family, through which chapters name the claims they check;
* :mod:`.evidence`: which methods and settings may count as evidence (written once for every check);
* :mod:`.units`: what one measurement is (its whole identity), what an independent cluster is, which methods
  are one method on a model;
* :mod:`.stats`: cluster bootstrap intervals, sign test, rank correlation, proportion intervals;
* :mod:`.robustness`, :mod:`.localization`, :mod:`.faithfulness`, :mod:`.tradeoff`, :mod:`.vit`: the checks;
* :mod:`.registry`: one check per claim (:data:`CHECKS`) and :func:`check_claims` for a chapter;
* :mod:`.render`: the chapter's HTML rows, the saved JSON, the introduction's table.

Verdicts: ``agrees`` / ``disagrees`` (the criterion's interval lies on the paper's side / on the other side),
and the three labels of :data:`LABEL_RULE`: ``inconclusive`` (measured, the data do not decide), ``not tested``
(a method or setting the claim names did not run) and ``cannot test offline`` (the claim is about weights that
cannot be installed without a network). Bootstrap resampling is seeded, so the same tables give the same
verdicts.
"""
from __future__ import annotations

from .claims import FINDINGS, VERDICTS, Finding, Verdict
from .evidence import (MAX_EMPTY_SHARE, MIN_RISE_MASKS, PAPER_OCCLUSION, Evidence, RunSettings, admissible,
                       inflating_settings)
from .faithfulness import (check_deletion_input_leaders, check_final_flip, check_gradcam_least_faithful_input,
                           check_gradgb_final_faithful_vgg, check_localization_faithfulness)
from .localization import check_gradgb_final, check_input_localization_leaders
from .units import IDENTITY, cluster_labels, collapse_identical, identical_groups, paired
from .registry import CHECKS, RunTables, check_claims
from .render import (bottom_line, findings_frame, findings_html, identical_maps_text, read_findings, summary_markdown,
                     write_findings)
from .robustness import (GRADIENT_METHODS, check_gradient_input, check_input_robust_leaders,
                         check_input_small_k_balance, check_k_trend_every_model, check_r_trend_every_model,
                         check_sigma_trend, check_small_k_detail, check_tau_trend)
from .stats import (CONFIDENCE, MIN_CLUSTERS, N_BOOT, TEST_LEVEL, bootstrap_interval, cluster_bootstrap,
                    direction_verdict, proportion_interval, sign_test, spearman_permutation)
from .common import LABEL_RULE
from .tradeoff import balance_table, check_rise_best_balance, check_rise_lrp_balance
from .vit import check_vit_activation_weak_final, check_vit_gradient_weak, check_vit_rise_robust

__all__ = ["Finding", "Verdict", "FINDINGS", "VERDICTS", "RunSettings", "RunTables", "Evidence",
           "admissible", "inflating_settings", "MIN_RISE_MASKS", "PAPER_OCCLUSION", "MAX_EMPTY_SHARE", "CHECKS",
           "check_claims", "CONFIDENCE", "TEST_LEVEL", "N_BOOT", "bootstrap_interval", "sign_test",
           "direction_verdict", "spearman_permutation", "proportion_interval",
           "GRADIENT_METHODS", "findings_frame", "findings_html", "read_findings", "summary_markdown",
           "write_findings", "MIN_CLUSTERS", "cluster_bootstrap", "LABEL_RULE", "IDENTITY", "cluster_labels",
           "collapse_identical", "identical_groups", "paired", "bottom_line", "identical_maps_text", "balance_table"]
__all__ += sorted(name for name in list(globals()) if name.startswith("check_") and name != "check_claims")
