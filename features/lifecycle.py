"""Lifecycle stages, RFM scores and segments, and tags: features that place a user in the operator's map.

RFM scores are 1-5 by quantile within the as-of population, with ties sharing a score: a user's score is
``1 + floor(5 * w / n)``, where ``w`` is the number of users in the population strictly worse on that
measure and ``n`` the population size. The measures:

* ``rfm_r``: days since the last purchase (fewer is better; never bought is worst);
* ``rfm_f``: orders in the last 180 days (more is better);
* ``rfm_m``: spend in the last 180 days, rounded to cents (more is better; no amounts: everyone 1).

Lifecycle stage, the first rule that holds (``lookback`` defaults to 90 days, ``dormant_after`` to 45):

============  ================================================================================
stage         rule
============  ================================================================================
new           ``tenure_days <= 30`` (signed up in the last 30 days)
churned       no activity in the last ``lookback`` days (``days_since_last_event > lookback`` or never)
dormant       no activity in the last ``dormant_after`` days
at_risk       ``purchase_overdue_ratio > 2`` (next purchase over twice its usual gap late), or
              ``activity_trend_30d <= -0.5`` (last 30 days at most a third of the 30 before)
core          ``rfm_r >= 4`` and ``rfm_f >= 4`` and ``rfm_m >= 4`` (recent, frequent, high value)
active        everyone else
============  ================================================================================

``churned`` matches the churn label's population: a user in any other stage was active within the
look-back. RFM segments (first match): champions (r,f,m >= 4), loyal (r >= 3, f >= 4), cant_lose
(r <= 2, f >= 4), potential_loyalists (r >= 4, f 2-3), recent (r >= 4), needs_attention (r = 3),
at_risk (r <= 2, f 2-3), hibernating (r = 2), lost (the rest).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

LIFECYCLE_STAGES: tuple[str, ...] = ("new", "active", "core", "at_risk", "dormant", "churned")
RFM_SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "cant_lose",
    "potential_loyalists",
    "recent",
    "needs_attention",
    "at_risk",
    "hibernating",
    "lost",
)
NEW_DAYS = 30
OVERDUE_AT_RISK = 2.0
TREND_AT_RISK = -0.5

DOCS: dict[str, str] = {
    "rfm_r": "Recency score 1-5 within the population (5 = bought most recently).",
    "rfm_f": "Frequency score 1-5 within the population (5 = most orders in 180 days).",
    "rfm_m": "Monetary score 1-5 within the population (5 = most spend in 180 days).",
    "rfm_segment": "Named RFM segment (champions, loyal, cant_lose, ..., lost).",
    "lifecycle_stage": "Lifecycle stage: new, active, core, at_risk, dormant or churned.",
    "tag_one_time_buyer": "Exactly one order so far.",
    "tag_big_spender": "In the top fifth by spend over 180 days (rfm_m = 5).",
    "tag_frequent_refunder": "At least one refund per five purchased lines, with two refunds or more.",
    "tag_offer_responder": "Bought after at least one offer.",
}


def _quintile(worse_first: ir.Value, n: ir.IntegerValue) -> ir.IntegerValue:
    """1 + floor(5 * (users strictly worse) / n): rank() over worst-first order counts those."""
    worse = ibis.rank().over(order_by=worse_first)
    return (1 + (worse * 5 / n).floor()).cast("int64")


def rfm_scores(u: ir.Table) -> ir.Table:
    """Add ``rfm_r``, ``rfm_f``, ``rfm_m`` (window over the whole population in ``u``).

    The ranks are taken on a narrow table (the id and the three measures) and joined back: a window
    over the whole population sorts every column it carries.
    """
    recency = u.days_since_last_purchase.fill_null(10**9)
    money = u.spend_180d.fill_null(-1.0).round(2)
    m = u.select(_rfm_user=u.user_id, _recency=recency, _orders=u.orders_180d, _money=money)
    n = m._rfm_user.count().over()
    m = m.select(
        "_rfm_user",
        rfm_r=_quintile(ibis.desc(m._recency), n),
        rfm_f=_quintile(m._orders.asc(), n),
        rfm_m=_quintile(m._money.asc(), n),
    )
    return u.join(m, u.user_id == m._rfm_user).drop("_rfm_user")


def rfm_segment(u: ir.Table) -> ir.StringValue:
    """Named RFM segment from the three scores (see the module docstring)."""
    r, f, m = u.rfm_r, u.rfm_f, u.rfm_m
    return ibis.cases(
        ((r >= 4) & (f >= 4) & (m >= 4), "champions"),
        ((r >= 3) & (f >= 4), "loyal"),
        ((r <= 2) & (f >= 4), "cant_lose"),
        ((r >= 4) & (f >= 2), "potential_loyalists"),
        (r >= 4, "recent"),
        (r == 3, "needs_attention"),
        ((r <= 2) & (f >= 2), "at_risk"),
        (r == 2, "hibernating"),
        else_="lost",
    )


def lifecycle_stage(u: ir.Table, lookback: int = 90, dormant_after: int = 45) -> ir.StringValue:
    """Lifecycle stage by the rules in the module docstring (first rule that holds)."""
    since = u.days_since_last_event
    overdue = u.purchase_overdue_ratio.fill_null(0.0) > OVERDUE_AT_RISK
    falling = u.activity_trend_30d.fill_null(0.0) <= TREND_AT_RISK
    return ibis.cases(
        (u.tenure_days <= NEW_DAYS, "new"),
        (since.isnull() | (since > lookback), "churned"),
        (since > dormant_after, "dormant"),
        (overdue | falling, "at_risk"),
        ((u.rfm_r >= 4) & (u.rfm_f >= 4) & (u.rfm_m >= 4), "core"),
        else_="active",
    )


def add_segments(u: ir.Table, lookback: int = 90, dormant_after: int = 45) -> ir.Table:
    """Add RFM scores and segment, lifecycle stage and tags to a table of per-user features."""
    u = rfm_scores(u)
    return u.mutate(
        rfm_segment=rfm_segment(u),
        lifecycle_stage=lifecycle_stage(u, lookback, dormant_after),
        tag_one_time_buyer=u.orders_total == 1,
        tag_big_spender=u.rfm_m == 5,
        tag_frequent_refunder=(u._refunds_total >= 2) & (u.refund_ratio.fill_null(0.0) >= 0.2),
        tag_offer_responder=u.offer_response_rate.fill_null(0.0) > 0,
    )
