"""Feature definitions: one small named Ibis expression per feature, run on DuckDB (default) or Spark.

Two stages, both plain Ibis so every backend runs the same definitions:

1. :func:`daily_activity` folds events into one row per user and UTC day (events, purchases, orders,
   spend, refunds, sessions). The job keeps this table on disk, so the next day only adds a day.
2. :func:`totals` folds the daily table into one row of running totals per user *as of* a date (window
   sums, last active and purchase days, purchase-gap sums), and every behavioural feature is read off
   that row (:func:`behaviour`); the job keeps it too, and :func:`roll_totals` moves it on by the days'
   rows that enter or leave a window. Days are integer day numbers (days since 1970-01-01, UTC); "as of
   D" reads only days ``< D``, and ``age = D - day`` is 1 for yesterday, so "the last N days" is
   ``age <= N``.

"Activity" (events, active days, recency) is every event except a ``refund``: a refund is the shop's
doing, not the user's visit. Counts and sums with nothing to count are 0; ratios, gaps and recencies
with nothing to measure are null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

WINDOWS: tuple[int, ...] = (7, 30, 90, 180)
"""Look-back windows, in days, of the frequency and monetary features."""
MONEY_SCALE = 10_000
"""Money is summed as whole 1/10,000ths of the currency unit: exact, so every backend and every run agrees."""
DISTINCT_WINDOW = 90
"""Days over which distinct items and categories are counted."""
OFFER_RESPONSE_DAYS = 14
"""An offer exposure counts as answered when the user buys on its day or the 13 days after."""

Reduction = Callable[[ir.Table, int], ir.Value]
Derived = Callable[[ir.Table], ir.Value]

DOCS: dict[str, str] = {}
"""Feature name -> one line saying what it means to an operator."""
_REDUCTIONS: dict[str, Reduction] = {}
_DERIVED: dict[str, Derived] = {}
_HELPERS: set[str] = set()


def _register(table: dict, fn: Callable, name: str | None = None, doc: str | None = None) -> Callable:
    name = name or fn.__name__
    table[name] = fn
    text = (doc or fn.__doc__ or "").strip().splitlines()
    if name.startswith("_"):
        _HELPERS.add(name)
    else:
        DOCS[name] = text[0] if text else name
    return fn


def total_feature(fn: Reduction) -> Reduction:
    """Register a feature read off a user's running totals (see :func:`totals`) as of a day."""
    return _register(_REDUCTIONS, fn)


def derived_feature(fn: Derived) -> Derived:
    """Register a feature computed from other features of the same user."""
    return _register(_DERIVED, fn)


def day_number(ts: ir.TimestampValue) -> ir.IntegerValue:
    """UTC day number (days since 1970-01-01) of a naive-UTC timestamp."""
    return ts.date().epoch_days().cast("int32")


# ---------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class EventColumns:
    """Which optional contract columns an events table has (features that need a missing one are null)."""

    item_id: bool
    amount: bool
    session_id: bool

    @classmethod
    def of(cls, events: ir.Table) -> EventColumns:
        cols = set(events.columns)
        return cls("item_id" in cols, "amount" in cols, "session_id" in cols)


def _money_units(amount: ir.FloatingValue, where: ir.BooleanValue) -> ir.IntegerValue:
    """Sum of ``amount`` where ``where`` holds, in whole 1/10,000ths (null when there is none).

    NaN compares greater than any number on DuckDB and Spark, so the range test leaves it out. Rounding
    each group's sum to an integer makes later sums exact: every backend and every run agrees.
    """
    finite = (amount > -1e12) & (amount < 1e12)
    return (amount.sum(where=where & finite) * MONEY_SCALE).round().cast("int64")


def prepare_events(events: ir.Table) -> ir.Table:
    """Events in contract types with a ``day`` number; absent optional columns become typed nulls."""
    has = EventColumns.of(events)
    amount = events.amount.cast("float64") if has.amount else ibis.null("float64")
    return events.select(
        user_id=events.user_id.cast("string"),
        ts=events.ts.cast("timestamp"),
        event_type=events.event_type.cast("string"),
        item_id=events.item_id.cast("string") if has.item_id else ibis.null("string"),
        amount=amount,
        session_id=events.session_id.cast("string") if has.session_id else ibis.null("string"),
        day=day_number(events.ts.cast("timestamp")),
    )


