"""``userops train KIND``: fit, evaluate against baselines, log to MLflow and promote one model kind."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import date
from enum import StrEnum
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serving.settings import Settings
from userops.console import UsageError, console, step, summary
from userops.options import AllowGapOpt, AsOfOpt, DataOpt, open_data

if TYPE_CHECKING:
    from training.results import TrainOutcome


class Kind(StrEnum):
    churn = "churn"
    propensity = "propensity"
    recommender = "recommender"
    offers = "offers"


class Outcome(StrEnum):
    activity = "activity"
    purchase = "purchase"
    revenue = "revenue"


OutcomeOpt = Annotated[
    Outcome, typer.Option("--outcome", help="offers: what the offers should move over the horizon.")
]
ExperimentOpt = Annotated[
    list[str] | None,
    typer.Option("--experiment", help="offers: campaign(s) to learn from (default: every offer campaign)."),
]


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
    horizon: Annotated[
        int | None,
        typer.Option("--horizon", min=1, help="Label window in days after --as-of (offers: 30, others: 90)."),
    ] = None,
    allow_gap: AllowGapOpt = False,
    measure: OutcomeOpt = Outcome.activity,
    experiment: ExperimentOpt = None,
) -> None:
    """Train one model kind as of a date, evaluate it beside its baselines, log and register it in MLflow.

    offers: learns the uplift of each offer from randomized offer campaigns in DATA/exposures (variants:
    offer ids plus control) whose outcome window closes by --as-of, and the policy's value on held-out
    units; the champion moves only when the new policy's value beats the champion's on the same units.

    Reads the data folder (events before --as-of only). Writes an MLflow run (parameters, data window,
    metrics of the model and the baselines, plots) to USEROPS_TRACKING_URI / MLFLOW_TRACKING_URI or
    DATA/mlflow.db, registers the model and moves the alias `champion` to it only if it beats the current
    champion on the same holdout (otherwise it becomes `challenger`, and the summary says why).
    """
    with step(f"train {kind.value}") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        if kind is not Kind.offers and (measure is not Outcome.activity or experiment):
            raise UsageError("--outcome and --experiment are options of `train offers` only")
        horizon = horizon if horizon is not None else (30 if kind is Kind.offers else 90)
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
            trained = train_offers_kind(data, as_of, horizon, measure.value, experiment or [])
            summary(f"train {kind.value}", {**offers_rows(trained), "tracking": uri}, started)
            return
        summary(f"train {kind.value}", {**outcome_rows(outcome), "tracking": uri}, started)


def train_offers_kind(
    data: Path, as_of: date, horizon: int, outcome: str, experiments: list[str]
) -> TrainOutcome:
    """``train offers``: uplift models from randomized campaigns, the policy's value, MLflow, promotion."""
    from training.offers.run import OfferOptions, train_offers

    uri = Settings().tracking_uri_for(data)
    options = OfferOptions(horizon=horizon, outcome=str(outcome), experiments=tuple(experiments))
    with console.status("train offers") as status:
        result, _ = train_offers(
            data_dir=data, as_of=as_of, tracking_uri=uri, options=options, progress=status.update
        )
    return result


def offers_rows(outcome: TrainOutcome) -> dict[str, object]:
    """The summary of ``train offers``: what it learned from, each policy's value per user, the decision."""
    rows: dict[str, object] = {key: _shown(value) for key, value in outcome.facts.items()}
    rows["policy value per user"] = "IPS ± SE | DR ± SE | share offered (held-out randomized units)"
    for name, row in outcome.metrics.iterrows():
        rows[f"  {name}"] = (
            f"{row['value_ips']:.2f} ± {row['ips_se']:.2f} | {row['value_dr']:.2f} ± {row['dr_se']:.2f} | "
            f"{row['offered']:.0%}"
        )
    rows.update(
        {
            "run": outcome.run_id,
            "version": outcome.version,
            "alias": outcome.alias,
            "decision": outcome.decision,
        }
    )
    return rows


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("train")(train)
