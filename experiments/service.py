"""Service functions that the CLI and the HTTP API share; they know nothing of either."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
import pandas as pd

from experiments.analysis import DEFAULT_OPTIONS, Analysis, analyze
from experiments.assignment import Design, Holdout, assign, assign_many
from experiments.definitions import DRAFT, RUNNING
from experiments.errors import DataError, StoreError, UnknownExperimentError
from experiments.exposures import Exposure, ExposureSink, GroupCommit
from experiments.metrics import read_file, read_table
from experiments.options import AnalysisOptions
from experiments.over_time import effect_over_time
from experiments.store import ExperimentStore

ROLLOUT_BASELINE = "champion"
"""The baseline of a model rollout, whose variants are registry aliases rather than ``control``."""


def assign_units(
    *,
    store: ExperimentStore,
    experiment: str,
    unit_ids: Sequence[str],
    attributes: pd.DataFrame | None = None,
    log: ExposureSink | None = None,
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


class RunningDesigns:
    """Running experiments' designs and the global holdout, read from the store at most once every
    ``seconds`` per experiment: what a server assigns from, so that a request costs no store read. A
    stopped or edited experiment reaches it within ``seconds``.

    Args:
        store: The experiment store.
        seconds: How long a design read from the store is used.
    """

    def __init__(self, store: ExperimentStore, seconds: float = 1.0) -> None:
        self.store = store
        self.seconds = seconds
        self._read: dict[str, tuple[Design, Holdout, float]] = {}
        self._refused: dict[str, tuple[type[StoreError], str, float]] = {}

    def get(self, experiment: str) -> tuple[Design, Holdout]:
        """The running experiment's design and the holdout.

        Raises:
            StoreError: If the experiment is unknown or not running (also remembered for ``seconds``: a
                server may ask every request whether an optional experiment runs).
        """
        now = time.monotonic()
        read = self._read.get(experiment)
        if read is not None and now - read[2] < self.seconds:
            return read[0], read[1]
        refused = self._refused.get(experiment)
        if refused is not None and now - refused[2] < self.seconds:
            raise refused[0](refused[1])  # a new error each time: one raised again keeps every traceback
        try:
            definition = self.store.get(experiment)
            if definition.status != RUNNING:
                raise StoreError(
                    f"experiment {experiment!r} is {definition.status}, not running "
                    "(preview shows the design)"
                )
        except StoreError as error:
            self._read.pop(experiment, None)
            self._refused[experiment] = (type(error), str(error), now)
            raise
        self._refused.pop(experiment, None)
        design, holdout = definition.design(), self.store.holdout()
        self._read[experiment] = (design, holdout, now)
        return design, holdout

    def running(self, experiment: str) -> bool:
        """Whether ``experiment`` runs (as of the last read, at most ``seconds`` ago)."""
        try:
            self.get(experiment)
        except StoreError:
            return False
        return True


def assign_unit(
    *,
    designs: RunningDesigns,
    experiment: str,
    unit_id: str,
    attributes: Mapping[str, object] | None = None,
    log: ExposureSink | None = None,
) -> tuple[str | None, str]:
    """One unit of a running experiment, as :func:`assign_units` does it for many, without a table:
    what a request handler calls for each request.

    Returns:
        The variant (``None`` when not enrolled) and the reason.

    Raises:
        StoreError: If the experiment is unknown or not running.
    """
    variant, reason, exposure = _decide(designs, experiment, unit_id, attributes)
    if log is not None and exposure is not None:
        log.log([exposure])
    return variant, reason


async def assign_unit_async(
    *,
    designs: RunningDesigns,
    experiment: str,
    unit_id: str,
    attributes: Mapping[str, object] | None = None,
    log: ExposureSink | None = None,
) -> tuple[str | None, str]:
    """:func:`assign_unit` for an event loop: the exposure's commit is awaited, not waited on by a
    thread (a :class:`~experiments.exposures.GroupCommit` hands back a future; any other log is called on
    a worker thread). It returns, like :func:`assign_unit`, only once the exposure is committed.

    Raises:
        StoreError: If the experiment is unknown or not running, or the commit failed.
    """
    variant, reason, exposure = _decide(designs, experiment, unit_id, attributes)
    if log is not None and exposure is not None:
        if isinstance(log, GroupCommit):
            await asyncio.wrap_future(log.submit([exposure]))
        else:
            await anyio.to_thread.run_sync(log.log, [exposure])
    return variant, reason


def _decide(
    designs: RunningDesigns, experiment: str, unit_id: str, attributes: Mapping[str, object] | None
) -> tuple[str | None, str, Exposure | None]:
    """The unit's variant, the reason, and the exposure to log (none when not enrolled)."""
    design, holdout = designs.get(experiment)
    answer = assign(design=design, unit_id=unit_id, attributes=attributes, holdout=holdout)
    if answer.variant is None:
        return None, str(answer.reason), None
    stamp = datetime.now(UTC).replace(tzinfo=None)
    exposure = Exposure(experiment=experiment, variant=answer.variant, unit_id=unit_id, ts=stamp)
    return answer.variant, str(answer.reason), exposure


