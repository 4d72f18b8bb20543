"""``userops recommend``: top-k items for many users, from the registered champion recommender."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from userops.console import console, step, summary
from userops.options import AllowGapOpt, AsOfOpt, DataOpt, OutOpt, open_data, require_store

CHAMPION_URI = "models:/recommender@champion"


def recommend(
    data: DataOpt,
    as_of: AsOfOpt,
    out: OutOpt,
    users: Annotated[
        str,
        typer.Option(
            "--users", help="'all' (every user of the users table) or a CSV/Parquet file with user_id."
        ),
    ] = "all",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Items per user.")] = 10,
    model: Annotated[str, typer.Option("--model", help="Registered model URI to use.")] = CHAMPION_URI,
    fit: Annotated[
        bool,
        typer.Option("--fit/--no-fit", help="No registered model: fit ALS with default settings on the fly."),
    ] = True,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Write user_id, rank, item_id, score: each user's top-k items as of a date.

    Uses the registered recommender (--model, default models:/recommender@champion at USEROPS_TRACKING_URI,
    MLFLOW_TRACKING_URI or DATA/mlflow.db). Each user's history is the folder's events before --as-of; a
    user with none gets the popularity list of their segment. When no recommender is registered, it fits
    ALS with default settings on events before --as-of (no tuning, nothing logged) and says so; --no-fit
    fails instead. Items already bought and unavailable items are never recommended.
    """
    from features.contract import write_table
    from serving.settings import Settings
    from training.recommend import FITTED_ON_THE_FLY, load_or_fit, read_user_ids, recommend_users

    with step("recommend") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        uri = Settings().tracking_uri_for(data)
        if not fit:
            require_store(uri, "recommender")
        rec, source = load_or_fit(model, tracking_uri=uri, data_dir=data, as_of=as_of, fit=fit)
        if source == FITTED_ON_THE_FLY:
            console.print(f"no recommender at {model}: fitted ALS on events before {as_of} (untuned)")
        user_ids = None if users == "all" else read_user_ids(Path(users))
        frame = recommend_users(rec, data, as_of, user_ids, k)
        write_table(frame, out)
        summary(
            "recommend",
            {
                "model": source,
                "family": rec.meta.get("family", "?"),
                "users": int(frame["user_id"].nunique()),
                "rows": len(frame),
                "output": out,
            },
            started,
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("recommend")(recommend)
