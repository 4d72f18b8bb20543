"""Ingest of a user's own data: map their columns onto the contract, quarantine bad rows, write Parquet.

Two ways in: ``--map`` (contract column = source column, plus the time zone of naive timestamps) for
any events file, and presets for known public data sets. Nothing is written until every table has been
read and validated, so a failed run leaves the previous output as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import EVENT_TYPES, SCHEMAS, read_raw, reason_counts, validate, write_table
from features.errors import ContractError


@dataclass
class IngestReport:
    """What an ingest read, kept and quarantined."""

    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    out: Path = Path(".")
    seconds: float = 0.0


def parse_mapping(text: str | None) -> dict[str, str]:
    """Parse ``user_id=CustomerID,ts=InvoiceDate`` into ``{"user_id": "CustomerID", ...}``.

    Raises:
        ContractError: An entry is not of the form ``contract=source``.
    """
    if not text:
        return {}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ContractError(f"--map: {part!r} is not of the form contract_column=source_column")
        mapping[key.strip()] = value.strip()
    return mapping


def check_time_zone(tz: str) -> None:
    """Refuse a time zone that pandas does not know.

    Raises:
        ContractError: ``tz`` names no time zone.
    """
    try:
        pd.DatetimeIndex([pd.Timestamp(0)]).tz_localize(tz)
    except (LookupError, ValueError, TypeError) as exc:  # zoneinfo's is a KeyError, pytz's too
        raise ContractError(f"--tz: unknown time zone {tz!r}; use a name such as Europe/London") from exc


def localize(values: pd.Series, tz: str) -> pd.Series:
    """Read timestamps given in zone ``tz`` (when they carry none) and return them as naive UTC.

    Strings that do not parse are returned as they were, for the contract to quarantine as unparsable.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        naive: pd.Series = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return naive
    parsed = (
        values
        if pd.api.types.is_datetime64_any_dtype(values)
        else pd.to_datetime(values, errors="coerce", format="mixed")
    )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    if tz != "UTC":
        # Ambiguous autumn hours are read as summer time; spring's missing hour moves forward.
        parsed = parsed.dt.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")
        parsed = parsed.dt.tz_localize(None)
    unparsable = parsed.isna() & values.notna()
    if unparsable.any():  # keep the original text, so the contract quarantines it as unparsable
        kept = parsed.astype(object)
        kept[unparsable] = values[unparsable]
        return kept
    return parsed


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


def _validate(
    name: str,
    path: str | Path,
    frame: pd.DataFrame,
    now: pd.Timestamp | None,
    event_types: tuple[str, ...] | None = EVENT_TYPES,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`validate` the rows read from ``path``, naming the file in the error.

    Raises:
        ContractError: A required column is missing.
    """
    try:
        return validate(name, frame, now=now, event_types=event_types)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc


def _side_table(
    name: str,
    path: str | Path,
    raw: pd.DataFrame,
    mapping: dict[str, str] | None,
    tz: str,
    now: pd.Timestamp | None,
    report: IngestReport,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a users or items file: map its columns, read its timestamps in ``tz``, split good from bad."""
    raw = _apply_mapping(raw, mapping, path)
    report.rows_read[name] = len(raw)
    for col, kind in SCHEMAS[name].columns.items():
        if kind == "timestamp" and col in raw.columns:
            raw[col] = localize(raw[col], tz)
    return _validate(name, path, raw, now)


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
            "ts": localize(raw["InvoiceDate"], "Europe/London"),
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
    now: pd.Timestamp | None = None,
) -> IngestReport:
    """Read a user's files, map them onto the contract, quarantine bad rows and write a data folder.

    Args:
        events_path: Events file (CSV or Parquet).
        out: Output data folder (``events.parquet``, ``users.parquet``, ``items.parquet``,
            ``quarantine/<table>.parquet``).
        users_path: Optional users file.
        items_path: Optional items file.
        mapping: Contract column -> source column (applies to every file that has the source column).
        preset: A known layout instead of a mapping (``online-retail``).
        tz: Time zone of timestamps that carry none.
        event_type: Event type for every row when the events file has no event type column.
        now: Timestamps after this are quarantined as "in the future" (default: now).

    Returns:
        The report: rows read, written and quarantined per reason.

    Raises:
        ContractError: The files cannot be mapped onto the contract at all (a file that cannot be read,
            a mapping or preset that does not fit it, an unknown preset or time zone), or ``out`` is a
            file.
    """
    started = time.perf_counter()
    if preset is not None and preset not in PRESETS:
        raise ContractError(f"--preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    check_time_zone(tz)
    if Path(out).exists() and not Path(out).is_dir():
        raise ContractError(f"{out}: is a file; --out names the data folder to write")
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
        event_types: tuple[str, ...] | None = ("purchase", "refund")
    else:
        _check_sources(
            mapping or {}, {str(events_path): raw_events, **{str(side_paths[n]): f for n, f in side.items()}}
        )
        events = _apply_mapping(raw_events, mapping, events_path)
        if "event_type" not in events.columns:
            if event_type is None:
                raise ContractError(
                    f"{events_path}: no event_type column; map one with --map "
                    "event_type=COLUMN or give --event-type for every row"
                )
            events["event_type"] = event_type
        if "ts" in events.columns:
            events["ts"] = localize(events["ts"], tz)
        event_types = None
    good, quarantine = _validate("events", events_path, events, now, event_types)
    if preset is not None:
        # keep the source's own columns beside the reason, so a person can read what was refused
        quarantine = pd.concat(
            [
                quarantine[["reason", "source_row"]],
                raw_events.iloc[quarantine["source_row"].to_numpy()].reset_index(drop=True),
            ],
            axis=1,
        )
    tables: dict[str, pd.DataFrame] = {}
    quarantines: dict[str, pd.DataFrame] = {"events": quarantine}
    attrs = [c for c in good.columns if c == "country"]
    tables["events"] = good.drop(columns=attrs)

    if "users" in side:
        tables["users"], quarantines["users"] = _side_table(
            "users", side_paths["users"], side["users"], mapping, tz, now, report
        )
    else:
        tables["users"] = users_from_events(good, attrs)
    if "items" in side:
        tables["items"], quarantines["items"] = _side_table(
            "items", side_paths["items"], side["items"], mapping, tz, now, report
        )
    elif items is not None:
        tables["items"], quarantines["items"] = validate("items", items, now=now)

    out = Path(out)
    for name, frame in tables.items():
        write_table(frame, out / f"{name}.parquet", contract=name)
        report.rows_written[name] = len(frame)
    for name, frame in quarantines.items():
        path = out / "quarantine" / f"{name}.parquet"
        if len(frame):
            write_table(frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object}), path)
        elif path.exists():
            path.unlink()  # a clean rerun leaves no stale quarantine behind
        report.quarantined[name] = reason_counts(frame)
    report.seconds = time.perf_counter() - started
    return report