def events_between(events: ir.Table, start: ibis.Scalar | None, end: ibis.Scalar) -> ir.Table:
    """Prepared events with ``start <= ts < end`` (the filter is on ``ts`` so Parquet can skip row groups)."""
    cond = events.ts < end
    if start is not None:
        cond = cond & (events.ts >= start)
    return prepare_events(events.filter(cond))


def daily_activity(events: ir.Table, has: EventColumns) -> ir.Table:
    """Per user and day: events, purchases, orders, spend (``spend_e4``, in 1/10,000ths), refunds, sessions.

    Args:
        events: Prepared events (:func:`prepare_events`).
        has: The optional columns the source had; without ``session_id`` an order is a purchase-day and
            a session an active day, without ``amount`` spend is null.
    """
    active = events.event_type != "refund"
    bought = events.event_type == "purchase"
    keys = ["user_id", "day", "session_id"] if has.session_id else ["user_id", "day"]
    # Two passes (per session, then per day) instead of COUNT(DISTINCT): several times faster.
    per = events.group_by(keys).aggregate(
        events=events.count(where=active),
        purchases=events.count(where=bought),
        refunds=events.count(where=events.event_type == "refund"),
        spend_e4=_money_units(events.amount, bought) if has.amount else ibis.null("int64"),
    )
    if not has.session_id:
        return per.select(
            "user_id",
            "day",
            "events",
            "purchases",
            orders=(per.purchases > 0).cast("int64"),
            spend_e4=per.spend_e4,
            refunds=per.refunds,
            sessions=(per.events > 0).cast("int64"),
        )
    daily = per.group_by(["user_id", "day"]).aggregate(
        events=per.events.sum(),
        purchases=per.purchases.sum(),
        orders=per.session_id.count(where=per.purchases > 0),
        spend_e4=per.spend_e4.sum(),
        refunds=per.refunds.sum(),
        sessions=per.session_id.count(where=per.events > 0),
    )
    return daily.select("user_id", "day", "events", "purchases", "orders", "spend_e4", "refunds", "sessions")


def item_rows(events: ir.Table, items: ir.Table | None, *, per_day: bool = True) -> ir.Table:
    """(user, day, item, category) rows of activity events, the input of the distinct-count features.

    Args:
        events: Prepared events.
        items: The items table (for categories), if any.
        per_day: Keep one row per user, day and item (the kept form); otherwise one per event.
    """
    rows = events.filter((events.event_type != "refund") & events.item_id.notnull())
    rows = rows.select("user_id", "day", "item_id")
    if per_day:
        rows = rows.distinct()
    if items is not None and "category" in items.columns:
        cats = items.select(item_id=items.item_id.cast("string"), category=items.category.cast("string"))
        rows = rows.left_join(cats, "item_id").select("user_id", "day", "item_id", "category")
    else:
        rows = rows.mutate(category=ibis.null("string"))
    return rows


# ------------------------------------------------------------------- running totals and their features
TOTALS: dict[str, tuple[int, ...]] = {
    "events": (7, 30, 60, 90, 180),
    "orders": (7, 30, 90, 180, 0),
    "spend_e4": (7, 30, 60, 90, 180, 0),
    "active_days": (30, 90),
    "sessions": (90,),
    "purchases": (0,),
    "refunds": (0,),
}
"""The running sums kept per user: daily column -> windows, in days (0: the whole history).
``active_days`` sums ``events > 0``."""
GAP_SUMS: tuple[str, ...] = ("gap_n", "gap_sum", "gap_sumsq")
"""Count, sum and sum of squares of the days between a user's consecutive purchase days."""


def total_column(measure: str, window: int) -> str:
    """Name of a running-total column: ``events_30d``, ``orders_all``."""
    return f"{measure}_{window}d" if window else f"{measure}_all"


def _sum_columns() -> list[tuple[str, str, int]]:
    return [(total_column(m, w), m, w) for m, windows in TOTALS.items() for w in windows]


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
    _register(_REDUCTIONS, lambda t, day, column=column: t[column], name, doc or name)


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


