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
