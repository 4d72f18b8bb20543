"""``userops offers choose``: the next-best offer for each user, from the registered offers model."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from serving.settings import Settings
from userops.console import UsageError, console, step, summary
from userops.options import AllowGapOpt, AsOfOpt, DataOpt, OutOpt, open_data, require_store

offers_app = typer.Typer(help="Next-best offers from the registered offers model.", no_args_is_help=True)

VALUE_HORIZON = 90


def _users(data: Path, as_of: date, users: str) -> pd.DataFrame:
    """Feature rows of the users to choose for: the folder's snapshot, plus a file's own attributes."""
    from features.errors import FeaturesError
    from features.job import build_features
    from training.offers.data import read_attributes

    try:
        frame = build_features(data, as_of)
        frame["user_id"] = frame["user_id"].astype(str)
    except FeaturesError:
        frame = pd.DataFrame({"user_id": pd.Series(dtype=str)})
    if frame.empty:  # a campaign-only folder (no signup times, no history): user attributes are the features
        attrs = read_attributes(data)
        frame = attrs if attrs is not None else frame
    if users == "all":
        return frame.reset_index(drop=True)
    from features.contract import read_raw

    given = read_raw(Path(users))
    if "user_id" not in given:
        raise UsageError(f"{users}: no user_id column")
    given["user_id"] = given["user_id"].astype(str).str.strip()
    given = given.drop_duplicates("user_id")
    known = given[["user_id"]].merge(frame, on="user_id", how="inner")
    extra = given.loc[~given["user_id"].isin(set(frame["user_id"]))]
    for column in extra.columns:  # numbers as numbers, the rest as text, as in training
        number = pd.to_numeric(extra[column], errors="coerce")
        if column != "user_id" and extra[column].notna().sum() == number.notna().sum() > 0:
            extra[column] = number
    return pd.concat([known, extra], ignore_index=True)


def _with_values(data: Path, as_of: date, frame: pd.DataFrame) -> pd.DataFrame:
    """Value at stake and expected order value as of the date (0 when the folder has no purchases)."""
    from features.contract import load_table
    from training.value import value_at_stake

    events = load_table(data, "events", required=True)
    assert events is not None
    before = events.loc[events["ts"] < pd.Timestamp(as_of)]
    if before.empty or frame.empty:
        return frame
    values = value_at_stake(before, as_of, frame["user_id"], VALUE_HORIZON)
    keep = [c for c in values.columns if c not in frame.columns or c == "user_id"]
    return frame.merge(values[keep], on="user_id", how="left")


def _explore(
    data: Path, as_of: date, table: pd.DataFrame, offer_ids: list[str], allowed: pd.DataFrame, share: float
) -> int:
    """Randomize ``share`` of the users through the exploration experiment; returns how many.

    An enrolled user gets the variant's offer when the catalogue's rules allow it (``allowed``: one
    boolean column per offer), else none; the exposure is logged either way (intention to treat).
    """
    from experiments.definitions import RUNNING, Experiment, coverage_buckets
    from experiments.exposures import ExposureLog
    from experiments.service import assign_units
    from experiments.store import ExperimentStore
    from training.offers.explore import EXPLORE_EXPERIMENT, explored

    store = ExperimentStore(Settings().experiments_url_for(data))
    variants = ("control", *offer_ids)
    found = store.find(EXPLORE_EXPERIMENT)
    if found is None:
        found = store.create(
            Experiment(
                key=EXPLORE_EXPERIMENT,
                variants=variants,
                weights=tuple(1 for _ in variants),
                coverage_buckets=coverage_buckets(share),
                metrics=("conversion",),
                description="next-best offer: the randomized exploration share",
            )
        )
    if tuple(found.variants) != variants:
        raise UsageError(
            f"experiment {EXPLORE_EXPERIMENT} has variants {', '.join(found.variants)}, not control and "
            f"this catalogue's offers; stop it and use a new catalogue key, or --explore 0"
        )
    if found.status != RUNNING:
        found = store.start(EXPLORE_EXPERIMENT)
    assigned = assign_units(
        store=store,
        experiment=EXPLORE_EXPERIMENT,
        unit_ids=table["user_id"].tolist(),
        log=ExposureLog(engine=store.engine),
        now=datetime(as_of.year, as_of.month, as_of.day),
    )
    variant = assigned["variant"].to_numpy()
    enrolled = variant != ""
    answers = [explored(v, v == "control" or bool(allowed[v].iloc[i])) for i, v in enumerate(variant) if v]
    table.loc[enrolled, "offer_id"] = [offer for offer, _ in answers]
    table.loc[enrolled, "expected_value"] = 0.0
    table.loc[enrolled, "reason"] = [reason for _, reason in answers]
    return int(enrolled.sum())


@offers_app.command("choose")
def choose(
    data: DataOpt,
    as_of: AsOfOpt,
    out: OutOpt,
    users: Annotated[
        str,
        typer.Option(
            "--users", help="all, or a CSV/Parquet file with user_id (and attributes of new users)."
        ),
    ] = "all",
    budget: Annotated[
        float | None,
        typer.Option("--budget", min=0, help="Total offer cost allowed; best value per cost first."),
    ] = None,
    explore: Annotated[
        float,
        typer.Option("--explore", min=0, max=1, help="Share of users randomized through an experiment."),
    ] = 0.1,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Choose each user's next-best offer: the allowed offer with the largest uplift x value - cost, or none.

    Reads the data folder (events and exposures before --as-of, the offers catalogue) and the model
    models:/offers@champion (USEROPS_TRACKING_URI / MLFLOW_TRACKING_URI or DATA/mlflow.db). Writes OUT with
    user_id, offer_id (empty = none), uplift_<offer> for every offer, expected_value, reason. With
    --explore, that share of users is randomized (control or an offer) through the experiment
    next_best_offer_explore in the experiment store, and their exposures are logged there.
    """
    from features.contract import load_table, write_table
    from training.offers.run import require_offer_model

    with step("offers choose") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        require_store(uri, "offers")
        with console.status("model, features and value at stake"):
            model = require_offer_model(uri)
            frame = _with_values(data, as_of, _users(data, as_of, users))
            if frame.empty:
                raise UsageError(f"no user to choose for as of {as_of}")
            history = load_table(data, "exposures")
        with console.status("choosing"):
            allowed = model.allowed(frame, as_of=as_of, history=history)  # exploration reads it too
            table = model.choose(frame, as_of=as_of, history=history, budget=budget, allowed=allowed)
        explored = 0
        if explore > 0:
            rules = pd.DataFrame(allowed, columns=model.offer_ids)
            explored = _explore(data, as_of, table, model.offer_ids, rules, explore)
        path = write_table(table, out)
        offered = table["offer_id"] != ""
        costs = dict(zip(model.offer_ids, model.catalogue.costs, strict=True))
        rows: dict[str, object] = {"users": len(table), "given an offer": int(offered.sum())}
        for offer in model.offer_ids:
            rows[f"  {offer}"] = int((table["offer_id"] == offer).sum())
        rows.update(
            {
                "expected value after cost": f"{table['expected_value'].sum():,.2f}",
                "offer cost": f"{sum(costs[o] for o in table.loc[offered, 'offer_id']):,.2f}",
                "randomized (exploration)": explored,
                "model": f"models:/offers version {model.version}",
                "outcome": f"{model.outcome} over {model.horizon} days",
                "output": path,
            }
        )
        summary("offers choose", rows, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.add_typer(offers_app, name="offers")
