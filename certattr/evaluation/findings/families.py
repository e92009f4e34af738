"""Every claim the book checks, by family: the paper's (:data:`.claims.FINDINGS`), Levine et al.'s
(:data:`.levine.LEVINE_FINDINGS`) and this companion's own certificates (:data:`.anytime.ANYTIME_FINDINGS`). A
chapter's declaration names its claims by id through :func:`claims`; the introduction's table lists them in the
chapters' order whatever their family."""
from __future__ import annotations

from types import MappingProxyType

from ...engine.validation import CertattrError
from .anytime import ANYTIME_FINDINGS
from .claims import FINDINGS, Finding
from .levine import LEVINE_FINDINGS

__all__ = ["FAMILIES", "family_of", "claims"]

#: family name -> {claim id: Finding}; claim ids are unique across families (checked at import)
FAMILIES = MappingProxyType({"paper": FINDINGS, "levine": LEVINE_FINDINGS, "anytime": ANYTIME_FINDINGS})

_FAMILY_OF = {}
for _family, _findings in FAMILIES.items():
    for _id in _findings:
        if _id in _FAMILY_OF:
            raise CertattrError(f"claim id {_id!r} is in the families {_FAMILY_OF[_id]!r} and {_family!r}")
        _FAMILY_OF[_id] = _family


def family_of(claim_id: str) -> str:
    """The family of the claim ``claim_id`` (an unknown id is an error listing the families)."""
    try:
        return _FAMILY_OF[claim_id]
    except KeyError:
        raise CertattrError(f"claim {claim_id!r} is unknown: the families {', '.join(FAMILIES)} hold "
                            f"{len(_FAMILY_OF)} claims") from None


def claims(*ids: str) -> tuple[Finding, ...]:
    """The claims ``ids`` (from any family), as a chapter's declaration lists them."""
    return tuple(FAMILIES[family_of(i)][i] for i in ids)
