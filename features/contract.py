"""The data contract: the tables a user brings, their columns, and the split of good rows from bad ones.

Timestamps are stored as naive ``datetime64`` values in UTC (the contract's "UTC timestamp"): one
convention for DuckDB, Spark and pandas alike. Ids are strings. A row that breaks the contract is
never dropped silently: :func:`validate` returns it in a quarantine frame with one reason per row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.errors import ContractError

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase", "refund")
"""The event vocabulary the product understands; other types are kept only when no vocabulary is given."""

TABLES: tuple[str, ...] = ("events", "users", "items", "offers", "exposures")
CHECKED = b"userops.contract"  # Parquet metadata key: the contract table a file was checked against


@dataclass(frozen=True)
class Schema:
    """Columns of one contract table.

    Args:
        name: Table name (also the file stem in a data folder).
        required: Column -> kind for columns that must be present.
        optional: Column -> kind for columns that may be present.
        key: Columns that identify a row; duplicates on the whole row are quarantined.
    """

    name: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ()

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


SCHEMAS: dict[str, Schema] = {
    "events": Schema(
        "events",
        required={"user_id": "id", "ts": "timestamp", "event_type": "string"},
        optional={
            "item_id": "id",
            "amount": "float",
            "quantity": "float",
            "session_id": "id",
            "properties": "string",
        },
    ),
    "users": Schema("users", required={"user_id": "id", "signup_ts": "timestamp"}, key=("user_id",)),
    "items": Schema(
        "items",
        required={"item_id": "id"},
        optional={"category": "string", "price": "float", "available": "bool", "description": "string"},
        key=("item_id",),
    ),
    "offers": Schema(
        "offers",
        required={"offer_id": "id", "cost": "float"},
        optional={
            "kind": "string",
            "cooldown_days": "float",
            "max_per_user": "float",
            # dates as text: a validity end in the future is the normal case, not a bad row
            "valid_from": "string",
            "valid_to": "string",
            "eligible_stages": "string",
            "eligible_segments": "string",
            "min_value_at_stake": "float",
            "eligibility": "string",
        },
        key=("offer_id",),
    ),
    "exposures": Schema(
        "exposures",
        required={"experiment": "id", "variant": "id", "unit_id": "id", "ts": "timestamp"},
    ),
}

# Reasons, in the order they are checked: a row gets the first one that applies.
MISSING = "missing {col}"
UNPARSABLE_TS = "unparsable {col}"
FUTURE_TS = "{col} in the future"
NON_FINITE = "non-finite {col}"
TOO_LARGE = "{col} too large (10^12 or more)"
UNPARSABLE_NUMBER = "unparsable {col}"
UNKNOWN_EVENT_TYPE = "unknown event type"
NEGATIVE_AMOUNT = "negative amount on purchase"
LONG_ID = "{col} over 128 characters"
CONTROL_CHARACTERS = "{col} has control characters"
DUPLICATE = "duplicate row"
REASONS: tuple[str, ...] = (
    MISSING,
    UNPARSABLE_TS,
    FUTURE_TS,
    NON_FINITE,
    TOO_LARGE,
    UNPARSABLE_NUMBER,
    UNKNOWN_EVENT_TYPE,
    NEGATIVE_AMOUNT,
    LONG_ID,
    CONTROL_CHARACTERS,
    DUPLICATE,
)
"""Every reason a row is quarantined for, in the order they are checked (``{col}`` is the column)."""
MAX_ID_CHARS = 128
"""The longest id the product takes, in characters."""
MAX_NUMBER = 1e12
"""Numbers (amounts, prices, costs) must be smaller than this in size."""


def _as_id(values: pd.Series) -> pd.Series:
    """Ids as strings; floats that are whole numbers (CSV readers love them) lose their ``.0``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values == np.floor(values.fillna(0))) & (values.abs() < 2**53)
        out = values.astype("string")
        out[whole] = values[whole].astype("int64").astype("string")
        return out
    out = values.astype("string").str.strip()
    return out.mask(out == "")


