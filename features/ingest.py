"""Ingest of a user's own data: map their columns onto the contract, quarantine bad rows, write Parquet.

Three ways in: a file whose columns already carry the contract's names (no options), ``--map`` for the
columns whose names differ (plus the time zone of naive timestamps), and presets for known public data
sets. Each timestamp column follows one rule (ISO 8601, or ``--ts-format``); event types come from the
contract's vocabulary (``--event-types`` maps others onto it). Nothing is written until every table has
been read and validated, a file with no valid rows is refused, and the writes hold the data folder's
lock, so a failed run leaves the previous output as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import (
    EVENT_TYPES,
    SCHEMAS,
    check_time_rule,
    parse_times,
    read_raw,
    reason_counts,
    validate,
    write_table,
)
from features.daily import locked
from features.errors import ContractError


@dataclass
class IngestReport:
    """What an ingest read, kept and quarantined."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    out: Path = Path(".")
    seconds: float = 0.0


@dataclass(frozen=True)
class Rules:
    """How rows are read, built once from the options: time zone of naive timestamps, ``--ts-format``,
    ``--event-types`` (source type -> contract type), and the moment after which a time is "future"."""

    tz: str = "UTC"
    ts_format: str | None = None
    event_types: dict[str, str] = field(default_factory=dict)
    now: pd.Timestamp | None = None


