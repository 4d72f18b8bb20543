"""``userops train KIND``: fit, evaluate against baselines, log to MLflow and promote one model kind."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import date
from enum import StrEnum
from numbers import Integral
from typing import TYPE_CHECKING, Annotated

import typer

from serving.settings import Settings
from userops.console import UsageError, step, summary
from userops.options import AllowGapOpt, AsOfOpt, DataOpt, HorizonOpt, open_data

if TYPE_CHECKING:
    from training.results import TrainOutcome


class Kind(StrEnum):
    churn = "churn"
    propensity = "propensity"
    recommender = "recommender"
    offers = "offers"


def _shown(value: object) -> str:
    """A fact as a person reads it: dates as dates, lists joined, fractions to three places."""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, Integral):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_shown(v) for v in value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def metrics_text(metrics: Iterable[tuple[Hashable, object]]) -> str:
    """One model's holdout metrics, as (name, value) pairs, on one line: ``roc_auc 0.742  brier 0.210``."""
    return "  ".join(f"{k} {_shown(v)}" for k, v in metrics)


def outcome_rows(outcome: TrainOutcome) -> dict[str, object]:
    """The summary of a training run: what it was fitted on, every model's holdout metrics, the decision."""
    rows: dict[str, object] = {key.replace("_", " "): _shown(value) for key, value in outcome.facts.items()}
    if outcome.metrics.empty and outcome.version:  # a skipped model has no run and no holdout
        rows["holdout"] = "no events on or after the date in the folder: no test-window evaluation"
    # object columns keep each metric's own type (user counts stay whole numbers)
    for name, metrics in outcome.metrics.astype(object).iterrows():
        rows[f"holdout {name}"] = metrics_text(metrics.items())
    rows.update(
        {
            "run": outcome.run_id,
            "version": outcome.version,
            "alias": outcome.alias,
            "decision": outcome.decision,
        }
    )
    return rows


def train(
    kind: Annotated[Kind, typer.Argument(help="Which model to train.")],
    data: DataOpt,
    as_of: AsOfOpt,
    horizon: HorizonOpt = 90,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Train one model kind as of a date, evaluate it beside its baselines, log and register it in MLflow.

    Reads the data folder (events before --as-of only). Writes an MLflow run (parameters, data window,
    metrics of the model and the baselines, plots) to USEROPS_TRACKING_URI / MLFLOW_TRACKING_URI or
    DATA/mlflow.db, registers the model and moves the alias `champion` to it only if it beats the current
    champion on the same holdout (otherwise it becomes `challenger`, and the summary says why).
    """
    with step(f"train {kind.value}") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        if kind in (Kind.churn, Kind.propensity):
            from training.churn_run import train_and_register

            outcome = train_and_register(
                data_dir=data, as_of=as_of, horizon=horizon, tracking_uri=uri, kind=kind.value
            )
        elif kind is Kind.recommender:
            from simulator.oracle import recommender_reference
            from training.recommend import train_and_register as train_recommender

            # a simulated folder carries its truth: the oracle's rows join the table (never the choice)
            outcome = train_recommender(
                data_dir=data,
                as_of=as_of,
                horizon=horizon,
                tracking_uri=uri,
                kind=kind.value,
                reference=recommender_reference(data),
            )
        else:
            raise UsageError("offers: the next-best-offer model is not built yet")
        summary(f"train {kind.value}", {**outcome_rows(outcome), "tracking": uri}, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("train")(train)
