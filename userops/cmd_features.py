"""The ``features`` command: feature snapshots as of one or more dates, plus the online copy."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from serving.settings import Settings
from userops.console import console, step, summary
from userops.options import AllowGapOpt, DataOpt, as_of_option, open_data


def features(
    data: DataOpt,
    as_of: Annotated[
        list[date],
        typer.Option(
            "--as-of", parser=as_of_option, metavar="YYYY-MM-DD", help="As-of date (UTC); repeat for more."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Snapshot folder (default DATA/features).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild the kept daily aggregate from all events.")
    ] = False,
    online: Annotated[
        bool, typer.Option("--online/--no-online", help="Write the latest snapshot to the online store.")
    ] = True,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Online store in Redis (default USEROPS_REDIS_URL, else DATA/online/features.sqlite).",
        ),
    ] = None,
    allow_gap: AllowGapOpt = False,
) -> None:
    """Compute behavioural features, lifecycle stages and RFM segments as of each date.

    Reads only events before each as-of date. Writes OUT/as_of=YYYY-MM-DD.parquet (one row per user who
    signed up before that date), keeps the per-user-per-day aggregate in OUT/daily/ so the next day only
    adds that day's events, and writes the latest snapshot to the online store that serving reads.
    """
    from rich.progress import Progress

    from features.job import run_job
    from features.store import OnlineStore, RedisStore, default_store

    with step("features") as started:
        open_data(data, as_of, allow_gap=allow_gap)
        redis_url = redis_url or Settings().redis_url
        store: OnlineStore = RedisStore.from_url(redis_url) if redis_url else default_store(data)
        target = out if out is not None else data / "features"
        shapes: list[tuple[int, int]] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("feature snapshots", total=len(set(as_of)))

            def done(date: object, frame: object, seconds: float) -> None:
                shapes.append(frame.shape)  # type: ignore[attr-defined]
                progress.advance(task)

            rebuilt: list[str] = []
            paths = run_job(
                data,
                as_of,
                target,
                online=store,
                write_online=online,
                full=full,
                on_done=done,
                on_rebuild=rebuilt.append,
            )
        rows: dict[str, object] = {
            "snapshots": len(paths),
            "users (latest)": shapes[-1][0] if shapes else 0,
            "columns": shapes[-1][1] if shapes else 0,
            "output": target,
            "first": paths[0].name if paths else "-",
            "last": paths[-1].name if paths else "-",
            "daily aggregate": (
                f"built from all events ({rebuilt[0]})" if rebuilt else "extended by the new days"
            ),
        }
        if online:
            rows["online copy"] = redis_url or getattr(store, "path", "")
        summary("features", rows, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("features")(features)
