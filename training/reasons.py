"""Reasons an operator can read: each user's top drivers of risk, from LightGBM's per-row contributions.

The contributions (TreeSHAP, in log-odds) say which features pushed a user's score up; each driver is then
written from the user's own values, one template per feature (:data:`TEMPLATES`), in the operator's words
with rounded, unit-bearing numbers ("usually buys every 12 days, last bought 45 days ago"). Features that
tell the same story share a theme, and a theme is stated once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import pandas as pd

Row = Mapping[str, object]
Template = Callable[[Row], str]

THEMES: dict[str, str] = {
    "days_since_last_purchase": "purchase_recency",
    "purchase_overdue_ratio": "purchase_recency",
    "purchase_gap_mean_days": "purchase_recency",
    "purchase_gap_std_days": "purchase_recency",
    "rfm_r": "purchase_recency",
    "days_since_last_event": "visit_recency",
    "bg_recency_weeks": "visit_recency",
    "bg_silent_share": "visit_recency",
    "lifecycle_stage": "stage",
    "rfm_segment": "stage",
    "activity_trend_30d": "trend",
    "spend_trend_30d": "spend_trend",
    "bg_p_alive": "expected_return",
    "bg_expected_13w": "expected_return",
    "bg_frequency": "repeat_activity",
    "bg_rate_per_week": "repeat_activity",
}

SEGMENT_WORDS: dict[str, str] = {"cant_lose": "can't lose", "potential_loyalists": "potential loyalists"}


def _num(row: Row, name: str) -> float | None:
    """The value of ``name`` as a finite float, or ``None`` (missing, not a number, infinite)."""
    value = row.get(name)
    if value is None:
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _count(n: float, one: str, many: str | None = None) -> str:
    k = round(n)
    return f"{k:,} {one}" if k == 1 else f"{k:,} {many or one + 's'}"


def _days(x: float) -> str:
    return _count(x, "day")


def _span(days: float) -> str:
    """A duration in days, weeks, months or years, whichever reads best."""
    if days < 14:
        return _days(days)
    if days < 70:
        return _count(days / 7, "week")
    if days < 730:
        return _count(days / 30.44, "month")
    return _count(days / 365.25, "year")


def _money(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def _share(p: float) -> str:
    """A probability or share as a rounded percentage (never "0%" or "100%" for a non-extreme value)."""
    if 0 < p < 0.01:
        return "less than 1%"
    if 0.99 < p < 1:
        return "more than 99%"
    return f"{p:.0%}"


def _words(value: object) -> str:
    """A category or free value in words ("unknown" when missing); numbers rounded."""
    if value is None or value == "":
        return "unknown"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        if not math.isfinite(x):
            return "unknown"
        return f"{x:,.0f}" if abs(x) >= 10 or abs(x) < 0.005 else f"{x:.2g}"
    text = str(value)
    return SEGMENT_WORDS.get(text, text.replace("_", " "))


def _purchase_gap(row: Row) -> str:
    gap = _num(row, "purchase_gap_mean_days")
    return f"usually buys every {_days(gap)}" if gap is not None else "has bought only once"


def _last_bought(row: Row) -> str:
    since = _num(row, "days_since_last_purchase")
    return "has never bought" if since is None else f"last bought {_days(since)} ago"


def _overdue(row: Row) -> str:
    gap, since = _num(row, "purchase_gap_mean_days"), _num(row, "days_since_last_purchase")
    if since is None:
        return "has never bought"
    if gap is None:
        return f"bought once, {_days(since)} ago"
    return f"usually buys every {_days(gap)}, last bought {_days(since)} ago"


def _gap_spread(row: Row) -> str:
    x = _num(row, "purchase_gap_std_days")
    if x is None:
        return "too few purchases to know a buying rhythm"
    return f"irregular buyer: the time between purchases varies by about {_days(x)}"


def _trend(what: str) -> Template:
    noun = "activity" if what == "activity" else "spend"

    def text(row: Row) -> str:
        x = _num(row, f"{what}_trend_30d")
        if x is None:
            return f"no {noun} in the last 60 days"
        if x <= -1:
            return f"{noun} stopped in the last 30 days"
        if x >= 1:
            return f"all {noun} is new in the last 30 days"
        # trend = (recent - prior) / (recent + prior), so recent / prior = (1 + trend) / (1 - trend)
        change = (1 + x) / (1 - x) - 1
        if abs(change) < 0.005:
            return f"{noun} flat on the 30 days before"
        direction = "down" if change < 0 else "up"
        return f"{noun} {direction} {abs(change):.0%} on the 30 days before"

    return text


def _score(name: str, low: str, mid: str, high: str) -> Template:
    def text(row: Row) -> str:
        x = _num(row, name)
        if x is None:
            return "not scored yet (no purchase)"
        k = round(x)
        side = low if k <= 2 else high if k >= 4 else mid
        return f"{side} (score {k} of 5)"

    return text


def _rate_per_week(row: Row) -> str:
    rate = _num(row, "bg_rate_per_week")
    if rate is None or rate <= 0:
        return "never came back after the first visit"
    if rate >= 1:
        return f"comes back on about {_count(rate, 'day')} a week"
    weeks = 1 / rate
    if weeks > 52:
        return "comes back less than once a year"
    return (
        "comes back about once a week"
        if round(weeks) <= 1
        else f"comes back about once every {round(weeks)} weeks"
    )


def _expected_13w(row: Row) -> str:
    x = _num(row, "bg_expected_13w")
    if x is None:
        return "too little history to expect a return"
    if x < 0.5:
        return "not expected back in the next 13 weeks"
    return f"expected back about {_count(x, 'time')} in the next 13 weeks"


def _attribute(label: str, name: str) -> Template:
    def text(row: Row) -> str:
        return f"{label} {_words(row.get(name))}"

    return text


def _per_active_day(row: Row) -> str:
    x = _num(row, "sessions_per_active_day_90d")
    if x is None:
        return "no visit in the last 90 days"
    return f"about {x:.1f} visits per active day in the last 90 days"


def _distinct(name: str, one: str, many: str) -> Template:
    def text(row: Row) -> str:
        return f"only {_count(_num(row, name) or 0, one, many)} in the last 90 days"

    return text


def _optional(name: str, write: Callable[[float], str], missing: str) -> Template:
    def text(row: Row) -> str:
        x = _num(row, name)
        return missing if x is None else write(x)

    return text


TEMPLATES: dict[str, Template] = {
    "days_since_last_event": _optional(
        "days_since_last_event", lambda v: f"last active {_days(v)} ago", "never active"
    ),
    "days_since_last_purchase": _last_bought,
    "purchase_overdue_ratio": _overdue,
    "purchase_gap_mean_days": _purchase_gap,
    "purchase_gap_std_days": _gap_spread,
    "activity_trend_30d": _trend("activity"),
    "spend_trend_30d": _trend("spend"),
    "orders_total": _optional("orders_total", lambda v: f"{_count(v, 'order')} in total", "no order yet"),
    "spend_total": _optional("spend_total", lambda v: f"spent {_money(v)} in total", "no spend recorded"),
    "tenure_days": _optional(
        "tenure_days", lambda v: f"customer for {_span(v)}", "customer since an unknown date"
    ),
    "sessions_per_active_day_90d": _per_active_day,
    "distinct_items_90d": _distinct("distinct_items_90d", "different item", "different items"),
    "distinct_categories_90d": _distinct("distinct_categories_90d", "category", "categories"),
    "avg_order_value": _optional(
        "avg_order_value", lambda v: f"spends about {_money(v)} per order", "no order yet"
    ),
    "refund_ratio": _optional(
        "refund_ratio", lambda v: f"{_share(v)} of bought items refunded", "no purchase yet"
    ),
    "offers_exposed": _optional(
        "offers_exposed", lambda v: f"received {_count(v, 'offer')}", "received no offer"
    ),
    "offer_response_rate": _optional(
        "offer_response_rate", lambda v: f"responded to {_share(v)} of offers", "received no offer"
    ),
    "rfm_r": _score(
        "rfm_r",
        "bought less recently than most",
        "bought about as recently as most",
        "bought more recently than most",
    ),
    "rfm_f": _score(
        "rfm_f", "orders less often than most", "orders about as often as most", "orders more often than most"
    ),
    "rfm_m": _score(
        "rfm_m", "spends less than most", "spends about as much as most", "spends more than most"
    ),
    "lifecycle_stage": _attribute("lifecycle stage:", "lifecycle_stage"),
    "rfm_segment": _attribute("customer segment:", "rfm_segment"),
    "channel": _attribute("came through", "channel"),
    "country": _attribute("country:", "country"),
    "device": _attribute("uses", "device"),
    "bg_frequency": _optional(
        "bg_frequency", lambda v: f"came back on {_count(v, 'day')} after the first visit", "never active"
    ),
    "bg_recency_weeks": _optional(
        "bg_recency_weeks", lambda v: f"active over a span of {_span(7 * v)}", "never active"
    ),
    "bg_T_weeks": _optional("bg_T_weeks", lambda v: f"first seen {_span(7 * v)} ago", "never active"),
    "bg_rate_per_week": _rate_per_week,
    "bg_silent_share": _optional(
        "bg_silent_share", lambda v: f"silent for {_share(v)} of the time since first seen", "never active"
    ),
    "bg_p_alive": _optional(
        "bg_p_alive",
        lambda v: f"{_share(v)} chance of still being a customer, judging by past visits",
        "too little history to judge",
    ),
    "bg_expected_13w": _expected_13w,
    "gg_order_value": _optional(
        "gg_order_value", lambda v: f"expected to spend about {_money(v)} per order", "no spend recorded"
    ),
}
"""One template per model feature: the feature's meaning in the operator's words, from the user's values."""

_WINDOWED = re.compile(r"^(events|orders|spend|active_days)_(\d+)d$")


def _windowed(what: str, days: int, x: float) -> str:
    if what == "spend":
        return (
            f"spent nothing in the last {days} days"
            if x <= 0
            else f"spent {_money(x)} in the last {days} days"
        )
    if what == "active_days":
        return f"active on {_count(x, 'day')} of the last {days}"
    if round(x) == 0:
        return f"no {'activity' if what == 'events' else 'order'} in the last {days} days"
    noun = ("action", "actions") if what == "events" else ("order", "orders")
    return f"{_count(x, *noun)} in the last {days} days"


def describe(feature: str, row: Row) -> str:
    """One driver in words, from the user's own feature values."""
    if feature in TEMPLATES:
        return TEMPLATES[feature](row)
    match = _WINDOWED.match(feature)
    if match:
        return _windowed(match.group(1), int(match.group(2)), _num(row, feature) or 0.0)
    return f"{feature.replace('_', ' ')}: {_words(row.get(feature))}"


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
