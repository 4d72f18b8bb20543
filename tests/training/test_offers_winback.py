"""The win-back list names each user's next-best offer and its expected value after cost."""

from __future__ import annotations

import pandas as pd

from training.winback import WINBACK_COLUMNS, WinbackFilters, winback_list


def test_winback_list_carries_the_chosen_offer() -> None:
    scores = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "churn_risk": [0.9, 0.5, 0.1],
            "lifecycle_stage": ["at_risk", "active", "core"],
            "rfm_segment": ["at_risk", "loyal", "champions"],
            "reasons": ["x", "y", "z"],
        }
    )
    values = pd.DataFrame({"user_id": ["a", "b", "c"], "value_at_stake": [10.0, 100.0, 50.0]})
    offers = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "offer_id": ["free_shipping", ""],
            "expected_value": [4.2, 0.0],
            "reason": ["", ""],
        }
    )
    listing = winback_list(scores, values, WinbackFilters(), offers=offers).set_index("user_id")
    assert list(listing.columns[: len(WINBACK_COLUMNS) - 1]) == list(WINBACK_COLUMNS[1:])
    assert listing.loc["a", "offer_id"] == "free_shipping"
    assert listing.loc["a", "expected_value"] == 4.2
    assert listing.loc["b", "offer_id"] == "" and listing.loc["c", "offer_id"] == ""  # c: no choice made
    assert listing.loc["c", "expected_value"] == 0.0
    plain = winback_list(scores, values)
    assert (plain["offer_id"] == "").all() and (plain["expected_value"] == 0.0).all()
