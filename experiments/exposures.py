"""The exposure log: append-only, one row per (experiment, unit), durable before a write returns.

Each row keeps the unit's first exposure (its variant and timestamp), the last timestamp, and a count of
all exposures. A batch is aggregated in memory first (so the same unit twice in one batch is one row),
then written with one ``INSERT ... ON CONFLICT (experiment, unit_id) DO UPDATE`` per row inside a single
transaction, which is committed before :meth:`ExposureLog.log` returns. If a late-arriving exposure is
older than the stored first one, it becomes the first (variant and timestamp together).

A database error (a server that does not answer, a file that cannot be opened) leaves as a one-line
:class:`~experiments.errors.StoreError` naming the database by its URL without the password.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, case, select

from experiments.db import check_prefix, database_errors, guarded, make_engine, upsert
from experiments.errors import StoreError

CONTRACT_COLUMNS = ["experiment", "variant", "unit_id", "ts"]


@dataclass(frozen=True)
class Exposure:
    """A unit saw a variant of an experiment at ``ts`` (naive UTC, or aware and converted)."""

    experiment: str
    variant: str
    unit_id: str
    ts: datetime


@dataclass(frozen=True)
class LogReceipt:
    """What a committed batch contained."""

    exposures: int
    units: int


class ExposureSink(Protocol):
    """Where assignments write exposures: :class:`ExposureLog`, or :class:`GroupCommit` in front of one."""

    def log(self, exposures: Iterable[Exposure]) -> LogReceipt:
        """Append exposures; return only once they are committed."""
        ...


def _naive_utc(ts: datetime) -> datetime:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


class ExposureLog:
    """The exposure log table, in SQLite or PostgreSQL.

    Args:
        url: SQLAlchemy URL (ignored when ``engine`` is given).
        engine: An existing engine to share (e.g. the experiment store's).
        table_prefix: Prefix of the table name (lets tests isolate themselves).

    Raises:
        StoreError: The database cannot be reached or the table cannot be made.
    """

    def __init__(
        self, url: str | None = None, *, engine: Engine | None = None, table_prefix: str = ""
    ) -> None:
        if engine is None:
            if url is None:
                raise ValueError("give an exposure log URL or an engine")
            engine = make_engine(url)
        self.engine = engine
        self.metadata = MetaData()
        self.table = Table(
            f"{check_prefix(table_prefix)}exposure_log",
            self.metadata,
            Column("experiment", String(64), primary_key=True),
            Column("unit_id", String(256), primary_key=True),
            Column("variant", String(64), nullable=False),
            Column("first_ts", DateTime, nullable=False),
            Column("last_ts", DateTime, nullable=False),
            Column("exposures", Integer, nullable=False),
        )
        with database_errors(self.engine.url):
            self.metadata.create_all(self.engine)
        table = self.table
        statement = upsert(self.engine, table)
        earlier = statement.excluded.first_ts < table.c.first_ts
        self._statement = statement.on_conflict_do_update(
            index_elements=["experiment", "unit_id"],
            set_={
                "variant": case((earlier, statement.excluded.variant), else_=table.c.variant),
                "first_ts": case((earlier, statement.excluded.first_ts), else_=table.c.first_ts),
                "last_ts": case(
                    (statement.excluded.last_ts > table.c.last_ts, statement.excluded.last_ts),
                    else_=table.c.last_ts,
                ),
                "exposures": table.c.exposures + statement.excluded.exposures,
            },
        )

    @guarded
    def drop_table(self) -> None:
        """Drop the log table (tests and teardown)."""
        self.metadata.drop_all(self.engine)

    @guarded
    def log(self, exposures: Iterable[Exposure]) -> LogReceipt:
        """Append a batch of exposures; returns only after the batch is committed.

        Args:
            exposures: The exposures, in any order; repeats of a unit are counted, not duplicated.

        Returns:
            How many exposures and distinct (experiment, unit) pairs the committed batch held.
        """
        merged: dict[tuple[str, str], list[Any]] = {}
        count = 0
        for item in exposures:
            count += 1
            ts = _naive_utc(item.ts)
            key = (str(item.experiment), str(item.unit_id))
            row = merged.get(key)
            if row is None:
                merged[key] = [str(item.variant), ts, ts, 1]
                continue
            if ts < row[1]:
                row[0], row[1] = str(item.variant), ts
            row[2] = max(row[2], ts)
            row[3] += 1
        if not merged:
            return LogReceipt(exposures=0, units=0)
        rows = [
            {"experiment": e, "unit_id": u, "variant": v, "first_ts": f, "last_ts": last, "exposures": c}
            for (e, u), (v, f, last, c) in merged.items()
        ]
        with self.engine.begin() as conn:
            conn.execute(self._statement, rows)
        return LogReceipt(exposures=count, units=len(rows))

    @guarded
    def read(self, *, experiment: str | None = None) -> pd.DataFrame:
        """The log as a table.

        Args:
            experiment: Only this experiment, when given.

        Returns:
            Columns ``experiment, variant, unit_id, ts`` (first exposure), ``last_ts``, ``exposures``.
        """
        table = self.table
        query = select(
            table.c.experiment,
            table.c.variant,
            table.c.unit_id,
            table.c.first_ts.label("ts"),
            table.c.last_ts,
            table.c.exposures,
        ).order_by(table.c.experiment, table.c.unit_id)
        if experiment is not None:
            query = query.where(table.c.experiment == experiment)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        frame = pd.DataFrame(rows, columns=["experiment", "variant", "unit_id", "ts", "last_ts", "exposures"])
        for column in ("experiment", "variant", "unit_id"):
            frame[column] = frame[column].astype(str)
        for column in ("ts", "last_ts"):
            frame[column] = pd.to_datetime(frame[column])
        frame["exposures"] = frame["exposures"].astype("int64")
        return frame

    @guarded
    def export(self, path: str | Path, *, experiment: str | None = None) -> int:
        """Write the contract's ``exposures`` table (first exposure per unit) to Parquet or CSV.

        The file is written under a temporary name and renamed, so readers never see half a file.

        Args:
            path: Output file; ``.csv`` writes CSV, anything else Parquet.
            experiment: Only this experiment, when given.

        Returns:
            Number of rows written.
        """
        frame = self.read(experiment=experiment)[CONTRACT_COLUMNS]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if path.suffix.lower() == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
        return len(frame)


class GroupCommit:
    """Concurrent writers share transactions: one thread commits, to ``log``, everything handed to it while
    the previous commit was running, and each writer returns once the commit holding its exposures is done.

    Every :meth:`log` call is still durable before it returns; under concurrency the cost of a commit (a
    disk flush, or a round trip to the database) is paid once per batch instead of once per call.

    Args:
        log: The exposure log that commits.
    """

    def __init__(self, log: ExposureLog) -> None:
        self.target = log
        self._ready = threading.Condition()
        self._pending: list[tuple[list[Exposure], Future[LogReceipt]]] = []
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="exposure-group-commit", daemon=True)
        self._writer.start()

    def log(self, exposures: Iterable[Exposure]) -> LogReceipt:
        """Hand exposures to the next commit and wait for it.

        Raises:
            StoreError: The commit failed (every writer in it gets the error), or the log is closed.
        """
        return self.submit(exposures).result()

    def submit(self, exposures: Iterable[Exposure]) -> Future[LogReceipt]:
        """Hand exposures to the next commit without waiting: the future is done once they are committed
        (an event loop awaits it with ``asyncio.wrap_future`` instead of holding a thread).

        Raises:
            StoreError: The log is closed (a failed commit is the future's exception).
        """
        items = list(exposures)
        done: Future[LogReceipt] = Future()
        if not items:
            done.set_result(LogReceipt(exposures=0, units=0))
            return done
        with self._ready:
            if self._closed:
                raise StoreError("the exposure log is closed")
            self._pending.append((items, done))
            self._ready.notify()
        return done

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            try:
                self.target.log(item for items, _ in batch for item in items)
            except Exception as error:  # the commit failed: so did every call in it
                for _, done in batch:
                    done.set_exception(error)
                continue
            for items, done in batch:
                units = len({(item.experiment, item.unit_id) for item in items})
                done.set_result(LogReceipt(exposures=len(items), units=units))

    def close(self) -> None:
        """Commit what is pending, then stop the writer thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._writer.join()
