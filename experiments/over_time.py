"""Effects day by day: what a read would have shown at the end of each day of the experiment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from experiments.analysis import DEFAULT_OPTIONS, analyze_units
from experiments.errors import DataError
from experiments.metrics import first_exposures, join_events
from experiments.options import AnalysisOptions


def effect_over_time(
    *,
    exposures: pd.DataFrame,
    events: pd.DataFrame,
    experiment: str,
    options: AnalysisOptions = DEFAULT_OPTIONS,
) -> pd.DataFrame:
    """What a read would have shown at the end of each day of the experiment (cumulative).

    The confidence sequences use one planned size for every day (the final number of units unless
    ``options.planned_n`` is given), so they are valid across all the days together. Days before the
    control variant has a unit are left out.

    Args:
        exposures: Exposures table.
        events: Events table.
        experiment: Experiment key.
        options: As for :func:`experiments.analysis.analyze` (primary metrics and guardrails are both
            followed).

    Returns:
        Columns ``day, metric, variant, n, diff_abs, ci_low, ci_high, cs_low, cs_high`` for non-control rows.

    Raises:
        DataError: If the experiment has no exposures.
    """
    units = first_exposures(exposures, experiment=experiment)
    if units.empty:
        raise DataError(f"no exposures for experiment {experiment!r}")
    if options.planned_n is None:
        options = dataclasses.replace(options, planned_n=len(units))
    joined = join_events(units, events)  # joined once; each day is a filter of it
    event_times = np.sort(events["ts"].to_numpy())
    first_ts = units["first_ts"]
    in_control = (units["variant"] == options.control).to_numpy()
    last = max(first_ts.max(), events["ts"].max()) if len(events) else first_ts.max()
    records = []
    for day in pd.date_range(first_ts.min().normalize(), last.normalize(), freq="D"):
        cutoff = day + pd.Timedelta(days=1)
        keep = (first_ts < cutoff).to_numpy()
        if not (keep & in_control).any():
            continue  # no control unit yet (e.g. on the first day): nothing to compare with
        seen = int(np.searchsorted(event_times, cutoff.to_datetime64()))
        position = np.cumsum(keep) - 1
        rows_kept = (joined["ts"] < cutoff).to_numpy() & keep[joined["pos"].to_numpy()]
        day_joined = joined.loc[rows_kept].copy()
        day_joined["pos"] = position[day_joined["pos"].to_numpy()]
        result = analyze_units(
            units=units.loc[keep].reset_index(drop=True),
            joined=day_joined,
            data_end=pd.Timestamp(event_times[seen - 1]) if seen else None,
            experiment=experiment,
            options=options,
        )
        for row in result.rows:
            if row.variant != result.control:
                records.append(
                    {
                        "day": day,
                        "metric": row.metric,
                        "variant": row.variant,
                        "n": row.n,
                        "diff_abs": row.diff_abs,
                        "ci_low": row.ci_low,
                        "ci_high": row.ci_high,
                        "cs_low": row.cs_low,
                        "cs_high": row.cs_high,
                    }
                )
    columns = ["day", "metric", "variant", "n", "diff_abs", "ci_low", "ci_high", "cs_low", "cs_high"]
    return pd.DataFrame.from_records(records, columns=columns)
