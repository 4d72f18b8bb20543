"""The feature job: one row per user as of a date, written as a Parquet snapshot plus the online copy.

``build_features`` computes one snapshot (DuckDB by default, or any Ibis backend passed as ``con``, e.g.
PySpark). ``run_job`` writes ``out_dir/as_of=YYYY-MM-DD.parquet`` for each date, keeping the
per-user-per-day aggregate under ``out_dir/daily/`` so the next day only aggregates that day's events.
Point in time: a snapshot as of D reads only events (and exposures) with ``ts < D`` and users with
``signup_ts < D``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import definitions as defs
from features import incremental as inc
from features.contract import write_arrow
from features.daily import VERSION, DailyState, DailyStore, locked, temp_table
from features.errors import ContractError
from features.lifecycle import DOCS as SEGMENT_DOCS
from features.lifecycle import add_segments
from features.sources import (
    Sources,
    as_of_timestamp,
    day_of,
    file_stamp,
    open_sources,
    population,
    user_attributes,
)
from features.store import OnlineStore, default_store

FEATURES: tuple[str, ...] = tuple(defs.DOCS) + tuple(SEGMENT_DOCS)
"""Every feature column of a snapshot, in order (user attribute columns follow them)."""
DOCS: dict[str, str] = {**defs.DOCS, **SEGMENT_DOCS}
INTEGER_FEATURES: frozenset[str] = frozenset(
    [c for c in defs.COUNTS if not c.startswith("_")] + ["tenure_days", "rfm_r", "rfm_f", "rfm_m"]
)
"""Features that are always defined whole numbers (int64); other numeric features are float64."""
STRING_FEATURES: frozenset[str] = frozenset(["rfm_segment", "lifecycle_stage"])


def _lit(ts: pd.Timestamp) -> ir.Scalar:
    return ibis.literal(ts.to_pydatetime(), "timestamp")


@contextmanager
def _unfused() -> Iterator[None]:
    """Compile without fusing nested selects: Ibis compiles the snapshot's deep expression about three
    times faster (0.5 s -> 0.17 s on this machine), and DuckDB plans both forms alike."""
    before = ibis.options.sql.fuse_selects
    ibis.options.sql.fuse_selects = False
    try:
        yield
    finally:
        ibis.options.sql.fuse_selects = before


def _attach(left: ir.Table, right: ir.Table, key: str = "user_id") -> ir.Table:
    """Left-join per-user columns onto ``left`` (``left[key] == right.user_id``; the right key is dropped)."""
    right = right.rename(_uid="user_id")
    return left.left_join(right, left[key] == right._uid).drop("_uid")


def _coded(frame: ir.Table, codes: ir.Table) -> ir.Table:
    """``frame`` with its string ``user_id`` replaced by the user's integer code."""
    joined = frame.join(codes, frame.user_id == codes.code_user)
    return joined.select(joined.uid.name("user_id"), *[c for c in frame.columns if c != "user_id"])


@dataclass(frozen=True)
class KeptTables:
    """Tables a snapshot reads from the kept aggregate instead of computing them from the events (each
    None: computed from the events).

    Args:
        daily: A kept daily activity table covering every day before the as-of date.
        rows: Kept item rows covering the distinct-count window.
        codes: ``code_user -> uid`` when ``daily`` and ``rows`` are keyed by integer user codes.
        totals: ``incremental.totals(daily, as_of)`` when already at hand (e.g. rolled on from kept
            ones); then only the daily rows with a purchase are read, and ``daily`` may hold just those.
        seen: ``incremental.last_seen`` of the item rows as of the as-of date (items, and categories or
            None) when already at hand (e.g. rolled on from kept ones).
    """

    daily: ir.Table | None = None
    rows: ir.Table | None = None
    codes: ir.Table | None = None
    totals: ir.Table | None = None
    seen: tuple[ir.Table, ir.Table | None] | None = None


