"""The kept per-user-per-day aggregate: built once, then extended by each new day's events only.

Layout of ``DIR`` (normally ``<features out>/daily/``)::

    state.json                      {"until": "YYYY-MM-DD", "items_from": ..., "events": ..., parts}
                                    (DailyState; its dates are ISO days, null for none)
    activity-<from>-<until>.parquet one row per user and day (see incremental.daily_activity)
    items-<from>-<until>.parquet    distinct (user, day, item) rows, kept for the last
                                    DISTINCT_WINDOW days before the first build and every day after
    usercodes-*, itemcodes-*        integer codes of user and item ids (code_user -> uid, code_item -> iid)
    *-merged-*.parquet              a table's parts merged into one once they pass MAX_PARTS
    totals-<day>-*.parquet          each user's running totals as of the last kept day (incremental.totals)
    seen-items-*, seen-categories-* the day each user last touched each item / category in the window

The kept tables hold integer codes instead of id strings: every later query groups and joins on
integers, several times faster than on strings. Codes are assigned once and never change.

Every part is written to a temporary name and renamed, and ``state.json`` is replaced last, so a failed
or killed run leaves the previous state intact (the state is replaced as a whole, in one rename); the
parts such a run left that no state names are removed by the next update. Days are whole UTC days, so
the table built up to ``until`` serves any as-of date ``<= until`` (features filter ``day < as_of``).
Events that arrive late for a day already aggregated (or are deleted or moved) change the count and
summed timestamps of the events before ``until`` kept in the state, and the next update rebuilds from
all events; an edit that keeps every timestamp (a changed amount) is not seen: rebuild with
``full=True`` after rewriting history.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.errors import ContractError, JobBusyError
from features.incremental import DISTINCT_WINDOW, daily_activity, events_between, item_rows
from features.sources import Sources, as_of_timestamp, events_stamp, file_stamp, read_table

STATE = "state.json"
MAX_PARTS = 8
"""Each update appends a part to the kept tables; past this many, a table's parts are merged into one."""
VERSION = 3
"""Layout version of the kept tables; a folder of another version is rebuilt."""


@dataclass
class DailyState:
    """What the kept aggregate covers (a day field is None until something is kept for it)."""

    until: dt.date | None
    """First day not aggregated yet: the kept daily table covers every day before it."""
    items_from: dt.date
    events: str
    codes_until: dt.date | None = None
    version: int = 0
    activity: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    item_codes: list[str] = field(default_factory=list)
    totals: str = ""
    """A kept ``incremental.totals`` table (each user's running totals) as of ``totals_as_of``."""
    totals_as_of: dt.date | None = None
    fingerprint: str = ""
    """Count and summed seconds of the events before ``until`` when they were aggregated: a late event
    (or a deleted or moved one) for a kept day changes it, and the aggregate is rebuilt."""
    events_stat: str = ""
    """``events_stamp`` of the events (file and incoming files) at the last update: while it is unchanged
    the fingerprint is not recomputed."""
    seen_items: str = ""
    """Kept ``last_seen`` tables (user, item / category, last day) as of ``seen_as_of``, built from the
    items file ``seen_stamp`` names (its categories give the category codes)."""
    seen_categories: str = ""
    seen_as_of: dt.date | None = None
    seen_stamp: str = ""
    coded_sides: str = ""
    """``file_stamp`` of the users and exposures files whose ids all have codes: while both are unchanged
    only the new events' users are looked up."""

    def to_json(self) -> str:
        """The state as the text of ``state.json``: days as ``YYYY-MM-DD``, null for none."""
        values = asdict(self)
        for name in _DAYS:
            day = values[name]
            values[name] = day.isoformat() if day is not None else None
        return json.dumps(values, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DailyState:
        """Read the text of ``state.json``; a day written as "" (as before days had a type) is None.

        Fields this version does not know are dropped: a folder of another layout is rebuilt anyway
        (its version differs).

        Raises:
            ValueError: The text is not a state (not JSON, not an object, a day that is not a date).
            TypeError: A field that every state has is missing.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a daily state is a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        for name in _DAYS:
            if name in values:
                values[name] = _day(values[name])
        return cls(**values)


_DAYS: tuple[str, ...] = ("until", "items_from", "codes_until", "totals_as_of", "seen_as_of")
"""The fields of :class:`DailyState` that hold a day."""


def _day(value: object) -> dt.date | None:
    """A day read from ``state.json``: ``YYYY-MM-DD``, or None for null and ""."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a day")
    return dt.date.fromisoformat(value)


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y%m%d")


