"""Events sent by apps: checked by the contract's rules, stored durably, and added to the live recommender.

:func:`record_events` is the whole service (it knows nothing of HTTP): each row is checked as ingest checks
rows (:func:`features.contract.validate_events`); the good ones are written as one Parquet file under
``DATA/incoming/`` (a temporary name, fsynced, renamed, the folder fsynced), which the next feature run
and training read with the events table; then each user's new events go into the served recommender's
history, so their next recommendations already reflect them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import INCOMING, INCOMING_SCHEMA, validate_events
from serving.errors import ServingError

if TYPE_CHECKING:
    from training.recommenders.service import Recommender

MAX_EVENTS = 1_000
"""The most events one call may send."""
COLUMNS: tuple[str, ...] = tuple(INCOMING_SCHEMA.names)
"""The fields of an event, as the incoming files store them."""

_live_updates = threading.Lock()
"""Held while a recommender's live histories change: request threads share the recommender."""


class EventStoreError(ServingError):
    """The events could not be written to the data folder (disk full, no permission): nothing was kept."""

    status = 503


@dataclass(frozen=True)
class Rejected:
    """One refused row: its 0-based position in the batch and why."""

    row: int
    reason: str


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_events` kept: how many rows, the refused ones, and the file (None: no good row)."""

    accepted: int
    rejected: list[Rejected]
    path: Path | None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_incoming(data: Path, good: pd.DataFrame, *, now: datetime) -> Path:
    """Write checked events as one new incoming file of the data folder ``data``, durably.

    The file is written under a hidden temporary name, fsynced, renamed to
    ``incoming/events-<UTC time>-<uuid>.parquet`` and the folder fsynced: once this returns, the events
    survive a crash, and a reader never sees half a file.

    Raises:
        EventStoreError: The file could not be written.
    """
    folder = data / INCOMING
    name = f"events-{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{name}.tmp"
    table = pa.Table.from_pandas(good.loc[:, list(COLUMNS)], schema=INCOMING_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(INCOMING_SCHEMA.metadata)  # without pandas' own
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(data)
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(folder / name)
        _fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EventStoreError(f"the events could not be stored: {exc.strerror or exc}") from exc
    return folder / name


def add_to_recommender(recommender: Recommender, good: pd.DataFrame) -> None:
    """Add each user's new item events, oldest first, to the recommender's live histories."""
    rows = good.loc[good["item_id"].notna(), ["user_id", "ts", "item_id", "event_type"]]
    rows = rows.sort_values("ts", kind="stable")
    with _live_updates:
        for user_id, part in rows.groupby("user_id", sort=False):
            events = [
                {"item_id": str(item), "event_type": str(kind)}
                for item, kind in zip(part["item_id"], part["event_type"], strict=True)
            ]
            recommender.add_events(str(user_id), events)


def record_events(
    *,
    data: Path,
    events: Sequence[Mapping[str, Any]],
    recommenders: Sequence[Recommender] = (),
    now: datetime | None = None,
) -> Recorded:
    """Check a batch of events, store the good ones and add them to the served recommender.

    Not all-or-nothing: good rows are kept, bad ones come back with their position and reason.

    Args:
        data: The data folder.
        events: Rows with ``user_id``, ``ts`` (ISO 8601; without an offset, UTC), ``event_type`` and
            optionally ``item_id``, ``amount``, ``session_id``.
        recommenders: The served recommenders to update at once (the champion and any rollout variant).
        now: Timestamps after this are refused as in the future (default: the current time; a naive
            one is UTC).

    Returns:
        How many rows were accepted, the rejected ones in row order, and the file written.

    Raises:
        EventStoreError: The good rows could not be stored (then nothing was accepted).
    """
    now = datetime.now(UTC) if now is None else now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    # objects as they came: a NaN that was sent is told apart from an amount left out
    frame = pd.DataFrame({col: pd.Series([e.get(col) for e in events], dtype=object) for col in COLUMNS})
    cutoff = pd.Timestamp(now.astimezone(UTC).replace(tzinfo=None))
    good, quarantine = validate_events(frame, now=cutoff)
    rejected = [
        Rejected(row=int(row), reason=str(reason))
        for row, reason in zip(quarantine["source_row"], quarantine["reason"], strict=True)
    ]
    path = write_incoming(data, good, now=now) if len(good) else None
    if len(good):
        for recommender in recommenders:
            add_to_recommender(recommender, good)
    return Recorded(accepted=len(good), rejected=rejected, path=path)
