"""Effects day by day: what a read would have shown at the end of each day of the experiment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from experiments.analysis import analyze_units
from experiments.metrics import DataError, first_exposures, join_events


def effect_over_time(
    *,
    exposures: pd.DataFrame,
    events: pd.DataFrame,
    experiment: str,
    metrics: Sequence[str],
    **options: Any,
) -> pd.DataFrame:
    """What a read would have shown at the end of each day of the experiment (cumulative).

    The confidence sequences use one planned size for every day (the final number of units unless
    ``planned_n`` is given), so they are valid across all the days together.

    Args:
        exposures: Exposures table.
        events: Events table.
        experiment: Experiment key.
        metrics: Metric names.
        **options: Further keyword arguments of :func:`analyze`.

    Returns:
        Columns ``day, metric, variant, n, diff_abs, ci_low, ci_high, cs_low, cs_high`` for non-control rows.
    """
    units = first_exposures(exposures, experiment=experiment)
    if units.empty:
        raise DataError(f"no exposures for experiment {experiment!r}")
    options.setdefault("planned_n", len(units))
    options.pop("shares", None)
    joined = join_events(units, events)  # joined once; each day is a filter of it
    event_times = np.sort(events["ts"].to_numpy())
    first_ts = units["first_ts"]
    last = max(first_ts.max(), events["ts"].max()) if len(events) else first_ts.max()
    records = []
    for day in pd.date_range(first_ts.min().normalize(), last.normalize(), freq="D"):
        cutoff = day + pd.Timedelta(days=1)
        keep = (first_ts < cutoff).to_numpy()
        seen = int(np.searchsorted(event_times, cutoff.to_datetime64()))
        position = np.cumsum(keep) - 1
        rows_kept = (joined["ts"] < cutoff).to_numpy() & keep[joined["pos"].to_numpy()]
        day_joined = joined.loc[rows_kept].copy()
        day_joined["pos"] = position[day_joined["pos"].to_numpy()]
        try:
            result = analyze_units(
                units=units.loc[keep].reset_index(drop=True),
                joined=day_joined,
                data_end=pd.Timestamp(event_times[seen - 1]) if seen else None,
                experiment=experiment,
                metrics=metrics,
                **options,
            )
        except DataError:
            continue  # e.g. no control unit yet on the first day
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
