"""Train a churn or propensity model, log the run to MLflow and promote it: the one call the CLI makes.

It joins the two halves that must not know each other's insides: :mod:`training.churn` trains and
evaluates (no MLflow), :mod:`training.churn_mlflow` logs, registers and promotes what it is handed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd

from training.churn import PROPENSITY_DUPLICATES_CHURN, ChurnOptions, propensity_duplicates_churn, train_kind
from training.churn_mlflow import log_and_promote
from training.results import TrainOutcome

SKIPPED = "skipped"
"""The alias of an outcome whose model was not trained (its ``decision`` says why)."""


def skipped_propensity(data_dir: str | Path, as_of: date) -> TrainOutcome | None:
    """The outcome of a propensity run that would duplicate churn on this folder (``None``: it would not).

    Nothing is logged or registered for it; the summary shows the decision.
    """
    from features.contract import load_table

    events = load_table(data_dir, "events", required=True)
    assert events is not None
    types = events.loc[events["ts"] < pd.Timestamp(as_of), "event_type"].unique()
    if not propensity_duplicates_churn(types):
        return None
    return TrainOutcome(
        kind="propensity",
        run_id="",
        model_uri="",
        version="",
        alias=SKIPPED,
        decision=PROPENSITY_DUPLICATES_CHURN,
        metrics=pd.DataFrame(),
        facts={"event_types": ", ".join(sorted(str(t) for t in types))},
    )


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
    re-scored on the same holdout; otherwise ``challenger``. A propensity model on data whose only activity
    is purchases is not trained (its label would be the complement of churn's): the outcome's alias is
    :data:`SKIPPED`, its metrics empty and its decision says why.

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
    if kind == "propensity" and (skipped := skipped_propensity(data_dir, as_of)) is not None:
        return skipped
    result = train_kind(data_dir, as_of, horizon=horizon, kind=kind, options=options, progress=progress)
    return log_and_promote(result, data_dir=data_dir, tracking_uri=tracking_uri)