def feature_table(
    src: Sources,
    as_of: pd.Timestamp,
    kept: KeptTables | None = None,
    *,
    lookback: int = 90,
    dormant_after: int = 45,
) -> ir.Table:
    """The snapshot as an Ibis expression (nothing is executed except reading the offer ids).

    Args:
        src: The data folder's tables.
        as_of: As-of date (UTC midnight).
        kept: Tables read from the kept aggregate (default: everything from the events).
        lookback: Days without activity after which a user is ``churned``.
        dormant_after: Days without activity after which a user is ``dormant``.
    """
    kept = kept if kept is not None else KeptTables()
    daily, rows, codes, totals, seen = kept.daily, kept.rows, kept.codes, kept.totals, kept.seen
    as_of_lit, day = _lit(as_of), day_of(as_of)
    if daily is None:
        daily = inc.daily_activity(inc.events_between(src.events, None, as_of_lit), src.has)
    if rows is None and src.has.item_id:
        start = _lit(as_of - pd.Timedelta(days=inc.DISTINCT_WINDOW))
        rows = inc.item_rows(inc.events_between(src.events, start, as_of_lit), src.items, per_day=False)
        rows = _coded(rows, codes) if codes is not None else rows
    pop = population(src, as_of)
    key = "user_id"
    if codes is not None:
        pop = pop.left_join(codes, pop.user_id == codes.code_user).drop("code_user")
        key = "uid"
    u = _attach(pop, defs.behaviour(totals if totals is not None else inc.totals(daily, day), day), key)
    if rows is not None:
        if seen is None:
            seen = (
                inc.last_seen(rows, day, "item_id"),
                inc.last_seen(rows, day, "category") if src.has_category else None,
            )
        u = _attach(u, defs.distinct_touched(*seen), key)
        fills = {"distinct_items_90d": u.distinct_items_90d.fill_null(0)}
        if src.has_category:
            fills["distinct_categories_90d"] = u.distinct_categories_90d.fill_null(0)
        u = u.mutate(**fills)
    else:
        u = u.mutate(distinct_items_90d=ibis.null("int64"), distinct_categories_90d=ibis.null("int64"))
    if src.exposures is not None:
        history = defs.offer_history(src.exposures, daily, src.offer_ids, as_of_lit, day, codes)
        u = _attach(u, history, key)
        u = u.mutate(offers_exposed=u.offers_exposed.fill_null(0))
    else:
        u = u.mutate(offers_exposed=ibis.null("int64"), offer_response_rate=ibis.null("float64"))
    u = defs.fill_and_derive(u, src.has.amount)
    u = add_segments(u, lookback, dormant_after)
    u = u.mutate(as_of=as_of_lit)
    return u.select("user_id", "as_of", *FEATURES, *user_attributes(src))


def _arrow_type(column: str, found: pa.DataType) -> pa.DataType:
    """The fixed type of a snapshot column (user attribute columns keep theirs)."""
    if column in ("user_id", *STRING_FEATURES):
        return pa.string()
    if column == "as_of":
        return pa.timestamp("us")
    if column in INTEGER_FEATURES:
        return pa.int64()
    if column.startswith("tag_"):
        return pa.bool_()
    return pa.float64() if column in DOCS else found


def snapshot_table(expr: ir.Table) -> pa.Table:
    """Run a :func:`feature_table` expression: the snapshot as an Arrow table, sorted by ``user_id``,
    with fixed column types whatever backend computed it."""
    table = expr.to_pyarrow()
    table = table.cast(pa.schema([pa.field(f.name, _arrow_type(f.name, f.type)) for f in table.schema]))
    return table.take(pc.sort_indices(table["user_id"]))


@_unfused()
def build_features(
    data_dir: str | Path,
    as_of: str | dt.date | pd.Timestamp,
    *,
    con: ibis.BaseBackend | None = None,
    daily_dir: str | Path | None = None,
    lookback: int = 90,
    dormant_after: int = 45,
) -> pd.DataFrame:
    """One row per user who signed up before ``as_of``: ``user_id``, ``as_of``, then the features.

    Args:
        data_dir: Data folder (``events`` required; ``users``, ``items``, ``offers``, ``exposures``
            used when present).
        as_of: As-of date (UTC midnight); only events with ``ts < as_of`` are read.
        con: Ibis backend to run on (default: a new in-process DuckDB).
        daily_dir: A kept daily aggregate (``run_job``'s ``out_dir/daily``) to read instead of
            aggregating the events, when it covers ``as_of``.
        lookback: Days without activity after which a user is ``churned``.
        dormant_after: Days without activity after which a user is ``dormant``.

    Returns:
        The snapshot, sorted by ``user_id``.

    Raises:
        ContractError: The data folder has no events table, or a table cannot be read or lacks a
            required column.
        DataError: ``as_of`` is not a date.
    """
    src = open_sources(data_dir, con)
    ts = as_of_timestamp(as_of)
    kept = None
    if daily_dir is not None:
        store = DailyStore(daily_dir)
        state = store.state()
        codes_until = state.codes_until if state is not None and state.version == VERSION else None
        if state is not None and codes_until is not None and as_of_timestamp(codes_until) >= ts:
            kept = _kept_tables(store, state, src, ts, keep=False)
    expr = feature_table(src, ts, kept, lookback=lookback, dormant_after=dormant_after)
    frame: pd.DataFrame = snapshot_table(expr).to_pandas()
    return frame


