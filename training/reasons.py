"""Reasons an operator can read: each user's top drivers of risk, from LightGBM's per-row contributions.

The contributions (TreeSHAP, in log-odds) say which features pushed a user's score up; each driver is then
written from the user's own values ("no purchase for 45 days; usually buys every 12 days"). Features that
tell the same story share a theme, and a theme is stated once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pandas as pd

Row = dict[str, object]

THEMES: dict[str, str] = {
    "days_since_last_purchase": "purchase_recency",
    "purchase_overdue_ratio": "purchase_recency",
    "purchase_gap_mean_days": "purchase_recency",
    "purchase_gap_std_days": "purchase_recency",
    "rfm_r": "purchase_recency",
    "days_since_last_event": "visit_recency",
    "lifecycle_stage": "stage",
    "rfm_segment": "stage",
    "activity_trend_30d": "trend",
    "spend_trend_30d": "spend_trend",
}


def _num(row: Row, name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _days(x: float) -> str:
    n = round(x)
    return f"{n} day" if n == 1 else f"{n} days"


def _purchase_recency(row: Row) -> str:
    since, gap = _num(row, "days_since_last_purchase"), _num(row, "purchase_gap_mean_days")
    if since is None:
        return "has never bought"
    text = f"no purchase for {_days(since)}"
    return f"{text}; usually buys every {_days(gap)}" if gap else text


def _trend(what: str) -> Callable[[Row], str]:
    def text(row: Row) -> str:
        x = _num(row, f"{what}_trend_30d")
        noun = "activity" if what == "activity" else "spend"
        if x is None:
            return f"no {noun} in the last 60 days"
        if x <= -1:
            return f"{noun} stopped in the last 30 days"
        # trend = (recent - prior) / (recent + prior), so recent / prior = (1 + trend) / (1 - trend)
        change = (1 + x) / (1 - x) - 1 if x < 1 else float("inf")
        direction = "down" if change < 0 else "up"
        return f"{noun} {direction} {abs(change):.0%} on the 30 days before"

    return text


WRITERS: dict[str, Callable[[Row], str]] = {
    "days_since_last_purchase": _purchase_recency,
    "purchase_overdue_ratio": _purchase_recency,
    "purchase_gap_mean_days": _purchase_recency,
    "rfm_r": _purchase_recency,
    "days_since_last_event": lambda r: (
        f"no visit for {_days(v)}" if (v := _num(r, "days_since_last_event")) is not None else "no visit yet"
    ),
    "activity_trend_30d": _trend("activity"),
    "spend_trend_30d": _trend("spend"),
    "refund_ratio": lambda r: f"{(_num(r, 'refund_ratio') or 0):.0%} of bought items refunded",
    "tenure_days": lambda r: f"customer for only {_days(_num(r, 'tenure_days') or 0)}",
    "avg_order_value": lambda r: f"average order {(_num(r, 'avg_order_value') or 0):.2f}",
    "purchase_gap_std_days": lambda r: (
        f"irregular buyer (gaps vary by {_days(_num(r, 'purchase_gap_std_days') or 0)})"
    ),
    "sessions_per_active_day_90d": lambda r: (
        f"{(_num(r, 'sessions_per_active_day_90d') or 0):.1f} visits per active day"
    ),
    "distinct_items_90d": lambda r: (
        f"looked at only {int(_num(r, 'distinct_items_90d') or 0)} items in 90 days"
    ),
    "distinct_categories_90d": lambda r: (
        f"looked at only {int(_num(r, 'distinct_categories_90d') or 0)} categories in 90 days"
    ),
    "offers_exposed": lambda r: f"{int(_num(r, 'offers_exposed') or 0)} offers received",
    "offer_response_rate": lambda r: f"responded to {(_num(r, 'offer_response_rate') or 0):.0%} of offers",
    "lifecycle_stage": lambda r: f"lifecycle stage {str(r.get('lifecycle_stage', '')).replace('_', ' ')}",
    "rfm_segment": lambda r: f"RFM segment {str(r.get('rfm_segment', '')).replace('_', ' ')}",
}
_WINDOWED = re.compile(r"^(events|orders|spend|active_days)_(\d+)d$")


def describe(feature: str, row: Row) -> str:
    """One driver in words, from the user's own feature values."""
    if feature in WRITERS:
        return WRITERS[feature](row)
    match = _WINDOWED.match(feature)
    if match:
        what, days = match.group(1), int(match.group(2))
        x = _num(row, feature) or 0.0
        if what == "spend":
            return f"spent {x:.2f} in the last {days} days"
        if what == "active_days":
            return f"active on {int(x)} of the last {days} days"
        return f"{int(x)} {'events' if what == 'events' else 'orders'} in the last {days} days"
    value = row.get(feature)
    return f"{feature.replace('_', ' ')}: {value}"


def top_reasons(features: pd.DataFrame, contributions: pd.DataFrame, k: int = 3, sign: int = 1) -> list[str]:
    """The ``k`` strongest drivers of each row's score, in words, joined by `` | ``.

    Args:
        features: The scored users' feature values.
        contributions: Per-row contributions (same index, one column per model feature).
        k: Drivers per user.
        sign: ``1`` for drivers that raise the score (churn risk), ``-1`` for those that lower it.

    Returns:
        One string per row; ``"no strong driver"`` when nothing pushes the score in that direction.
    """
    contrib = contributions.to_numpy() * sign
    names = list(contributions.columns)
    order = (-contrib).argsort(axis=1, kind="stable")
    records: list[Row] = [{str(k): v for k, v in r.items()} for r in features.to_dict("records")]
    out: list[str] = []
    for i, row in enumerate(records):
        texts: list[str] = []
        themes: set[str] = set()
        for j in order[i]:
            if contrib[i, j] <= 0 or len(texts) == k:
                break
            theme = THEMES.get(names[j], names[j])
            if theme in themes:
                continue
            themes.add(theme)
            texts.append(describe(names[j], row))
        out.append(" | ".join(texts) if texts else "no strong driver")
    return out
