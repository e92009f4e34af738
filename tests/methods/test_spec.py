"""certattr.methods.spec: "name" and "name@layer" are parsed once into MethodAt; overrides merge per layer."""
import pytest

from certattr.engine.validation import CertattrError
from certattr.methods.spec import MethodAt, method_specs, overrides_at


def test_parse_and_cover():
    assert MethodAt.parse("rise@input") == MethodAt("rise", "input") and str(MethodAt("rise", "input")) == "rise@input"
    both = MethodAt.parse("lrp")
    assert both.layer is None and both.covers("lrp", "input") and both.covers("lrp", "final")
    assert not MethodAt.parse("lrp@final").covers("lrp", "input") and not both.covers("grad", "input")
    assert method_specs(["grad", "ixg@final", MethodAt("gb", "input")]) == (
        MethodAt("grad"), MethodAt("ixg", "final"), MethodAt("gb", "input"))


@pytest.mark.parametrize("spec, message", [("nope", "nope"), ("rise@middle", "must be one of input, final"),
                                           ("rise@", "must be one of input, final")])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(CertattrError, match=message):
        MethodAt.parse(spec)


def test_overrides_for_one_layer_win_over_both_layers():
    overrides = {"rise@input": {"n_masks": 100}, "rise": {"n_masks": 50, "p": 0.2}, "occlusion@final": {"stride": 1}}
    assert overrides_at(overrides, "rise", "input") == {"n_masks": 100, "p": 0.2}
    assert overrides_at(overrides, "rise", "final") == {"n_masks": 50, "p": 0.2}
    assert overrides_at(overrides, "occlusion", "input") == {} and overrides_at(None, "rise", "input") == {}


def test_a_correction_name_that_is_neither_is_an_error_not_holm():
    """Every correction the certificate applies is named in one table; the validation's list is that table's."""
    import numpy as np

    from certattr.engine.statistics import CORRECTION_RULES, holm_rejections, passes_correction
    from certattr.engine.validation import CORRECTIONS

    assert tuple(CORRECTION_RULES) == CORRECTIONS
    p = np.array([[0.001, 0.02], [0.04, 0.5]])
    np.testing.assert_array_equal(passes_correction(p, 0.1, "bonferroni"), p <= 0.025)
    np.testing.assert_array_equal(passes_correction(p, 0.1, "holm"), holm_rejections(p.ravel(), 0.1).reshape(2, 2))
    with pytest.raises(CertattrError, match="correction='sidak' is unknown: allowed are bonferroni, holm"):
        passes_correction(p, 0.1, "sidak")
