"""Events sent by apps: checked by the contract's rules, stored durably, and added to the live recommender.

:func:`record_events` is the whole service (it knows nothing of HTTP): each row is checked as ingest checks
rows (:func:`features.contract.validate_events`); the good ones are written as one Parquet file under
``DATA/incoming/`` (a temporary name, fsynced, renamed, the folder fsynced), which the next feature run
and training read with the events table; then each user's new events go into the served recommender's
history, so their next recommendations already reflect them, on this worker at once and on the others
as soon as they look at ``incoming/`` (:class:`LiveEvents`, before each recommendation).
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

from features.contract import INCOMING, INCOMING_SCHEMA, incoming_paths, validate_events
from serving.errors import ServingError

if TYPE_CHECKING:
    from training.recommenders.service import Recommender

MAX_EVENTS = 1_000
"""The most events one call may send."""
COLUMNS: tuple[str, ...] = tuple(INCOMING_SCHEMA.names)
"""The fields of an event, as the incoming files store them."""


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


_writers = threading.Lock()
"""Held while live histories change: a history is rebuilt aside and swapped in, so readers need no lock,
but two writers of one user must take turns."""


def add_to_recommender(recommender: Recommender, good: pd.DataFrame, *, trained_only: bool = False) -> None:
    """Add each user's new item events, oldest first, to the recommender's live histories.

    With ``trained_only``, events before the day the recommender was trained as of are left out: they were
    in its training data (what a freshly loaded model skips of the events stored before it was loaded).
    """
    rows = good.loc[good["item_id"].notna(), ["user_id", "ts", "item_id", "event_type"]]
    trained_as_of = recommender.meta.get("as_of")
    if trained_only and trained_as_of:
        ts = pd.to_datetime(rows["ts"], utc=True).dt.tz_localize(None)
        rows = rows.loc[(ts >= pd.Timestamp(str(trained_as_of))).to_numpy()]
    rows = rows.sort_values("ts", kind="stable")
    with _writers:
        for user_id, part in rows.groupby("user_id", sort=False):
            events = [
                {"item_id": str(item), "event_type": str(kind)}
                for item, kind in zip(part["item_id"], part["event_type"], strict=True)
            ]
            recommender.add_events(str(user_id), events)


class LiveEvents:
    """Keeps one worker's served recommenders up to date with the data folder's incoming events, whichever
    worker stored them.

    A worker adds what it stores itself at once (:meth:`record`); what other workers store it reads from
    ``incoming/`` when that folder changes: :meth:`catch_up`, called before each recommendation, costs one
    ``stat`` when nothing is new. Each file is applied once per set of models. The files already there when
    the models are loaded add their events from the models' training date on (the earlier ones were
    trained on; an event stored after training with an older timestamp is left out until the next
    training reads it).

    Args:
        data: The data folder.
        recommenders: The served recommenders (the champion and any rollout variant's).
    """

    def __init__(self, data: Path, recommenders: Sequence[Recommender]) -> None:
        self.data = data
        self.recommenders = list(recommenders)
        self._applied: set[str] = set()
        self._stamp: int | None = None
        self._lock = threading.Lock()
        self._folder = os.fspath(data / INCOMING)  # a plain path: asked on every recommendation
        self._catch_up(trained_only=True)

    def _folder_stamp(self) -> int | None:
        try:
            return os.stat(self._folder).st_mtime_ns
        except OSError:
            return None

    def catch_up(self) -> None:
        """Apply every incoming file not applied yet (nothing to do, and one ``stat``, when the folder has
        not changed since the last look)."""
        self._catch_up(trained_only=False)

    def _catch_up(self, *, trained_only: bool) -> None:
        stamp = self._folder_stamp()
        if stamp is None or stamp == self._stamp:
            return
        with self._lock:
            for path in incoming_paths(self.data):
                if path.name in self._applied:
                    continue
                try:
                    frame = pq.read_table(path).to_pandas()
                except (OSError, pa.ArrowException):  # gone since it was listed: nothing to add
                    continue
                self._apply(path, frame, trained_only=trained_only)
            self._stamp = stamp  # read before listing: a file renamed in since moves it, so none is missed

    def record(self, path: Path, good: pd.DataFrame) -> None:
        """Apply the events this worker just stored in ``path``."""
        with self._lock:
            if path.name not in self._applied:
                self._apply(path, good, trained_only=False)

    def _apply(self, path: Path, frame: pd.DataFrame, *, trained_only: bool) -> None:
        """Add the events of the file ``path`` to every served recommender, once (the lock is held)."""
        for recommender in self.recommenders:
            add_to_recommender(recommender, frame, trained_only=trained_only)
        self._applied.add(path.name)


def record_events(
    *,
    data: Path,
    events: Sequence[Mapping[str, Any]],
    live: LiveEvents | None = None,
    now: datetime | None = None,
) -> Recorded:
    """Check a batch of events, store the good ones and add them to the served recommenders.

    Not all-or-nothing: good rows are kept, bad ones come back with their position and reason.

    Args:
        data: The data folder.
        events: Rows with ``user_id``, ``ts`` (ISO 8601; without an offset, UTC), ``event_type`` and
            optionally ``item_id``, ``amount``, ``session_id``.
        live: The worker's served recommenders, updated at once (other workers read the stored file).
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
    if path is not None and live is not None:
        live.record(path, good)
    return Recorded(accepted=len(good), rejected=rejected, path=path)
