"""The exploration share of next-best offers: users randomized through an experiment, in batch
(``userops offers choose --explore``) and over HTTP alike, so the next training has fresh randomized data
and the policy's value can be read as an experiment result."""

from __future__ import annotations

EXPLORE_EXPERIMENT = "next_best_offer_explore"
"""The experiment that randomizes the exploration share: variants ``control`` and every offer."""


def explored(variant: str, allowed: bool) -> tuple[str, str]:
    """The offer (``""`` for none) and the reason for a user the exploration experiment enrolled in
    ``variant``: its offer when the catalogue's rules allow it now (``allowed``), else none; the exposure
    counts either way (intention to treat)."""
    fine = variant == "control" or allowed
    reason = f"exploration: randomized by experiment {EXPLORE_EXPERIMENT} ({variant.replace('_', ' ')})"
    if not fine:
        reason += ", not allowed now (validity, eligibility, cooldown or cap)"
    return (variant if variant != "control" and fine else ""), reason
