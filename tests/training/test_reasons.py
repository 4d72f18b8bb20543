"""Reasons: the strongest positive contributions, in the operator's words, one per theme."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from features import feature_sets
from training.datasets import STACKED_FEATURES
from training.reasons import TEMPLATES, describe, top_reasons

ROW: dict[str, object] = {
    "days_since_last_event": 42.0,
    "days_since_last_purchase": 45.0,
    "purchase_overdue_ratio": 3.75,
    "purchase_gap_mean_days": 12.0,
    "purchase_gap_std_days": 9.4,
    "events_30d": 0,
    "orders_30d": 1,
    "orders_90d": 3,
    "spend_90d": 12.5,
    "spend_180d": 1234.56,
    "active_days_30d": 4,
    "activity_trend_30d": -0.5,
    "spend_trend_30d": 1.0,
    "orders_total": 7,
    "spend_total": 2222.22,
    "tenure_days": 400,
    "sessions_per_active_day_90d": 1.26,
    "distinct_items_90d": 1,
    "distinct_categories_90d": 2,
    "avg_order_value": 26.649,
    "refund_ratio": 0.25,
    "offers_exposed": 3,
    "offer_response_rate": 0.333,
    "rfm_r": 1,
    "rfm_f": 3,
    "rfm_m": 5,
    "lifecycle_stage": "at_risk",
    "rfm_segment": "cant_lose",
    "channel": "email",
    "country": "United Kingdom",
    "device": "mobile",
    "bg_frequency": 5.0,
    "bg_recency_weeks": 20.3,
    "bg_T_weeks": 52.1,
    "bg_rate_per_week": 0.096,
    "bg_silent_share": 0.61,
    "bg_p_alive": 0.123456,
    "bg_expected_13w": 2.2077004774031382e-09,
    "gg_order_value": 26.6123456789,
}

EXPECTED: dict[str, str] = {
    "days_since_last_event": "last active 42 days ago",
    "days_since_last_purchase": "last bought 45 days ago",
    "purchase_overdue_ratio": "usually buys every 12 days, last bought 45 days ago",
    "purchase_gap_mean_days": "usually buys every 12 days",
    "purchase_gap_std_days": "irregular buyer: the time between purchases varies by about 9 days",
    "events_30d": "no activity in the last 30 days",
    "orders_30d": "1 order in the last 30 days",
    "orders_90d": "3 orders in the last 90 days",
    "spend_90d": "spent 12.50 in the last 90 days",
    "spend_180d": "spent 1,235 in the last 180 days",
    "active_days_30d": "active on 4 days of the last 30",
    # trend -0.5 means the last 30 days had a third of the 30 before: down 67%
    "activity_trend_30d": "activity down 67% on the 30 days before",
    "spend_trend_30d": "all spend is new in the last 30 days",
    "orders_total": "7 orders in total",
    "spend_total": "spent 2,222 in total",
    "tenure_days": "customer for 13 months",
    "sessions_per_active_day_90d": "about 1.3 visits per active day in the last 90 days",
    "distinct_items_90d": "only 1 different item in the last 90 days",
    "distinct_categories_90d": "only 2 categories in the last 90 days",
    "avg_order_value": "spends about 26.65 per order",
    "refund_ratio": "25% of bought items refunded",
    "offers_exposed": "received 3 offers",
    "offer_response_rate": "responded to 33% of offers",
    "rfm_r": "bought less recently than most (score 1 of 5)",
    "rfm_f": "orders about as often as most (score 3 of 5)",
    "rfm_m": "spends more than most (score 5 of 5)",
    "lifecycle_stage": "lifecycle stage: at risk",
    "rfm_segment": "customer segment: can't lose",
    "channel": "came through email",
    "country": "country: United Kingdom",
    "device": "uses mobile",
    "bg_frequency": "came back on 5 days after the first visit",
    "bg_recency_weeks": "active over a span of 5 months",
    "bg_T_weeks": "first seen 12 months ago",
    "bg_rate_per_week": "comes back about once every 10 weeks",
    "bg_silent_share": "silent for 61% of the time since first seen",
    "bg_p_alive": "12% chance of still being a customer, judging by past visits",
    "bg_expected_13w": "not expected back in the next 13 weeks",
    "gg_order_value": "expected to spend about 26.61 per order",
}

MODEL_FEATURES = sorted({*feature_sets.CHURN_FEATURES, *feature_sets.PROPENSITY_FEATURES, *STACKED_FEATURES})


def plain(text: str) -> list[str]:
    """What makes a reason unreadable to an operator (empty: nothing)."""
    problems = []
    if "_" in text:
        problems.append("an internal name")
    if re.search(r"\d\.\d{3,}|\de[-+]?\d", text):
        problems.append("a long or scientific number")
    if re.search(r"\b(inf|nan|none|null)\b", text, re.IGNORECASE):
        problems.append("a missing or infinite value")
    if not text or text != text.strip():
        problems.append("empty or padded")
    return problems


def test_every_model_feature_has_its_own_template() -> None:
    windowed = re.compile(r"^(events|orders|spend|active_days)_\d+d$")
    missing = [f for f in MODEL_FEATURES if f not in TEMPLATES and not windowed.match(f)]
    assert missing == []
    assert set(EXPECTED) >= set(TEMPLATES)  # every template is checked word for word below


@pytest.mark.parametrize("feature", sorted(EXPECTED))
def test_each_template_reads_as_written(feature: str) -> None:
    assert describe(feature, ROW) == EXPECTED[feature]


@pytest.mark.parametrize("feature", MODEL_FEATURES)
def test_templates_stay_plain_on_odd_values(feature: str) -> None:
    odd_values: list[object] = [
        None,
        float("nan"),
        float("inf"),
        -float("inf"),
        0,
        1,
        1e-12,
        0.999999,
        123456.789,
    ]
    for value in odd_values:
        row = dict.fromkeys(ROW, value) | {feature: value}
        text = describe(feature, row)
        assert plain(text) == [], (feature, value, text)


def test_the_issue_example_is_now_plain() -> None:
    row = {"days_since_last_event": 42, "bg_expected_13w": 2.2077004774031382e-09, "gg_order_value": 26.6}
    texts = [describe(f, row) for f in row]
    assert texts == [
        "last active 42 days ago",
        "not expected back in the next 13 weeks",
        "expected to spend about 26.60 per order",
    ]
    assert (
        describe("bg_expected_13w", {"bg_expected_13w": 2.6})
        == "expected back about 3 times in the next 13 weeks"
    )
    assert describe("bg_p_alive", {"bg_p_alive": 1e-9}).startswith("less than 1% chance")


def test_spans_and_counts_pick_their_unit() -> None:
    assert describe("tenure_days", {"tenure_days": 1}) == "customer for 1 day"
    assert describe("tenure_days", {"tenure_days": 20}) == "customer for 3 weeks"
    assert describe("tenure_days", {"tenure_days": 800}) == "customer for 2 years"
    assert describe("days_since_last_purchase", {"days_since_last_purchase": None}) == "has never bought"
    assert describe("bg_rate_per_week", {"bg_rate_per_week": 2.4}) == "comes back on about 2 days a week"


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
        "usually buys every 12 days, last bought 45 days ago | last active 40 days ago | "
        "1 order in the last 90 days"
    )
    assert reasons[1] == "customer for 3 weeks"  # the only driver that raises this user's risk
    assert top_reasons(features, -contributions.clip(lower=0), k=3) == ["no strong driver"] * 2
    assert all(plain(r) == [] for r in reasons)


def test_an_unknown_feature_still_reads_without_long_numbers() -> None:
    text = describe("loyalty_points", {"loyalty_points": np.float64(1234.5678)})
    assert text == "loyalty points: 1,235"
