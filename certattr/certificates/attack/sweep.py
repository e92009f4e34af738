"""The certified-pixel attack over a grid of eps / R, beside its control, as one tidy table.

    certificate = PixelCertificateSettings(MethodAtLayer("ixg", "final"), 0.25, cert=CertConfig(ks=(50,)))
    sweep = pixel_attack_sweep(model, image, cert, certificate=certificate, eps_multiples=[0.5, 1, 10],
                               attack=PixelAttackSettings(steps=10, n_attack=2),
                               targets=TargetSettings(k=50, eval_n=200), image_id="chelsea")
    sweep.table                         # one row per (eps / R, target group, perturbation)
    sweep.flips("certified")            # flipped certified targets per eps / R, attacked (eps = 0: x itself)

Two groups of targets (:func:`certattr.certificates.attack.targets.choose_targets`): the certified pixels at K
nearest their decision boundary, and uncertified pixels with a clear majority. At every eps = m R (R the
certificate's radius, m in ``eps_multiples``; m = 0 is always added) each group is attacked
(:func:`certattr.certificates.attack.certified.attack_certified`, m > 0), and x + a random direction of norm eps
(:func:`certattr.certificates.attack.flips.random_perturbation`; at m = 0, x itself) is the control, evaluated
once for both groups. Every perturbed image is evaluated with ``eval_n`` fresh samples of the evaluation seed:
a target is flipped when at most half of them give it its label, confidently flipped when a one-sided binomial
test rejects "the label is kept" at level alpha / (targets in the group).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ...engine.certificate import Certificate
from ...engine.config import SamplingConfig
from ...engine.validation import CertattrError, check_finite_number, check_image
from ...models.registry import LoadedModel
from ..checks import check_settings
from ..settings import PixelCertificateSettings
from .certified import attack_certified
from .flips import random_perturbation, target_flips
from .loop import AttackResult
from .membership import smoothed_membership
from .settings import PixelAttackSettings, TargetSettings
from .surrogate import predicted_class
from .targets import (TARGET_GROUPS, attacked_k, choose_targets, evaluation_of, reference_labels,
                      selection_agreement)

__all__ = ["PixelAttackSweep", "pixel_attack_sweep", "class_constraint_counts"]

#: the perturbation column's values: the attack, its control, and x itself (eps = 0, shared by both series)
ATTACK, RANDOM, NONE = "attack", "random δ", "none (x)"


@dataclass
class PixelAttackSweep:
    """The outcome of :func:`pixel_attack_sweep`.

    ``table``: one row per (eps / R, target group, perturbation), sorted by group, perturbation and eps / R, with
    the columns "ε / R", "ε" ([0,1] pixel units, l2), "targets" (the group), "perturbation" ("attack",
    "random δ", or "none (x)" at eps = 0), "‖δ‖ used" (the attack's norm; eps for the control), "flipped",
    "flipped (confident)", "of" (targets in the group), "fraction flipped" and "seconds" (wall time).
    ``targets``/``references``: per group, the flat pixel indices and their labels at x (0/1);
    ``attacks``: the :class:`AttackResult` per (eps / R, group) with eps > 0; ``certificate``, ``attack`` and
    ``target_settings`` (its K filled in): the settings the sweep was given, for one more attack of the same
    setting (:func:`attack_certified` with ``clean`` the sweep's certificate).
    """

    table: pd.DataFrame
    eps_multiples: list
    radius: float
    targets: dict
    references: dict
    attacks: dict = field(default_factory=dict)
    certificate: PixelCertificateSettings | None = None
    attack: PixelAttackSettings | None = None
    target_settings: TargetSettings | None = None

    def series(self, group: str, kind: str = ATTACK) -> pd.DataFrame:
        """The rows of ``group`` under ``kind`` ("attack" or "random δ") by increasing eps / R; eps = 0, the
        unperturbed x, belongs to both series."""
        rows = self.table[(self.table["targets"] == group) & self.table["perturbation"].isin([kind, NONE])]
        return rows.sort_values("ε / R")

    def flips(self, group: str, kind: str = ATTACK, confident: bool = False) -> pd.Series:
        """Flipped targets of ``group`` per eps / R (the index) under ``kind`` (see :meth:`series`);
        ``confident``: the binomial test's count."""
        return self.series(group, kind).set_index("ε / R")["flipped (confident)" if confident else "flipped"]

    def flip_grid(self) -> pd.DataFrame:
        """The table for reading: one row per eps / R (index: eps / R and eps as text), one column per group and
        perturbation ("certified targets, attack", ...), cells "flipped (confidently flipped)"."""
        import pandas as pd  # pandas loads with the first table, not with the command line

        cells = {}
        for row in self.table.to_dict("records"):
            kinds = [ATTACK, RANDOM] if row["perturbation"] == NONE else [row["perturbation"]]
            for kind in kinds:
                column = f"{row['targets']} targets, {kind}"
                cells.setdefault((f"{row['ε / R']:g}", f"{row['ε']:.3f}"), {})[column] = (
                    f"{row['flipped']} ({row['flipped (confident)']})")
        grid = pd.DataFrame.from_dict(cells, orient="index").rename_axis(["ε / R", "ε"])
        grid = grid.loc[sorted(grid.index, key=lambda i: float(i[0]))]
        return grid[[f"{group} targets, {kind}" for group in TARGET_GROUPS for kind in (ATTACK, RANDOM)]]


def pixel_attack_sweep(model: LoadedModel, image: torch.Tensor, cert: Certificate, *,
                       certificate: PixelCertificateSettings, eps_multiples: Sequence[float],
                       attack: PixelAttackSettings = PixelAttackSettings(), targets: TargetSettings = TargetSettings(),
                       image_id: str, cache=None, progress: bool = False) -> PixelAttackSweep:
    """Attack the certified and the uncertified targets of ``cert`` at every eps = m R, beside the random control.

    ``cert``: the clean certificate of ``image`` (3, H, W) in [0,1] for the model's predicted class, made with
    ``certificate`` (method at layer, sigma, sampling, certification; its sigma, n, n0, tau, alpha, correction and
    ks are checked against ``cert``); R = ``cert.radius`` ([0,1] pixel units). ``eps_multiples``: the grid of
    eps / R (>= 0; 0 is added). ``targets``: the K (%) whose labels are attacked (``targets.k``, one of the
    certificate's ks; None: the largest), ``n_targets`` per group (:func:`choose_targets`; both groups, so
    ``targets.group`` is not used and ``targets.pixels`` must be None), ranked with ``select_n`` further fresh
    samples of :func:`select_seed` (0: none, read through ``cache``); every evaluation: ``eval_n`` fresh samples
    of the evaluation seed (no cache), at level eval_alpha (default alpha) / ``n_targets``. ``attack``: each
    attack's steps, restarts, noisy copies per step and objective (:func:`attack_certified`).
    """
    check_settings("certificate", certificate, PixelCertificateSettings)
    check_settings("attack", attack, PixelAttackSettings)
    check_settings("targets", targets, TargetSettings)
    x = check_image(image).cpu()
    multiples = sorted({check_finite_number("eps_multiples", m) for m in eps_multiples} | {0.0})
    if multiples[0] < 0:
        raise CertattrError(f"eps_multiples={list(eps_multiples)!r} is not allowed: each must be >= 0 (eps / R)")
    if targets.pixels is not None:
        raise CertattrError("pixels is not allowed in a sweep: it chooses the targets of each group itself; give "
                            "pixels=None")
    certificate.check_describes(cert)
    k = attacked_k(targets, cert.ks)
    seed, chunk_size = certificate.sampling.seed, certificate.sampling.chunk_size
    eval_seed, eval_alpha = evaluation_of(targets, seed, cert.alpha)
    n_targets, select_n, eval_n = targets.n_targets, targets.select_n, targets.eval_n
    radius = cert.radius
    label = int(predicted_class(model, x[None])[0])
    evaluation = SamplingConfig(n=eval_n, seed=eval_seed, chunk_size=chunk_size)

    extra = None
    if select_n > 0:
        extra = selection_agreement(model, x, label, cert, k, certificate=certificate, n=select_n, image_id=image_id,
                                    cache=cache)
    chosen = {group: choose_targets(cert, k, group, n_targets, seed, image_id, extra, select_n)
              for group in TARGET_GROUPS}
    references = {group: reference_labels(cert, k, t) for group, t in chosen.items()}
    target_settings = targets.replace(k=k)

    rows, attacks = [], {}

    def add_row(mult, group, kind, flips, norm_used, seconds):
        rows.append({"ε / R": mult, "ε": mult * radius, "targets": group, "perturbation": kind,
                     "‖δ‖ used": norm_used, "flipped": flips["flipped"],
                     "flipped (confident)": flips["confidently_flipped"], "of": len(chosen[group]),
                     "fraction flipped": flips["fraction_flipped"], "seconds": seconds})

    for mult in multiples:
        eps = mult * radius
        start = time.perf_counter()
        # the control: one evaluation of x + a random direction of norm eps serves both groups
        member = smoothed_membership(model, random_perturbation(x, eps, seed, image_id), label,
                                     attribution=certificate.attribution, k=k, sigma=certificate.sigma,
                                     sampling=evaluation, image_id=image_id)
        for group in TARGET_GROUPS:
            flips = target_flips(member, chosen[group], references[group], eval_n, eval_alpha)
            add_row(mult, group, RANDOM if mult > 0 else NONE, flips, eps, time.perf_counter() - start)
        if mult == 0:
            continue
        for group in TARGET_GROUPS:
            start = time.perf_counter()
            of_group = target_settings.replace(group=group, pixels=chosen[group], random_control=False)
            result = attack_certified(model, x, eps=eps, certificate=certificate, attack=attack, targets=of_group,
                                      image_id=image_id, clean=cert, progress=progress)
            attacks[(mult, group)] = result
            add_row(mult, group, ATTACK, result.details["attacked"], result.delta_norm, time.perf_counter() - start)
    import pandas as pd

    table = pd.DataFrame(rows).sort_values(["targets", "perturbation", "ε / R"]).reset_index(drop=True)
    return PixelAttackSweep(table=table, eps_multiples=multiples, radius=radius, targets=chosen,
                            references=references, attacks=attacks, certificate=certificate, attack=attack,
                            target_settings=target_settings)


def class_constraint_counts(results: Sequence[AttackResult]) -> dict:
    """How much keeping the predicted class bound the attacks: their "steps" in all (steps x restarts), the
    "halved" steps (one count per halving) and the "rejected" ones (no step even after the last halving)."""
    results = list(results)
    return {"steps": sum(r.steps * r.restarts for r in results),
            "halved": sum(r.details["backtracks"] for r in results),
            "rejected": sum(r.details["rejected_steps"] for r in results)}