def _kept_tables(
    store: DailyStore, state: DailyState, src: Sources, as_of: pd.Timestamp, *, keep: bool
) -> KeptTables:
    """Every table a snapshot as of ``as_of`` reads from the kept aggregate; with ``keep``, the running
    totals and last-seen tables are kept too (see :func:`_on_to`)."""
    daily, rows, codes = _kept(store, state, src, as_of)
    totals = _totals(store, state, src, daily, as_of, keep=keep)
    seen = _seen(store, state, src, rows, as_of, keep=keep)
    return KeptTables(daily=daily, rows=rows, codes=codes, totals=totals, seen=seen)


def _kept(
    store: DailyStore, state: DailyState, src: Sources, as_of: pd.Timestamp
) -> tuple[ir.Table, ir.Table | None, ir.Table]:
    """The kept tables for ``as_of``: daily activity (plus, on the fly, the days between its end and
    ``as_of``), item rows with categories (None when they do not cover the distinct window), user codes."""
    con = src.con
    codes, icodes = store.user_codes(con, state), store.item_codes(con, state)
    daily = store.activity(con, state)
    covered = as_of - pd.Timedelta(days=inc.DISTINCT_WINDOW) >= as_of_timestamp(state.items_from)
    rows = store.items(con, state) if covered and src.has.item_id else None
    if state.until is None:  # update() sets it before the kept tables are read
        raise ValueError(f"{store.root}: the kept aggregate covers no day yet")
    kept_until = as_of_timestamp(state.until)
    if as_of > kept_until:
        tail = inc.events_between(src.events, _lit(kept_until), _lit(as_of))
        # the days after the kept ones, aggregated once (the daily table is read more than once)
        fresh = temp_table(con, _coded(inc.daily_activity(tail, src.has), codes).cast(daily.schema()))
        daily = daily.union(fresh)
        if rows is not None:
            extra = _coded(inc.item_rows(tail, None).select("user_id", "day", "item_id"), codes)
            extra = extra.join(icodes, extra.item_id == icodes.code_item)
            rows = rows.union(extra.select("user_id", "day", item_id=extra.iid).cast(rows.schema()))
    if rows is not None:
        # only the distinct-count windows are read: as of ``as_of``, and as of the last kept day
        first = day_of(min(as_of, kept_until)) - inc.DISTINCT_WINDOW
        rows = rows.filter((rows.day >= first) & (rows.day < day_of(as_of)))
        names = _category_codes(src, icodes)
        rows = rows.left_join(names, rows.item_id == names.iid)
        rows = rows.select("user_id", "day", "item_id", "category")
    # both are read as they are: the running totals read a few days of the daily table and the rest of
    # the feature query only its purchase rows; the item rows are read by the last-seen tables, which
    # roll on from kept ones by the new days' rows (see _seen)
    return daily, rows, codes


ROLL_DAYS = 30
"""Kept running totals (and last-seen tables) at most this many days old are rolled on to the as-of
date; older ones are rebuilt."""


Tables = tuple[ir.Table, ...]


def _on_to(
    state: DailyState,
    as_of: pd.Timestamp,
    kept: tuple[Tables, pd.Timestamp] | None,
    roll: Callable[[Tables, int, int], Tables],
    build: Callable[[int], Tables],
    keep: Callable[[Tables, pd.Timestamp], None] | None,
) -> Tables:
    """Kept per-user tables as of ``as_of``: rolled on from ``kept`` (tables, their day) when those are
    at most ``ROLL_DAYS`` older (``roll(tables, their day, day)``), else built afresh (``build(day)``).

    With ``keep``, the tables as of the last kept day (``state.until``) are kept first whenever ``as_of``
    is on or past it, so each day rolls on from the day before, not from an ever older build.
    """

    def at(when: pd.Timestamp, base: tuple[Tables, pd.Timestamp] | None) -> Tables:
        day = day_of(when)
        if base is not None and 0 <= day - day_of(base[1]) <= ROLL_DAYS:
            return roll(base[0], day_of(base[1]), day)
        return build(day)

    until = as_of_timestamp(state.until) if state.until is not None else None
    if keep is not None and until is not None and until <= as_of and (kept is None or kept[1] != until):
        kept = (at(until, kept), until)
        keep(kept[0], until)
    return kept[0] if kept is not None and kept[1] == as_of else at(as_of, kept)


