"""A second, plain computation of the findings rows, for checking them: ``certattr findings-check RESULTS_DIR``.

Each function below recomputes one claim's counts, means and the side of its interval directly from the CSV
tables a built profile wrote (``robustness.csv``, ``robustness_tau.csv``, ``localization.csv``,
``faithfulness.csv``, ``faithfulness_flips.csv``) with a few lines of pandas, reading the definitions stated in
the rows' criteria, and compares them with the numbers saved in ``findings_<chapter>.json``. It deliberately
imports nothing from :mod:`certattr.evaluation.findings`: a selection, pairing or aggregation that the findings
code gets wrong shows up as a difference here. The bootstrap is re-implemented with the same seeded draws
(clusters: images, or grid targets), so its endpoints are expected to agree to rounding.
"""
from __future__ import annotations

from .claims import RECHECKED
from .compare import recheck, recheck_frame

__all__ = ["recheck", "recheck_frame", "RECHECKED"]
