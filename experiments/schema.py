"""SQL schema of the experiment store and the mapping between rows and :class:`Experiment`."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, String, Table, Text

from experiments.assignment import BUCKETS, Rule
from experiments.definitions import Experiment


def store_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table, Table]:
    """The store's three tables: definitions, change log, settings (global holdout, layer locks).

    Args:
        metadata: Metadata to attach the tables to.
        prefix: Table-name prefix.

    Returns:
        ``(experiments, changes, settings)``.
    """
    experiments = Table(
        f"{prefix}experiments",
        metadata,
        Column("key", String(64), primary_key=True),
        Column("status", String(16), nullable=False),
        Column("salt", String(64), nullable=False),
        Column("hash_version", Integer, nullable=False),
        Column("variants", Text, nullable=False),
        Column("coverage_buckets", Integer, nullable=False),
        Column("layer", String(64), nullable=True, index=True),
        Column("layer_start", Integer, nullable=False),
        Column("layer_end", Integer, nullable=False),
        Column("targeting", Text, nullable=False),
        Column("metrics", Text, nullable=False),
        Column("guardrails", Text, nullable=False),
        Column("description", Text, nullable=False),
        Column("revision", Integer, nullable=False),
        Column("created_at", DateTime, nullable=False),
        Column("started_at", DateTime, nullable=True),
        Column("stopped_at", DateTime, nullable=True),
    )
    changes = Table(
        f"{prefix}experiment_changes",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("experiment", String(64), nullable=False, index=True),
        Column("at", DateTime, nullable=False),
        Column("action", String(16), nullable=False),
        Column("forced", Boolean, nullable=False),
        Column("before", Text, nullable=False),
        Column("after", Text, nullable=False),
    )
    settings = Table(
        f"{prefix}experiment_settings",
        metadata,
        Column("name", String(128), primary_key=True),
        Column("value", Text, nullable=False),
    )
    return experiments, changes, settings


def to_row(experiment: Experiment) -> dict[str, Any]:
    """The definition as a row of the experiments table (lists and rules JSON-encoded)."""
    return {
        "key": experiment.key,
        "status": experiment.status,
        "salt": experiment.salt,
        "hash_version": experiment.hash_version,
        "variants": json.dumps(
            [[n, w] for n, w in zip(experiment.variants, experiment.weights, strict=True)]
        ),
        "coverage_buckets": experiment.coverage_buckets,
        "layer": experiment.layer,
        "layer_start": experiment.layer_slice[0],
        "layer_end": experiment.layer_slice[1],
        "targeting": json.dumps([[r.attribute, r.op, list(r.values)] for r in experiment.targeting]),
        "metrics": json.dumps(list(experiment.metrics)),
        "guardrails": json.dumps(list(experiment.guardrails)),
        "description": experiment.description,
        "revision": experiment.revision,
        "created_at": experiment.created_at,
        "started_at": experiment.started_at,
        "stopped_at": experiment.stopped_at,
    }


def from_row(row: Any) -> Experiment:
    """The definition stored in a row of the experiments table."""
    variants = json.loads(row["variants"])
    return Experiment(
        key=row["key"],
        status=row["status"],
        salt=row["salt"],
        hash_version=row["hash_version"],
        variants=tuple(name for name, _ in variants),
        weights=tuple(int(weight) for _, weight in variants),
        coverage_buckets=int(row["coverage_buckets"]),
        layer=row["layer"],
        layer_slice=(int(row["layer_start"]), int(row["layer_end"])) if row["layer"] else (0, BUCKETS),
        targeting=tuple(Rule(a, op, tuple(v)) for a, op, v in json.loads(row["targeting"])),
        metrics=tuple(json.loads(row["metrics"])),
        guardrails=tuple(json.loads(row["guardrails"])),
        description=row["description"],
        revision=int(row["revision"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
    )
