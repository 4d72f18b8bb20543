"""Commands that make a data folder: ``simulate`` (a synthetic world) and ``ingest`` (a user's own data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from userops.console import UsageError, step, summary


def simulate(
    out: Annotated[Path, typer.Option("--out", help="Data folder to write (created if missing).")],
    users: Annotated[int, typer.Option("--users", min=10, help="Users who sign up over the span.")] = 2000,
    days: Annotated[int, typer.Option("--days", min=7, help="Days to simulate.")] = 240,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed; the same seed gives identical files.")
    ] = 0,
    start: Annotated[
        str, typer.Option("--start", help="First simulated day, YYYY-MM-DD (UTC).")
    ] = "2025-01-01",
) -> None:
    """Simulate an online store and write its data folder plus the ground truth.

    Writes OUT/events.parquet, users.parquet, items.parquet, offers.parquet, exposures.parquet (a past
    randomized offer campaign) and OUT/truth/ (each user's latent churn day, state and tastes, true item
    affinities, true offer uplift, and params.json to compute true churn probabilities for any date).
    """
    from simulator.simulate import WorldConfig
    from simulator.simulate import simulate as run
    from userops.options import BadDate, parse_as_of

    with step("simulate") as started:
        try:
            start = parse_as_of(start).isoformat()
        except BadDate as exc:
            raise UsageError(f"--start: {exc.message}") from exc
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out: {out} is a file; name the data folder to write")
        counts = run(WorldConfig(n_users=users, days=days, seed=seed, start=start), out, progress=True)
        summary("simulated world", {**{f"{k} rows": v for k, v in counts.items()}, "output": out}, started)


def ingest(  # noqa: PLR0913 - one parameter per command-line option (Typer reads them from the signature)
    events: Annotated[Path, typer.Option("--events", help="Events file (.csv or .parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Data folder to write.")],
    users: Annotated[Path | None, typer.Option("--users", help="Users file (.csv or .parquet).")] = None,
    items: Annotated[Path | None, typer.Option("--items", help="Items file (.csv or .parquet).")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="A known layout: online-retail.")] = None,
    map_: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="Contract column = source column, for the columns named otherwise: "
            "user_id=CustomerID,ts=InvoiceDate.",
        ),
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of timestamps that carry none.")] = "UTC",
    ts_format: Annotated[
        str | None,
        typer.Option(
            "--ts-format",
            help="strftime pattern of every timestamp, e.g. '%d/%m/%Y %H:%M' (default: ISO 8601).",
        ),
    ] = None,
    event_types: Annotated[
        str | None,
        typer.Option(
            "--event-types",
            help="Your event types onto the contract's (view, add_to_cart, purchase, refund): "
            "click=view,PURCHASE=purchase. Others are quarantined.",
        ),
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option("--event-type", help="Event type for every row when the file has no event type column."),
    ] = None,
) -> None:
    """Bring your own data into the contract: map columns, quarantine bad rows, write Parquet.

    Reads the given files; a file whose columns already carry the contract's names (user_id, ts,
    event_type, ...) needs no --map, and --map names only the columns that differ. Each timestamp column
    follows one rule: ISO 8601, or --ts-format for every row. Writes OUT/events.parquet,
    OUT/users.parquet (first time each user is seen, unless --users is given), OUT/items.parquet and
    OUT/quarantine/<table>.parquet, where every refused row keeps its source columns, its row number and
    the reason. A file with no valid row is refused and the previous output kept.
    """
    from features.ingest import ingest as run
    from features.ingest import parse_event_types, parse_mapping

    with step("ingest") as started:
        if preset is not None and map_:
            raise UsageError("--preset and --map: give one of them (the preset knows its columns)")
        report = run(
            events,
            out,
            users_path=users,
            items_path=items,
            mapping=parse_mapping(map_),
            preset=preset,
            tz=tz,
            event_type=event_type,
            ts_format=ts_format,
            event_types=parse_event_types(event_types),
        )
        rows: dict[str, object] = {}
        for table, read in report.rows_read.items():
            rows[f"{table} read"] = read
            if table in report.rows_written:
                rows[f"{table} written"] = report.rows_written[table]
            reasons = report.quarantined.get(table, {})
            rows[f"{table} quarantined"] = sum(reasons.values())
            for reason, count in reasons.items():
                rows[f"{table} quarantined: {reason}"] = count
        for table, written in report.rows_written.items():
            if table not in report.rows_read:
                rows[f"{table} written"] = written
        rows["output"] = out
        summary("ingest", rows, started)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("simulate")(simulate)
    app.command("ingest")(ingest)
