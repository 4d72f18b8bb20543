"""Reasons: the strongest positive contributions, in the operator's words, one per theme."""

from __future__ import annotations

import pandas as pd

from training.reasons import describe, top_reasons


def test_drivers_are_written_from_the_users_values() -> None:
    row = {
        "days_since_last_purchase": 45.0,
        "purchase_gap_mean_days": 12.0,
        "days_since_last_event": 30.0,
        "orders_30d": 0,
        "spend_90d": 12.5,
        "activity_trend_30d": -0.5,
        "lifecycle_stage": "at_risk",
        "refund_ratio": 0.25,
    }
    assert describe("purchase_overdue_ratio", row) == "no purchase for 45 days; usually buys every 12 days"
    assert describe("days_since_last_event", row) == "no visit for 30 days"
    assert describe("orders_30d", row) == "0 orders in the last 30 days"
    assert describe("spend_90d", row) == "spent 12.50 in the last 90 days"
    # trend -0.5 means the last 30 days had a third of the 30 before: down 67%
    assert describe("activity_trend_30d", row) == "activity down 67% on the 30 days before"
    assert describe("lifecycle_stage", row) == "lifecycle stage at risk"
    assert describe("refund_ratio", row) == "25% of bought items refunded"
    assert describe("days_since_last_purchase", {"days_since_last_purchase": None}) == "has never bought"


def test_top_three_positive_drivers_one_per_theme() -> None:
    features = pd.DataFrame(
        {
            "days_since_last_purchase": [45.0, 2.0],
            "purchase_gap_mean_days": [12.0, 10.0],
            "purchase_overdue_ratio": [3.75, 0.2],
            "days_since_last_event": [40.0, 1.0],
            "orders_90d": [1, 9],
            "tenure_days": [400, 20],
        }
    )
    contributions = pd.DataFrame(
        {
            "days_since_last_purchase": [0.9, -0.5],
            "purchase_gap_mean_days": [0.1, -0.1],
            "purchase_overdue_ratio": [1.2, -0.4],
            "days_since_last_event": [0.5, -0.6],
            "orders_90d": [0.3, -0.2],
            "tenure_days": [-0.2, 0.05],
        }
    )
    reasons = top_reasons(features, contributions, k=3)
    # user 0: overdue ratio (purchase theme, stated once), then visit recency, then orders
    assert reasons[0] == (
        "no purchase for 45 days; usually buys every 12 days | no visit for 40 days | "
        "1 orders in the last 90 days"
    )
    assert reasons[1] == "customer for only 20 days"  # the only driver that raises this user's risk
    assert top_reasons(features, -contributions.clip(lower=0), k=3) == ["no strong driver"] * 2