def last_seen(rows: ir.Table, as_of_day: int, key: str) -> ir.Table:
    """The day each user last touched each ``key`` (item or category) in the distinct-count window.

    Args:
        rows: :func:`item_rows` (any columns ``user_id``, ``day`` and ``key``).
        as_of_day: The as-of day; only days in ``[as_of_day - DISTINCT_WINDOW, as_of_day)`` are read.
        key: ``item_id`` or ``category``.

    Returns:
        ``user_id``, ``key``, ``last_day``: one row per user and key touched in the window.
    """
    return _last_day(rows, key, as_of_day - DISTINCT_WINDOW, as_of_day)


def _last_day(rows: ir.Table, key: str, start: int, end: int) -> ir.Table:
    """``user_id``, ``key``, ``last_day`` over the rows of days ``[start, end)`` with a ``key``."""
    r = rows.filter((rows.day >= start) & (rows.day < end) & rows[key].notnull())
    return r.group_by(["user_id", key]).aggregate(last_day=r.day.max())


def roll_last_seen(seen: ir.Table, seen_day: int, rows: ir.Table, as_of_day: int, key: str) -> ir.Table:
    """``last_seen(rows, as_of_day, key)`` from ``seen = last_seen(rows, seen_day, key)``, an earlier day.

    Only the rows of the days in between are grouped: a pair touched again takes its new day, a pair
    last touched before the window leaves, every other pair keeps its row. The cost follows the new
    days' rows, not the window's.

    Args:
        seen: :func:`last_seen` as of ``seen_day``.
        seen_day: Its as-of day, ``<= as_of_day`` and at most ``DISTINCT_WINDOW`` days before it.
        rows: Rows covering every day in ``[seen_day, as_of_day)``.
        as_of_day: The as-of day wanted.
        key: ``item_id`` or ``category``.
    """
    if not 0 <= as_of_day - seen_day <= DISTINCT_WINDOW:
        raise ValueError("last-seen tables roll forward only, by at most the distinct-count window")
    new = _last_day(rows, key, seen_day, as_of_day)
    old = seen.filter(seen.last_day >= as_of_day - DISTINCT_WINDOW)
    old = old.anti_join(new, [old.user_id == new.user_id, old[key] == new[key]])
    schema = seen.schema()
    return old.select(*schema.names).union(new.select(*schema.names).cast(schema))


