"""What every command shares: one-line failures, progress and the closing summary."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from experiments.errors import ExperimentsError
from features.errors import FeaturesError
from serving.errors import ServingError
from serving.settings import SettingsError
from training.errors import TrainingError

console = Console(stderr=True)
"""Progress and summaries go to stderr, so stdout stays clean for data (``--json``)."""


class UsageError(Exception):
    """A command was given options that cannot work together (said in one line, exit code 1)."""


EXPECTED: tuple[type[Exception], ...] = (
    UsageError,
    SettingsError,
    ServingError,
    FeaturesError,
    TrainingError,
    ExperimentsError,
    FileNotFoundError,
)
"""The failures that are the user's to fix. Anything else is a bug and keeps its traceback."""


def one_line_usage_errors() -> None:
    """Report a bad option as the one line every refused input gets (exit code stays Click's 2).

    Click's own report of a bad value or an unknown option is the usage, a hint and a framed box; the
    message inside names the option (``Invalid value for '--top': 0 is not in the range x>=1.``), and that
    line alone is printed. Typer looks the formatter up on its module at each error, so it is replaced
    there; the empty-command case (``no_args_is_help``) still shows the help.
    """
    from rich.markup import escape
    from typer import rich_utils

    def report(self: Exception) -> None:  # named as typer's own, which takes the error as ``self``
        if type(self).__name__ == "NoArgsIsHelpError":
            return
        message = getattr(self, "format_message", None)
        text = " ".join((message() if callable(message) else str(self)).split())
        console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)

    rich_utils.rich_format_error = report


one_line_usage_errors()


def quiet_libraries() -> None:
    """Keep MLflow's info lines and download bars out of a command's progress and summary.

    MLflow sets its own logger's level when it is imported, so the level goes in through its variable.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line reason and a non-zero exit code."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@contextmanager
def step(what: str) -> Iterator[float]:
    """Run a command's work: the named errors of :data:`EXPECTED` become one line and exit code 1.

    Yields:
        The start time (``time.perf_counter()``), for the summary.
    """
    quiet_libraries()
    started = time.perf_counter()
    try:
        yield started
    except typer.Exit:
        raise
    except EXPECTED as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"{what}: {text}")
    except KeyboardInterrupt:  # pragma: no cover
        console.print("interrupted")
        sys.exit(130)


def summary(title: str, rows: Mapping[str, object], started: float | None = None) -> None:
    """Print the one-screen summary that ends a command."""
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    if started is not None:
        table.add_row("time", f"{time.perf_counter() - started:.1f} s")
    show(table)


def show(table: Table) -> None:
    """Print a table; in a log or a file (no terminal width) at its full width, never cut to 80 columns."""
    from rich.measure import Measurement

    if not console.is_terminal:
        table.width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    console.print(table, crop=False)
