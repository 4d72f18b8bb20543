"""``userops train KIND``: fit, evaluate against baselines, log to MLflow and promote one model kind."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from userops.console import as_of_date, step, summary


class Kind(StrEnum):
    churn = "churn"
    propensity = "propensity"
    recommender = "recommender"
    offers = "offers"


def tracking_uri_for(data: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store in the data folder."""
    from training.registry import default_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(data)


def train(
    kind: Annotated[Kind, typer.Argument(help="Which model to train.")],
    data: Annotated[Path, typer.Option("--data", help="Data folder (events, users, items, offers).")],
    as_of: Annotated[
        str, typer.Option("--as-of", help="Target date YYYY-MM-DD: training uses events before it.")
    ],
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Label window in days.")] = 90,
) -> None:
    """Train one model kind as of a date, evaluate it beside its baselines, log and register it in MLflow.

    Reads the data folder (events before --as-of only). Writes an MLflow run (parameters, data window,
    metrics of the model and the baselines, plots) to MLFLOW_TRACKING_URI or DATA/mlflow.db, registers the
    model and moves the alias `champion` to it only if it beats the current champion on the same holdout
    (otherwise it becomes `challenger`, and the summary says why).
    """
    with step(f"train {kind.value}") as started:
        target = as_of_date(as_of)
        uri = tracking_uri_for(data)
        if kind in (Kind.churn, Kind.propensity):
            from training import churn as trainer
        elif kind is Kind.recommender:
            from training import recommend as trainer  # type: ignore[no-redef]
        else:
            raise ValueError("offers: the next-best-offer model is not built yet (see the offers issue)")
        rows = trainer.train_and_register(
            data_dir=data, as_of=target, horizon=horizon, tracking_uri=uri, kind=kind.value
        )
        summary(f"train {kind.value}", {**rows, "tracking": uri}, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("train")(train)
