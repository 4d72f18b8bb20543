"""Train a churn or propensity model, log the run to MLflow and promote it: the one call the CLI makes.

It joins the two halves that must not know each other's insides: :mod:`training.churn` trains and
evaluates (no MLflow), :mod:`training.churn_mlflow` logs, registers and promotes what it is handed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from training.churn import ChurnOptions, train_kind
from training.churn_mlflow import log_and_promote
from training.results import TrainOutcome


def train_and_register(
    *,
    data_dir: str | Path,
    as_of: date,
    horizon: int,
    tracking_uri: str,
    kind: str,
    options: ChurnOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train ``kind`` as of ``as_of``, log the run to MLflow (experiment ``kind``) and promote it.

    The new version becomes ``champion`` only if its holdout ROC-AUC beats the current champion's,
    re-scored on the same holdout; otherwise ``challenger``.

    Args:
        data_dir: Data folder (artifacts go to ``data_dir/mlartifacts``).
        as_of: Target date.
        horizon: Label window in days.
        tracking_uri: MLflow tracking and registry URI.
        kind: ``churn`` or ``propensity``.
        options: Back-test, seed and hyperparameters (default: :class:`ChurnOptions`'s defaults).
        progress: Called with a line of text before each long step.

    Returns:
        The run, version, alias and decision, the holdout metrics of the model and the baselines, and the
        facts (``backtest_dates``, ``training_rows``, ``holdout_users``, ``holdout_date``,
        ``holdout_rate``).

    Raises:
        TrainingDataError: The data cannot train it (too few usable back-test dates, one outcome only, ...).
    """
    result = train_kind(data_dir, as_of, horizon=horizon, kind=kind, options=options, progress=progress)
    return log_and_promote(result, data_dir=data_dir, tracking_uri=tracking_uri)
