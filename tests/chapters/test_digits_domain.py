"""The second domain: the digits written as a labelled folder, the digits CNN trained here (deterministic, cached),
the chapters declared on the domain, and the findings table's verdicts per domain."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image as PILImage

from certattr.book.build import DOMAIN_OWN, chapter_parameters, parameters_cell_in_step, results_folder
from certattr.book.chapters import chapter_names, get, toc_yaml
from certattr.book.chapters.declaration import Chapter, Domain, Param
from certattr.book.chapters.digits import DIGIT_COUNTS, DIGITS
from certattr.engine.validation import CertattrError
from certattr.evaluation.findings import FINDINGS, Verdict, check_claims
from certattr.evaluation.findings.domains import domain_comparison, join_domains
from certattr.evaluation.findings.registry import RunTables
from certattr.evaluation.findings.render import summary_markdown, write_findings
from certattr.methods import get_method, method_names
from certattr.models.digits import (DIGIT_CLASSES, DigitsTraining, as_stored, digit_splits,
                                    trained_digits_cnn, write_digits_folder)
from certattr.models.registry import load_model

FAST = DigitsTraining(epochs=1, widths=(4, 4, 8, 8))


def test_the_folder_holds_the_split_digits_as_8_bit_pngs_under_their_class(tmp_path):
    root = write_digits_folder(tmp_path / "d", "test", FAST, count=30)
    split = digit_splits(FAST.size, FAST.test_fraction, FAST.split_seed)
    files = sorted(root.glob("*/*.png"))
    assert len(files) == 30 and {p.parent.name for p in files} <= set(DIGIT_CLASSES)
    for path in files:
        index = int(path.stem.split("-")[1])
        assert path.parent.name == str(int(split.test_labels[index]))  # the folder is the label
        pixels = np.asarray(PILImage.open(path))
        expected = np.round(split.test_images[index, 0].numpy() * 255).astype(np.uint8)
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, expected)
    # written once: a second call with the same digits leaves the files as they are
    stamp = {p: p.stat().st_mtime_ns for p in files}
    write_digits_folder(tmp_path / "d", "test", FAST, count=30)
    assert {p: p.stat().st_mtime_ns for p in files} == stamp
    # another count replaces the folder whole
    write_digits_folder(tmp_path / "d", "test", FAST, count=12)
    assert len(list(root.glob("*/*.png"))) == 12


def test_bad_folder_requests_are_one_line(tmp_path):
    with pytest.raises(CertattrError, match="split='val' is not allowed"):
        write_digits_folder(tmp_path / "x", "val", FAST)
    with pytest.raises(CertattrError, match="count=100000 is more than the"):
        write_digits_folder(tmp_path / "x", "test", FAST, count=100000)


def test_training_is_deterministic_cached_and_its_accuracy_is_recomputable(tmp_path):
    first = trained_digits_cnn(FAST, tmp_path / "a")
    second = trained_digits_cnn(FAST, tmp_path / "b")  # trained again, in another cache
    assert not first.cached and not second.cached
    for (k, a), b in zip(first.net.state_dict().items(), second.net.state_dict().values()):
        assert torch.equal(a, b), k
    again = trained_digits_cnn(FAST, tmp_path / "a")
    assert again.cached and again.test_accuracy == first.test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(first.net.state_dict().values(), again.net.state_dict().values()))
    # the stored accuracy is the share of the held-out digits (as stored in the PNGs) the network classifies right
    split = digit_splits(FAST.size, FAST.test_fraction, FAST.split_seed)
    x = as_stored(split.test_images[:, :1])
    with torch.no_grad():
        right = (first.net((x - FAST.mean) / FAST.std).argmax(1) == split.test_labels).float().mean()
    assert first.test_accuracy == pytest.approx(float(right)) and first.n_test == len(split.test_labels)
    # other settings are another file
    assert not trained_digits_cnn(DigitsTraining(epochs=1, widths=(4, 4, 8, 8), seed=1), tmp_path / "a").cached


def test_the_preset_is_one_channel_with_a_gap_linear_head_and_every_method_defined():
    net = load_model("digits_cnn", "random")
    assert net.channels == 1 and net.head_classes() == 10 and net.spec.crop == 32
    x = torch.rand(2, 1, 32, 32)
    xn = net.normalize(x)
    act, _ = net.features(xn)
    assert act.shape == (2, 16 * 2, 8, 8)
    # logits through the split (body, GAP->linear head) equal the network's own forward pass
    assert torch.allclose(net.logits_from_final(act), net(x), atol=1e-5)
    assert torch.allclose(net.gap_linear(act.mean(dim=(2, 3))), net(x), atol=1e-5)
    undefined = {(m, layer) for m in method_names() for layer in ("input", "final")
                 if get_method(m).undefined_reason(net, layer)}
    assert undefined == {("cam", "input")}


def test_each_chapter_on_the_digits_reads_the_written_folder_and_writes_a_subfolder(tmp_path):
    stems = [s for s in chapter_names() if get(s).domain == "digits"]
    assert stems == ["robustness-digits", "localization-digits", "faithfulness-digits", "tradeoff-digits"]
    for stem in stems:
        c = get(stem)
        assert c.source == stem.removesuffix("-digits") and c.findings == get(c.source).findings
        assert c.exercises == () and parameters_cell_in_step(stem, write=False)
        p = chapter_parameters("smoke", stem, {"model": "resnet18", "n": 7}, root=tmp_path)
        assert p["model"] == "digits_cnn" and p["n"] == 7  # the domain keeps its model; other overrides apply
        assert Path(p["results_dir"]) == results_folder("smoke", "digits", tmp_path) == \
            tmp_path / "book" / "chapters" / "results" / "smoke" / "digits"
        assert len(list(Path(p["image_dir"]).glob("*/*.png"))) == DIGIT_COUNTS["smoke"]
    assert {"model", "image_dir"} <= DOMAIN_OWN
    assert "caption: A second domain (handwritten digits)" in toc_yaml()
    assert "about" in DIGITS.__dataclass_fields__ and "not the paper's setting" in DIGITS.about


def test_on_domain_replaces_values_per_profile_and_refuses_unknown_parameters():
    base = Chapter("toy", "Toy", (Param("a", 1, profiles={"smoke": 0}), Param("b", "x")))
    d = Domain("toy-domain", "toys")
    moved = base.on_domain(d, {"a": {"smoke": 5, "cpu": 6}, "b": "y"})
    assert moved.stem == "toy-toy-domain" and moved.source == "toy" and moved.domain == "toy-domain"
    assert moved.params("smoke") == {"a": 5, "b": "y"} and moved.params("paper") == {"a": 6, "b": "y"}
    with pytest.raises(CertattrError, match=r"chapter 'toy' has no parameters \['c'\]"):
        base.on_domain(d, {"c": 1})


def _rows(model: str, title: str, n_images: int, slope: float, seed: int) -> pd.DataFrame:
    """Robustness rows of one model: robustness falls with σ by ``slope`` (plus noise), Grad at the Input layer."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        for sigma, radius in ((0.15, 0.1), (0.33, 0.22)):
            for k in (50.0, 25.0):
                value = 0.8 - slope * (sigma - 0.15) + 0.01 * rng.standard_normal()
                rows.append({"model": model, "model_title": title, "image_id": f"{model}-{i}", "method": "grad",
                             "layer": "input", "sigma": sigma, "radius": radius, "k": k, "robustness": value,
                             "certified_1": 0.3 * k / 50, "certified_0": 0.4, "abstain": 0.3, "target": 1,
                             "method_params": "{}", "degenerate": False})
    return pd.DataFrame(rows)