ISO_8601 = "ISO8601"
"""pandas' name for the default timestamp rule: ISO 8601 dates and times, with or without an offset."""
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")
"""A time of day that carries its UTC offset (``10:00Z``, ``10:00:00+02:00``)."""
_DAY_MONTH = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
"""A date written with the day and month as bare numbers (``01/02/2025``): either could come first."""


def parse_times(values: pd.Series, *, fmt: str | None = None, tz: str = "UTC") -> pd.Series:
    """Timestamps as naive UTC under one rule for the whole column; a value that breaks it becomes NaT.

    Args:
        values: A column as read (text, or times already typed by the file).
        fmt: A strftime pattern every value must match (default: ISO 8601).
        tz: Time zone of values that carry no offset.

    Returns:
        ``datetime64[us]`` values (naive, UTC).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        naive: pd.Series = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return naive.astype("datetime64[us]")
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values.astype("datetime64[us]")
        aware = pd.Series(False, index=values.index)
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, format=fmt or ISO_8601, errors="coerce", utc=True)
        parsed = parsed.dt.tz_localize(None).astype("datetime64[us]")
        aware = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
    if tz != "UTC" and (~aware).any():
        # Ambiguous autumn hours are read as summer time; spring's missing hour moves forward.
        local = parsed[~aware].dt.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
        parsed = parsed.copy()
        parsed[~aware] = local.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return parsed.astype("datetime64[us]")


def check_time_rule(values: pd.Series, parsed: pd.Series, where: str, *, fmt: str | None = None) -> None:
    """Refuse a column that mostly does not follow the timestamp rule (a few strays are quarantined).

    Args:
        values: The column as read.
        parsed: :func:`parse_times` of it.
        where: The file and column, for the message.
        fmt: The ``--ts-format`` given, if any.

    Raises:
        ContractError: More than half of the non-empty values break the rule; the message names
            ``--ts-format`` (and says when day and month could be either way round).
    """
    given = values.notna() & (values.astype("string").str.strip() != "").fillna(False)
    broken = given & parsed.isna()
    if not given.any() or broken.sum() * 2 <= given.sum():
        return
    example = str(values[broken].iloc[0])
    rule = f"the --ts-format {fmt!r}" if fmt else "ISO 8601 (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"
    if fmt is None and _DAY_MONTH.match(example):
        hint = (
            "day and month could be either way round; say which with --ts-format, "
            "e.g. --ts-format '%d/%m/%Y %H:%M' or '%m/%d/%Y %H:%M'"
        )
    else:
        hint = "give their pattern with --ts-format, e.g. --ts-format '%d.%m.%Y %H:%M'"
    count = f"{int(broken.sum())} of {int(given.sum())} values"
    raise ContractError(f"{where}: {count} are not {rule} (one is {example!r}); {hint}")


def _as_timestamp(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC by the default rule (ISO 8601); values that break it become NaT."""
    return parse_times(values)