def _lit(ts: pd.Timestamp) -> ir.Scalar:
    return ibis.literal(ts.to_pydatetime(), "timestamp")


@dataclass(frozen=True)
class _Built:
    """The kept tables a fresh build left materialized on ``con``, each with the parts it stands for."""

    con: ibis.BaseBackend
    activity: tuple[list[str], ir.Table]
    items: tuple[list[str], ir.Table]

    def table(self, con: ibis.BaseBackend, kind: str, parts: list[str]) -> ir.Table | None:
        """The ``kind`` table (``activity`` or ``items``) when it is on ``con`` and stands for ``parts``."""
        kept_parts, table = self.activity if kind == "activity" else self.items
        return table if con is self.con and kept_parts == parts else None


class DailyStore:
    """The per-user-per-day aggregate of one data folder, kept on disk under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._memory: _Built | None = None
        self.rebuilt = ""
        """Why the last ``update`` built the aggregate from all events ("" when it only extended it)."""

    def state(self) -> DailyState | None:
        """The current state, or None when nothing is kept yet."""
        path = self.root / STATE
        if not path.exists():
            return None
        try:
            return DailyState.from_json(path.read_text())
        except (ValueError, TypeError):
            return None  # a state file cut short (or of no known layout): the aggregate is rebuilt

    def _write(self, con: ibis.BaseBackend, expr: ir.Table, name: str) -> str:
        tmp = self.root / f".{name}.tmp"
        con.to_parquet(expr, str(tmp))
        tmp.replace(self.root / name)
        return name

    def _read(self, con: ibis.BaseBackend, parts: list[str]) -> ir.Table:
        return read_table(con, [self.root / p for p in parts])

    def _extend_codes(
        self, con: ibis.BaseBackend, parts: list[str], candidates: ir.Table, kind: str, tag: str
    ) -> list[str]:
        """Give every new id among ``candidates.key`` the next free integer code; return the parts."""
        key, code = f"code_{kind}", {"user": "uid", "item": "iid"}[kind]
        new = candidates.filter(candidates.key.notnull()).select(key=candidates.key.cast("string")).distinct()
        offset = 0
        if parts:
            old = self._read(con, parts)
            new = new.anti_join(old, new.key == old[key])
            offset = int(old[code].max().execute() or 0)
        coded = temp_table(
            con,
            new.select(
                **{key: new.key, code: (offset + 1 + ibis.dense_rank().over(order_by=new.key)).cast("int64")}
            ),
        )
        if parts and coded.count().execute() == 0:
            return parts  # (the first part is written even when empty: the table exists, with its types)
        return [*parts, self._write(con, coded, f"{kind}codes-{tag}-{uuid.uuid4().hex[:8]}.parquet")]

    def update(
        self,
        src: Sources,
        until: pd.Timestamp,
        *,
        codes_until: pd.Timestamp | None = None,
        full: bool = False,
    ) -> DailyState:
        """Make the aggregate cover every day before ``until``, aggregating only days not kept yet.

        Args:
            src: The data folder's tables (the aggregate is computed on ``src.con``).
            until: First day not covered.
            codes_until: Give codes to every user and item with events before this day (default
                ``until``); later as-of dates aggregate the days after ``until`` on the fly.
            full: Throw the kept aggregate away and rebuild it from all events.

        Returns:
            The new state.
        """
        codes_until = max(until, codes_until if codes_until is not None else until)
        state = self.state()
        source = str(src.events_path.resolve()) if src.events_path else ""
        self.rebuilt = "asked for" if full else ("nothing kept yet" if state is None else "")
        if state is not None and not full:
            if state.events != source or state.version != VERSION:
                self.rebuilt = "another events file or layout"
            elif (
                state.until is not None
                and state.events_stat != events_stamp(src)
                and state.fingerprint != _fingerprint(src, as_of_timestamp(state.until))
            ):
                self.rebuilt = f"events before {state.until} changed since they were aggregated"
        final = self.root
        _clear_staging(final)
        if self.rebuilt:
            state = None
            if src.con.name == "duckdb":
                # built beside the kept one and swapped in whole: a kill leaves the old aggregate or the
                # new one (DuckDB materializes what it keeps; Spark's cache may read the files again
                # later, so there the old one is removed first and the new one built in its place)
                self.root = final.with_name(f".{final.name}.new-{uuid.uuid4().hex[:8]}")
            elif final.exists():
                shutil.rmtree(final)
        self.root.mkdir(parents=True, exist_ok=True)
        if state is not None:
            self._sweep(state)
        try:
            return self._update(src, state, until, codes_until, source, final)
        finally:
            self.root = final

    def _update(
        self,
        src: Sources,
        state: DailyState | None,
        until: pd.Timestamp,
        codes_until: pd.Timestamp,
        source: str,
        final: Path,
    ) -> DailyState:
        """:meth:`update` once the kept state is known (None: build afresh in ``self.root``, a staging
        folder that replaces ``final`` when the new state is saved)."""
        if state is None:
            items_from = until - pd.Timedelta(days=DISTINCT_WINDOW)
            state = DailyState(until=None, items_from=items_from.date(), events=source, version=VERSION)
        start = as_of_timestamp(state.until) if state.until is not None else None
        done = start is not None and start >= until
        con = src.con
        tag = f"{_stamp(start) if start is not None else 'start'}-{_stamp(until)}-{_stamp(codes_until)}"
        span_end = start if done and start is not None else until  # nothing new to aggregate when done
        ahead = events_between(src.events, _lit(span_end), _lit(codes_until))
        users, items = ahead.select(key=ahead.user_id), ahead.select(key=ahead.item_id)
        if not done:
            events = events_between(src.events, _lit(start) if start is not None else None, _lit(span_end))
            agg = temp_table(con, daily_activity(events, src.has))
            items_from = as_of_timestamp(state.items_from)
            rows_from = max(start, items_from) if start is not None else items_from
            row_events = events_between(src.events, _lit(rows_from), _lit(span_end))
            rows = temp_table(con, item_rows(row_events, None).select("user_id", "day", "item_id"))
            users = agg.select(key=agg.user_id).union(users)
            items = rows.select(key=rows.item_id).union(items)
        # everyone the features may meet gets a code, exposed users without events included
        sides = f"{file_stamp(src.users_path)}|{file_stamp(src.exposures_path)}"
        if sides != state.coded_sides:  # new or changed since their ids got codes
            if src.users is not None:
                users = users.union(src.users.select(key=src.users.user_id.cast("string")))
            if src.exposures is not None:
                users = users.union(src.exposures.select(key=src.exposures.unit_id.cast("string")))
            state.coded_sides = sides
        state.users = self._extend_codes(con, state.users, users, "user", tag)
        state.item_codes = self._extend_codes(con, state.item_codes, items, "item", tag)
        if not done:
            ucodes, icodes = self._read(con, state.users), self._read(con, state.item_codes)
            coded = agg.join(ucodes, agg.user_id == ucodes.code_user)
            coded = temp_table(
                con, coded.select(coded.uid.name("user_id"), *[c for c in agg.columns if c != "user_id"])
            )
            r = rows.join(ucodes, rows.user_id == ucodes.code_user)
            r = r.join(icodes, r.item_id == icodes.code_item)
            r = temp_table(con, r.select(user_id=r.uid, day=r.day, item_id=r.iid))
            fresh = not state.activity
            state.activity.append(self._write(con, coded, f"activity-{tag}.parquet"))
            state.items.append(self._write(con, r, f"items-{tag}.parquet"))
            state.until = until.date()
            # the kept days' fingerprint was checked above (or they are new): add the new days'
            before = state.fingerprint if start is not None else ""
            state.fingerprint = _fingerprint(src, until, start, before)
            # a fresh build's tables stay in the backend's memory: reading them back costs a second
            self._memory = (
                _Built(con, (list(state.activity), coded), (list(state.items), r)) if fresh else None
            )
        state.codes_until = codes_until.date()
        state.events_stat = events_stamp(src)
        merged = self._merge(con, state, until)
        self._save(state)
        for name in merged:  # only once the state no longer names them
            _remove(self.root / name)
        if self.root != final:
            _swap_in(self.root, final)
        return state

    def _merge(self, con: ibis.BaseBackend, state: DailyState, until: pd.Timestamp) -> list[str]:
        """Merge each kept table that has grown past ``MAX_PARTS`` parts into one (each update adds a
        part, and every read opens them all); return the parts merged away."""
        gone: list[str] = []
        tables = (
            ("activity", "activity", ["day", "user_id"]),
            ("items", "items", ["day", "user_id"]),
            ("users", "usercodes", ["uid"]),
            ("item_codes", "itemcodes", ["iid"]),
        )
        for attr, kind, order in tables:
            parts = getattr(state, attr)
            if len(parts) <= MAX_PARTS:
                continue
            table = self._read(con, parts).order_by(order)  # in day order, reading a few days skips the rest
            name = self._write(con, table, f"{kind}-merged-{_stamp(until)}-{uuid.uuid4().hex[:8]}.parquet")
            setattr(state, attr, [name])
            gone += parts
        if gone:
            self._memory = None
        return gone

    def _sweep(self, state: DailyState) -> None:
        """Remove what a run killed half-way left behind: parts ``state`` does not name, temporary files.

        ``state.json`` is the one commit point: parts are written first under new names and the state
        that names them replaces the old one in one rename, so a kill at any moment leaves the old state
        or the new one whole, plus (at most) parts that nothing names, cleared here.
        """
        named = {
            *state.activity,
            *state.items,
            *state.users,
            *state.item_codes,
            state.totals,
            state.seen_items,
            state.seen_categories,
            STATE,
        }
        for path in self.root.iterdir():
            if path.name not in named:
                _remove(path)

    def _save(self, state: DailyState) -> None:
        tmp = self.root / f".{STATE}.tmp"
        tmp.write_text(state.to_json())
        tmp.replace(self.root / STATE)

    def totals(self, con: ibis.BaseBackend, state: DailyState) -> tuple[ir.Table, pd.Timestamp] | None:
        """The kept running totals and their as-of date, if any."""
        if not state.totals or state.totals_as_of is None or not (self.root / state.totals).exists():
            return None
        return self._read(con, [state.totals]), as_of_timestamp(state.totals_as_of)

    def keep_totals(
        self, con: ibis.BaseBackend, state: DailyState, totals: ir.Table, as_of: pd.Timestamp
    ) -> None:
        """Keep ``totals`` (as of ``as_of``) so a later day's roll on from them."""
        old = state.totals
        state.totals = self._write(con, totals, f"totals-{_stamp(as_of)}-{uuid.uuid4().hex[:8]}.parquet")
        state.totals_as_of = as_of.date()
        self._save(state)
        if old and old != state.totals:
            _remove(self.root / old)

    def seen(
        self, con: ibis.BaseBackend, state: DailyState, stamp: str
    ) -> tuple[ir.Table, ir.Table | None, pd.Timestamp] | None:
        """The kept last-seen tables (items, categories or None) and their as-of date, if any were kept
        from the same items file (``stamp``)."""
        if (
            not state.seen_items
            or state.seen_as_of is None
            or state.seen_stamp != stamp
            or not (self.root / state.seen_items).exists()
        ):
            return None
        cats = self._read(con, [state.seen_categories]) if state.seen_categories else None
        return self._read(con, [state.seen_items]), cats, as_of_timestamp(state.seen_as_of)

    def keep_seen(
        self,
        con: ibis.BaseBackend,
        state: DailyState,
        items: ir.Table,
        categories: ir.Table | None,
        as_of: pd.Timestamp,
        stamp: str,
    ) -> None:
        """Keep the last-seen tables as of ``as_of`` so a later day's roll on from them."""
        old = [state.seen_items, state.seen_categories]
        tag = f"{_stamp(as_of)}-{uuid.uuid4().hex[:8]}"
        state.seen_items = self._write(con, items, f"seen-items-{tag}.parquet")
        state.seen_categories = (
            self._write(con, categories, f"seen-categories-{tag}.parquet") if categories is not None else ""
        )
        state.seen_as_of, state.seen_stamp = as_of.date(), stamp
        self._save(state)
        for name in old:
            if name and name not in (state.seen_items, state.seen_categories):
                _remove(self.root / name)

    def _kept(self, con: ibis.BaseBackend, kind: str, parts: list[str]) -> ir.Table:
        built = self._memory.table(con, kind, parts) if self._memory is not None else None
        return built if built is not None else self._read(con, parts)

    def in_memory(self, con: ibis.BaseBackend, state: DailyState) -> bool:
        """Whether the kept tables of ``state`` are already materialized on ``con`` (just built)."""
        memory = self._memory
        return (
            memory is not None
            and memory.table(con, "activity", state.activity) is not None
            and memory.table(con, "items", state.items) is not None
        )

    def activity(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """The kept daily activity table (``user_id`` holds the user's integer code)."""
        return self._kept(con, "activity", state.activity)

    def items(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """The kept (user code, day, item code) rows."""
        return self._kept(con, "items", state.items)

    def user_codes(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """``code_user`` (the user id) -> ``uid``."""
        return self._read(con, state.users)

    def item_codes(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """``code_item`` (the item id) -> ``iid``."""
        return self._read(con, state.item_codes)


def _clear_staging(final: Path) -> None:
    """Remove the staging and retired folders beside ``final`` that a killed rebuild left."""
    if final.parent.is_dir():
        for path in final.parent.glob(f".{final.name}.*-*"):
            if path.is_dir():
                shutil.rmtree(path)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace the folder ``final`` by ``staging`` whole: two renames (a kill between them leaves no kept
    aggregate, and the next run builds it again), then the retired folder is removed."""
    retired = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    if retired.exists():
        shutil.rmtree(retired)


def _remove(path: Path) -> None:
    """Delete a kept part: a file, or the folder of part files that Spark writes."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fingerprint(
    src: Sources, until: pd.Timestamp, start: pd.Timestamp | None = None, before: str = ""
) -> str:
    """Count and summed epoch seconds of the events in ``[start, until)`` (reads the timestamps only),
    added to ``before``, the fingerprint of the events before ``start``."""
    cond = src.events.ts < _lit(until)
    if start is not None:
        cond = cond & (src.events.ts >= _lit(start))
    e = src.events.filter(cond)
    row = e.aggregate(n=e.count(), s=e.ts.cast("timestamp").epoch_seconds().cast("int64").sum())
    got = row.to_pyarrow().to_pylist()[0]
    n0, s0 = (int(x) for x in before.split(":")) if before else (0, 0)
    return f"{n0 + got['n']}:{s0 + (got['s'] or 0)}"


@contextmanager
def locked(folder: str | Path) -> Iterator[Path]:
    """Hold the write lock of a feature output folder (``folder/.lock``) while the block runs.

    The lock is the operating system's (``flock``): it goes with the process that held it, so a job
    that crashed never leaves a folder locked.

    Raises:
        JobBusyError: Another process holds it.
        ContractError: The folder cannot be made (a file of that name, no permission).
    """
    root = Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContractError(f"{root}: cannot be the feature output folder: {exc.strerror or exc}") from exc
    path = root / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusyError(
                f"{root}: another feature job or ingest is writing this folder (lock {path}); "
                "run again when it has finished"
            ) from None
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def temp_table(con: ibis.BaseBackend, expr: ir.Table) -> ir.Table:
    """Materialize ``expr`` once in the backend (a temporary table), so later uses do not recompute it."""
    if con.name != "duckdb":  # e.g. Spark: a cached (persisted) result under a temporary view
        return expr.cache()
    return con.create_table(f"_userops_{uuid.uuid4().hex}", expr, temp=True)
