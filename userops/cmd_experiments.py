"""``userops experiments``: define, run, assign and read A/B experiments (thin layer over ``experiments``).

What a person reads (descriptions, listings, the results table, summaries, warnings) goes to stderr
through :mod:`userops.console`; stdout carries only what ``--json`` asks for, so it can be piped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from userops.console import UsageError, console, show, step, summary
from userops.options import DataOpt, open_data

if TYPE_CHECKING:
    from experiments.definitions import Experiment
    from experiments.store import ExperimentStore

# The experiments library (pandas, SQLAlchemy, and scipy behind experiments.service and .report) is
# imported inside the commands: `userops --help` and every other command start without it.

app = typer.Typer(
    help="A/B experiments: definitions and lifecycle in a SQL store (SQLite by default), deterministic "
    "assignment, a durable exposure log, and results with intervals, sample-ratio and guardrail checks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ENV_URL = "USEROPS_EXPERIMENTS_URL"
StoreDataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data folder; the store defaults to sqlite:///DIR/experiments.sqlite."),
]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", envvar=ENV_URL, help=f"SQLAlchemy URL of the experiment store (env {ENV_URL})."),
]
OutFileOpt = Annotated[
    Path | None, typer.Option("--out", help="Output file, .csv or .parquet by its extension.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (and nothing else there).")]
KeyArg = Annotated[str, typer.Argument(help="Experiment key.")]


def _folder(data: Path) -> Path:
    """The data folder, which must exist: a command never creates it."""
    if not data.exists():
        raise UsageError(f"data folder {data} does not exist")
    if not data.is_dir():
        raise UsageError(f"{data} is not a folder")
    return data


def _store_url(store: str | None, data: Path | None, *, create: bool = True, key: str | None = None) -> str:
    """``--store`` (or USEROPS_EXPERIMENTS_URL), else the SQLite file in the data folder.

    Args:
        store: ``--store``.
        data: ``--data``.
        create: The command may create the SQLite file (``create``, ``holdout``); a command that only
            reads or changes experiments refuses a file that is not there instead of leaving an empty one.
        key: The experiment the command is about, named in that refusal.
    """
    from serving.settings import Settings

    if store:
        return store
    settings = Settings()
    if not settings.experiments_url:
        folder = data if data is not None else settings.data
        if folder is None:
            raise UsageError("give --data DIR (store in DIR/experiments.sqlite) or --store URL")
        _folder(folder)
        path = folder / "experiments.sqlite"
        if not create and not path.exists():
            what = f"no experiment {key!r}: " if key else ""
            raise UsageError(
                f"{what}no experiment store at {path} yet; create an experiment first: "
                "userops experiments create"
            )
    return settings.experiments_url_for(data)


def _open(
    store: str | None, data: Path | None, *, create: bool = False, key: str | None = None
) -> ExperimentStore:
    from experiments.store import ExperimentStore

    return ExperimentStore(_store_url(store, data, create=create, key=key))


def _check_share(value: float | None, option: str, *, zero: bool = True) -> None:
    """A share of traffic: within [0, 1] (or (0, 1] when ``zero`` is false).

    Raises:
        UsageError: It is not (the message names the option).
    """
    if value is None:
        return
    low_ok = value >= 0 if zero else value > 0
    if not (low_ok and value <= 1):
        bounds = "[0, 1]" if zero else "(0, 1]"
        raise UsageError(f"{option}: {value:g} is not a share within {bounds}; 0.5 is half the traffic")


def _check_unit_ids(ids: list[str], option: str) -> None:
    """Unit ids follow the contract's id rule: non-empty, at most 128 characters, no control characters.

    Raises:
        UsageError: An id breaks it (the message names the option and the id's position).
    """
    from features.contract import MAX_ID_CHARS

    for position, unit_id in enumerate(ids, start=1):
        text = str(unit_id)
        if not text.strip():
            problem = "is empty"
        elif len(text.strip()) > MAX_ID_CHARS:
            problem = f"is over {MAX_ID_CHARS} characters"
        elif any(ord(c) < 32 or ord(c) == 127 for c in text):
            problem = "has control characters"
        else:
            continue
        raise UsageError(f"{option}: unit id {position} {problem}")


def _describe(e: Experiment) -> str:
    total = sum(e.weights)
    split = " / ".join(f"{n} {w / total:.0%}" for n, w in zip(e.variants, e.weights, strict=True))
    layer = f", layer {e.layer} buckets [{e.layer_slice[0]}, {e.layer_slice[1]})" if e.layer else ""
    target = f", targeting {' & '.join(str(r) for r in e.targeting)}" if e.targeting else ""
    return f"{e.key} ({e.status}, rev {e.revision}): {split}, coverage {e.coverage:.0%}{layer}{target}"


def _say(line: str) -> None:
    console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def create(  # noqa: PLR0913 - one parameter per command-line option (Typer reads them from the signature)
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
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Define a new experiment (as a draft). Writes the store; reads nothing else."""
    from experiments.definitions import Experiment, coverage_buckets, parse_targeting, parse_variants
    from experiments.store import ExperimentStore

    with step("experiments create"):
        _check_share(coverage, "--coverage")
        _check_share(layer_share, "--layer-share", zero=False)
        names, weights = parse_variants(variants)
        experiment = Experiment(
            key=key,
            variants=names,
            weights=weights,
            salt=salt or "",
            coverage_buckets=coverage_buckets(coverage),
            layer=layer,
            targeting=parse_targeting(target or []),
            metrics=tuple(metric or []),
            guardrails=tuple(guardrail or []),
            description=description,
        )
        url = _store_url(store, data, create=True)
        opened = ExperimentStore(url)
        created = opened.create(experiment, layer_share=layer_share if layer else None)
        if start:
            created = opened.start(key)
        _say(f"created {_describe(created)}")
        _say(f"store: {opened.engine.url.render_as_string(hide_password=True)}")


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only draft, running or stopped.")] = None,
    as_json: JsonOpt = False,
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """List experiments. Reads the store; writes nothing."""
    with step("experiments list"):
        found = _open(store, data, create=True).list_experiments(status=status)
        if as_json:
            typer.echo(json.dumps([e.to_dict() for e in found], indent=2))
            return
        for experiment in found:
            _say(_describe(experiment))
        _say(f"{len(found)} experiment(s)")


@app.command()
def start(key: KeyArg, data: StoreDataOpt = None, store: StoreOpt = None) -> None:
    """Start a draft experiment. Writes the store (status and change log)."""
    with step("experiments start"):
        _say(f"started {_describe(_open(store, data, key=key).start(key))}")


@app.command()
def stop(key: KeyArg, data: StoreDataOpt = None, store: StoreOpt = None) -> None:
    """Stop a running experiment (frees its layer slice). Writes the store (status and change log)."""
    with step("experiments stop"):
        _say(f"stopped {_describe(_open(store, data, key=key).stop(key))}")


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
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Edit an experiment. Changing a running experiment's weights needs --force. Writes the store."""
    from experiments.definitions import edits

    with step("experiments edit"):
        _check_share(coverage, "--coverage")
        changes = edits(variants=variants, coverage=coverage, targeting=target, description=description)
        if not changes:
            raise UsageError("nothing to change; give --variants, --coverage, --target or --description")
        _say(f"edited {_describe(_open(store, data, key=key).update(key, force=force, **changes))}")


@app.command()
def history(key: KeyArg, as_json: JsonOpt = False, data: StoreDataOpt = None, store: StoreOpt = None) -> None:
    """Show every recorded change of an experiment, oldest first. Reads the store."""
    with step("experiments history"):
        changes = _open(store, data, key=key).history(key)
        if not changes:
            raise UsageError(f"no changes recorded for {key!r}")
        if as_json:
            document = [
                {
                    "at": c.at.isoformat(),
                    "action": c.action,
                    "forced": c.forced,
                    "before": c.before,
                    "after": c.after,
                }
                for c in changes
            ]
            typer.echo(json.dumps(document, indent=2))
            return
        for change in changes:
            forced = " (forced)" if change.forced else ""
            _say(f"{change.at:%Y-%m-%d %H:%M:%S} {change.action}{forced}: {json.dumps(change.after)}")


@app.command()
def holdout(
    fraction: Annotated[float, typer.Option(help="Share of all units kept out of every experiment, 0..1.")],
    salt: Annotated[str, typer.Option(help="Holdout salt.")] = "global",
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Set the global holdout. Writes the store (setting and change log)."""
    with step("experiments holdout"):
        held = _open(store, data, create=True).set_holdout(fraction=fraction, salt=salt)
        _say(f"global holdout: {held.buckets / 100:.2f}% of units (salt {held.salt})")


def _attributes(unit: list[str], attr: list[str]) -> list[dict[str, str]]:
    """One attribute row per ``--unit``: the ``--attr key=value`` pairs apply to every one of them."""
    pairs = dict(a.split("=", 1) for a in attr if "=" in a)
    if len(pairs) != len(attr):
        raise UsageError("--attr takes key=value")
    return [pairs] * len(unit)


@app.command()
def assign(  # noqa: PLR0913 - one parameter per command-line option (Typer reads them from the signature)
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
    out_file: OutFileOpt = None,
    as_json: JsonOpt = False,
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Assign units to variants. Reads the store and --units; writes the exposure log with --log-exposures.

    Up to 20 assignments are shown (unit, variant or "-", reason); --out writes them all, --json prints them
    all on stdout.
    """
    import pandas as pd

    from experiments.exposures import ExposureLog
    from experiments.service import assign_units, read_units

    with step("experiments assign") as started:
        if units is not None:
            ids, attributes = read_units(units)
        elif unit:
            ids, attributes = list(unit), pd.DataFrame(_attributes(unit, attr or []))
        else:
            raise UsageError("give --unit ID (repeatable) or --units FILE")
        _check_unit_ids(list(ids), "--units" if units is not None else "--unit")
        opened = _open(store, data, key=experiment)
        log = ExposureLog(engine=opened.engine) if log_exposures else None
        result = assign_units(
            store=opened, experiment=experiment, unit_ids=ids, attributes=attributes, log=log, preview=preview
        )
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
        rows: dict[str, object] = {"units": len(result), **{f"in {k}": int(v) for k, v in counts.items()}}
        rows["not enrolled"] = int((result["variant"] == "").sum())
        rows["exposures"] = "logged" if log is not None and not preview else "not logged"
        if out_file is not None:
            rows["output"] = out_file
        summary("experiments assign", rows, started)


@app.command("export-exposures")
def export_exposures(
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    out_file: OutFileOpt = None,
    data: StoreDataOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export the exposure log as the contract's exposures table (default DIR/exposures.parquet).

    Reads the log; writes the file.
    """
    from experiments.exposures import ExposureLog

    with step("experiments export-exposures") as started:
        if out_file is not None:
            target = out_file
        elif data is not None:
            target = _folder(data) / "exposures.parquet"
        else:
            raise UsageError("give --out FILE or --data DIR")
        rows = ExposureLog(engine=_open(store, data).engine).export(target, experiment=experiment)
        summary("experiments export-exposures", {"exposure rows": rows, "output": target}, started)


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
def analyze(  # noqa: PLR0913 - one parameter per command-line option (Typer reads them from the signature)
    data: DataOpt,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    details: Annotated[
        bool, typer.Option("--details", help="Add adjusted p, always-valid CI, flags to JSON.")
    ] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report with charts.")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Read an experiment's results from DIR/exposures and DIR/events (see ANALYZE_HELP)."""
    from experiments.options import AnalysisOptions, parse_correction
    from experiments.report import results_table, write_html
    from experiments.service import analyze_folder, folder_over_time
    from experiments.store import ExperimentStore
    from serving.settings import Settings

    with step("experiments analyze") as started:
        if not 0 < alpha <= 0.5:
            raise UsageError(f"--alpha: {alpha:g} is not in (0, 0.5]; 0.05 is a 95% confidence level")
        if window is not None and window < 1:
            raise UsageError(f"--window: {window:g} is less than 1 day")
        if pre_days <= 0:
            raise UsageError(f"--pre-days: {pre_days:g} is not a positive number of days")
        open_data(data)
        options = AnalysisOptions(
            metrics=tuple(metric or []),
            guardrails=tuple(guardrail or []),
            window_days=window,
            cuped=cuped,
            pre_days=pre_days,
            control=control,
            alpha=alpha,
            correction=parse_correction(correction),
            planned_n=planned_units,
        )
        url = store or Settings().experiments_url
        opened = None
        if url or (data / "experiments.sqlite").exists():
            opened = ExperimentStore(_store_url(store, data))
        read = analyze_folder(data_dir=data, experiment=experiment, store=opened, options=options)
        analysis = read.analysis
        if html_file is not None:
            over_time = folder_over_time(data_dir=data, experiment=experiment, options=read.options)
            write_html(analysis, over_time, html_file)
        if as_json:
            typer.echo(json.dumps(analysis.to_json(details=details), indent=2))
        else:
            show(results_table(analysis, details=details))
        for warning in analysis.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        rows: dict[str, object] = {
            "exposure rows": read.exposures_rows,
            "events": read.events_rows,
            "sample-ratio check": "against the store's shares" if read.shares_from_store else "equal shares",
            "correction": f"{options.correction} across metrics",
        }
        if cuped:
            rows["CUPED"] = f"the {pre_days:g} days before exposure (ratio metrics unadjusted)"
        if html_file is not None:
            rows["report"] = html_file
        summary("experiments analyze", rows, started)


def register(main: typer.Typer) -> None:
    """Add the ``experiments`` command group to the CLI."""
    main.add_typer(app, name="experiments")
