"""The command line: help that explains, summaries at the end, one-line failures with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from userops.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_that_says_what_it_does(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert len(result.output.split()) > 20


def test_simulate_then_ingest_round_trip(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--users", "200", "--days", "60", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert "events rows" in result.output and "time" in result.output
    events = pd.read_parquet(tmp_path / "w" / "events.parquet")
    events.loc[3, "user_id"] = None
    events.to_csv(tmp_path / "mine.csv", index=False)
    result = runner.invoke(
        app,
        [
            "ingest",
            "--events",
            str(tmp_path / "mine.csv"),
            "--out",
            str(tmp_path / "o"),
            "--map",
            "user_id=user_id,ts=ts,event_type=event_type",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "missing user_id" in result.output
    assert len(pd.read_parquet(tmp_path / "o" / "events.parquet")) == len(events) - 1


def test_failures_are_one_line_with_a_non_zero_exit(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "ingest",
            "--events",
            str(tmp_path / "nope.csv"),
            "--out",
            str(tmp_path / "o"),
            "--map",
            "user_id=a",
        ],
    )
    assert result.exit_code == 1
    assert "error: ingest:" in result.output and "no such file" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(
        app, ["ingest", "--events", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "--preset" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["train", "churn", "--data", ".", "--as-of", "2025-13-01"],
        ["score", "churn", "--data", ".", "--as-of", "soon", "--out", "x.csv"],
        ["recommend", "--data", ".", "--as-of", "2025-02-30", "--users", "all", "--out", "x.csv"],
    ],
)
def test_a_bad_as_of_date_is_named_in_one_line(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "is not a date YYYY-MM-DD" in result.output and "Traceback" not in result.output
