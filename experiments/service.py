"""Service functions that the CLI and the HTTP API share; they know nothing of either."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.analysis import DEFAULT_METRICS, Analysis, analyze
from experiments.assignment import assign_many
from experiments.definitions import RUNNING
from experiments.exposures import Exposure, ExposureLog
from experiments.metrics import read_table
from experiments.over_time import effect_over_time
from experiments.store import ExperimentStore, StoreError


def assign_units(
    *,
    store: ExperimentStore,
    experiment: str,
    unit_ids: Sequence[str],
    attributes: pd.DataFrame | None = None,
    log: ExposureLog | None = None,
    now: datetime | None = None,
    preview: bool = False,
) -> pd.DataFrame:
    """Assign units to a running experiment (respecting the global holdout) and optionally log exposures.

    Args:
        store: The experiment store.
        experiment: Experiment key.
        unit_ids: Units to assign.
        attributes: One row of attributes per unit, for targeting.
        log: When given, every enrolled unit's exposure is logged (durably) before returning.
        now: Exposure timestamp (naive UTC); defaults to the current time.
        preview: Allow a draft or stopped experiment (nothing is logged then).

    Returns:
        Columns ``unit_id, variant`` (empty string when not enrolled), ``bucket``, ``reason``.

    Raises:
        StoreError: If the experiment is unknown, or not running and ``preview`` is off.
    """
    definition = store.get(experiment)
    if definition.status != RUNNING and not preview:
        raise StoreError(
            f"experiment {experiment!r} is {definition.status}, not running (preview shows the design)"
        )
    variants, buckets, reasons = assign_many(
        design=definition.design(), unit_ids=unit_ids, attributes=attributes, holdout=store.holdout()
    )
    frame = pd.DataFrame(
        {
            "unit_id": [str(u) for u in unit_ids],
            "variant": [v or "" for v in variants],
            "bucket": buckets,
            "reason": reasons.astype(str),
        }
    )
    if log is not None and not preview:
        stamp = now or datetime.now(UTC).replace(tzinfo=None)
        log.log(
            Exposure(experiment=experiment, variant=v, unit_id=u, ts=stamp)
            for u, v in zip(frame["unit_id"], variants, strict=True)
            if v is not None
        )
    return frame


@dataclass
class FolderRead:
    """An analysis of a data folder, with what was read to produce it."""

    analysis: Analysis
    metrics: list[str]
    guardrails: list[str]
    shares_from_store: bool
    exposures_rows: int
    events_rows: int


def analyze_folder(
    *,
    data_dir: str | Path,
    experiment: str,
    store: ExperimentStore | None = None,
    metrics: Sequence[str] = (),
    guardrails: Sequence[str] = (),
    **options: Any,
) -> FolderRead:
    """Analyse an experiment from the data folder's ``exposures`` and ``events`` tables.

    When the experiment is defined in ``store``, its variant shares drive the sample-ratio check, and
    when no metric is asked for, its metrics and guardrails are used. Otherwise shares are equal and the
    metrics default to ``conversion, revenue, orders``.

    Args:
        data_dir: The data folder.
        experiment: Experiment key.
        store: The experiment store, if there is one.
        metrics: Metric names; empty = the definition's or the defaults.
        guardrails: Guardrail metric names.
        **options: Further keyword arguments of :func:`experiments.analysis.analyze`.

    Returns:
        The read.
    """
    exposures = read_table(data_dir, "exposures")
    events = read_table(data_dir, "events")
    definition = store.find(experiment) if store is not None else None
    shares = None
    chosen, guards = list(metrics), list(guardrails)
    if definition is not None:
        shares = dict(zip(definition.variants, definition.design().bucket_shares().tolist(), strict=True))
        if not chosen:
            chosen, guards = list(definition.metrics), guards or list(definition.guardrails)
    chosen = chosen or list(DEFAULT_METRICS)
    analysis = analyze(
        exposures=exposures,
        events=events,
        experiment=experiment,
        metrics=chosen,
        guardrails=guards,
        shares=shares,
        **options,
    )
    return FolderRead(
        analysis=analysis,
        metrics=chosen,
        guardrails=guards,
        shares_from_store=shares is not None,
        exposures_rows=len(exposures),
        events_rows=len(events),
    )


def folder_over_time(
    *, data_dir: str | Path, experiment: str, metrics: Sequence[str], **options: Any
) -> pd.DataFrame:
    """Day-by-day cumulative effects for the HTML report (see :func:`experiments.analysis.effect_over_time`).

    Args:
        data_dir: The data folder.
        experiment: Experiment key.
        metrics: Metric names.
        **options: Further keyword arguments of :func:`experiments.analysis.analyze`.

    Returns:
        The day-by-day table.
    """
    return effect_over_time(
        exposures=read_table(data_dir, "exposures"),
        events=read_table(data_dir, "events"),
        experiment=experiment,
        metrics=metrics,
        **options,
    )
