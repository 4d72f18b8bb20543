"""Value at stake and the win-back ranking on hand-made purchase histories."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from training.errors import TrainingDataError
from training.value import value_at_stake
from training.winback import WINBACK_COLUMNS, WinbackFilters, winback_list

AS_OF = date(2025, 7, 1)


def _events(seed: int = 0) -> pd.DataFrame:
    """200 users buying every ``gap`` days for ``amount`` each, over the 200 days before AS_OF."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(200):
        gap, amount = int(rng.integers(5, 60)), float(rng.gamma(3, 10))
        first = int(rng.integers(0, 60))
        for day in range(first, 200, gap):
            rows.append(
                (
                    f"u{u:03d}",
                    pd.Timestamp(AS_OF) - pd.Timedelta(days=200 - day),
                    "purchase",
                    round(amount * rng.uniform(0.8, 1.2), 2),
                )
            )
    return pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount"])


@pytest.fixture(scope="module")
def values() -> tuple[pd.DataFrame, pd.DataFrame]:
    events = _events()
    return events, value_at_stake(events, AS_OF, pd.Series(sorted(events["user_id"].unique())), 90)


def test_value_grows_with_frequency_and_order_value(values: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, v = values
    stats = events.groupby("user_id").agg(n=("ts", "size"), mean=("amount", "mean")).reindex(v["user_id"])
    assert v["value_at_stake"].nunique() > 150  # per user, not a constant
    assert np.corrcoef(v["expected_purchases"], stats["n"])[0, 1] > 0.8
    assert np.corrcoef(v["expected_order_value"], stats["mean"])[0, 1] > 0.9
    np.testing.assert_allclose(v["value_at_stake"], v["expected_purchases"] * v["expected_order_value"])
    # a regular buyer expects about horizon / gap purchases over the next 90 days
    regular = v.set_index("user_id").loc[stats.index[stats["n"] >= 10]]
    assert (regular["expected_purchases"] > 2).all()


def test_unknown_users_get_a_small_positive_value(values: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = values
    users = pd.Series([*sorted(events["user_id"].unique()), "nobody"])
    v = value_at_stake(events, AS_OF, users, 90).set_index("user_id")
    assert 0 < v.loc["nobody", "value_at_stake"] < v["value_at_stake"].max()


def test_big_spender_at_40_percent_ranks_above_small_spender_at_60() -> None:
    scores = pd.DataFrame(
        {
            "user_id": ["big", "small", "mid"],
            "churn_risk": [0.4, 0.6, 0.5],
            "lifecycle_stage": ["at_risk", "dormant", "active"],
            "reasons": ["a", "b", "c"],
            "rfm_segment": ["cant_lose", "hibernating", "loyal"],
        }
    )
    values = pd.DataFrame(
        {
            "user_id": ["big", "small", "mid"],
            "value_at_stake": [500.0, 50.0, 100.0],
            "expected_purchases": [5.0, 1.0, 2.0],
            "expected_order_value": [100.0, 50.0, 50.0],
        }
    )
    listing = winback_list(scores, values)
    assert listing["user_id"].tolist() == ["big", "mid", "small"]
    assert list(listing.columns[: len(WINBACK_COLUMNS)]) == list(WINBACK_COLUMNS)
    assert listing["expected_value_saved"].tolist() == pytest.approx([200.0, 50.0, 30.0])
    assert (listing["offer_id"] == "").all()
    assert winback_list(scores, values, WinbackFilters(segment="dormant"))["user_id"].tolist() == ["small"]
    assert winback_list(scores, values, WinbackFilters(segment="cant_lose"))["user_id"].tolist() == ["big"]
    assert winback_list(scores, values, WinbackFilters(min_value=80))["user_id"].tolist() == ["big", "mid"]
    assert winback_list(scores, values, WinbackFilters(top=1))["user_id"].tolist() == ["big"]
    with pytest.raises(TrainingDataError, match="unknown segment"):
        winback_list(scores, values, WinbackFilters(segment="vip"))
