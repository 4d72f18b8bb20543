"""The whole flow for one data folder and one as-of date: features, train, evaluate, promote, score.

Each step is the same library call its own command makes; this module only chains them and says where
each output went.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.contract import write_table

if TYPE_CHECKING:
    from training.results import TrainOutcome
    from training.winback import WinbackFilters


@dataclass
class PipelineReport:
    """What a pipeline run did, in the order it did it."""

    rows: dict[str, object] = field(default_factory=dict)
    outcomes: list[TrainOutcome] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)


def score_outputs(
    data_dir: str | Path,
    as_of: date,
    *,
    tracking_uri: str,
    horizon: int,
    lookback: int = 365,
    features: pd.DataFrame | None = None,
    filters: WinbackFilters | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], pd.DataFrame]:
    """Score churn with the champion and build the win-back list.

    Returns:
        ``(scores, winback, drifted feature names, drift report)``.

    Raises:
        ModelNotFoundError: No churn champion is registered in ``tracking_uri``.
    """
    from features.job import build_features
    from training.churn_mlflow import load_risk_model
    from training.datasets import load_events_before, with_stacked
    from training.errors import ModelNotFoundError
    from training.winback import WinbackFilters, population, score_churn, values_for, winback_list

    model = load_risk_model(tracking_uri, "churn")
    try:
        propensity = load_risk_model(tracking_uri, "propensity")
    except ModelNotFoundError:
        propensity = None
    frame = features if features is not None else build_features(data_dir, as_of)
    # the models' BG/NBD and Gamma-Gamma inputs, fitted on the scored population's history, as in training
    frame = with_stacked(population(frame, lookback), load_events_before(data_dir, as_of), as_of)
    scored = score_churn(model, frame, lookback=lookback, propensity=propensity)
    values = values_for(data_dir, as_of, scored.scores["user_id"], horizon)
    offers = next_best_offers(data_dir, as_of, tracking_uri=tracking_uri, features=scored.features)
    winback = winback_list(scored.scores, values, filters or WinbackFilters(), offers=offers)
    return scored.scores, winback, scored.drifted, scored.drift


def next_best_offers(
    data_dir: str | Path, as_of: date, *, tracking_uri: str, features: pd.DataFrame
) -> pd.DataFrame | None:
    """The offers champion's choice for each user of ``features`` (``None`` when no offers model exists).

    The value of retaining a user is their value at stake over the value horizon the model was trained
    with, from the folder's events before ``as_of``; cooldowns and caps read the folder's exposures.
    """
    from training.offers.run import choose_in_folder, load_offer_model

    model = load_offer_model(tracking_uri)
    if model is None or features.empty:
        return None
    return choose_in_folder(model, data_dir, as_of, features)


def has_offer_campaign(data_dir: str | Path) -> bool:
    """Whether the folder holds an offers catalogue and an experiment of control plus catalogue offers."""
    from features.contract import load_table
    from training.offers.data import offer_campaigns

    offers, exposures = load_table(data_dir, "offers"), load_table(data_dir, "exposures")
    if offers is None or exposures is None:
        return False
    return bool(offer_campaigns(exposures, offers["offer_id"].astype(str).tolist()))


def run_pipeline(
    data_dir: str | Path,
    as_of: date,
    *,
    tracking_uri: str,
    horizon: int = 90,
    lookback: int = 365,
    progress: Callable[[str], None] | None = None,
) -> PipelineReport:
    """Features -> train churn and propensity -> evaluate beside baselines -> promote -> score -> win-back.

    Writes ``data_dir/features/as_of=DATE.parquet`` (and its online copy, through the feature job),
    MLflow runs and model versions,
    ``data_dir/scores/churn_as_of=DATE.csv`` and ``data_dir/winback/winback_as_of=DATE.csv``.
    """
    from features.job import run_job
    from training.churn import ChurnOptions
    from training.churn_run import train_and_register

    say = progress or (lambda _: None)
    report = PipelineReport()
    data = Path(data_dir)
    say(f"features as of {as_of}")
    (path,) = run_job(data, [as_of], data / "features")
    report.rows["features"] = path
    frame = pd.read_parquet(path)
    for kind in ("churn", "propensity"):
        say(f"train {kind}: back-test, fit, evaluate beside baselines, promote")
        outcome = train_and_register(
            data_dir=data,
            as_of=as_of,
            horizon=horizon,
            tracking_uri=tracking_uri,
            kind=kind,
            options=ChurnOptions(lookback=lookback),
            progress=say,
        )
        report.outcomes.append(outcome)
    if has_offer_campaign(data):
        train_offers_step(data, as_of, tracking_uri=tracking_uri, report=report, progress=say)
    say("score churn and build the win-back list")
    scores, winback, drifted, _ = score_outputs(
        data,
        as_of,
        tracking_uri=tracking_uri,
        horizon=horizon,
        lookback=lookback,
        features=frame,
    )
    day = as_of.isoformat()
    report.rows["scores"] = write_table(scores, data / "scores" / f"churn_as_of={day}.csv")
    report.rows["win-back list"] = write_table(winback, data / "winback" / f"winback_as_of={day}.csv")
    report.rows["users scored"] = len(scores)
    report.rows["expected value saved (top 100)"] = f"{winback['expected_value_saved'].head(100).sum():,.2f}"
    report.drifted = drifted
    return report


def train_offers_step(
    data: Path,
    as_of: date,
    *,
    tracking_uri: str,
    report: PipelineReport,
    progress: Callable[[str], None],
) -> None:
    """Train the offers model when the folder holds a campaign; a campaign that cannot train yet (its
    outcome window still open, one arm, ...) is reported, and the rest of the pipeline goes on."""
    from training.errors import OfferDataError
    from training.offers.run import train_offers
    from training.offers.train import NO_OFFER, POLICY

    progress("train offers: uplift from the randomized campaigns, policy value, promote")
    try:
        outcome, fit = train_offers(data_dir=data, as_of=as_of, tracking_uri=tracking_uri, progress=progress)
    except OfferDataError as exc:
        report.rows["offers"] = f"not trained: {str(exc).splitlines()[0]}"
        return
    ips = fit.policies["ips"].to_dict()
    se = fit.policies["ips_se"].to_dict()
    report.rows["offers policy value per user"] = (
        f"{ips[POLICY]:.2f} ± {se[POLICY]:.2f} (IPS), no offer {ips[NO_OFFER]:.2f} ± {se[NO_OFFER]:.2f}"
    )
    report.rows["offers decision"] = outcome.decision
