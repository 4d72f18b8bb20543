"""Options that several commands share, defined once so every command spells and parses them alike."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from features.sources import FolderFacts


class BadDate(typer.BadParameter):
    """An ``--as-of`` that is not a date: a one-line error and exit code 1, like every refused input."""

    exit_code = 1


def parse_as_of(text: str | date) -> date:
    """Parse an ``--as-of`` value, ``YYYY-MM-DD`` only.

    Raises:
        BadDate: It is not such a date, said in one line.
    """
    if isinstance(text, date):
        return text
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise BadDate(f"{text!r} is not a date YYYY-MM-DD")


def as_of_option(text: str | date) -> date:
    """:func:`parse_as_of` as the ``--as-of`` option's parser: a bad date ends the command with one line
    naming the option (Click's own report of a bad value is a box with the usage above it).

    Raises:
        typer.Exit: The value is not a date ``YYYY-MM-DD`` (exit code 1, after the one line).
    """
    try:
        return parse_as_of(text)
    except BadDate as exc:
        from userops.console import fail

        fail(f"--as-of: {exc.message}")


DataOpt = Annotated[
    Path, typer.Option("--data", help="Data folder: events (required), users, items, offers, exposures.")
]
AsOfOpt = Annotated[
    date,
    typer.Option(
        "--as-of",
        parser=as_of_option,
        metavar="YYYY-MM-DD",
        help="As-of date (UTC): only events before it are read; YYYY-MM-DD, within the data's span "
        "(see --allow-gap).",
    ),
]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Label window in days after --as-of.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet by its extension.")]
AllowGapOpt = Annotated[
    bool,
    typer.Option(
        "--allow-gap",
        help="Accept an --as-of more than 30 days after the last event (default: refused).",
    ),
]


def open_data(
    data: Path, as_of: date | Iterable[date] | None = None, *, allow_gap: bool = False
) -> FolderFacts:
    """The one door to a data folder for every command: the contract check, then the ``--as-of`` rule.

    Run before anything is written, so a command that refuses its input leaves no trace.

    Args:
        data: The ``--data`` folder.
        as_of: The ``--as-of`` date(s) to check against the data's span, if the command takes any.
        allow_gap: ``--allow-gap``: accept dates more than 30 days after the last event.

    Returns:
        What the check found (tables, first and last event).

    Raises:
        FeaturesError: The folder or a table breaks the contract, or a date is out of the data's span
            (one line naming the file and column, or the option and the data's dates).
    """
    from features.sources import check_as_of, check_folder

    facts = check_folder(data)
    dates = [as_of] if isinstance(as_of, date) else list(as_of or [])
    for day in dates:
        check_as_of(day, facts, allow_gap=allow_gap)
    return facts


def require_store(tracking_uri: str, kind: str) -> None:
    """Refuse to read models from an embedded store that does not exist (reading would create it).

    Raises:
        ModelNotFoundError: ``tracking_uri`` is a SQLite file that is not there.
    """
    from training.errors import ModelNotFoundError
    from training.registry import missing_store

    path = missing_store(tracking_uri)
    if path is not None:
        raise ModelNotFoundError(
            f"no {kind} model is registered ({path} does not exist); train one first: "
            f"`userops train {kind}` or `userops pipeline`"
        )
