"""``userops experiments``: define, run, assign and read A/B experiments (thin layer over ``experiments``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import pandas as pd
import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from experiments.assignment import Rule, to_buckets
from experiments.definitions import Experiment, parse_variants
from experiments.exposures import ExposureLog
from experiments.metrics import DataError
from experiments.store import ExperimentStore, StoreError

# experiments.service and experiments.report (scipy's statistics behind them) are imported by the commands
# that use them: every other command, and `userops --help`, starts about a second sooner.

app = typer.Typer(
    help="A/B experiments: definitions and lifecycle in a SQL store (SQLite by default), deterministic "
    "assignment, a durable exposure log, and results with intervals, sample-ratio and guardrail checks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _console() -> Console:
    # Piped output is not cut to 80 columns, so tables stay readable in files and logs.
    return Console(width=None if sys.stdout.isatty() else 160)


def _say(message: str) -> None:
    typer.echo(message)


def _note(message: str) -> None:
    typer.echo(message, err=True)


ENV_URL = "USEROPS_EXPERIMENTS_URL"
DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data folder; the store defaults to sqlite:///DIR/experiments.sqlite."),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar=ENV_URL, help=f"SQLAlchemy URL of the experiment store (env {ENV_URL})."),
]
KeyArg = Annotated[str, typer.Argument(help="Experiment key.")]


def _fail(reason: str) -> NoReturn:
    _note(f"error: {reason}")
    raise typer.Exit(2)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn expected failures into a one-line reason and exit code 2 (no traceback)."""
    try:
        yield
    except KeyError as error:
        _fail(f"missing {error.args[0]}")
    except (StoreError, DataError, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    except SQLAlchemyError as error:
        _fail(f"database: {str(error).splitlines()[0]}")


def _url(store: str | None, data: Path | None) -> str:
    if store:
        return store
    if data is None:
        _fail("give --data DIR (store in DIR/experiments.sqlite) or --store URL")
    if not data.is_dir():
        _fail(f"data folder {data} does not exist")
    return f"sqlite:///{data / 'experiments.sqlite'}"


def _open(store: str | None, data: Path | None) -> ExperimentStore:
    return ExperimentStore(_url(store, data))


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _describe(e: Experiment) -> str:
    total = sum(e.weights)
    split = " / ".join(f"{n} {w / total:.0%}" for n, w in zip(e.variants, e.weights, strict=True))
    layer = f", layer {e.layer} buckets [{e.layer_slice[0]}, {e.layer_slice[1]})" if e.layer else ""
    target = f", targeting {' & '.join(str(r) for r in e.targeting)}" if e.targeting else ""
    return f"{e.key} ({e.status}, rev {e.revision}): {split}, coverage {e.coverage:.0%}{layer}{target}"


@app.command()
def create(
    key: KeyArg,
    variants: Annotated[str, typer.Option(help="Variants and integer weights: control=50,treatment=50.")],
    salt: Annotated[str | None, typer.Option(help="Hash salt (default: the key).")] = None,
    coverage: Annotated[float, typer.Option(help="Share of eligible traffic enrolled, 0..1.")] = 1.0,
    layer: Annotated[str | None, typer.Option(help="Layer: experiments of one layer share no unit.")] = None,
    layer_share: Annotated[float, typer.Option(help="Share of the layer this experiment claims.")] = 1.0,
    target: Annotated[
        list[str] | None, typer.Option(help="Targeting rule, repeatable: country=FR,DE | x>=3.")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Primary metric, repeatable.")] = None,
    guardrail: Annotated[list[str] | None, typer.Option(help="Guardrail metric, repeatable.")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    start: Annotated[bool, typer.Option("--start", help="Start it right away.")] = False,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Define a new experiment (as a draft). Writes the store; reads nothing else."""
    with _clean_errors():
        names, weights = parse_variants(variants)
        experiment = Experiment(
            key=key,
            variants=names,
            weights=weights,
            salt=salt or "",
            coverage_buckets=to_buckets(coverage),
            layer=layer,
            targeting=tuple(Rule.parse(t) for t in target or []),
            metrics=tuple(metric or []),
            guardrails=tuple(guardrail or []),
            description=description,
        )
        url = _url(store, data)
        opened = ExperimentStore(url)
        created = opened.create(experiment, layer_share=layer_share if layer else None)
        if start:
            created = opened.start(key)
        _say(f"created {_describe(created)}")
        _say(f"store: {_shown(url)}")


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only draft, running or stopped.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """List experiments. Reads the store; writes nothing."""
    with _clean_errors():
        found = _open(store, data).list_experiments(status=status)
        if as_json:
            typer.echo(json.dumps([e.to_dict() for e in found], indent=2))
            return
        for experiment in found:
            _say(_describe(experiment))
        _say(f"{len(found)} experiment(s)")


@app.command()
def start(key: KeyArg, data: DataOpt = None, store: StoreOpt = None) -> None:
    """Start a draft experiment. Writes the store (status and change log)."""
    with _clean_errors():
        _say(f"started {_describe(_open(store, data).start(key))}")


@app.command()
def stop(key: KeyArg, data: DataOpt = None, store: StoreOpt = None) -> None:
    """Stop a running experiment (frees its layer slice). Writes the store (status and change log)."""
    with _clean_errors():
        _say(f"stopped {_describe(_open(store, data).stop(key))}")


@app.command()
def edit(
    key: KeyArg,
    variants: Annotated[
        str | None, typer.Option(help="New variants/weights: control=50,treatment=50.")
    ] = None,
    coverage: Annotated[
        float | None, typer.Option(help="New coverage, 0..1 (never moves enrolled units).")
    ] = None,
    target: Annotated[list[str] | None, typer.Option(help="Replace the targeting rules.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow moving enrolled units of a running test.")
    ] = False,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Edit an experiment. Changing a running experiment's weights needs --force. Writes the store."""
    with _clean_errors():
        changes: dict[str, object] = {}
        if variants is not None:
            changes["variants"], changes["weights"] = parse_variants(variants)
        if coverage is not None:
            changes["coverage_buckets"] = to_buckets(coverage)
        if target is not None:
            changes["targeting"] = tuple(Rule.parse(t) for t in target)
        if description is not None:
            changes["description"] = description
        if not changes:
            _fail("nothing to change; give --variants, --coverage, --target or --description")
        _say(f"edited {_describe(_open(store, data).update(key, force=force, **changes))}")


@app.command()
def history(key: KeyArg, data: DataOpt = None, store: StoreOpt = None) -> None:
    """Show every recorded change of an experiment. Reads the store."""
    with _clean_errors():
        changes = _open(store, data).history(key)
        if not changes:
            _fail(f"no changes recorded for {key!r}")
        for change in changes:
            forced = " (forced)" if change.forced else ""
            _say(f"{change.at:%Y-%m-%d %H:%M:%S} {change.action}{forced}: {json.dumps(change.after)}")


@app.command()
def holdout(
    fraction: Annotated[float, typer.Option(help="Share of all units kept out of every experiment, 0..1.")],
    salt: Annotated[str, typer.Option(help="Holdout salt.")] = "global",
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Set the global holdout. Writes the store (setting and change log)."""
    with _clean_errors():
        held = _open(store, data).set_holdout(fraction=fraction, salt=salt)
        _say(f"global holdout: {held.buckets / 100:.2f}% of units (salt {held.salt})")


@app.command()
def assign(
    experiment: Annotated[str, typer.Option(help="Experiment key.")],
    unit: Annotated[list[str] | None, typer.Option(help="Unit id, repeatable.")] = None,
    units: Annotated[
        Path | None, typer.Option(help="CSV/Parquet with unit_id and attribute columns.")
    ] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="Attribute key=value for --unit ids, repeatable.")
    ] = None,
    log_exposures: Annotated[
        bool, typer.Option("--log-exposures", help="Record exposures in the log.")
    ] = False,
    preview: Annotated[bool, typer.Option("--preview", help="Allow a draft/stopped experiment.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write assignments to CSV/Parquet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Assign units to variants. Reads the store and --units; writes the exposure log with --log-exposures."""
    with _clean_errors():
        if units is not None:
            frame = (
                pd.read_parquet(units)
                if units.suffix != ".csv"
                else pd.read_csv(units, dtype={"unit_id": str})
            )
            if "unit_id" not in frame.columns:
                _fail(f"{units} has no unit_id column")
            ids = frame["unit_id"].astype(str).tolist()
            attributes: pd.DataFrame | None = frame.drop(columns=["unit_id"])
        elif unit:
            pairs = dict(a.split("=", 1) for a in attr or [] if "=" in a)
            if len(pairs) != len(attr or []):
                _fail("--attr takes key=value")
            ids, attributes = list(unit), pd.DataFrame([pairs] * len(unit))
        else:
            _fail("give --unit ID (repeatable) or --units FILE")
        from experiments.service import assign_units

        opened = _open(store, data)
        log = ExposureLog(engine=opened.engine) if log_exposures else None
        started = time.perf_counter()
        result = assign_units(
            store=opened, experiment=experiment, unit_ids=ids, attributes=attributes, log=log, preview=preview
        )
        elapsed = time.perf_counter() - started
        if as_json:
            typer.echo(json.dumps(result.to_dict(orient="records"), default=int))
        elif len(result) <= 20:
            for unit_id, variant, reason in zip(
                result["unit_id"], result["variant"], result["reason"], strict=True
            ):
                _say(f"{unit_id}\t{variant or '-'}\t{reason}")
        if out_file is not None:
            result.to_csv(out_file, index=False) if out_file.suffix == ".csv" else result.to_parquet(out_file)
        counts = result.loc[result["variant"] != "", "variant"].value_counts().to_dict()
        logged = " (exposures logged)" if log is not None and not preview else ""
        _note(f"{len(result)} units in {elapsed:.2f}s: {counts}{logged}")


@app.command("export-exposures")
def export_exposures(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Output (default DIR/exposures.parquet).")
    ] = None,
    data: DataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export the exposure log as the contract's exposures table. Reads the log; writes the file."""
    with _clean_errors():
        target = out_file or (data / "exposures.parquet" if data else None)
        if target is None:
            _fail("give --out FILE or --data DIR")
        rows = ExposureLog(engine=_open(store, data).engine).export(target, experiment=experiment)
        _say(f"wrote {rows} exposure rows to {target}")


ANALYZE_HELP = (
    "Read an experiment's results from DIR/exposures and DIR/events (Parquet or CSV); writes nothing "
    "except --html FILE.\n\n"
    "The store (--store, or DIR/experiments.sqlite if it exists) is only read for the variant shares of the "
    "sample-ratio check (equal shares otherwise) and, without --metric, the experiment's metrics.\n\n"
    'JSON: {"experiment", "srm_p_value", "results": [{"metric", "variant", "n", "mean", "diff_abs", '
    '"diff_rel", "ci_low", "ci_high", "p_value"}]}. The control\'s rows are included with the effect '
    "fields null; the interval is for diff_abs."
)


@app.command(help=ANALYZE_HELP)
def analyze(
    data: Annotated[Path, typer.Option("--data", help="Data folder with exposures and events tables.")],
    experiment: Annotated[str, typer.Option(help="Experiment key.")],
    metric: Annotated[
        list[str] | None, typer.Option(help="Metric, repeatable (default conversion, revenue, orders).")
    ] = None,
    guardrail: Annotated[list[str] | None, typer.Option(help="Guardrail metric, repeatable.")] = None,
    window: Annotated[float | None, typer.Option(help="Days after first exposure that count.")] = None,
    cuped: Annotated[
        bool, typer.Option("--cuped", help="Adjust with the pre-exposure value (CUPED).")
    ] = False,
    pre_days: Annotated[float, typer.Option(help="Pre-exposure days for CUPED.")] = 14.0,
    control: Annotated[str, typer.Option(help="Baseline variant.")] = "control",
    correction: Annotated[str, typer.Option(help="holm, bh or none (across metrics).")] = "holm",
    alpha: Annotated[float, typer.Option(help="1 - confidence level.")] = 0.05,
    planned_units: Annotated[
        int | None,
        typer.Option(
            help="Planned units, fixed before the test: where the always-valid CI is tightest "
            "(default: units seen so far)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Add adjusted p, always-valid CI, flags to JSON.")
    ] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report with charts.")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Read an experiment's results from DIR/exposures and DIR/events (see ANALYZE_HELP)."""
    from experiments.report import results_table, write_html
    from experiments.service import analyze_folder, folder_over_time

    with _clean_errors():
        if not data.is_dir():
            _fail(f"data folder {data} does not exist")
        opened = None
        if store or (data / "experiments.sqlite").exists():
            opened = _open(store, data)
        options = dict(
            window_days=window,
            cuped=cuped,
            pre_days=pre_days,
            control=control,
            alpha=alpha,
            correction=correction,
            planned_n=planned_units,
        )
        read = analyze_folder(
            data_dir=data,
            experiment=experiment,
            store=opened,
            metrics=metric or [],
            guardrails=guardrail or [],
            **options,
        )
        analysis = read.analysis
        if html_file is not None:
            over_time = folder_over_time(
                data_dir=data, experiment=experiment, metrics=read.metrics + read.guardrails, **options
            )
            write_html(analysis, over_time, html_file)
        if as_json:
            typer.echo(json.dumps(analysis.to_json(details=details), indent=2))
        else:
            _console().print(results_table(analysis, details=details))
            shares = "store definition" if read.shares_from_store else "equal shares"
            _say(
                f"read {read.exposures_rows} exposure rows and {read.events_rows} events from {data}; "
                f"sample-ratio check against {shares}; {correction} correction across metrics"
                + (
                    f"; CUPED with the {pre_days:g} days before exposure (ratio metrics unadjusted)"
                    if cuped
                    else ""
                )
            )
        for warning in analysis.warnings:
            _note(f"warning: {warning}")
        if html_file is not None:
            _note(f"report written to {html_file}")


def register(main: typer.Typer) -> None:
    """Add the ``experiments`` command group to the CLI."""
    main.add_typer(app, name="experiments")