def distinct_touched(items_seen: ir.Table, categories_seen: ir.Table | None) -> ir.Table:
    """``distinct_items_90d`` and ``distinct_categories_90d`` per user from :func:`last_seen` tables
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
def _measures(d: ir.Table) -> ir.Table:
    return d.mutate(active_days=(d.events > 0).cast("int64"))


def _gap_sums(p: ir.Table, since: int | None = None) -> ir.Table:
    """``GAP_SUMS`` per user from purchase days ``p`` (``user_id``, ``day``), counting only gaps that end
    on a day ``>= since`` (all when None)."""
    p = p.mutate(gap=(p.day - p.day.lag().over(group_by="user_id", order_by="day")).cast("int64"))
    if since is not None:
        p = p.filter(p.day >= since)
    g = p.group_by(_g_user=p.user_id).aggregate(
        gap_n=p.gap.count(), gap_sum=p.gap.sum(), gap_sumsq=(p.gap * p.gap).sum()
    )
    return g.mutate(**{c: g[c].fill_null(0) for c in GAP_SUMS})


def totals(daily: ir.Table, as_of_day: int) -> ir.Table:
    """Each user's running totals as of a day: one row per user with a daily row before it.

    Columns: ``user_id``; every :data:`TOTALS` sum (``events_30d`` = events on days ``as_of_day - 30``
    to ``as_of_day - 1``; ``orders_all`` = all orders; never null); ``last_active_day`` and
    ``last_purchase_day`` (day numbers, null if none); :data:`GAP_SUMS`. Every feature of the daily
    table is read off this row, and :func:`roll_totals` moves it to a later day by a few days' rows.
    """
    d = _measures(daily.filter(daily.day < as_of_day))
    sums = {
        name: d[m].sum(where=(d.day >= as_of_day - w) if w else None).fill_null(0)
        for name, m, w in _sum_columns()
    }
    agg = d.group_by("user_id").aggregate(
        **sums,
        last_active_day=d.day.max(where=d.events > 0),
        last_purchase_day=d.day.max(where=d.purchases > 0),
    )
    gaps = _gap_sums(d.filter(d.purchases > 0).select("user_id", "day"))
    out = agg.left_join(gaps, agg.user_id == gaps._g_user)
    return out.select(*agg.columns, **{c: out[c].fill_null(0) for c in GAP_SUMS})


def roll_totals(kept: ir.Table, kept_day: int, daily: ir.Table, as_of_day: int) -> ir.Table:
    """``totals(daily, as_of_day)`` from ``kept = totals(daily, kept_day)``, an earlier day.

    Only the daily rows that enter or leave a window are read: the new days ``[kept_day, as_of_day)``
    enter every window, and for a window of ``w`` days the days ``[kept_day - w, as_of_day - w)`` leave
    it. Sums move exactly; the last active and purchase days are the newer of the kept and the new
    ones; the new purchase days extend the gap sums from the kept last purchase day.

    Args:
        kept: :func:`totals` as of ``kept_day``.
        kept_day: Its as-of day, ``<= as_of_day``.
        daily: The daily activity table, covering every day before ``as_of_day``.
        as_of_day: The as-of day wanted.
    """
    if as_of_day < kept_day:
        raise ValueError("running totals roll forward only")
    schema = kept.schema()
    windows = sorted({w for ws in TOTALS.values() for w in ws if w})

    def leaves(day: ir.IntegerValue, w: int) -> ir.BooleanValue:
        return (day >= kept_day - w) & (day < min(as_of_day - w, kept_day))

    moved = (daily.day >= kept_day) & (daily.day < as_of_day)
    for w in windows:
        moved = moved | leaves(daily.day, w)
    d = _measures(daily.filter(moved))
    new = d.day >= kept_day
    # each row's sign in each window: +1 entering it, -1 leaving it, 0 staying in (or out of) it
    signs = {
        w: ibis.ifelse(new & (d.day >= as_of_day - w), 1, ibis.ifelse(leaves(d.day, w), -1, 0))
        for w in windows
    }
    d = d.mutate(**{f"_sign_{w}": sign for w, sign in signs.items()}, _sign_0=new.cast("int64"))
    delta = d.group_by(_d_user=d.user_id).aggregate(
        **{f"_d_{name}": (d[m] * d[f"_sign_{w}"]).sum().fill_null(0) for name, m, w in _sum_columns()},
        _d_last_active=d.day.max(where=new & (d.events > 0)),
        _d_last_purchase=d.day.max(where=new & (d.purchases > 0)),
    )
    # the gaps the new purchase days close, the first from the kept last purchase day
    p = d.filter(new & (d.purchases > 0)).select("user_id", "day")
    before = kept.filter(kept.last_purchase_day.notnull())
    before = before.select("user_id", day=before.last_purchase_day).semi_join(p, "user_id")
    gaps = _gap_sums(p.union(before.cast(p.schema())), since=kept_day)
    gaps = gaps.rename(**{f"_g_{c}": c for c in GAP_SUMS})
    g = kept.outer_join(delta, kept.user_id == delta._d_user)
    g = g.left_join(gaps, g._d_user == gaps._g_user)

    def newest(old: ir.IntegerValue, joined: ir.IntegerValue) -> ir.IntegerValue:
        newer = ibis.ifelse(joined.isnull(), old, ibis.greatest(old, joined))
        return ibis.ifelse(old.isnull(), joined, newer)

    out = g.select(
        user_id=g.user_id.fill_null(g._d_user),
        **{name: g[name].fill_null(0) + g[f"_d_{name}"].fill_null(0) for name, _, _ in _sum_columns()},
        last_active_day=newest(g.last_active_day, g._d_last_active),
        last_purchase_day=newest(g.last_purchase_day, g._d_last_purchase),
        **{c: g[c].fill_null(0) + g[f"_g_{c}"].fill_null(0) for c in GAP_SUMS},
    )
    return out.select(*schema.names).cast(schema)


def behaviour(t: ir.Table, as_of_day: int) -> ir.Table:
    """Every feature read off the running totals (helpers start with ``_``), per user in ``t``.

    Args:
        t: :func:`totals` as of ``as_of_day`` (or rolled on to it).
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
