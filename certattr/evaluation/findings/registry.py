"""One check per claim of :data:`~certattr.evaluation.findings.claims.FINDINGS`, and the tables of a run they
read: :func:`check_claims` gives a chapter's verdicts (every claim it checks) from its :class:`RunTables`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .claims import FINDINGS, Verdict
from .evidence import RunSettings
from .faithfulness import (check_deletion_input_leaders, check_final_flip, check_gradcam_least_faithful_input,
                           check_gradgb_final_faithful_vgg, check_localization_faithfulness)
from .localization import check_gradgb_final, check_input_localization_leaders
from .robustness import (check_gradient_input, check_input_robust_leaders, check_input_small_k_balance,
                         check_k_trend_every_model, check_r_trend_every_model, check_sigma_trend, check_small_k_detail,
                         check_tau_trend)
from .tradeoff import check_rise_best_balance, check_rise_lrp_balance
from .vit import check_vit_activation_weak_final, check_vit_gradient_weak, check_vit_rise_robust

__all__ = ["RunTables", "CHECKS", "check_claims"]


@dataclass
class RunTables:
    """The tidy tables of one run (None where not run): ``robustness`` (photos), ``tau`` (the same samples at
    several τ), ``localization`` (grids), ``faithfulness`` (deletion rows), ``flips`` (one row per deletion
    curve), ``vit``; ``settings`` the photos' and the grids' method overrides (for the evidence rules)."""

    robustness: object = None
    tau: object = None
    localization: object = None
    faithfulness: object = None
    flips: object = None
    vit: object = None
    settings: RunSettings = field(default_factory=RunSettings)


def _grid(run: RunTables) -> RunSettings:
    s = run.settings
    return RunSettings(s.grid_method_overrides if s.grid_method_overrides is not None else s.method_overrides,
                       None, s.undefined)


#: claim id -> check(run, seed) -> Verdict
CHECKS: dict[str, Callable[[RunTables, int], Verdict]] = {
    "sigma_trend": lambda r, s: check_sigma_trend(r.robustness, settings=r.settings, seed=s),
    "tau_trend": lambda r, s: check_tau_trend(r.tau, settings=r.settings, seed=s),
    "r_trend_every_model": lambda r, s: check_r_trend_every_model(r.robustness, settings=r.settings, seed=s),
    "k_trend_every_model": lambda r, s: check_k_trend_every_model(r.robustness, settings=r.settings, seed=s),
    "gradient_input": lambda r, s: check_gradient_input(r.robustness, settings=r.settings, seed=s),
    "input_robust_leaders": lambda r, s: check_input_robust_leaders(r.robustness, settings=r.settings, seed=s),
    "input_small_k_balance": lambda r, s: check_input_small_k_balance(r.robustness, settings=r.settings, seed=s),
    "small_k_detail": lambda r, s: check_small_k_detail(r.robustness, settings=r.settings, seed=s),
    "gradgb_final": lambda r, s: check_gradgb_final(r.localization, r.robustness, settings=_grid(r), seed=s),
    "input_localization_leaders": lambda r, s: check_input_localization_leaders(r.localization, settings=_grid(r),
                                                                                seed=s),
    "deletion_input_leaders": lambda r, s: check_deletion_input_leaders(r.faithfulness, settings=r.settings, seed=s),
    "gradcam_least_faithful_input": lambda r, s: check_gradcam_least_faithful_input(r.faithfulness,
                                                                                    settings=r.settings, seed=s),
    "final_flip": lambda r, s: check_final_flip(r.flips, r.faithfulness, settings=r.settings),
    "localization_faithfulness": lambda r, s: check_localization_faithfulness(r.localization, r.faithfulness,
                                                                              settings=r.settings,
                                                                              grid_settings=_grid(r)),
    "gradgb_final_faithful_vgg": lambda r, s: check_gradgb_final_faithful_vgg(r.faithfulness, r.localization,
                                                                              settings=r.settings),
    "rise_lrp_balance": lambda r, s: check_rise_lrp_balance(r.robustness, r.localization, r.faithfulness,
                                                            settings=r.settings, grid_settings=_grid(r), seed=s),
    "rise_best_balance": lambda r, s: check_rise_best_balance(r.robustness, r.localization, settings=r.settings,
                                                              grid_settings=_grid(r), seed=s),
    "vit_gradient_weak": lambda r, s: check_vit_gradient_weak(r.vit, r.robustness, settings=r.settings, seed=s),
    "vit_rise_robust": lambda r, s: check_vit_rise_robust(r.vit, settings=r.settings),
    "vit_activation_weak_final": lambda r, s: check_vit_activation_weak_final(r.vit, r.robustness,
                                                                              settings=r.settings, seed=s),
}


def check_claims(run: RunTables, ids=None, *, seed: int = 0) -> list[Verdict]:
    """The verdicts of the claims ``ids`` (default: every claim of :data:`FINDINGS`, in its order) from the run's
    tables; a chapter passes the ids its declaration lists (:mod:`certattr.book.chapters`)."""
    ids = list(FINDINGS) if ids is None else list(ids)
    unknown = [i for i in ids if i not in CHECKS]
    if unknown:
        raise ValueError(f"claims {unknown} are unknown: the claims are {', '.join(FINDINGS)}")
    return [CHECKS[fid](run, seed) for fid in ids]
