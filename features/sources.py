"""Opening a data folder's contract tables as Ibis tables on any backend, and as-of date handling."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.contract import (
    SCHEMAS,
    UNREADABLE_PARQUET,
    check_not_parquet,
    first_line,
    incoming_paths,
    table_path,
)
from features.errors import ContractError, DataError
from features.incremental import EventColumns, day_number


def as_of_timestamp(as_of: str | dt.date | pd.Timestamp) -> pd.Timestamp:
    """An as-of date as a naive UTC midnight timestamp.

    Raises:
        DataError: The value is not a date (not a time at all, or a time of day other than midnight).
    """
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise DataError(f"as-of {as_of!r} is not a date (YYYY-MM-DD)") from exc
    if pd.isna(ts):
        raise DataError(f"as-of {as_of!r} is not a date (YYYY-MM-DD)")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if ts != ts.normalize():
        raise DataError(f"as-of {as_of!r} is not a date (UTC midnight)")
    return ts.as_unit("us")


def day_of(ts: pd.Timestamp) -> int:
    """UTC day number (days since 1970-01-01) of a midnight timestamp."""
    return int((ts - pd.Timestamp("1970-01-01")).days)


def default_connection() -> ibis.BaseBackend:
    """An in-process DuckDB connection, the embedded default backend.

    Row order is fixed by the job itself (snapshots are sorted), so DuckDB need not preserve insertion
    order, which makes its aggregations much faster.
    """
    con = ibis.duckdb.connect()
    con.raw_sql("SET preserve_insertion_order = false")
    return con


def read_table(con: ibis.BaseBackend, path: Path | list[Path]) -> ir.Table:
    """Read Parquet or CSV file(s) as an Ibis table on ``con``.

    Raises:
        ContractError: A file is not of its kind (a Parquet file named ``.csv``, a ``.parquet`` file that
            is not Parquet or is cut short), or of neither kind.
    """
    paths = path if isinstance(path, list) else [path]
    what = str(paths[0]) if len(paths) == 1 else f"{paths[0].parent} ({', '.join(p.name for p in paths)})"
    if all(p.suffix == ".parquet" for p in paths):
        try:
            if len(paths) > 1 and con.name != "duckdb":  # Spark's reader takes one path (or pattern)
                parts = [con.read_parquet(str(p)) for p in paths]
                return parts[0].union(*parts[1:])
            return con.read_parquet([str(p) for p in paths] if len(paths) > 1 else str(paths[0]))
        except Exception as exc:  # each backend raises its own kinds (duckdb.IOException, Spark's ...)
            raise ContractError(f"{what}: {UNREADABLE_PARQUET}: {first_line(exc)}") from exc
    if len(paths) == 1 and paths[0].suffix == ".csv":
        check_not_parquet(paths[0])
        try:
            return con.read_csv(str(paths[0]))
        except Exception as exc:  # as above
            raise ContractError(f"{what}: cannot be read as CSV: {first_line(exc)}") from exc
    raise ContractError(f"cannot read {what}: use .parquet or .csv")


CASTS: dict[str, str] = {"timestamp": "timestamp", "float": "float64"}
"""Contract kinds whose columns the feature queries cast, and the type they cast them to."""


def _check_columns(name: str, table: ir.Table, path: Path) -> None:
    """The contract's required columns are there, and the columns the queries cast hold values that cast.

    A column of text where the contract has times or numbers (a CSV file whose reader could not type it)
    is scanned once for values that do not cast; typed columns are not read at all.

    Raises:
        ContractError: A required column is missing, or a time or number column holds a value that is
            not one (the events' ``ts`` must be typed as times: it is compared as it is).
    """
    schema = SCHEMAS[name]
    missing = [c for c in schema.required if c not in table.columns]
    if missing:
        raise ContractError(
            f"{path}: missing required column(s) {', '.join(missing)}; found {', '.join(table.columns)}"
        )
    for col, kind in schema.columns.items():
        if kind not in CASTS or col not in table.columns:
            continue
        dtype = table[col].type()
        if dtype.is_null() or (
            dtype.is_timestamp() or dtype.is_date()
            if kind == "timestamp"
            else dtype.is_numeric() or dtype.is_boolean()
        ):
            continue
        what = "times" if kind == "timestamp" else "numbers"
        hint = "run `userops ingest` to quarantine bad rows"
        if name == "events" and col == "ts":  # filtered as it is, so Parquet can skip row groups
            raise ContractError(
                f"{path}: column ts is read as {dtype}, not as {what} (a value that is no time, or no rows "
                f"at all); {hint}"
            )
        values = table[col]
        bad = table.filter(values.notnull() & values.try_cast(CASTS[kind]).isnull())
        count = int(bad.count().execute())
        if count:
            first = bad.select(col).limit(1).execute()[col].iloc[0]
            raise ContractError(
                f"{path}: column {col} holds {count} value(s) that are not {what} (one is {first!r}); {hint}"
            )


@dataclass
class Sources:
    """The contract tables of one data folder, opened on one backend (absent optional tables are None)."""

    con: ibis.BaseBackend
    events: ir.Table
    has: EventColumns
    users: ir.Table | None = None
    items: ir.Table | None = None
    offers: ir.Table | None = None
    exposures: ir.Table | None = None
    events_path: Path | None = None
    items_path: Path | None = None
    users_path: Path | None = None
    exposures_path: Path | None = None
    incoming_paths: tuple[Path, ...] = ()
    """The incoming event files read as part of ``events`` (see :func:`features.contract.incoming_paths`)."""

    @property
    def has_category(self) -> bool:
        return self.items is not None and "category" in self.items.columns and self.has.item_id

    @property
    def offer_ids(self) -> list[str] | None:
        """Offer ids from the offers table, executed once (None: no offers table)."""
        if self.offers is None:
            return None
        frame = self.offers.select(offer_id=self.offers.offer_id.cast("string")).to_pandas()
        return sorted(frame["offer_id"].dropna().astype(str).tolist())


def open_sources(data_dir: str | Path, con: ibis.BaseBackend | None = None) -> Sources:
    """Open a data folder's tables on ``con`` (default: a new DuckDB connection).

    The events are the events table followed by the folder's incoming event files, if any.

    Raises:
        ContractError: The folder has no events table, or a table cannot be read or lacks a required
            column.
    """
    con = con if con is not None else default_connection()
    events_path = table_path(data_dir, "events")
    if events_path is None:
        raise ContractError(f"{data_dir}: no events.parquet or events.csv")
    events = read_table(con, events_path)
    _check_columns("events", events, events_path)
    incoming = incoming_paths(data_dir)
    if incoming:
        events = with_incoming_events(con, events, incoming)
    paths = {name: table_path(data_dir, name) for name in ("users", "items", "offers", "exposures")}
    opened: dict[str, ir.Table | None] = dict.fromkeys(paths)
    for name, path in paths.items():
        if path is not None:
            opened[name] = table = read_table(con, path)
            _check_columns(name, table, path)
    return Sources(
        con,
        events,
        EventColumns.of(events),
        events_path=events_path,
        items_path=paths["items"],
        users_path=paths["users"],
        exposures_path=paths["exposures"],
        incoming_paths=tuple(incoming),
        **opened,
    )


@dataclass(frozen=True)
class FolderFacts:
    """What the contract check found in a data folder: its tables and the span of its events."""

    path: Path
    tables: dict[str, Path]
    first_event: pd.Timestamp
    last_event: pd.Timestamp
    events: int


def check_folder(data_dir: str | Path, con: ibis.BaseBackend | None = None) -> FolderFacts:
    """The contract check that every command makes before it reads a data folder.

    The folder must exist and hold an events table; every contract table present must be readable as
    its kind, hold its required columns, and hold times and numbers where the contract has them
    (:func:`open_sources`); the events must not be empty. Nothing is written.

    Args:
        data_dir: The data folder.
        con: Backend to check on (default: a new in-process DuckDB).

    Returns:
        The tables found and the first and last event times.

    Raises:
        ContractError: The folder is missing or not a folder, or a table breaks the contract (the
            message names the file and the column).
        DataError: The folder holds no events.
    """
    folder = Path(data_dir)
    if not folder.exists():
        raise ContractError(f"data folder {folder} does not exist")
    if not folder.is_dir():
        raise ContractError(f"{folder} is not a folder (a data folder holds events.parquet or events.csv)")
    src = open_sources(folder, con)
    e = src.events
    ts = e.ts.cast("timestamp")
    try:
        row = e.aggregate(first=ts.min(), last=ts.max(), n=e.count()).to_pyarrow().to_pylist()[0]
    except Exception as exc:  # each backend raises its own kinds; the file is the user's to fix
        raise ContractError(f"{src.events_path}: cannot be read: {first_line(exc)}") from exc
    if not row["n"] or row["first"] is None:
        raise DataError(f"{src.events_path}: no events; nothing to compute from")
    tables = {name: p for name in SCHEMAS if (p := table_path(folder, name)) is not None}
    return FolderFacts(
        path=folder,
        tables=tables,
        first_event=pd.Timestamp(row["first"]).as_unit("us"),
        last_event=pd.Timestamp(row["last"]).as_unit("us"),
        events=int(row["n"]),
    )


MAX_GAP_DAYS = 30
"""An as-of date more than this many days after the last event is refused unless a gap is allowed."""


def check_as_of(as_of: str | dt.date | pd.Timestamp, facts: FolderFacts, *, allow_gap: bool = False) -> None:
    """Refuse an as-of date the data cannot speak for: on or before the first event (nothing before it
    to compute from), or more than :data:`MAX_GAP_DAYS` days after the last (unless ``allow_gap``).

    Raises:
        DataError: The date is out of the data's span; the message names the data's first and last dates.
    """
    ts = as_of_timestamp(as_of)
    first, last = facts.first_event.normalize(), facts.last_event.normalize()
    span = f"the events run from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    if ts <= facts.first_event:
        raise DataError(f"--as-of {ts:%Y-%m-%d} is not after the first event: {span}")
    gap = (ts - last).days
    if gap > MAX_GAP_DAYS and not allow_gap:
        raise DataError(
            f"--as-of {ts:%Y-%m-%d} is {gap} days after the last event ({span}); "
            f"give --allow-gap to use a date more than {MAX_GAP_DAYS} days past the data"
        )


def file_stamp(path: Path | None) -> str:
    """Which version of a file this is: its path, size and modification time ("" when there is none).

    Kept tables record the stamp of the file they were built from and are rebuilt when it changes.
    """
    if path is None:
        return ""
    info = path.stat()
    return f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}"


def population(src: Sources, as_of: pd.Timestamp) -> ir.Table:
    """Users who signed up before ``as_of``: ``user_id``, ``tenure_days`` and the user attributes.

    Without a users table a user "signs up" with their first event.
    """
    as_of_lit = ibis.literal(as_of.to_pydatetime(), "timestamp")
    if src.users is not None:
        users = src.users
        attrs = [c for c in users.columns if c not in ("user_id", "signup_ts")]
        u = users.select(
            *attrs, user_id=users.user_id.cast("string"), signup_ts=users.signup_ts.cast("timestamp")
        )
    else:
        e = src.events
        attrs = []
        u = e.group_by(user_id=e.user_id.cast("string")).aggregate(signup_ts=e.ts.cast("timestamp").min())
    u = u.filter(u.signup_ts < as_of_lit)
    u = u.mutate(tenure_days=(day_of(as_of) - day_number(u.signup_ts)).cast("int64"))
    return u.select("user_id", "tenure_days", *attrs)


def user_attributes(src: Sources) -> list[str]:
    """Names of the users table's attribute columns (channel, country, ...)."""
    if src.users is None:
        return []
    return [c for c in src.users.columns if c not in ("user_id", "signup_ts")]


def with_incoming_events(con: ibis.BaseBackend, events: ir.Table, paths: list[Path]) -> ir.Table:
    """``events`` followed by the incoming event files ``paths``, in the events' columns.

    The events' columns keep their types where they already have the contract's (the usual case: nothing
    is cast and Parquet still skips row groups on ``ts``); a column the events table lacks is left out.

    Raises:
        ContractError: An incoming file cannot be read or lacks a required column.
    """
    incoming = read_table(con, paths)
    _check_columns("events", incoming, paths[0].parent)
    kinds = SCHEMAS["events"].columns
    ours: dict[str, ir.Value] = {}
    theirs: dict[str, ir.Value] = {}
    for col in events.columns:
        found = events[col].type()
        kind = kinds.get(col)
        if kind in ("id", "string"):
            target = found if found.is_string() else ibis.dtype("string")
        elif kind == "timestamp":
            target = found if found.is_timestamp() else ibis.dtype("timestamp")
        elif kind == "float":
            target = found if found.is_float64() else ibis.dtype("float64")
        else:
            target = found
        ours[col] = events[col] if found == target else events[col].cast(target)
        if col not in incoming.columns:
            theirs[col] = ibis.null(target)
        else:
            theirs[col] = incoming[col] if incoming[col].type() == target else incoming[col].cast(target)
    return events.select(**ours).union(incoming.select(**theirs))


def events_stamp(src: Sources) -> str:
    """Which version of the events this is: the events file's :func:`file_stamp`, and a digest of the
    incoming files' stamps when there are any (one more incoming file is a new version)."""
    stamp = file_stamp(src.events_path)
    if not src.incoming_paths:
        return stamp
    digest = hashlib.sha256("\n".join(file_stamp(p) for p in src.incoming_paths).encode()).hexdigest()
    return f"{stamp}|incoming:{len(src.incoming_paths)}:{digest[:16]}"
