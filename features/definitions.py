"""The feature catalogue: one small named Ibis expression per feature, run on DuckDB (default) or Spark.

Every behavioural feature is read off a user's running totals as of a date (``features.incremental``
keeps them and moves them on day by day): a *total feature* is one function of that row
(:func:`total_feature`), a *derived feature* one function of other features of the same user
(:func:`derived_feature`). Each carries a one-line docstring that says what it means to an operator;
:data:`DOCS` collects them. Names that start with ``_`` are helpers, not features.

Counts and sums with nothing to count are 0; ratios, gaps and recencies with nothing to measure are null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import ibis
import ibis.expr.types as ir

from features.incremental import DISTINCT_WINDOW, MONEY_SCALE, day_number, total_column

WINDOWS: tuple[int, ...] = (7, 30, 90, 180)
"""Look-back windows, in days, of the frequency and monetary features."""
OFFER_RESPONSE_DAYS = 14
"""An offer exposure counts as answered when the user buys on its day or the 13 days after."""

Reduction = Callable[[ir.Table, int], ir.Value]
Derived = Callable[[ir.Table], ir.Value]

DOCS: dict[str, str] = {}
"""Feature name -> one line saying what it means to an operator."""
_REDUCTIONS: dict[str, Reduction] = {}
_DERIVED: dict[str, Derived] = {}
_HELPERS: set[str] = set()
_Feature = TypeVar("_Feature", Reduction, Derived)


def _register(
    table: dict[str, _Feature], fn: _Feature, name: str | None = None, doc: str | None = None
) -> _Feature:
    name = name or fn.__name__
    table[name] = fn
    text = (doc or fn.__doc__ or "").strip().splitlines()
    if name.startswith("_"):
        _HELPERS.add(name)
    else:
        DOCS[name] = text[0] if text else name
    return fn


def total_feature(fn: Reduction) -> Reduction:
    """Register a feature read off a user's running totals as of a day (``incremental.totals``)."""
    return _register(_REDUCTIONS, fn)


def derived_feature(fn: Derived) -> Derived:
    """Register a feature computed from other features of the same user."""
    return _register(_DERIVED, fn)


# ------------------------------------------------------------------ features of the running totals
def _window_family(measure: str, doc: str) -> None:
    for n in WINDOWS:

        def fn(t: ir.Table, day: int, n: int = n) -> ir.Value:
            return t[total_column(measure, n)]

        _register(_REDUCTIONS, fn, f"{measure.removesuffix('_e4')}_{n}d", doc.format(n=n))


_window_family("events", "Events (views, carts, purchases; not refunds) in the last {n} days.")
_window_family("orders", "Orders (distinct purchase sessions, or purchase-days) in the last {n} days.")
_window_family("spend_e4", "Money spent on purchases in the last {n} days.")


@total_feature
def days_since_last_event(t: ir.Table, day: int) -> ir.Value:
    """Days since the user's last active day (1 = yesterday); null if never active."""
    return day - t.last_active_day


@total_feature
def days_since_last_purchase(t: ir.Table, day: int) -> ir.Value:
    """Days since the user's last purchase day (1 = yesterday); null if never bought."""
    return day - t.last_purchase_day


def _column_feature(name: str, column: str, doc: str = "") -> None:
    """Register a feature that is one running-total column as it stands."""

    def fn(t: ir.Table, day: int) -> ir.Value:
        return t[column]

    _register(_REDUCTIONS, fn, name, doc or name)


for _name, _column, _doc in [
    ("active_days_30d", "active_days_30d", "Days with any activity in the last 30 days."),
    ("active_days_90d", "active_days_90d", "Days with any activity in the last 90 days."),
    ("orders_total", "orders_all", "Orders over the user's whole history."),
    ("spend_total", "spend_e4_all", "Money spent over the user's whole history."),
    ("_sessions_90d", "sessions_90d", ""),
    ("_purchases_total", "purchases_all", ""),
    ("_refunds_total", "refunds_all", ""),
]:
    _column_feature(_name, _column, _doc)
