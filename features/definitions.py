"""Feature definitions: one small named Ibis expression per feature, run on DuckDB (default) or Spark.

Two stages, both plain Ibis so every backend runs the same definitions:

1. :func:`daily_activity` folds events into one row per user and UTC day (events, purchases, orders,
   spend, refunds, sessions). The job keeps this table on disk, so the next day only adds a day.
2. :func:`user_features` turns the daily table (plus item rows, exposures and users) into one row per
   user *as of* a date. Days are integer day numbers (days since 1970-01-01, UTC); "as of D" reads only
   days ``< D``, and ``age = D - day`` is 1 for yesterday, so "the last N days" is ``age <= N``. Daily
   rows are first folded into age bands (:data:`PERIODS`), so each window sums a handful of rows.

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

Reduction = Callable[[ir.Table], ir.Scalar]
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


def daily_feature(fn: Reduction) -> Reduction:
    """Register a reduction over a user's period rows (see :func:`periods`)."""
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
        return per.select("user_id", "day", "events", "purchases",
                          orders=(per.purchases > 0).cast("int64"), spend_e4=per.spend_e4,
                          refunds=per.refunds,
                          sessions=(per.events > 0).cast("int64"))
    daily = per.group_by(["user_id", "day"]).aggregate(
        events=per.events.sum(), purchases=per.purchases.sum(),
        orders=per.session_id.count(where=per.purchases > 0),
        spend_e4=per.spend_e4.sum(), refunds=per.refunds.sum(),
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


# ------------------------------------------------------------------------- reductions over daily rows
def _window_family(measure: str, doc: str) -> None:
    for n in WINDOWS:
        def fn(d: ir.Table, n: int = n) -> ir.Scalar:
            return d[measure].sum(where=d.period <= n)

        _register(_REDUCTIONS, fn, f"{measure.removesuffix('_e4')}_{n}d", doc.format(n=n))


_window_family("events", "Events (views, carts, purchases; not refunds) in the last {n} days.")
_window_family("orders", "Orders (distinct purchase sessions, or purchase-days) in the last {n} days.")
_window_family("spend_e4", "Money spent on purchases in the last {n} days.")


@daily_feature
def days_since_last_event(d: ir.Table) -> ir.Scalar:
    """Days since the user's last active day (1 = yesterday); null if never active."""
    return d.last_active_age.min()


@daily_feature
def days_since_last_purchase(d: ir.Table) -> ir.Scalar:
    """Days since the user's last purchase day (1 = yesterday); null if never bought."""
    return d.last_purchase_age.min()


@daily_feature
def active_days_30d(d: ir.Table) -> ir.Scalar:
    """Days with any activity in the last 30 days."""
    return d.active_days.sum(where=d.period <= 30)


@daily_feature
def active_days_90d(d: ir.Table) -> ir.Scalar:
    """Days with any activity in the last 90 days."""
    return d.active_days.sum(where=d.period <= 90)


@daily_feature
def orders_total(d: ir.Table) -> ir.Scalar:
    """Orders over the user's whole history."""
    return d.orders.sum()


@daily_feature
def spend_total(d: ir.Table) -> ir.Scalar:
    """Money spent over the user's whole history."""
    return d.spend_e4.sum()


@daily_feature
def _sessions_90d(d: ir.Table) -> ir.Scalar:
    return d.sessions.sum(where=d.period <= 90)


@daily_feature
def _purchases_total(d: ir.Table) -> ir.Scalar:
    return d.purchases.sum()


@daily_feature
def _refunds_total(d: ir.Table) -> ir.Scalar:
    return d.refunds.sum()


@daily_feature
def _events_prior_30d(d: ir.Table) -> ir.Scalar:
    return d.events.sum(where=d.period == 60)


@daily_feature
def _spend_prior_30d(d: ir.Table) -> ir.Scalar:
    return d.spend_e4.sum(where=d.period == 60)


COUNTS: tuple[str, ...] = tuple(
    [f"events_{n}d" for n in WINDOWS] + [f"orders_{n}d" for n in WINDOWS]
    + ["active_days_30d", "active_days_90d", "orders_total", "_sessions_90d", "_purchases_total",
       "_refunds_total", "_events_prior_30d"]
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


def purchase_gaps(daily: ir.Table, as_of_day: int) -> ir.Table:
    """``purchase_gap_mean_days`` and ``purchase_gap_std_days`` per user with a purchase."""
    p = daily.filter((daily.day < as_of_day) & (daily.purchases > 0)).select("user_id", "day")
    p = p.mutate(gap=(p.day - p.day.lag().over(group_by="user_id", order_by="day")).cast("int64"))
    # integer sums, one division: exact and the same on every backend (a streaming std is not)
    g = p.group_by("user_id").aggregate(n=p.gap.count(), s=p.gap.sum(), ss=(p.gap * p.gap).sum())
    var = (g.n * g.ss - g.s * g.s).cast("float64") / (g.n * (g.n - 1)).nullif(0).cast("float64")
    return g.select("user_id", purchase_gap_mean_days=g.s.cast("float64") / g.n.nullif(0).cast("float64"),
                    purchase_gap_std_days=var.sqrt())


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


def offer_history(exposures: ir.Table, daily: ir.Table, offer_ids: list[str] | None,
                  as_of: ibis.Scalar, as_of_day: int, codes: ir.Table | None = None) -> ir.Table:
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
    x = x.select(user_id=x.unit_id.cast("string"), experiment=x.experiment.cast("string"),
                 variant=x.variant.cast("string"), xts=x.ts.cast("timestamp"),
                 xday=day_number(x.ts.cast("timestamp")))
    if codes is not None:
        x = x.join(codes, x.user_id == codes.code_user)
        x = x.select(user_id=x.uid, experiment=x.experiment, variant=x.variant, xts=x.xts, xday=x.xday)
    p = daily.filter((daily.purchases > 0) & (daily.day < as_of_day))
    p = p.select(buyer=p.user_id, pday=p.day)
    joined = x.left_join(p, [x.user_id == p.buyer, p.pday >= x.xday, p.pday < x.xday + OFFER_RESPONSE_DAYS])
    per_exposure = joined.group_by(["user_id", "experiment", "variant", "xts"]).aggregate(
        answered=(joined.pday.count() > 0).cast("float64"))
    return per_exposure.group_by("user_id").aggregate(
        offers_exposed=per_exposure.count(), offer_response_rate=per_exposure.answered.mean())


# ------------------------------------------------------------------------------------- assembling
PERIODS: tuple[int, ...] = (7, 30, 60, 90, 180, 10**6)
"""Age bands (upper bounds, in days) that every window is a union of; the last is "older"."""


def periods(daily: ir.Table, as_of_day: int) -> ir.Table:
    """Each user's daily rows before the as-of day folded into age bands (at most six rows per user).

    Windowed features then sum a few band rows instead of filtering every day: same numbers, less work.
    """
    d = daily.filter(daily.day < as_of_day)
    d = d.mutate(age=as_of_day - d.day)
    band = ibis.cases(*[(d.age <= p, p) for p in PERIODS[:-1]], else_=PERIODS[-1])
    d = d.mutate(period=band)
    return d.group_by(["user_id", "period"]).aggregate(
        events=d.events.sum(), purchases=d.purchases.sum(), orders=d.orders.sum(), spend_e4=d.spend_e4.sum(),
        refunds=d.refunds.sum(), sessions=d.sessions.sum(), active_days=d.day.count(where=d.events > 0),
        last_active_age=d.age.min(where=d.events > 0), last_purchase_age=d.age.min(where=d.purchases > 0),
    )


def roll_periods(bands: ir.Table, bands_day: int, daily: ir.Table, as_of_day: int) -> ir.Table:
    """``periods(daily, as_of_day)`` from ``bands = periods(daily, bands_day)``, an earlier as-of day.

    Only daily rows that change age band between the two days (a few days' rows per band boundary) and
    the new days are read: each leaves its old band (subtracted) and joins its new one (added). Sums and
    counts move exactly; a band's most recent active (purchase) day is the newest of what it kept and
    what joined, or none when no active day (purchase) is left in it: the rows that leave a band are its
    oldest. A band may be left holding zeros where :func:`periods` has no row, or a 0 spend where it has
    null (no purchase in the band); every reduction fills those to the same values.

    Args:
        bands: :func:`periods` as of ``bands_day``.
        bands_day: Its as-of day, ``<= as_of_day``.
        daily: The daily activity table, covering every day before ``as_of_day``.
        as_of_day: The as-of day wanted.
    """
    if as_of_day < bands_day:
        raise ValueError("periods roll forward only")
    schema = bands.schema()
    old = bands.select(
        "user_id", "period", "events", "purchases", "orders", "spend_e4", "refunds", "sessions",
        "active_days", last_active=bands_day - bands.last_active_age,
        last_purchase=bands_day - bands.last_purchase_age)
    moved = daily.day >= bands_day
    for p in PERIODS[:-1]:
        moved = moved | ((daily.day >= bands_day - p) & (daily.day < as_of_day - p))
    d = daily.filter(moved & (daily.day < as_of_day))

    def band(age: ir.IntegerValue) -> ir.IntegerValue:
        return ibis.cases(*[(age <= p, p) for p in PERIODS[:-1]], else_=PERIODS[-1])

    active = (d.events > 0).cast("int64")
    values = {c: d[c] for c in ("events", "purchases", "orders", "spend_e4", "refunds", "sessions")}
    joined = d.select("user_id", period=band(as_of_day - d.day), **values, active_days=active,
                      last_active=ibis.ifelse(d.events > 0, d.day, ibis.null("int32")),
                      last_purchase=ibis.ifelse(d.purchases > 0, d.day, ibis.null("int32")))
    left = d.filter(d.day < bands_day)
    left = left.select("user_id", period=band(bands_day - left.day),
                       **{c: -left[c] for c in values}, active_days=-(left.events > 0).cast("int64"),
                       last_active=ibis.null("int32"), last_purchase=ibis.null("int32"))
    sums = (*values, "active_days")
    cols = ["user_id", "period", *sums, "last_active", "last_purchase"]
    moves = joined.select(*cols).union(left.select(*cols).cast(joined.select(*cols).schema()))
    # only the bands that rows joined or left are regrouped; the rest keep their kept row
    delta = moves.group_by(["user_id", "period"]).aggregate(
        **{f"_d_{c}": moves[c].sum() for c in sums},
        _d_last_active=moves.last_active.max(), _d_last_purchase=moves.last_purchase.max())
    delta = delta.rename(_d_user="user_id", _d_period="period")
    g = old.outer_join(delta, [old.user_id == delta._d_user, old.period == delta._d_period])

    def newest(kept: ir.IntegerValue, joined_day: ir.IntegerValue) -> ir.IntegerValue:
        return ibis.ifelse(kept.isnull(), joined_day,
                           ibis.ifelse(joined_day.isnull(), kept, ibis.greatest(kept, joined_day)))

    g = g.select(
        user_id=g.user_id.fill_null(g._d_user), period=g.period.fill_null(g._d_period),
        **{c: ibis.coalesce(g[c] + g[f"_d_{c}"], g[c], g[f"_d_{c}"]) for c in sums},
        last_active=newest(g.last_active, g._d_last_active.cast("int64")),
        last_purchase=newest(g.last_purchase, g._d_last_purchase.cast("int64")))
    out = g.select(
        "user_id", "period", *values, "active_days",
        last_active_age=ibis.ifelse(g.active_days > 0, as_of_day - g.last_active, ibis.null("int64")),
        last_purchase_age=ibis.ifelse(g.purchases > 0, as_of_day - g.last_purchase, ibis.null("int64")))
    return out.select(*schema.names).cast(schema)


def behaviour(daily: ir.Table, as_of_day: int, bands: ir.Table | None = None) -> ir.Table:
    """All period reductions per user with activity before the as-of day (helpers start with ``_``).

    Args:
        daily: The daily activity table.
        as_of_day: The as-of day.
        bands: ``periods(daily, as_of_day)`` when already at hand (e.g. rolled on from a kept one).
    """
    p = bands if bands is not None else periods(daily, as_of_day)
    return p.group_by("user_id").aggregate(**{name: fn(p) for name, fn in _REDUCTIONS.items()})


def fill_and_derive(u: ir.Table, has_amount: bool) -> ir.Table:
    """Zero-fill counts (and spend when the data has amounts), then add the derived features."""
    fills: dict[str, ir.Value] = {c: u[c].fill_null(0) for c in COUNTS}
    if has_amount:
        fills.update({c: u[c].fill_null(0) / MONEY_SCALE for c in SPENDS})
    else:
        fills.update({c: u[c].cast("float64") for c in SPENDS})
    u = u.mutate(**fills)
    return u.mutate(**{name: fn(u) for name, fn in _DERIVED.items()})


def helper_columns() -> set[str]:
    """Intermediate columns that are not features."""
    return set(_HELPERS)