def coerce(schema: Schema, frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with the contract's columns in their contract types (bad values become null).

    Args:
        schema: The table's schema.
        frame: Raw rows.

    Returns:
        A new frame; extra columns are kept as they are.

    Raises:
        ContractError: A required column is missing, or a column name appears twice.
    """
    twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if twice:
        raise ContractError(f"{schema.name}: column(s) {', '.join(twice)} appear more than once")
    missing = [c for c in schema.required if c not in frame.columns]
    if missing:
        raise ContractError(
            f"{schema.name}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, frame.columns)) or 'no columns'}"
        )
    out = frame.copy()
    for col, kind in schema.columns.items():
        if col not in out.columns:
            continue
        if kind == "id":
            out[col] = _as_id(out[col])
        elif kind == "timestamp":
            out[col] = _as_timestamp(out[col])
        elif kind == "float":
            out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
        elif kind == "string":
            out[col] = out[col].astype("string")
        elif kind == "bool":
            out[col] = out[col].astype("boolean")
    return out


def _non_finite(values: pd.Series, *, sent: bool = False) -> pd.Series:
    """Numbers given as infinite or NaN.

    In a float column NaN is how a file marks a missing value, so there only infinities count; in text
    (a CSV read as text) ``NaN`` was written out as such; with ``sent``, the column holds rows as an app
    sent them (decoded JSON: a value left out is None), so a float NaN there was sent as such.
    """
    number = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    bad = np.isinf(number)
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        written = values.astype("string").str.strip().str.lower().isin(["nan", "+nan", "-nan"])
        bad |= written.fillna(False).to_numpy(dtype=bool)
    if sent and values.dtype == object:
        bad |= np.array([isinstance(v, float) and np.isnan(v) for v in values], dtype=bool)
    return pd.Series(bad, index=values.index)


def _id_flags(values: pd.Series, col: str) -> pd.Series:
    """The id rule: at most :data:`MAX_ID_CHARS` characters, no control characters (reason or NA)."""
    text = values.astype("string")
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    control = text.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False).astype(bool)
    long = (text.str.strip().str.len() > MAX_ID_CHARS).fillna(False).astype(bool)
    out[long] = LONG_ID.format(col=col)
    out[control & ~long] = CONTROL_CHARACTERS.format(col=col)
    return out


def validate(
    name: str,
    frame: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    event_types: tuple[str, ...] | None = EVENT_TYPES,
    parsed: dict[str, pd.Series] | None = None,
    sent: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a contract table into good rows and quarantined rows.

    The rules, in the order a row's reason is chosen: required values present; timestamps that follow
    the column's rule and are not in the future; numbers finite, below 10^12 in size and parsable; event
    types from the contract's vocabulary; no negative purchase amount; ids at most 128 characters
    without control characters (the same rule the API applies to events sent to it); no duplicate row.

    Args:
        name: Contract table name (``events``, ``users``, ...).
        frame: Raw rows; columns already carry contract names.
        now: Timestamps after this are "in the future" (default: the current UTC time).
        event_types: Allowed event types; ``None`` accepts any.
        parsed: Timestamp columns already parsed by their rule (:func:`parse_times` with a format or a
            time zone); other timestamp columns are read as ISO 8601 in UTC.
        sent: The rows are as an app sent them (a float NaN was sent as such, not left out).

    Returns:
        ``(good, quarantine)``: good rows in contract types, and the bad rows as they came in with a
        ``reason`` column and ``source_row`` (0-based position in ``frame``).

    Raises:
        ContractError: A required column is missing, or a column name appears twice.
    """
    schema = SCHEMAS[name]
    typed = coerce(schema, frame)
    for col, values in (parsed or {}).items():
        typed[col] = values.to_numpy()
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask: pd.Series, text: str) -> None:
        reason[mask.to_numpy(dtype=bool) & reason.isna().to_numpy()] = text

    given = {
        col: frame[col].notna() & (frame[col].astype("string").str.strip() != "").fillna(False)
        for col in schema.columns
        if col in frame.columns
    }
    for col in schema.required:
        flag(~given[col], MISSING.format(col=col))
    for col, kind in schema.columns.items():
        if col not in typed.columns:
            continue
        if kind == "timestamp":
            flag(given[col] & typed[col].isna(), UNPARSABLE_TS.format(col=col))
            flag((typed[col] > now).fillna(False), FUTURE_TS.format(col=col))
        elif kind == "float":
            flag(_non_finite(frame[col], sent=sent), NON_FINITE.format(col=col))
            flag((typed[col].abs() >= MAX_NUMBER).fillna(False), TOO_LARGE.format(col=col))
            flag(given[col] & typed[col].isna(), UNPARSABLE_NUMBER.format(col=col))
    if name == "events":
        if event_types is not None:
            flag(~typed["event_type"].isin(event_types).fillna(False), UNKNOWN_EVENT_TYPE)
        if "amount" in typed:
            flag(
                (typed["event_type"] == "purchase").fillna(False) & (typed["amount"] < 0).fillna(False),
                NEGATIVE_AMOUNT,
            )
    for col, kind in schema.columns.items():
        if kind == "id" and col in frame.columns:
            ids = _id_flags(frame[col], col)
            for text in ids.dropna().unique():
                flag((ids == text).fillna(False), str(text))
    # Duplicates are judged among rows that are otherwise good; the first copy is kept.
    ok = reason.isna()
    dup_cols = list(schema.key) if schema.key else list(typed.columns)
    dup = pd.Series(False, index=frame.index)
    dup[ok] = typed.loc[ok, dup_cols].duplicated(keep="first")
    flag(dup, DUPLICATE)

    bad = reason.notna()
    quarantine = frame.loc[bad].copy()
    quarantine.insert(0, "source_row", np.flatnonzero(bad.to_numpy()))
    quarantine.insert(0, "reason", reason[bad].astype(str))
    good = typed.loc[~bad].reset_index(drop=True)
    return good, quarantine.reset_index(drop=True)


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantined rows per reason, largest first."""
    if quarantine.empty:
        return {}
    counts = quarantine["reason"].value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def table_path(data_dir: str | Path, name: str) -> Path | None:
    """The file holding table ``name`` in a data folder (``.parquet`` preferred over ``.csv``), if any."""
    for ext in (".parquet", ".csv"):
        path = Path(data_dir) / f"{name}{ext}"
        if path.exists():
            return path
    return None


UNREADABLE_PARQUET = "cannot be read as Parquet (cut short, damaged or not Parquet)"
PARQUET_MAGIC = b"PAR1"
"""The four bytes every Parquet file starts with."""
READ_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, pa.ArrowException)
"""What the Parquet and CSV readers raise for a file they cannot read (truncated, not of their kind,
not text): pyarrow's errors, pandas' ``ParserError`` and ``EmptyDataError``, ``UnicodeDecodeError``."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (readers put the query or a hint on the lines after)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_not_parquet(path: Path) -> None:
    """Refuse a Parquet file named ``.csv`` (a CSV reader would read its bytes as text).

    Raises:
        ContractError: The file starts as Parquet files do.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(PARQUET_MAGIC))
    except OSError:
        return  # the reader says why
    if head == PARQUET_MAGIC:
        raise ContractError(
            f"{path}: cannot be read as CSV: it is a Parquet file; name it {path.stem}.parquet"
        )


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file with pandas.

    Raises:
        ContractError: The file is not Parquet, or is cut short or damaged.
    """
    try:
        frame: pd.DataFrame = pd.read_parquet(path)
    except READ_ERRORS as exc:
        raise ContractError(f"{path}: {UNREADABLE_PARQUET}: {first_line(exc)}") from exc
    return frame


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is, ids and all as strings where the file has no types.

    Raises:
        ContractError: The file is missing, of an unknown kind, or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix != ".csv":
        raise ContractError(f"{path}: unknown file kind {path.suffix!r}; use .parquet or .csv")
    check_not_parquet(path)
    try:
        # only an empty field is missing: "NaN", "NA" or "null" written out are values to be judged
        frame: pd.DataFrame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except READ_ERRORS as exc:
        raise ContractError(f"{path}: cannot be read as CSV: {first_line(exc)}") from exc
    return frame


