"""The experiment store: definitions, lifecycle (draft → running → stopped) and a change log, in SQL.

Rules enforced here (not in callers):

- a draft may be edited freely; a running experiment may change coverage, targeting, metrics and
  description, but changes to its variants, weights or salt (which move enrolled units) are refused
  unless ``force=True``; a stopped experiment is never edited;
- the lifecycle only moves forward: draft → running → stopped;
- the layer slice of a new experiment is allocated inside a transaction that holds a per-layer lock
  row, so two experiments of one layer never get overlapping slices;
- every change (create, update, start, stop, holdout) is written to the change log in the same
  transaction as the change itself, with the fields before and after.

Every refusal is a :class:`~experiments.errors.StoreError`, and so is any database error (a server that
does not answer, a file that cannot be opened): one line naming the database by its URL without the
password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    select,
)

from experiments.assignment import Holdout, allocate_slice, check_salt, to_buckets
from experiments.db import check_prefix, database_errors, guarded, make_engine, upsert
from experiments.definitions import DRAFT, RUNNING, STATUSES, STOPPED, Experiment
from experiments.errors import StoreError, UnknownExperimentError
from experiments.schema import from_row, store_tables, to_row

GUARDED = ("variants", "weights", "salt")
EDITABLE = (
    "variants",
    "weights",
    "salt",
    "coverage_buckets",
    "targeting",
    "metrics",
    "guardrails",
    "description",
)


@dataclass(frozen=True)
class Change:
    """One entry of the change log."""

    id: int
    experiment: str
    at: datetime
    action: str
    forced: bool
    before: dict[str, Any]
    after: dict[str, Any]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ExperimentStore:
    """Experiment definitions in SQLite or PostgreSQL through SQLAlchemy.

    Args:
        url: SQLAlchemy URL (ignored when ``engine`` is given).
        engine: An existing engine to share.
        table_prefix: Prefix of the three table names (lets tests isolate themselves).

    Raises:
        StoreError: The database cannot be reached or its tables cannot be made.
    """

    def __init__(
        self, url: str | None = None, *, engine: Engine | None = None, table_prefix: str = ""
    ) -> None:
        if engine is None:
            if url is None:
                raise ValueError("give a store URL or an engine")
            engine = make_engine(url)
        self.engine = engine
        prefix = check_prefix(table_prefix)
        self.metadata = MetaData()
        self.experiments, self.changes, self.settings = store_tables(self.metadata, prefix)
        with database_errors(self.engine.url):
            self.metadata.create_all(self.engine)

    @guarded
    def drop_tables(self) -> None:
        """Drop the store's tables (tests and teardown)."""
        self.metadata.drop_all(self.engine)

    # -- reading -----------------------------------------------------------------------------------

    @guarded
    def get(self, key: str) -> Experiment:
        """Read one experiment.

        Args:
            key: Experiment key.

        Returns:
            The experiment.

        Raises:
            StoreError: If no experiment has that key.
        """
        with self.engine.connect() as conn:
            return self._get(conn, key)

    @guarded
    def find(self, key: str) -> Experiment | None:
        """Read one experiment, or None when it does not exist.

        Args:
            key: Experiment key.

        Returns:
            The experiment or None.
        """
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(self.experiments).where(self.experiments.c.key == key)).mappings().first()
            )
        return from_row(row) if row is not None else None

    @guarded
    def list_experiments(self, *, status: str | None = None) -> list[Experiment]:
        """All experiments, ordered by key.

        Args:
            status: Only this status, when given.

        Returns:
            The experiments.

        Raises:
            StoreError: If ``status`` is not a status.
        """
        if status is not None and status not in STATUSES:
            raise StoreError(f"unknown status {status!r}; use {', '.join(STATUSES)}")
        query = select(self.experiments).order_by(self.experiments.c.key)
        if status is not None:
            query = query.where(self.experiments.c.status == status)
        with self.engine.connect() as conn:
            return [from_row(row) for row in conn.execute(query).mappings()]

    @guarded
    def history(self, key: str) -> list[Change]:
        """The change log of one experiment, oldest first.

        Args:
            key: Experiment key.

        Returns:
            The changes.
        """
        query = select(self.changes).where(self.changes.c.experiment == key).order_by(self.changes.c.id)
        with self.engine.connect() as conn:
            return [
                Change(
                    id=row["id"],
                    experiment=row["experiment"],
                    at=row["at"],
                    action=row["action"],
                    forced=bool(row["forced"]),
                    before=json.loads(row["before"]),
                    after=json.loads(row["after"]),
                )
                for row in conn.execute(query).mappings()
            ]

    @guarded
    def holdout(self) -> Holdout:
        """The global holdout (no holdout until one is set).

        Returns:
            The holdout.
        """
        with self.engine.connect() as conn:
            value = conn.execute(
                select(self.settings.c.value).where(self.settings.c.name == "holdout")
            ).scalar_one_or_none()
        if value is None:
            return Holdout()
        data = json.loads(value)
        return Holdout(salt=data["salt"], buckets=int(data["buckets"]))

    # -- writing -----------------------------------------------------------------------------------

    @guarded
    def create(self, experiment: Experiment, *, layer_share: float | None = None) -> Experiment:
        """Store a new experiment as a draft.

        Args:
            experiment: The definition (its status, revision and timestamps are reset).
            layer_share: With a layer, the share of the layer to claim; the store allocates the first
                free slice of that size. Without it the definition's ``layer_slice`` is used and must be free.

        Returns:
            The stored experiment.

        Raises:
            StoreError: If the key exists or the layer has no room.
        """
        now = _utcnow()
        with self.engine.begin() as conn:
            if experiment.layer is not None:
                self._lock_layer(conn, experiment.layer)
                taken = self._taken_slices(conn, experiment.layer)
                try:
                    if layer_share is not None:
                        size = to_buckets(layer_share)
                        experiment = experiment.replace(layer_slice=allocate_slice(taken=taken, size=size))
                    elif any(_overlaps(experiment.layer_slice, other) for other in taken):
                        raise StoreError(f"layer slice {experiment.layer_slice} overlaps another experiment")
                except ValueError as error:
                    raise StoreError(f"layer {experiment.layer!r}: {error}") from error
            if self._exists(conn, experiment.key):
                raise StoreError(f"experiment {experiment.key!r} already exists")
            experiment = experiment.replace(
                status=DRAFT, revision=1, created_at=now, started_at=None, stopped_at=None
            )
            conn.execute(self.experiments.insert().values(**to_row(experiment)))
            self._record(conn, experiment.key, "create", False, {}, experiment.to_dict(), now)
        return experiment

    @guarded
    def update(self, /, key: str, *, force: bool = False, **changes: Any) -> Experiment:
        """Edit an experiment's definition.

        Args:
            key: Experiment key.
            force: Allow edits that move enrolled units of a running experiment (variants, weights, salt).
            **changes: New values for any of ``variants``, ``weights``, ``salt``, ``coverage_buckets``,
                ``targeting``, ``metrics``, ``guardrails``, ``description``.

        Returns:
            The updated experiment.

        Raises:
            StoreError: If the edit is refused.
        """
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise StoreError(f"cannot edit {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE)}")
        now = _utcnow()
        with self.engine.begin() as conn:
            current = self._get(conn, key, for_update=True)
            if current.status == STOPPED:
                raise StoreError(f"experiment {key!r} is stopped; a stopped experiment is never edited")
            if "salt" in changes:
                try:
                    check_salt(changes["salt"])
                except ValueError as error:
                    raise StoreError(f"salt: {error}") from error
            changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
            changed = {name: value for name, value in changes.items() if getattr(current, name) != value}
            moving = sorted(set(changed) & set(GUARDED))
            if current.status == RUNNING and moving and not force:
                raise StoreError(
                    f"experiment {key!r} is running: changing {', '.join(moving)} would move "
                    "enrolled units; use force to do it anyway"
                )
            if not changed:
                return current
            updated = current.replace(**changed, revision=current.revision + 1)
            before, after = current.to_dict(), updated.to_dict()
            fields = {k for k in after if before[k] != after[k]} - {"revision"}
            self._write(conn, updated, current.revision)
            self._record(
                conn,
                key,
                "update",
                bool(force and current.status == RUNNING and moving),
                {k: before[k] for k in fields},
                {k: after[k] for k in fields},
                now,
            )
        return updated

    @guarded
    def start(self, key: str) -> Experiment:
        """Move a draft to running.

        Args:
            key: Experiment key.

        Returns:
            The running experiment.
        """
        return self._transition(key, DRAFT, RUNNING, "started_at")

    @guarded
    def stop(self, key: str) -> Experiment:
        """Move a running experiment to stopped (its layer slice is freed).

        Args:
            key: Experiment key.

        Returns:
            The stopped experiment.
        """
        return self._transition(key, RUNNING, STOPPED, "stopped_at")

    @guarded
    def set_holdout(self, *, fraction: float, salt: str = "global") -> Holdout:
        """Set the global holdout (units in it are enrolled in no experiment).

        Args:
            fraction: Share of all units held out, in [0, 1].
            salt: Salt of the holdout hash; changing it reshuffles who is held out.

        Returns:
            The new holdout.

        Raises:
            StoreError: If the fraction is outside [0, 1] or the salt is not a valid name.
        """
        try:
            holdout = Holdout(salt=check_salt(salt), buckets=to_buckets(fraction))
        except ValueError as error:
            raise StoreError(f"holdout {error}") from error
        before = self.holdout()
        now = _utcnow()
        value = json.dumps({"salt": holdout.salt, "buckets": holdout.buckets})
        with self.engine.begin() as conn:
            statement = upsert(self.engine, self.settings).values(name="holdout", value=value)
            conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"value": value}))
            old = {"salt": before.salt, "buckets": before.buckets}
            self._record(
                conn, "*", "holdout", False, old, {"salt": holdout.salt, "buckets": holdout.buckets}, now
            )
        return holdout

    # -- internals ---------------------------------------------------------------------------------

    def _transition(self, key: str, source: str, target: str, stamp: str) -> Experiment:
        now = _utcnow()
        with self.engine.begin() as conn:
            current = self._get(conn, key, for_update=True)
            if current.status != source:
                raise StoreError(
                    f"experiment {key!r} is {current.status}; only a {source} experiment can be {target}"
                )
            updated = current.replace(status=target, revision=current.revision + 1, **{stamp: now})
            self._write(conn, updated, current.revision)
            self._record(
                conn,
                key,
                "start" if target == RUNNING else "stop",
                False,
                {"status": source},
                {"status": target},
                now,
            )
        return updated

    def _get(self, conn: Connection, key: str, *, for_update: bool = False) -> Experiment:
        query = select(self.experiments).where(self.experiments.c.key == key)
        if for_update and self.engine.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise UnknownExperimentError(f"no experiment {key!r} in the store")
        return from_row(row)

    def _exists(self, conn: Connection, key: str) -> bool:
        query = select(self.experiments.c.key).where(self.experiments.c.key == key)
        return conn.execute(query).first() is not None

    def _write(self, conn: Connection, experiment: Experiment, revision: int) -> None:
        # The revision check makes a concurrent edit fail loudly instead of being lost.
        row = to_row(experiment)
        key = row.pop("key")
        table = self.experiments
        result = conn.execute(
            table.update().where((table.c.key == key) & (table.c.revision == revision)).values(**row)
        )
        if result.rowcount != 1:
            raise StoreError(
                f"experiment {key!r} was changed by someone else meanwhile; read it again and retry"
            )

    def _lock_layer(self, conn: Connection, layer: str) -> None:
        # Writing a per-layer row first serialises concurrent allocations in the same layer: SQLite
        # takes its write lock here, PostgreSQL a row lock held until commit.
        name = f"lock/layer/{layer}"
        statement = upsert(self.engine, self.settings).values(name=name, value="{}")
        conn.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"value": "{}"}))

    def _taken_slices(self, conn: Connection, layer: str) -> list[tuple[int, int]]:
        table = self.experiments
        query = select(table.c.layer_start, table.c.layer_end).where(
            (table.c.layer == layer) & (table.c.status != STOPPED)
        )
        return [(int(start), int(end)) for start, end in conn.execute(query)]

    def _record(
        self,
        conn: Connection,
        key: str,
        action: str,
        forced: bool,
        before: dict[str, Any],
        after: dict[str, Any],
        at: datetime,
    ) -> None:
        conn.execute(
            self.changes.insert().values(
                experiment=key,
                at=at,
                action=action,
                forced=forced,
                before=json.dumps(before, sort_keys=True),
                after=json.dumps(after, sort_keys=True),
            )
        )


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]
