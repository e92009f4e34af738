"""The papers' printed numbers, as copied, agree with what they are said to be."""
import pytest
from scipy.stats import norm

from certattr.evaluation.paper_numbers import ANANI_RADII, ANANI_TAU, UNIFORM_TABLE9, paper_radius


def test_the_printed_radii_are_sigma_times_probit_tau_to_two_decimals():
    for sigma, number in ANANI_RADII.items():
        assert round(sigma * norm.ppf(ANANI_TAU), 2) == number.value
        assert "rebuttal" in number.source
    assert paper_radius(0.25, 0.75).value == 0.17 and paper_radius(0.15, 0.75).printed == "0.10"
    assert paper_radius(0.25, 0.9) is None and paper_radius(0.2, 0.75) is None  # the rebuttal prints no other


def test_table9_radii_grow_in_proportion_to_epsilon_on_imagenet():
    """At a fixed ‖h‖/M the bound needs r ∝ ε (the dimension is the same): the ImageNet row doubles exactly."""
    row = UNIFORM_TABLE9["ImageNet"]
    assert row[1.0].value == pytest.approx(2 * row[0.5].value, abs=1e-4)
    assert all(n.source == "arXiv 2405.06361, Table 9" for r in UNIFORM_TABLE9.values() for n in r.values())