def _pairs(
    text: str | None, option: str, form: str, check: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Parse ``a=b,c=d`` given to ``option``; an entry not of the form ``form`` is refused, naming both,
    and each value goes through ``check`` in turn."""
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ContractError(f"{option}: {part!r} is not of the form {form}")
        if check is not None:
            check(value.strip())
        mapping[key.strip()] = value.strip()
    return mapping


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse ``user_id=CustomerID,ts=InvoiceDate`` into ``{"user_id": "CustomerID", ...}``.

    Raises:
        ContractError: An entry is not of the form ``contract=source``.
    """
    return _pairs(text, "--map", "contract_column=source_column")


def parse_event_types(text: str | None) -> dict[str, str]:
    """Parse ``click=view,PURCHASE=purchase`` (source event type = contract event type).

    Raises:
        ContractError: An entry is not of the form ``source=type``, or names a type the contract lacks.
    """
    return _pairs(
        text,
        "--event-types",
        "source_type=contract_type",
        lambda value: check_event_type(value, "--event-types"),
    )


def check_event_type(value: str, option: str = "--event-type") -> None:
    """Refuse an event type that is not in the contract's vocabulary.

    Raises:
        ContractError: It is not one of :data:`features.contract.EVENT_TYPES`.
    """
    if value not in EVENT_TYPES:
        raise ContractError(f"{option}: {value!r} is not an event type; use one of {', '.join(EVENT_TYPES)}")


def check_ts_format(fmt: str | None) -> None:
    """Refuse a ``--ts-format`` that is no strftime pattern.

    Raises:
        ContractError: It holds no ``%`` directive, or pandas cannot use it.
    """
    if fmt is None:
        return
    example = "e.g. --ts-format '%d/%m/%Y %H:%M'"
    if "%" not in fmt:
        raise ContractError(f"--ts-format: {fmt!r} has no %-directive; {example}")
    try:
        pd.to_datetime(pd.Series(["2025-01-01"]), format=fmt, errors="coerce")
    except ValueError as exc:
        raise ContractError(f"--ts-format: {fmt!r} is not a usable pattern; {example}") from exc


def check_time_zone(tz: str) -> None:
    """Refuse a time zone that pandas does not know.

    Raises:
        ContractError: ``tz`` names no time zone.
    """
    try:
        pd.DatetimeIndex([pd.Timestamp(0)]).tz_localize(tz)
    except (LookupError, ValueError, TypeError) as exc:  # zoneinfo's is a KeyError, pytz's too
        raise ContractError(f"--tz: unknown time zone {tz!r}; use a name such as Europe/London") from exc


def _check_sources(mapping: dict[str, str], files: dict[str, pd.DataFrame]) -> None:
    """Every source column the mapping names must be in one of the given files."""
    absent = [src for src in mapping.values() if not any(src in frame.columns for frame in files.values())]
    if absent:
        has = next(iter(files.values()))
        raise ContractError(
            f"{', '.join(files)}: --map names column(s) {', '.join(absent)} that the file does not have "
            f"(it has {', '.join(map(str, has.columns))})"
        )


def _apply_mapping(frame: pd.DataFrame, mapping: dict[str, str] | None, path: str | Path) -> pd.DataFrame:
    """Rename the source columns this file has to their contract names (one mapping serves every file).

    Raises:
        ContractError: A contract column would then appear twice (the file has it and --map names
            another column for it).
    """
    renamed = frame.rename(columns={src: dst for dst, src in (mapping or {}).items() if src in frame.columns})
    twice = sorted({str(c) for c in renamed.columns[renamed.columns.duplicated()]})
    if twice:
        raise ContractError(
            f"{path}: column(s) {', '.join(twice)} would appear twice: the file has them and --map "
            "names another column for them"
        )
    return renamed


def _times(frame: pd.DataFrame, name: str, path: str | Path, rules: Rules, tz: str) -> dict[str, pd.Series]:
    """Each timestamp column of table ``name`` in ``frame``, parsed by the column's one rule.

    Raises:
        ContractError: A column mostly breaks the rule (see :func:`features.contract.check_time_rule`).
    """
    parsed: dict[str, pd.Series] = {}
    for col, kind in SCHEMAS[name].columns.items():
        if kind == "timestamp" and col in frame.columns:
            parsed[col] = parse_times(frame[col], fmt=rules.ts_format, tz=tz)
            check_time_rule(frame[col], parsed[col], f"{path}: column {col}", fmt=rules.ts_format)
    return parsed


def _validate(
    name: str,
    path: str | Path,
    frame: pd.DataFrame,
    rules: Rules,
    *,
    tz: str | None = None,
    vocabulary: tuple[str, ...] = EVENT_TYPES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate` the rows read from ``path``, naming the file in the error; refuse a file with no
    valid row (the previous output is never replaced by nothing).

    Args:
        name: Contract table.
        path: The file the rows came from.
        frame: The rows, in contract column names.
        rules: How to read them.
        tz: Time zone of naive timestamps (default ``rules.tz``).
        vocabulary: The event types allowed.

    Raises:
        ContractError: A required column is missing, a timestamp column breaks its rule, or no row is
            valid.
    """
    missing = [c for c in SCHEMAS[name].required if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "no columns"
        raise ContractError(
            f"{path}: no column {', '.join(missing)} (it has {found}); name the columns as the contract "
            f"does, or map yours with --map {','.join(f'{c}=COLUMN' for c in missing)}"
            + (" (or give --event-type for every row)" if "event_type" in missing else "")
        )
    try:
        parsed = _times(frame, name, path, rules, tz or rules.tz)
        good, quarantine = validate(name, frame, now=rules.now, event_types=vocabulary, parsed=parsed)
    except ContractError as exc:
        text = str(exc)
        raise ContractError(text if text.startswith(str(path)) else f"{path}: {text}") from exc
    if good.empty:
        counts = list(reason_counts(quarantine).items())[:3]
        why = f": {', '.join(f'{v} {k}' for k, v in counts)}" if counts else ""
        raise ContractError(f"no valid rows in {path} ({len(frame)} read{why}); the previous output is kept")
    return good, quarantine


def _side_table(
    name: str,
    path: str | Path,
    raw: pd.DataFrame,
    mapping: dict[str, str] | None,
    rules: Rules,
    report: IngestReport,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a users or items file: map its columns, read its timestamps by the rule, split good from bad."""
    raw = _apply_mapping(raw, mapping, path)
    report.rows_read[name] = len(raw)
    return _validate(name, path, raw, rules)


def users_from_events(events: pd.DataFrame, attributes: list[str] | None = None) -> pd.DataFrame:
    """One row per user first seen in ``events``: ``signup_ts`` is the first event, attributes the latest."""
    order = events.sort_values(["user_id", "ts"], kind="stable")
    grouped = order.groupby("user_id", sort=True)
    users = grouped["ts"].min().rename("signup_ts").reset_index()
    for col in attributes or []:
        users[col] = grouped[col].last().to_numpy()
    return users


def _online_retail(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Online Retail layout: invoice lines -> purchase and refund events, and the item catalogue."""
    needed = [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise ContractError(f"--preset online-retail: the file lacks column(s) {', '.join(missing)}")
    invoice = raw["InvoiceNo"].astype("string")
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    events = pd.DataFrame(
        {
            "user_id": raw["CustomerID"],
            "ts": raw["InvoiceDate"],  # local UK time, read by the rule (see PRESET_TZ)
            "event_type": np.where(invoice.str.startswith("C").fillna(False), "refund", "purchase"),
            "item_id": raw["StockCode"].astype("string"),
            "amount": quantity * price,
            "quantity": quantity,
            "session_id": invoice,
            "country": raw["Country"].astype("string"),
        }
    )
    lines = raw.assign(_price=price, _qty=quantity)
    sold = lines[(lines["_qty"] > 0) & (lines["_price"] > 0)]
    items = pd.DataFrame({"item_id": lines["StockCode"].astype("string").unique()})
    description = (
        lines.dropna(subset=["Description"])
        .groupby("StockCode")["Description"]
        .agg(lambda s: s.value_counts().index[0])
    )
    items["description"] = items["item_id"].map(description.rename(index=str)).astype("string")
    items["price"] = items["item_id"].map(sold.groupby("StockCode")["_price"].median().rename(index=str))
    items["available"] = True
    return events, items


PRESET_TZ: dict[str, str] = {"online-retail": "Europe/London"}
"""Time zone of each preset's naive timestamps."""
PRESETS: dict[str, Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]]] = {
    "online-retail": _online_retail
}


def ingest(  # noqa: PLR0913 - the CLI's entry point: each keyword is one of its options
    events_path: str | Path,
    out: str | Path,
    *,
    users_path: str | Path | None = None,
    items_path: str | Path | None = None,
    mapping: dict[str, str] | None = None,
    preset: str | None = None,
    tz: str = "UTC",
    event_type: str | None = None,
    ts_format: str | None = None,
    event_types: dict[str, str] | None = None,
    now: pd.Timestamp | None = None,
) -> IngestReport:
    """Read a user's files, map them onto the contract, quarantine bad rows and write a data folder.

    Args:
        events_path: Events file (CSV or Parquet).
        out: Output data folder (``events.parquet``, ``users.parquet``, ``items.parquet``,
            ``quarantine/<table>.parquet``).
        users_path: Optional users file.
        items_path: Optional items file.
        mapping: Contract column -> source column, for the columns whose names differ (applies to every
            file that has the source column); columns already named as in the contract need none.
        preset: A known layout instead of a mapping (``online-retail``).
        tz: Time zone of timestamps that carry none.
        event_type: Event type for every row when the events file has no event type column.
        ts_format: strftime pattern of every timestamp (default: ISO 8601).
        event_types: Source event type -> contract event type; other types outside the contract's
            vocabulary are quarantined.
        now: Timestamps after this are quarantined as "in the future" (default: now).

    Returns:
        The report: rows read, written and quarantined per reason (read = written + quarantined).

    Raises:
        ContractError: The files cannot be mapped onto the contract at all (a file that cannot be read,
            a mapping or preset that does not fit it, an unknown preset, time zone or event type, a
            timestamp column that mostly breaks its rule), a file has no valid row, or ``out`` is a file.
        JobBusyError: A feature job or another ingest is writing ``out``.
    """
    started = time.perf_counter()
    if preset is not None and preset not in PRESETS:
        raise ContractError(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    check_time_zone(tz)
    check_ts_format(ts_format)
    if event_type is not None:
        check_event_type(event_type)
    for target in (event_types or {}).values():
        check_event_type(target, "--event-types")
    if Path(out).exists() and not Path(out).is_dir():
        raise ContractError(f"{out}: is a file; --out names the data folder to write")
    rules = Rules(tz=tz, ts_format=ts_format, event_types=dict(event_types or {}), now=now)
    report = IngestReport(out=Path(out))
    raw_events = read_raw(events_path)
    report.rows_read["events"] = len(raw_events)
    side_paths = {
        name: path for name, path in (("users", users_path), ("items", items_path)) if path is not None
    }
    side = {name: read_raw(path) for name, path in side_paths.items()}
    items: pd.DataFrame | None = None
    if preset is not None:
        try:
            events, items = PRESETS[preset](raw_events)
        except ContractError as exc:
            raise ContractError(f"{events_path}: {exc}") from exc
        good, quarantine = _validate(
            "events", events_path, events, rules, tz=PRESET_TZ[preset], vocabulary=("purchase", "refund")
        )
        # keep the source's own columns beside the reason, so a person can read what was refused
        quarantine = pd.concat(
            [
                quarantine[["reason", "source_row"]],
                raw_events.iloc[quarantine["source_row"].to_numpy()].reset_index(drop=True),
            ],
            axis=1,
        )
    else:
        _check_sources(
            mapping or {}, {str(events_path): raw_events, **{str(side_paths[n]): f for n, f in side.items()}}
        )
        events = _apply_mapping(raw_events, mapping, events_path)
        if "event_type" not in events.columns and event_type is not None:
            events["event_type"] = event_type
        elif rules.event_types:
            source = events["event_type"].astype("string").str.strip()
            events["event_type"] = source.map(
                lambda v: rules.event_types.get(v, v) if isinstance(v, str) else v
            )
        good, quarantine = _validate("events", events_path, events, rules)
    tables: dict[str, pd.DataFrame] = {}
    quarantines: dict[str, pd.DataFrame] = {"events": quarantine}
    attrs = [c for c in good.columns if c == "country"]
    tables["events"] = good.drop(columns=attrs)

    if "users" in side:
        tables["users"], quarantines["users"] = _side_table(
            "users", side_paths["users"], side["users"], mapping, rules, report
        )
    else:
        tables["users"] = users_from_events(good, attrs)
    if "items" in side:
        tables["items"], quarantines["items"] = _side_table(
            "items", side_paths["items"], side["items"], mapping, rules, report
        )
    elif items is not None:
        tables["items"], quarantines["items"] = validate("items", items, now=now)

    out = Path(out)
    with locked(out):  # the feature job's lock: neither reads a folder the other is half-way through
        for name, frame in tables.items():
            write_table(frame, out / f"{name}.parquet", contract=name)
            report.rows_written[name] = len(frame)
        for name, frame in quarantines.items():
            path = out / "quarantine" / f"{name}.parquet"
            if len(frame):
                kept = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
                write_table(kept, path)
            elif path.exists():
                path.unlink()  # a clean rerun leaves no stale quarantine behind
            report.quarantined[name] = reason_counts(frame)
    report.seconds = time.perf_counter() - started
    return report