def _totals(
    store: DailyStore, state: DailyState, src: Sources, daily: ir.Table, as_of: pd.Timestamp, *, keep: bool
) -> ir.Table:
    """``totals(daily, as_of)``, rolled on from the kept totals (cost in proportion to the days' rows
    that enter or leave a window, not the history); see :func:`_on_to`."""
    con = src.con
    found = store.totals(con, state)
    tables = _on_to(
        state,
        as_of,
        ((found[0],), found[1]) if found is not None else None,
        lambda t, day0, day: (temp_table(con, inc.roll_totals(t[0], day0, daily, day)),),
        lambda day: (temp_table(con, inc.totals(daily, day)),),
        (lambda t, day: store.keep_totals(con, state, t[0], day)) if keep else None,
    )
    return tables[0]


def _seen(
    store: DailyStore,
    state: DailyState,
    src: Sources,
    rows: ir.Table | None,
    as_of: pd.Timestamp,
    *,
    keep: bool,
) -> tuple[ir.Table, ir.Table | None] | None:
    """``last_seen`` of the item rows as of ``as_of`` (items, and categories when items have them), rolled
    on from the kept tables; see :func:`_on_to`. Tables kept from another items file are not used."""
    if rows is None:
        return None
    con, stamp = src.con, file_stamp(src.items_path)
    keys = ("item_id", "category") if src.has_category else ("item_id",)
    found = store.seen(con, state, stamp)
    usable = found is not None and (found[1] is not None) == src.has_category

    def roll(kept: Tables, since: int, day: int) -> Tables:
        # the new days' rows, materialized: small, and known to be small when joined to the kept rows
        recent = temp_table(con, rows.filter((rows.day >= since) & (rows.day < day)))
        return tuple(
            temp_table(con, inc.roll_last_seen(t, since, recent, day, k))
            for t, k in zip(kept, keys, strict=True)
        )

    def build(day: int) -> Tables:
        return tuple(temp_table(con, inc.last_seen(rows, day, k)) for k in keys)

    def keep_them(tables: Tables, day: pd.Timestamp) -> None:
        store.keep_seen(con, state, tables[0], tables[1] if len(tables) > 1 else None, day, stamp)

    # one table per key: (items,) or (items, categories)
    kept = (found[: len(keys)], found[2]) if found is not None and usable else None
    tables = _on_to(state, as_of, kept, roll, build, keep_them if keep else None)
    return tables[0], (tables[1] if len(tables) > 1 else None)


def _category_codes(src: Sources, icodes: ir.Table) -> ir.Table:
    """``iid -> category`` with each category as a small integer code (distinct counts are the same,
    and joins and groupings on integers are much cheaper than on the names)."""
    if not (src.has_category and src.items is not None):
        return temp_table(src.con, icodes.select("iid", category=ibis.null("int64")))
    cats = src.items.select(cat_item=src.items.item_id.cast("string"), name=src.items.category.cast("string"))
    names = cats.filter(cats.name.notnull()).select("name").distinct()
    # numbered in name order: the same items file gives the same codes, so kept last-seen tables stay valid
    names = names.mutate(category=ibis.row_number().over(order_by=names.name).cast("int64"))
    cats = cats.left_join(names, "name").select("cat_item", "category")
    coded = icodes.left_join(cats, icodes.code_item == cats.cat_item)
    return temp_table(src.con, coded.select("iid", "category"))


def _last_event_day(src: Sources) -> pd.Timestamp | None:
    """The day of the last event: the kept aggregate never covers it, it may still be filling up."""
    last = src.events.ts.cast("timestamp").max().execute()
    return None if last is None or pd.isna(last) else pd.Timestamp(last).normalize().as_unit("us")


def snapshot_path(out_dir: str | Path, as_of: pd.Timestamp) -> Path:
    """Where the snapshot for ``as_of`` lives."""
    return Path(out_dir) / f"as_of={as_of.strftime('%Y-%m-%d')}.parquet"


@dataclass(frozen=True)
class JobOptions:
    """How :func:`run_job` writes its snapshots: its keyword options, gathered once and passed down whole
    (see :func:`run_job` for each)."""

    online: OnlineStore | None = None
    write_online: bool = True
    full: bool = False
    lookback: int = 90
    dormant_after: int = 45
    on_done: Callable[[pd.Timestamp, pd.DataFrame, float], None] | None = None
    on_rebuild: Callable[[str], None] | None = None


