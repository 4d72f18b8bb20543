"""``userops recommend``: top-k items for many users, from the registered champion recommender."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from userops.console import as_of_date, console, step, summary

CHAMPION_URI = "models:/recommender@champion"


def _read_users(path: Path) -> list[str]:
    from features.contract import read_raw

    frame = read_raw(path)
    if "user_id" not in frame.columns:
        raise ValueError(f"{path}: no user_id column")
    return frame["user_id"].dropna().astype(str).str.strip().drop_duplicates().tolist()


def recommend(
    data: Annotated[Path, typer.Option("--data", help="Data folder (events; users for segments).")],
    as_of: Annotated[str, typer.Option("--as-of", help="Date YYYY-MM-DD: histories use events before it.")],
    out: Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet.")],
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
) -> None:
    """Write user_id, rank, item_id, score: each user's top-k items as of a date.

    Uses the registered recommender (--model, default models:/recommender@champion at MLFLOW_TRACKING_URI
    or DATA/mlflow.db). Each user's history is the folder's events before --as-of; a user with none gets
    the popularity list of their segment. When no recommender is registered, it fits ALS with default
    settings on events before --as-of (no tuning, nothing logged) and says so; --no-fit fails instead.
    Items already bought and unavailable items are never recommended.
    """
    from training.recommend import fit_recommender, load_recommender, recommend_users
    from training.registry import default_tracking_uri

    with step("recommend") as started:
        target = as_of_date(as_of)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(data)
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            rec = load_recommender(model)
            source = model
        except mlflow.exceptions.MlflowException as exc:
            if not fit:
                raise ValueError(
                    f"no recommender at {model} ({uri}); run `userops train recommender`"
                ) from exc
            console.print(f"no recommender at {model}: fitting ALS on events before {target} (untuned)")
            rec = fit_recommender(data, target)
            source = "ALS fitted on the fly (no registered model)"
        user_ids = None if users == "all" else _read_users(Path(users))
        frame = recommend_users(rec, data, target, user_ids, k)
        from features.contract import write_table

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