del _name, _column, _doc


@total_feature
def _events_prior_30d(t: ir.Table, day: int) -> ir.Value:
    return t.events_60d - t.events_30d


@total_feature
def _spend_prior_30d(t: ir.Table, day: int) -> ir.Value:
    return t.spend_e4_60d - t.spend_e4_30d


COUNTS: tuple[str, ...] = tuple(
    [f"events_{n}d" for n in WINDOWS]
    + [f"orders_{n}d" for n in WINDOWS]
    + [
        "active_days_30d",
        "active_days_90d",
        "orders_total",
        "_sessions_90d",
        "_purchases_total",
        "_refunds_total",
        "_events_prior_30d",
    ]
)
"""Reductions that are 0, not null, for a user with nothing to count."""
SPENDS: tuple[str, ...] = tuple([f"spend_{n}d" for n in WINDOWS] + ["spend_total", "_spend_prior_30d"])
"""Money sums: 0 for a user who bought nothing, null when the data has no amounts."""


# ---------------------------------------------------------------------------------- derived features
def _trend(recent: ir.NumericValue, prior: ir.NumericValue) -> ir.FloatingValue:
    return (recent - prior) / (recent + prior).nullif(0)


@derived_feature
def sessions_per_active_day_90d(u: ir.Table) -> ir.Value:
    """Visits per active day over the last 90 days; null if not active in them."""
    return u._sessions_90d / u.active_days_90d.nullif(0)


@derived_feature
def avg_order_value(u: ir.Table) -> ir.Value:
    """Average money per order over the user's history; null if never ordered."""
    return u.spend_total / u.orders_total.nullif(0)


@derived_feature
def refund_ratio(u: ir.Table) -> ir.Value:
    """Refunded lines per purchased line over the user's history; null if never bought."""
    return u._refunds_total / u._purchases_total.nullif(0)


@derived_feature
def purchase_overdue_ratio(u: ir.Table) -> ir.Value:
    """Days since the last purchase divided by the user's usual gap between purchases (>1 = late)."""
    return u.days_since_last_purchase / u.purchase_gap_mean_days.nullif(0)


@derived_feature
def activity_trend_30d(u: ir.Table) -> ir.Value:
    """Events in the last 30 days vs the 30 before, from -1 (stopped) to +1 (new); null if neither."""
    return _trend(u.events_30d, u._events_prior_30d)


@derived_feature
def spend_trend_30d(u: ir.Table) -> ir.Value:
    """Spend in the last 30 days vs the 30 before, from -1 (stopped) to +1 (new); null if neither."""
    return _trend(u.spend_30d, u._spend_prior_30d)


# -------------------------------------------------------------------- features from other sources
OTHER_DOCS = {
    "tenure_days": "Days since the user signed up (1 = signed up yesterday).",
    "purchase_gap_mean_days": "Mean days between consecutive purchase days; null before the second one.",
    "purchase_gap_std_days": "Spread (sample std) of the days between purchases; null before the third "
    "purchase day.",
    "distinct_items_90d": f"Distinct items viewed, carted or bought in the last {DISTINCT_WINDOW} days.",
    "distinct_categories_90d": f"Distinct item categories touched in the last {DISTINCT_WINDOW} days.",
    "offers_exposed": "Offers shown to the user so far (exposures to an offer variant).",
    "offer_response_rate": f"Share of those offers followed by a purchase within {OFFER_RESPONSE_DAYS} days.",
}
DOCS.update(OTHER_DOCS)


def distinct_touched(items_seen: ir.Table, categories_seen: ir.Table | None) -> ir.Table:
    """``distinct_items_90d`` and ``distinct_categories_90d`` per user from the
    :func:`features.incremental.last_seen` tables
    (each holds one row per user and item, or category, touched in the window).

    Args:
        items_seen: ``last_seen(rows, as_of_day, "item_id")``.
        categories_seen: ``last_seen(rows, as_of_day, "category")``, or None when items have no category.
    """
    out = items_seen.group_by("user_id").aggregate(distinct_items_90d=items_seen.count())
    if categories_seen is None:
        return out.mutate(distinct_categories_90d=ibis.null("int64"))
    c = categories_seen
    per_user = c.group_by(cat_user=c.user_id).aggregate(distinct_categories_90d=c.count())
    out = out.left_join(per_user, out.user_id == per_user.cat_user).drop("cat_user")
    return out.mutate(distinct_categories_90d=out.distinct_categories_90d.fill_null(0))