def load_table(data_dir: str | Path, name: str, *, required: bool = False) -> pd.DataFrame | None:
    """Load one contract table from a data folder in contract types.

    Parquet files that ``userops`` wrote after checking their rows are read as they are; any other file
    is checked row by row and coerced here, and a row that breaks the contract makes this raise with the
    count per reason (run ``userops ingest`` on such data to quarantine the bad rows instead).
    The events table includes the folder's incoming events (:func:`incoming_paths`).

    Args:
        data_dir: The data folder.
        name: Contract table name.
        required: Raise when the table is absent instead of returning ``None``.

    Returns:
        The table, or ``None`` when absent and not required.

    Raises:
        ContractError: The table is required and absent, cannot be read, lacks a required column, or
            has bad rows.
    """
    path = table_path(data_dir, name)
    if path is None:
        if required:
            raise ContractError(f"{data_dir}: no {name}.parquet or {name}.csv")
        return None
    if is_checked(path, name):
        checked = read_parquet(path)
        return with_incoming(data_dir, checked) if name == "events" else checked
    raw = read_raw(path)
    try:
        good, quarantine = validate(name, raw, event_types=None)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc
    if len(quarantine):
        counts = ", ".join(f"{v} {k}" for k, v in reason_counts(quarantine).items())
        first = int(quarantine["source_row"].iloc[0])
        raise ContractError(
            f"{path}: {len(quarantine)} row(s) break the contract ({counts}; first at row {first}); "
            "run `userops ingest` to quarantine them"
        )
    return with_incoming(data_dir, good) if name == "events" else good


