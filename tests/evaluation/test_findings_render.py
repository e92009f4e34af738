"""The findings tables say what they do not count once, under the table, and name in a row only what concerns it."""
from certattr.evaluation.findings import FINDINGS
from certattr.evaluation.findings.claims import Verdict
from certattr.evaluation.findings.render import exclusion_items, findings_html, table_exclusions

RISE = "RISE at the Input layer (100 masks: fewer than 100 give blocky maps that look robust; the paper uses 1000)"
OCC = "Occlusion at the Input layer (a 75x75 window, stride 75: coarser than the paper's 16x16, stride 8)"
GRAD_FINAL = "Grad at the Final layer (9 of 9 rows flagged degenerate)"
EVERYTHING = f"Not counted as evidence: {RISE}; {OCC}; {GRAD_FINAL}."


def test_the_sentence_splits_into_its_pairs_and_reasons_even_with_semicolons_inside():
    counted, ranked = exclusion_items(EVERYTHING + " Not ranked, their score is zero by emptiness: LRP (= IxG) "
                                                  "(nothing certified '1' in 60% of its units).")
    assert list(counted) == ["RISE at the Input layer", "Occlusion at the Input layer", "Grad at the Final layer"]
    assert counted["RISE at the Input layer"].endswith("the paper uses 1000")
    assert ranked == {"LRP (= IxG)": "nothing certified '1' in 60% of its units"}
    assert exclusion_items("") == ({}, {})


def test_rows_name_only_their_layers_and_methods_and_the_reasons_come_once():
    rows = [Verdict(FINDINGS[fid], "inconclusive", "measured", "why.", excluded=EVERYTHING)
            for fid in ("input_robust_leaders", "gradient_input", "final_flip", "sigma_trend")]
    excluded = [v.excluded for v in rows]
    assert "Final layer" not in excluded[0] and "RISE" in excluded[0]  # an Input-layer claim
    assert excluded[1] == ""  # about Grad, GB, IxG and IntGrad at the Input layer: none of them is excluded
    assert excluded[2] == f"Not counted as evidence: {GRAD_FINAL}."  # a Final-layer claim
    assert excluded[3] == EVERYTHING  # both layers, every method
    note, mentions = table_exclusions(excluded)
    assert note.count("the paper uses 1000") == 1 and note.count("flagged degenerate") == 1
    assert mentions == ["Not counted: RISE and Occlusion at the Input layer.", "",
                        "Not counted: Grad at the Final layer.",
                        "Not counted: RISE and Occlusion at the Input layer, Grad at the Final layer."]
    html = findings_html(rows, caption="Table 3. Claims checked in this chapter").data
    assert html.count("the paper uses 1000") == 1  # the reason once, under the table, not in every row
    assert html.count("Not counted: RISE and Occlusion at the Input layer") == 2
    assert "<caption>Table 3. Claims checked in this chapter</caption>" in html


def test_the_introduction_table_says_the_reasons_once_under_it(tmp_path):
    from certattr.evaluation import findings as F

    F.write_findings([Verdict(FINDINGS[fid], "inconclusive", "measured", "why.", excluded=EVERYTHING)
                      for fid in ("input_robust_leaders", "sigma_trend")], tmp_path, "robustness")
    text = F.summary_markdown(tmp_path, "smoke", [("robustness", [FINDINGS["input_robust_leaders"],
                                                                  FINDINGS["sigma_trend"]])])
    assert text.count("the paper uses 1000") == 1 and text.count("flagged degenerate") == 1
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    assert rows[0].endswith("*Not counted: RISE and Occlusion at the Input layer.* |")
    assert "Grad at the Final layer" in rows[1]


def test_reasons_from_several_tables_merge_into_one_phrase():
    """The same pair excluded by rows built from different tables (different row counts) and the same method not
    ranked for one reason given with and without its share: one phrase each, no slash-joined list."""
    from certattr.evaluation.findings.evidence import notes, Evidence

    a = notes(Evidence(None, {"GB at the Final layer": "243 of 243 rows flagged degenerate",
                              "Cam at the Final layer": "3 of 72 rows flagged degenerate"}),
              Evidence(None, {"GB at the Final layer": "162 of 162 rows flagged degenerate"}),
              not_ranked={"gradcam": "nothing certified '1' in 96% of its units"})
    b = notes(Evidence(None, {"Cam at the Final layer": "9 of 9 rows flagged degenerate"}),
              not_ranked={"gradcam": "nothing certified '1' in most units"})
    assert "GB at the Final layer (all 405 rows flagged degenerate)" in a  # summed within one note
    note, _ = table_exclusions([a, b])
    assert " / " not in note
    assert "GB at the Final layer (every row flagged degenerate)" in note
    assert "Cam at the Final layer (4 to 100% of its rows flagged degenerate, by table)" in note
    assert note.count("nothing certified '1'") == 1 and "96%" in note and "most units" not in note


def test_every_criterion_states_its_rules_whole():
    """A ranking criterion without an empty rule leaves the clause out, not its condition ("a method is not
    ranked" with no "whose ..." after it)."""
    from certattr.evaluation.findings.claims import FINDINGS as ALL

    for f in ALL.values():
        assert "a method is not ranked" not in f.criterion, f.id
    assert "with nothing certified '1' in more than half" in ALL["input_localization_leaders"].criterion
    assert "not ranked" not in ALL["input_robust_leaders"].criterion


def test_two_layers_notes_merge_into_one_sentence_naming_each_pair_once():
    """A verdict built from two layers' evidence (the balance per layer) says each excluded pair once."""
    from certattr.evaluation.findings.evidence import Evidence, notes
    from certattr.evaluation.findings.render import merge_notes

    both = {"GB at the Final layer": "99 of 99 rows flagged degenerate",
            "Cam at the Final layer": "3 of its 72 rows, flagged degenerate; the other 69 count"}
    a = notes(Evidence(None, both), not_ranked={"gradcam": "nothing certified '1' in most grid targets"})
    b = notes(Evidence(None, both))
    merged = merge_notes([a, b])
    assert merged.count("Not counted as evidence") == 1 and merged.count("GB at the Final layer") == 1
    assert "Cam at the Final layer (3 of its 72 rows, flagged degenerate; the other 69 count)" in merged
    assert merged.count("GradCam") == 1 and exclusion_items(merged)[0].keys() == both.keys()
