"""Options that several commands share, defined once so every command spells and parses them alike."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated

import typer


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


DataOpt = Annotated[
    Path, typer.Option("--data", help="Data folder: events (required), users, items, offers, exposures.")
]
AsOfOpt = Annotated[
    date,
    typer.Option(
        "--as-of",
        parser=parse_as_of,
        metavar="YYYY-MM-DD",
        help="As-of date (UTC): only events before it are read.",
    ),
]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Label window in days after --as-of.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet by its extension.")]
