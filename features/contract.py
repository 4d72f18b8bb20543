"""The data contract: the tables a user brings, their columns, and the split of good rows from bad ones.

Timestamps are stored as naive ``datetime64`` values in UTC (the contract's "UTC timestamp"): one
convention for DuckDB, Spark and pandas alike. Ids are strings. A row that breaks the contract is
never dropped silently: :func:`validate` returns it in a quarantine frame with one reason per row.
"""

from __future__ import annotations

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
UNKNOWN_EVENT_TYPE = "unknown event_type"
NEGATIVE_AMOUNT = "negative amount on purchase"
UNPARSABLE_NUMBER = "unparsable {col}"
DUPLICATE = "duplicate row"


def _as_id(values: pd.Series) -> pd.Series:
    """Ids as strings; floats that are whole numbers (CSV readers love them) lose their ``.0``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values == np.floor(values.fillna(0)))
        out = values.astype("string")
        out[whole] = values[whole].astype("int64").astype("string")
        return out
    out = values.astype("string").str.strip()
    return out.mask(out == "")


def _as_timestamp(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC; tz-aware input is converted, strings are parsed (bad ones become NaT)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        naive: pd.Series = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return naive.astype("datetime64[us]")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[us]")
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


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


def validate(
    name: str,
    frame: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    event_types: tuple[str, ...] | None = EVENT_TYPES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a contract table into good rows and quarantined rows.

    Args:
        name: Contract table name (``events``, ``users``, ...).
        frame: Raw rows; columns already carry contract names.
        now: Timestamps after this are "in the future" (default: the current UTC time).
        event_types: Allowed event types; ``None`` accepts any.

    Returns:
        ``(good, quarantine)``: good rows in contract types, and the bad rows as they came in with a
        ``reason`` column and ``source_row`` (0-based position in ``frame``).
    """
    schema = SCHEMAS[name]
    typed = coerce(schema, frame)
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")

    def flag(mask: pd.Series, text: str) -> None:
        reason[mask & reason.isna()] = text

    for col, kind in schema.required.items():
        raw_missing = frame[col].isna() | (frame[col].astype("string").str.strip() == "")
        flag(raw_missing, MISSING.format(col=col))
        if kind == "timestamp":
            flag(typed[col].isna(), UNPARSABLE_TS.format(col=col))
        elif kind == "float":
            flag(typed[col].isna(), UNPARSABLE_NUMBER.format(col=col))
    for col, kind in schema.columns.items():
        if kind == "timestamp" and col in typed:
            flag(typed[col] > now, FUTURE_TS.format(col=col))
        if kind == "float" and col in typed and col not in schema.required:
            flag(frame[col].notna() & typed[col].isna(), UNPARSABLE_NUMBER.format(col=col))
    if name == "events":
        if event_types is not None:
            flag(~typed["event_type"].isin(event_types).fillna(False), UNKNOWN_EVENT_TYPE)
        if "amount" in typed:
            flag(
                (typed["event_type"] == "purchase").fillna(False) & (typed["amount"] < 0).fillna(False),
                NEGATIVE_AMOUNT,
            )
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
        raise ContractError(f"{path}: cannot be read as Parquet: {first_line(exc)}") from exc
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
        frame: pd.DataFrame = pd.read_csv(path, dtype=str, keep_default_na=True)
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
        raise ContractError(f"{path}: cannot be read as Parquet: {first_line(exc)}") from exc
    return bool(metadata.get(CHECKED) == name.encode())


# ---------------------------------------------------------------------------------------------- incoming
MAX_ID_CHARS = 128
"""The longest id the product takes, in characters."""
LONG_ID = "{col} over 128 characters"
CONTROL_CHARACTERS = "{col} has control characters"
NON_FINITE = "non-finite {col}"
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


def _non_finite(values: pd.Series) -> pd.Series:
    """Numbers given as infinite or NaN.

    In a float column NaN is how a file marks a missing value, so there only infinities count; in a column
    of Python objects (rows as sent, e.g. decoded JSON) a NaN was sent as such.
    """
    number = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    bad = np.isinf(number)
    if values.dtype == object:
        bad |= np.array([isinstance(v, float) and np.isnan(v) for v in values], dtype=bool)
    return pd.Series(bad, index=values.index)


def validate_events(
    frame: pd.DataFrame,
    *,
    now: pd.Timestamp | None = None,
    event_types: tuple[str, ...] | None = EVENT_TYPES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate` events, plus the rules for ids and numbers that arrive row by row from apps.

    An id longer than :data:`MAX_ID_CHARS` or holding a control character, and an infinite (or NaN sent
    as such) number, is quarantined too. A row keeps the contract's own reason first (missing,
    unparsable, in the future, unknown type, negative amount), then these, then ``duplicate row``.

    Args:
        frame: Raw event rows; columns already carry contract names.
        now: Timestamps after this are "in the future" (default: the current UTC time).
        event_types: Allowed event types; ``None`` accepts any.

    Returns:
        ``(good, quarantine)`` as :func:`validate` returns them.

    Raises:
        ContractError: A required column is missing.
    """
    good, quarantine = validate("events", frame, now=now, event_types=event_types)
    schema = SCHEMAS["events"]
    extra = pd.Series(pd.NA, index=frame.index, dtype="string")
    for col, kind in schema.columns.items():
        if col not in frame.columns:
            continue
        if kind == "id":
            text = frame[col].astype("string")
            extra[(text.str.strip().str.len() > MAX_ID_CHARS).fillna(False) & extra.isna()] = LONG_ID.format(
                col=col
            )
            control = text.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False)
            extra[control & extra.isna()] = CONTROL_CHARACTERS.format(col=col)
        elif kind == "float":
            extra[_non_finite(frame[col]) & extra.isna()] = NON_FINITE.format(col=col)
    positions = np.flatnonzero(extra.notna().to_numpy())
    if not len(positions):
        return good, quarantine
    reason = pd.Series(pd.NA, index=range(len(frame)), dtype="string")
    reason[quarantine["source_row"].to_numpy()] = quarantine["reason"].to_numpy()
    was_good = reason.isna().to_numpy()
    # a duplicate copies a row that breaks these rules too, so it gets their reason
    override = reason.isna() | (reason == DUPLICATE)
    new = extra.reset_index(drop=True)
    reason[override & new.notna()] = new[override & new.notna()]
    drop = np.isin(np.flatnonzero(was_good), positions)  # good rows (in order) that now break a rule
    bad = reason.notna().to_numpy()
    out = frame.loc[bad].copy()
    out.insert(0, "source_row", np.flatnonzero(bad))
    out.insert(0, "reason", reason[bad].astype(str).to_numpy())
    return good.loc[~drop].reset_index(drop=True), out.reset_index(drop=True)


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
