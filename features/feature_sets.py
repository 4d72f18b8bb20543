"""The inputs of each model, as plain lists: a change to a model's inputs is one reviewed line.

Every name is a column of a feature snapshot (``features.job.build_features``). User attribute columns
(``channel``, ``country``, ``device``) exist only when the users table has them; models drop absent ones.
"""

from __future__ import annotations

CATEGORICAL_FEATURES: list[str] = [
    "lifecycle_stage",
    "rfm_segment",
    "channel",
    "country",
    "device",
]

_BEHAVIOUR: list[str] = [
    "days_since_last_event",
    "days_since_last_purchase",
    "events_7d",
    "events_30d",
    "events_90d",
    "events_180d",
    "orders_7d",
    "orders_30d",
    "orders_90d",
    "orders_180d",
    "spend_7d",
    "spend_30d",
    "spend_90d",
    "spend_180d",
    "orders_total",
    "spend_total",
    "tenure_days",
    "active_days_30d",
    "active_days_90d",
    "sessions_per_active_day_90d",
    "distinct_items_90d",
    "distinct_categories_90d",
    "avg_order_value",
    "refund_ratio",
    "purchase_gap_mean_days",
    "purchase_gap_std_days",
    "purchase_overdue_ratio",
    "activity_trend_30d",
    "spend_trend_30d",
    "offers_exposed",
    "offer_response_rate",
    "rfm_r",
    "rfm_f",
    "rfm_m",
]

CHURN_FEATURES: list[str] = [*_BEHAVIOUR, *CATEGORICAL_FEATURES]
"""Inputs of the churn model."""

PROPENSITY_FEATURES: list[str] = [*_BEHAVIOUR, *CATEGORICAL_FEATURES]
"""Inputs of the purchase-propensity (conversion) model."""