def read_units(path: Path) -> tuple[list[str], pd.DataFrame]:
    """Read the units to assign from a CSV or Parquet file with a ``unit_id`` column.

    Args:
        path: The file; every column besides ``unit_id`` is an attribute for targeting.

    Returns:
        ``(unit_ids, attributes)``: the ids as strings, and one row of attributes per unit.

    Raises:
        DataError: If the file is missing, unreadable, or has no ``unit_id`` column.
    """
    frame = read_file(path, ids=["unit_id"])
    if "unit_id" not in frame.columns:
        raise DataError(f"{path} has no unit_id column")
    return frame["unit_id"].astype(str).tolist(), frame.drop(columns=["unit_id"])


@dataclass(frozen=True)
class FolderRead:
    """An analysis of a data folder, with what was read to produce it.

    Attributes:
        analysis: The read.
        options: The options it used, with the metrics resolved (asked for, the store's, or the defaults).
        shares_from_store: Whether the sample-ratio check used the store's variant shares.
        exposures_rows: Rows of the exposures table.
        events_rows: Rows of the events table.
    """

    analysis: Analysis
    options: AnalysisOptions
    shares_from_store: bool
    exposures_rows: int
    events_rows: int

    @property
    def metrics(self) -> list[str]:
        """The primary metrics read."""
        return list(self.options.primary)

    @property
    def guardrails(self) -> list[str]:
        """The guardrail metrics read."""
        return list(self.options.guardrails)


def analyze_folder(
    *,
    data_dir: str | Path,
    experiment: str,
    store: ExperimentStore | None = None,
    options: AnalysisOptions = DEFAULT_OPTIONS,
) -> FolderRead:
    """Analyse an experiment from the data folder's ``exposures`` and ``events`` tables.

    When the experiment is defined in ``store``, its variant shares drive the sample-ratio check, and
    when the options name no metric, its metrics and guardrails are used. A model rollout (variants
    ``champion``, ``challenger``, ... and no ``control``) is read against ``champion``. Otherwise
    shares are equal and the metrics default to ``conversion, revenue, orders``.

    Args:
        data_dir: The data folder.
        experiment: Experiment key.
        store: The experiment store, if there is one.
        options: What to read and how; see :class:`~experiments.options.AnalysisOptions`.

    Returns:
        The read.

    Raises:
        DataError: A table is missing or cannot be analysed as asked.
        StoreError: The store cannot be read.
    """
    exposures = read_table(data_dir, "exposures")
    events = read_table(data_dir, "events")
    definition = store.find(experiment) if store is not None else None
    shares = None
    if definition is not None:
        shares = dict(zip(definition.variants, definition.design().bucket_shares().tolist(), strict=True))
        if options.control not in definition.variants and ROLLOUT_BASELINE in definition.variants:
            options = dataclasses.replace(options, control=ROLLOUT_BASELINE)
        if not options.metrics:
            options = dataclasses.replace(
                options,
                metrics=definition.metrics,
                guardrails=options.guardrails or definition.guardrails,
            )
    options = dataclasses.replace(options, metrics=options.primary)
    analysis = analyze(
        exposures=exposures, events=events, experiment=experiment, options=options, shares=shares
    )
    return FolderRead(
        analysis=analysis,
        options=options,
        shares_from_store=shares is not None,
        exposures_rows=len(exposures),
        events_rows=len(events),
    )


def folder_over_time(
    *, data_dir: str | Path, experiment: str, options: AnalysisOptions = DEFAULT_OPTIONS
) -> pd.DataFrame:
    """Day-by-day cumulative effects for the HTML report (see :func:`experiments.over_time.effect_over_time`).

    Args:
        data_dir: The data folder.
        experiment: Experiment key.
        options: What to read and how (pass :attr:`FolderRead.options` to follow the same metrics).

    Returns:
        The day-by-day table.
    """
    return effect_over_time(
        exposures=read_table(data_dir, "exposures"),
        events=read_table(data_dir, "events"),
        experiment=experiment,
        options=options,
    )


def require_readable(*, data_dir: str | Path, experiment: str, store: ExperimentStore) -> None:
    """Refuse to read an experiment that nobody knows, or a draft that never ran.

    An experiment is readable when the store holds it (started at least once), or when the data folder's
    exposures table has rows for it (e.g. a campaign run outside the store). The exposures are only read
    when the store cannot answer alone.

    Args:
        data_dir: The data folder.
        experiment: Experiment key.
        store: The experiment store.

    Raises:
        UnknownExperimentError: Neither the store nor the exposures table knows the key.
        StoreError: It is a draft with no exposures: it has no results yet.
        DataError: The exposures table cannot be read.
    """
    definition = store.find(experiment)
    if definition is not None and definition.status != DRAFT:
        return
    if _has_exposures(data_dir, experiment):
        return
    if definition is None:
        raise UnknownExperimentError(
            f"no experiment {experiment!r} in the store nor in the data folder's exposures"
        )
    raise StoreError(f"experiment {experiment!r} is a draft and has no exposures yet: start it first")


def _has_exposures(data_dir: str | Path, experiment: str) -> bool:
    folder = Path(data_dir)
    if not any((folder / f"exposures.{kind}").exists() for kind in ("parquet", "csv")):
        return False
    exposures = read_table(folder, "exposures")
    return bool((exposures["experiment"] == experiment).any())