def offer_history(
    exposures: ir.Table,
    daily: ir.Table,
    offer_ids: list[str] | None,
    as_of: ibis.Scalar,
    as_of_day: int,
    codes: ir.Table | None = None,
) -> ir.Table:
    """``offers_exposed`` and ``offer_response_rate`` per exposed user.

    Args:
        exposures: The contract's exposures table.
        daily: The daily activity table.
        offer_ids: Variants that are offers (default: every variant except ``control``).
        as_of: The as-of timestamp.
        as_of_day: Its day number.
        codes: ``code_user -> uid`` when ``daily`` is keyed by integer user codes.
    """
    is_offer = exposures.variant.isin(offer_ids) if offer_ids is not None else exposures.variant != "control"
    x = exposures.filter(is_offer & (exposures.ts.cast("timestamp") < as_of))
    x = x.select(
        user_id=x.unit_id.cast("string"),
        experiment=x.experiment.cast("string"),
        variant=x.variant.cast("string"),
        xts=x.ts.cast("timestamp"),
        xday=day_number(x.ts.cast("timestamp")),
    )
    if codes is not None:
        x = x.join(codes, x.user_id == codes.code_user)
        x = x.select(user_id=x.uid, experiment=x.experiment, variant=x.variant, xts=x.xts, xday=x.xday)
    p = daily.filter((daily.purchases > 0) & (daily.day < as_of_day))
    p = p.select(buyer=p.user_id, pday=p.day)
    joined = x.left_join(p, [x.user_id == p.buyer, p.pday >= x.xday, p.pday < x.xday + OFFER_RESPONSE_DAYS])
    per_exposure = joined.group_by(["user_id", "experiment", "variant", "xts"]).aggregate(
        answered=(joined.pday.count() > 0).cast("float64")
    )
    return per_exposure.group_by("user_id").aggregate(
        offers_exposed=per_exposure.count(), offer_response_rate=per_exposure.answered.mean()
    )


# ------------------------------------------------------------------------------------- assembling
def behaviour(t: ir.Table, as_of_day: int) -> ir.Table:
    """Every feature read off the running totals (helpers start with ``_``), per user in ``t``.

    Args:
        t: :func:`features.incremental.totals` as of ``as_of_day`` (or rolled on to it).
        as_of_day: The as-of day.
    """
    var = (t.gap_n * t.gap_sumsq - t.gap_sum * t.gap_sum).cast("float64") / (t.gap_n * (t.gap_n - 1)).nullif(
        0
    ).cast("float64")
    # integer sums, one division: exact and the same on every backend (a streaming std is not)
    return t.select(
        "user_id",
        **{name: fn(t, as_of_day) for name, fn in _REDUCTIONS.items()},
        purchase_gap_mean_days=t.gap_sum.cast("float64") / t.gap_n.nullif(0).cast("float64"),
        purchase_gap_std_days=var.sqrt(),
    )


def fill_and_derive(u: ir.Table, has_amount: bool) -> ir.Table:
    """Zero-fill counts (and spend when the data has amounts), then add the derived features."""
    fills: dict[str, ir.Value] = {c: u[c].fill_null(0) for c in COUNTS}
    if has_amount:
        fills.update({c: u[c].fill_null(0) / MONEY_SCALE for c in SPENDS})
    else:
        fills.update({c: ibis.null("float64") for c in SPENDS})  # the running totals hold 0
    u = u.mutate(**fills)
    return u.mutate(**{name: fn(u) for name, fn in _DERIVED.items()})


def helper_columns() -> set[str]:
    """Intermediate columns that are not features."""
    return set(_HELPERS)
