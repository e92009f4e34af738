"""Verdicts per domain, side by side: the same claims checked on the ImageNet photos and on a second domain (the
digits), and the claims about every model checked once more with the models of every domain together.

Each domain's chapters save their verdicts in their own results folder (``findings_<chapter>.json``, the same
criteria, evidence rules and unit identity). :func:`join_domains` writes the robustness rows of every domain into
one table (a model is a model, whatever data it was trained on) and checks the "every model" claims on it, so the
digits CNN counts as one more model; :func:`domain_comparison` says where the domains' verdicts agree and where
they differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...engine.files import atomic_write_bytes
from .claims import Verdict
from .evidence import listing
from .registry import RunTables, check_claims
from .render import write_findings

__all__ = ["EVERY_MODEL", "JOINED", "join_domains", "domain_comparison"]

#: the claims made "on every model": checked once more on the models of every domain together
EVERY_MODEL = ("r_trend_every_model", "k_trend_every_model")
JOINED = "all-domains"  #: the results subfolder of the joined rows and their verdicts


def join_domains(folders: Sequence, out_dir, *, seed: int = 0) -> list[Verdict]:
    """``robustness.csv`` of every folder of ``folders`` (the domains' results folders; missing ones skipped) as
    one table in ``out_dir``, and the :data:`EVERY_MODEL` verdicts on it, saved there as
    ``findings_robustness.json`` (so ``certattr findings-check`` rechecks them like any chapter's). Returns the
    verdicts ([] when fewer than two domains have robustness rows)."""
    import pandas as pd

    frames = [pd.read_csv(Path(f) / "robustness.csv") for f in folders if (Path(f) / "robustness.csv").is_file()]
    if len(frames) < 2:
        return []
    joined = pd.concat(frames, ignore_index=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "robustness.csv", joined.to_csv(index=False).encode())
    verdicts = check_claims(RunTables(robustness=joined), EVERY_MODEL, seed=seed)
    write_findings(verdicts, out, "robustness")
    return verdicts


def domain_comparison(first: dict, second: dict, findings: dict, *, title: str) -> str:
    """One paragraph: of the claims decided (agrees or disagrees) on both domains, where ``second`` (the domain
    ``title``) gives the same verdict as ``first`` and where not; and the claims decided on one domain only.
    ``first``/``second``: {claim id: saved row}; ``findings``: {claim id: Finding} in table order."""
    decided = ("agrees", "disagrees")
    both = [i for i in findings if i in first and i in second]
    if not both:
        return ""
    same = [i for i in both if first[i]["verdict"] == second[i]["verdict"] and first[i]["verdict"] in decided]
    differ = [i for i in both if first[i]["verdict"] != second[i]["verdict"]
              and first[i]["verdict"] in decided and second[i]["verdict"] in decided]
    only_second = [i for i in both if second[i]["verdict"] in decided and first[i]["verdict"] not in decided]
    only_first = [i for i in both if first[i]["verdict"] in decided and second[i]["verdict"] not in decided]

    def names(ids):
        return listing([f"“{findings[i].title}” ({first[i]['verdict']} on the photos, {second[i]['verdict']} on "
                        f"the {title})" for i in ids])

    parts = [f"**On a second domain ({title})**, {len(both)} of the claims were checked again."]
    if same:
        parts.append(f"Both domains decide {len(same)} the same way: "
                     + listing([f"“{findings[i].title}” ({first[i]['verdict']})" for i in same]) + ".")
    if differ:
        parts.append(f"They differ on {len(differ)}: {names(differ)}.")
    if only_second:
        parts.append(f"Only the {title} decide {len(only_second)}: {names(only_second)}.")
    if only_first:
        parts.append(f"Only the photos decide {len(only_first)}: {names(only_first)}.")
    neither = [i for i in both if first[i]["verdict"] not in decided and second[i]["verdict"] not in decided]
    if neither and len(neither) == len(both):
        parts.append("Neither domain decides any of them.")
    elif neither:
        parts.append(f"Neither decides {len(neither)}: {names(neither)}.")
    return " ".join(parts)