def test_every_model_claims_count_the_second_domain_model_as_one_more_model(tmp_path):
    photos, digits = tmp_path / "photos", tmp_path / "photos" / "digits"
    digits.mkdir(parents=True)
    _rows("lite0", "Lite0", 10, 1.0, 0).to_csv(photos / "robustness.csv", index=False)
    _rows("digits_cnn", "Digits CNN", 10, -1.0, 1).to_csv(digits / "robustness.csv", index=False)
    joined = {v.finding.id: v for v in join_domains([photos, digits], photos / "all-domains")}
    # a second, independent computation: the same checks on the concatenated tables
    frame = pd.concat([pd.read_csv(photos / "robustness.csv"), pd.read_csv(digits / "robustness.csv")])
    direct = {v.finding.id: v for v in check_claims(RunTables(robustness=frame), list(joined))}
    assert set(joined) == {"r_trend_every_model", "k_trend_every_model"}
    assert joined["r_trend_every_model"].verdict == direct["r_trend_every_model"].verdict == "disagrees"
    assert "Digits CNN" in joined["r_trend_every_model"].why  # the model where the trend goes the other way
    saved = json.loads((photos / "all-domains" / "findings_robustness.json").read_text())
    assert {row["id"] for row in saved} == set(joined)
    assert len(pd.read_csv(photos / "all-domains" / "robustness.csv")) == len(frame)
    # one domain alone: nothing to join
    assert join_domains([photos, tmp_path / "missing"], tmp_path / "out") == []