def write_table(frame: pd.DataFrame, path: str | Path, *, contract: str | None = None) -> Path:
    """Write a table as CSV or Parquet (by extension) atomically: a temporary name, then a rename.

    Args:
        frame: The rows.
        path: Output file; ``.csv`` or ``.parquet``.
        contract: The contract table these rows were checked against; a Parquet file records it, so
            :func:`load_table` trusts it without checking every row again.

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix == ".csv":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
        return path
    if path.suffix != ".parquet":
        raise ContractError(f"{path}: unknown output kind {path.suffix!r}; use .parquet or .csv")
    return write_arrow(pa.Table.from_pandas(frame, preserve_index=False), path, contract=contract)


def write_arrow(table: pa.Table, path: str | Path, *, contract: str | None = None) -> Path:
    """Write an Arrow table to Parquet atomically, recording the contract table it was checked against."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if contract is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), CHECKED: contract.encode()})
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp, row_group_size=1_000_000)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def is_checked(path: str | Path, name: str) -> bool:
    """Whether a Parquet file was written by userops after its rows were checked as table ``name``.

    Raises:
        ContractError: A ``.parquet`` file that cannot be read as Parquet.
    """
    path = Path(path)
    if path.suffix != ".parquet":
        return False
    try:
        metadata = pq.read_schema(path).metadata or {}
    except READ_ERRORS as exc:
        raise ContractError(f"{path}: {UNREADABLE_PARQUET}: {first_line(exc)}") from exc
    return bool(metadata.get(CHECKED) == name.encode())


# ---------------------------------------------------------------------------------------------- incoming
INCOMING = "incoming"
"""Folder of a data folder holding events that arrive a batch at a time (``POST /v1/events``): one checked
Parquet file per batch, named ``events-<UTC time>-<uuid>.parquet``, read together with the events table."""
INCOMING_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("ts", pa.timestamp("us")),
        ("event_type", pa.string()),
        ("item_id", pa.string()),
        ("amount", pa.float64()),
        ("session_id", pa.string()),
    ],
    metadata={CHECKED: b"events"},
)
"""The columns and types of every incoming file (one schema, so they are read as one table)."""


def validate_events(
    frame: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    event_types: tuple[str, ...] | None = EVENT_TYPES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate` events: the one check that ``ingest`` and the API's ``POST /v1/events`` share.

    Ids over :data:`MAX_ID_CHARS` characters or with control characters, and infinite, NaN (sent or
    written as such) or too large numbers, are quarantined with the other rules' reasons.

    Args:
        frame: Raw event rows; columns already carry contract names.
        now: Timestamps after this are "in the future" (default: the current UTC time).
        event_types: Allowed event types; ``None`` accepts any.

    Returns:
        ``(good, quarantine)`` as :func:`validate` returns them.

    Raises:
        ContractError: A required column is missing.
    """
    return validate("events", frame, now=now, event_types=event_types, sent=True)


def incoming_paths(data_dir: str | Path) -> list[Path]:
    """The incoming event files of a data folder, oldest first (files being written are not listed)."""
    folder = Path(data_dir) / INCOMING
    return sorted(folder.glob("events-*.parquet")) if folder.is_dir() else []


def with_incoming(data_dir: str | Path, events: pd.DataFrame) -> pd.DataFrame:
    """``events`` followed by the folder's incoming events, in the events' columns and types.

    A column the events table lacks is left out of the incoming rows too: the folder's data keeps one
    shape (features that need an absent column stay null for everyone).
    """
    paths = incoming_paths(data_dir)
    if not paths:
        return events
    parts = [read_parquet(p) for p in paths]
    incoming = pd.concat(parts, ignore_index=True).reindex(columns=events.columns)
    for col in events.columns:
        if events[col].dtype != incoming[col].dtype:
            try:
                incoming[col] = incoming[col].astype(events[col].dtype)
            except (TypeError, ValueError):  # e.g. ids read as numbers: both become strings
                events = events.astype({col: "string"})
                incoming[col] = incoming[col].astype("string")
    return pd.concat([events, incoming], ignore_index=True)