def run_job(  # noqa: PLR0913 - the entry point of the CLI and of training: each keyword is an option
    data_dir: str | Path,
    as_of_dates: Iterable[str | dt.date | pd.Timestamp],
    out_dir: str | Path | None = None,
    *,
    con: ibis.BaseBackend | None = None,
    online: OnlineStore | None = None,
    write_online: bool = True,
    full: bool = False,
    lookback: int = 90,
    dormant_after: int = 45,
    on_done: Callable[[pd.Timestamp, pd.DataFrame, float], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write one snapshot per as-of date, and the latest one to the online store.

    Args:
        data_dir: Data folder.
        as_of_dates: As-of dates (UTC midnights), in any order; duplicates are written once.
        out_dir: Snapshot folder (default ``data_dir/features``).
        con: Ibis backend (default: a new in-process DuckDB).
        online: Online store for serving (default: the SQLite file under ``data_dir/online/``).
        write_online: Write the latest snapshot to the online store (skipped when the store already
            holds a later as-of date).
        full: Rebuild the kept daily aggregate from all events instead of extending it.
        lookback: Days without activity after which a user is ``churned``.
        dormant_after: Days without activity after which a user is ``dormant``.
        on_done: Called after each snapshot with its date, frame and seconds taken.
        on_rebuild: Called with the reason when the kept daily aggregate was built from all events
            (nothing kept yet, asked for, or events before its last day changed since they were
            aggregated) rather than extended.

    Returns:
        The snapshot paths, in date order.

    Raises:
        JobBusyError: Another job is writing ``out_dir``, or a job or an ingest ``data_dir``.
        ContractError: The data folder has no events table, or a table cannot be read or lacks a
            required column; or ``out_dir`` cannot be made.
        DataError: An as-of date is not a date.
    """
    dates = sorted({as_of_timestamp(d) for d in as_of_dates})
    if not dates:
        raise ValueError("no as-of date given")
    out = Path(out_dir) if out_dir is not None else Path(data_dir) / "features"
    if out.exists() and not out.is_dir():
        raise ContractError(f"{out}: is a file; --out names the folder of snapshots to write")
    src = open_sources(data_dir, con)  # a folder without events is refused before anything is made
    options = JobOptions(
        online=online,
        write_online=write_online,
        full=full,
        lookback=lookback,
        dormant_after=dormant_after,
        on_done=on_done,
        on_rebuild=on_rebuild,
    )
    # the data folder's lock too: an ingest into it waits, and never swaps the tables being read
    same = out.resolve() == Path(data_dir).resolve()
    with locked(data_dir), nullcontext() if same else locked(out):
        return _run_locked(data_dir, src, dates, out, options)


@_unfused()
def _run_locked(
    data_dir: str | Path, src: Sources, dates: list[pd.Timestamp], out: Path, options: JobOptions
) -> list[Path]:
    store = DailyStore(out / "daily")
    started = time.perf_counter()
    # Days up to the last event's day are kept; later ones (there are events still to come for them)
    # are aggregated on the fly, so a run ahead of the data never freezes an incomplete day.
    last = _last_event_day(src)
    keep = min(dates[-1], last) if last is not None else dates[0]
    state = store.update(src, keep, codes_until=dates[-1], full=options.full)
    if store.rebuilt and options.on_rebuild is not None:
        options.on_rebuild(store.rebuilt)
    on_done = options.on_done
    paths: list[Path] = []
    latest: pa.Table | pd.DataFrame | None = None
    for as_of in dates:
        kept = _kept_tables(store, state, src, as_of, keep=True)
        expr = feature_table(src, as_of, kept, lookback=options.lookback, dormant_after=options.dormant_after)
        table = snapshot_table(expr)
        paths.append(write_arrow(table, snapshot_path(out, as_of)))
        latest = table.to_pandas() if on_done is not None else table  # to pandas once, when needed
        if on_done is not None:
            on_done(as_of, latest, time.perf_counter() - started)
        started = time.perf_counter()
    if options.write_online and latest is not None:
        online = options.online if options.online is not None else default_store(data_dir)
        held = online.as_of()
        if held is None or held <= dates[-1]:
            online.write(latest if isinstance(latest, pd.DataFrame) else latest.to_pandas())
    return paths
