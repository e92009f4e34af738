"""The numbers the papers print, copied here with where each is printed, so that a table can show them beside this
run's numbers, marked as the paper's.

Only numbers a paper prints in its text or its tables; nothing is read off a figure. Anani et al.'s paper and
rebuttal report their results in figures (bars and curves without printed values), so what they print as numbers
is the certified radius of each noise level; the uniform-smoothing submission prints its radii in tables.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaperNumber", "ANANI_RADII", "ANANI_TAU", "UNIFORM_TABLE9", "UNIFORM_TABLE7", "paper_radius"]


@dataclass(frozen=True)
class PaperNumber:
    """One printed number: ``value``, ``what`` it is, ``source`` (paper, table or section) and ``digits``, the
    decimals it is printed with (a table shows it as printed: 0.10, not 0.100)."""

    value: float
    what: str
    source: str
    digits: int = 2

    @property
    def printed(self) -> str:
        """The number as the paper prints it ("0.10")."""
        return f"{self.value:.{self.digits}f}"


_REBUTTAL_RADII = "Anani et al. 2025, rebuttal Sec. 1.1 and Figures 1 and 3"

#: the certified radius R = σ·Φ⁻¹(τ) the rebuttal prints for each noise level σ (at τ = 0.75): "certified radii
#: (R = 0.10, 0.17, 0.22)"
ANANI_RADII = {0.15: PaperNumber(0.10, "certified radius R at σ = 0.15", _REBUTTAL_RADII),
               0.25: PaperNumber(0.17, "certified radius R at σ = 0.25", _REBUTTAL_RADII),
               0.33: PaperNumber(0.22, "certified radius R at σ = 0.33", _REBUTTAL_RADII)}
ANANI_TAU = 0.75  #: the τ at which those radii hold


def paper_radius(sigma: float, tau: float) -> PaperNumber | None:
    """The radius the rebuttal prints for ``sigma`` (at its τ = 0.75), or None where it prints none."""
    if abs(float(tau) - ANANI_TAU) > 1e-9:
        return None
    for s, number in ANANI_RADII.items():
        if abs(float(sigma) - s) < 1e-9:
            return number
    return None


_TABLE9 = "arXiv 2405.06361, Table 9"
#: the minimum ℓ2 ball radius r the uniform-smoothing submission needs for cos ≥ T = 0.9 under a perturbation of size
#: ε ("Standard" model), {dataset: {ε: PaperNumber}}
UNIFORM_TABLE9 = {
    "MNIST": {0.5: PaperNumber(5.1902, "minimum r for cos ≥ 0.9 at ε = 0.5", _TABLE9, 4),
              1.0: PaperNumber(5.8752, "minimum r for cos ≥ 0.9 at ε = 1.0", _TABLE9, 4)},
    "CIFAR-10": {0.5: PaperNumber(5.9752, "minimum r for cos ≥ 0.9 at ε = 0.5", _TABLE9, 4),
                 1.0: PaperNumber(7.9504, "minimum r for cos ≥ 0.9 at ε = 1.0", _TABLE9, 4)},
    "ImageNet": {0.5: PaperNumber(74.6272, "minimum r for cos ≥ 0.9 at ε = 0.5", _TABLE9, 4),
                 1.0: PaperNumber(149.2544, "minimum r for cos ≥ 0.9 at ε = 1.0", _TABLE9, 4)},
}

_TABLE7 = "arXiv 2405.06361, Table 7"
#: the largest ε the submission certifies on ImageNet for a ball radius r, {T: {r: PaperNumber}}
UNIFORM_TABLE7 = {
    0.9: {r: PaperNumber(v, f"largest certified ε on ImageNet at r = {r:g}, T = 0.9", _TABLE7, 4)
          for r, v in zip((0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5), (0.0046, 0.0100, 0.0152, 0.0295, 0.0494, 0.0628, 0.0768))},
    0.8: {r: PaperNumber(v, f"largest certified ε on ImageNet at r = {r:g}, T = 0.8", _TABLE7, 4)
          for r, v in zip((0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5), (0.0058, 0.0127, 0.0196, 0.0369, 0.0618, 0.0820, 0.1040))},
}
