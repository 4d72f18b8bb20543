"""Point-in-time training sets by back-testing: several as-of dates whose label windows close in time.

For a target date ``T`` and horizon ``H`` the latest usable as-of date is ``T - H`` (its label window
``[T - H, T)`` ends before ``T``); earlier ones step back by ``step_days``. Features for each as-of date
come from the feature job (events before that date), labels from ``features.labels`` (events in the
window). The slices are time-ordered, never random: the latest date is the holdout every model is compared
on, the one before it the validation slice (early stopping, calibration), the rest the training slice.
Nothing at or after ``T`` is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

LABELS: dict[str, str] = {"churn": "churned", "propensity": "converted"}
"""Label column of each model kind."""


def backtest_dates(target: date, horizon: int, *, n_dates: int = 6, step_days: int = 30) -> list[date]:
    """As-of dates whose label windows ``[d, d + horizon)`` end on or before ``target``, oldest first."""
    latest = target - timedelta(days=horizon)
    return [latest - timedelta(days=step_days * k) for k in range(n_dates)][::-1]


def labelled_snapshot(
    data_dir: str | Path, as_of: date, *, horizon: int, kind: str, lookback: int, end: date | None = None
) -> pd.DataFrame:
    """Features as of ``as_of`` joined with the label, over users active in the ``lookback`` days before it.

    ``end`` (exclusive) bounds what the labels may read: a window reaching past it raises.

    Returns:
        ``user_id, as_of``, the features, and ``label`` (0/1).
    """
    from features.job import build_features
    from features.labels import churn_labels, conversion_labels

    if kind not in LABELS:
        raise ValueError(f"unknown model kind {kind!r}; use churn or propensity")
    population = churn_labels(data_dir, as_of, horizon=horizon, lookback=lookback, end=end)
    if kind == "churn":
        labels = population.rename(columns={"churned": "label"})[["user_id", "label"]]
    else:
        conv = conversion_labels(data_dir, as_of, horizon, end=end)
        labels = population[["user_id"]].merge(conv, on="user_id", how="left")
        labels = labels.assign(label=labels["converted"].fillna(False))[["user_id", "label"]]
    features = build_features(data_dir, as_of)
    frame = features.merge(labels, on="user_id", how="inner")
    frame["label"] = frame["label"].astype(int)
    return frame


@dataclass
class BacktestSet:
    """Time-ordered slices of a back-test: training dates < validation date < holdout date."""

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    dates: list[date]
    holdout_date: date
    valid_date: date
    skipped: list[date]

    def window(self) -> dict[str, str]:
        """The data window, for the run's parameters."""
        train_dates = sorted({d for d in self.dates if d < self.valid_date})
        return {
            "train_from": str(train_dates[0]),
            "train_to": str(train_dates[-1]),
            "valid_as_of": str(self.valid_date),
            "holdout_as_of": str(self.holdout_date),
        }


def build_backtest(
    data_dir: str | Path,
    target: date,
    *,
    horizon: int,
    kind: str,
    lookback: int = 365,
    n_dates: int = 6,
    step_days: int = 30,
    min_rows: int = 50,
    progress: Callable[[str], None] | None = None,
) -> BacktestSet:
    """Labelled snapshots for the back-test dates, split into training, validation and holdout by time.

    Dates with fewer than ``min_rows`` users or a single outcome are skipped (the earliest dates of a
    short history).

    Raises:
        ValueError: Fewer than three usable dates.
    """
    frames: dict[date, pd.DataFrame] = {}
    skipped: list[date] = []
    for d in backtest_dates(target, horizon, n_dates=n_dates, step_days=step_days):
        if progress is not None:
            progress(f"{kind}: features and labels as of {d}")
        frame = labelled_snapshot(data_dir, d, horizon=horizon, kind=kind, lookback=lookback, end=target)
        if len(frame) < min_rows or frame["label"].nunique() < 2:
            skipped.append(d)
            continue
        frames[d] = frame
    usable = sorted(frames)
    if len(usable) < 3:
        raise ValueError(
            f"{kind}: only {len(usable)} usable back-test date(s) before {target} with horizon "
            f"{horizon} days (need 3: training, validation, holdout); use more history or a "
            "shorter --horizon"
        )
    holdout_date, valid_date = usable[-1], usable[-2]
    train = pd.concat([frames[d] for d in usable[:-2]], ignore_index=True)
    return BacktestSet(
        train=train,
        valid=frames[valid_date],
        holdout=frames[holdout_date],
        dates=usable,
        holdout_date=holdout_date,
        valid_date=valid_date,
        skipped=skipped,
    )
