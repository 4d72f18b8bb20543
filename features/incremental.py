"""The incremental engine: events folded into a kept per-user-per-day table, and per-user running
totals and last-seen tables that move from one as-of day to a later one by a few days' rows.

Two stages, both plain Ibis so every backend runs the same code:

1. :func:`daily_activity` folds events into one row per user and UTC day (events, purchases, orders,
   spend, refunds, sessions). The job keeps this table on disk (``features.daily``), so the next day
   only adds a day.
2. :func:`totals` folds the daily table into one row of running totals per user *as of* a date (window
   sums, last active and purchase days, purchase-gap sums); :func:`roll_totals` moves it on by the days'
   rows that enter or leave a window. :func:`last_seen` keeps the day each user last touched each item
   (or category) in the distinct-count window, and :func:`roll_last_seen` moves it on the same way.

Days are integer day numbers (days since 1970-01-01, UTC); "as of D" reads only days ``< D``, and
``age = D - day`` is 1 for yesterday, so "the last N days" is ``age <= N``. The features themselves are
read off these tables by the catalogue, :mod:`features.definitions`.

"Activity" (events, active days, recency) is every event except a ``refund``: a refund is the shop's
doing, not the user's visit.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

MONEY_SCALE = 10_000
"""Money is summed as whole 1/10,000ths of the currency unit: exact, so every backend and every run agrees."""
DISTINCT_WINDOW = 90
"""Days over which distinct items and categories are counted."""


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


# ---------------------------------------------------------------------------------- running totals
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


# ------------------------------------------------------------------------------- last-seen tables
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