def test_the_comparison_names_agreements_differences_and_one_sided_decisions():
    f = {i: FINDINGS[i] for i in ("sigma_trend", "tau_trend", "gradient_input", "small_k_detail", "final_flip",
                                  "rise_lrp_balance")}
    first = {"sigma_trend": {"verdict": "agrees"}, "tau_trend": {"verdict": "agrees"},
             "gradient_input": {"verdict": "inconclusive"}, "small_k_detail": {"verdict": "disagrees"},
             "final_flip": {"verdict": "agrees"}, "rise_lrp_balance": {"verdict": "inconclusive"}}
    second = {"sigma_trend": {"verdict": "agrees"}, "tau_trend": {"verdict": "disagrees"},
              "gradient_input": {"verdict": "agrees"}, "small_k_detail": {"verdict": "inconclusive"},
              "rise_lrp_balance": {"verdict": "not tested"}}
    text = domain_comparison(first, second, f, title="digits")
    assert "5 of the claims were checked again" in text  # and every one of the 5 is named below
    assert f"Neither decides 1: “{f['rise_lrp_balance'].title}” (inconclusive on the photos, not tested" in text
    assert f"decide 1 the same way: “{f['sigma_trend'].title}” (agrees)" in text
    assert f"differ on 1: “{f['tau_trend'].title}” (agrees on the photos, disagrees on the digits)" in text
    assert f"Only the digits decide 1: “{f['gradient_input'].title}”" in text
    assert f"Only the photos decide 1: “{f['small_k_detail'].title}”" in text
    assert f["final_flip"].title not in text  # not run on the digits


def test_the_findings_table_has_a_column_per_further_domain(tmp_path):
    photos, digits = tmp_path / "p", tmp_path / "p" / "digits"
    digits.mkdir(parents=True)
    write_findings([Verdict(FINDINGS["sigma_trend"], "agrees", "photos measured", "why p")], photos, "robustness")
    write_findings([Verdict(FINDINGS["sigma_trend"], "disagrees", "digits measured", "why d")], digits, "robustness")
    groups = [("robustness", [FINDINGS["sigma_trend"]]), ("vit", [FINDINGS["vit_rise_robust"]])]
    other = ("digits", {"robustness": "robustness-digits"}, {"sigma_trend": {"verdict": "disagrees",
                                                                            "measured": "digits measured"}}, {})
    text = summary_markdown(photos, "cpu", groups, other=other)
    header = next(line for line in text.splitlines() if line.startswith("| claim"))
    assert header.endswith("| on the digits |")
    sigma = next(line for line in text.splitlines() if FINDINGS["sigma_trend"].title in line)
    assert "**agrees**: why p" in sigma and sigma.endswith("**disagrees**: digits measured ({doc}`robustness-digits "
                                                            "<chapters/robustness-digits>`) |")
    vit = next(line for line in text.splitlines() if FINDINGS["vit_rise_robust"].title in line)
    assert vit.endswith("| — |") and "“—”: the claim's chapter does not run on the digits" in text


def test_a_domain_page_renames_its_own_targets_and_leaves_its_exercises_to_the_photos_page(tmp_path):
    """The digits page is run from the photos' notebook: every target it declares (and every reference to one)
    gets the domain's suffix, or jupyter-book (warnings as errors) refuses the duplicate labels; references to
    other pages stay; the exercises are cut before running, and the page points to the photos' page."""
    import jupytext
    import nbformat

    from certattr.book.build import _open_on_domain, _without_exercises

    text = "\n".join([
        "(chapter-robustness)=", "# Robustness", "", "See {numref}`fig-a` and {ref}`chapter-method`.", "",
        "```{glue:figure} rob_a", ":name: fig-a", "", "A caption.", "```", "",
        "```{code-cell} ipython3", "x = 1", "```", "",
        "(This chapter took 3 s.)", "", "## Exercises", "", ":::{exercise} One", ":label: robustness-one", ":::", "",
        "```{code-cell} ipython3", "check('robustness-one', f)", "```", ""])
    notebook = jupytext.reads(text, fmt="md:myst")
    _without_exercises(notebook, "robustness")
    assert not any("check(" in c.source for c in notebook.cells)
    assert notebook.cells[-1].source.startswith("(This chapter took 3 s.)\n\n## Exercises\n")  # the text above stays
    assert notebook.cells[-1].source.endswith("on the photos' page, {doc}`robustness`.")
    path = tmp_path / "page.ipynb"
    notebook.cells[2].outputs = [nbformat.v4.new_output("display_data", {"text/markdown": "As {numref}`fig-a`."})]
    nbformat.write(notebook, path)
    _open_on_domain(path, "Robustness on digits", "Handwritten digits.", "digits")
    page = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in page.cells if c.cell_type == "markdown")
    assert markdown.startswith("(chapter-robustness-digits)=\n# Robustness on digits\n\nHandwritten digits.\n")
    assert "(chapter-robustness-digits)=" in markdown and ":name: fig-a-digits" in markdown
    assert "{numref}`fig-a-digits`" in markdown and "{ref}`chapter-method`" in markdown  # another page's target stays
    assert "(chapter-robustness)=" not in markdown and ":name: fig-a\n" not in markdown
    assert page.cells[2].outputs[0]["data"]["text/markdown"] == "As {numref}`fig-a-digits`."
