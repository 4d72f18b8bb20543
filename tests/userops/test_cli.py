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
    pd.DataFrame({"who": ["u1"], "when": ["2025-01-01"]}).to_csv(tmp_path / "theirs.csv", index=False)
    result = runner.invoke(
        app, ["ingest", "--events", str(tmp_path / "theirs.csv"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "--map user_id=COLUMN" in result.output


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


EXPECTED_ERRORS = [
    ("features.errors", "ContractError", "events.csv: no column ts"),
    ("features.errors", "JobBusyError", "another feature job is writing data/features"),
    ("training.errors", "ModelNotFoundError", "no churn model is registered; run userops train churn"),
    ("experiments.errors", "StoreError", "no experiment promo"),
    ("userops.console", "UsageError", "give --preset or --map"),
    ("builtins", "FileNotFoundError", "events.parquet: no such file"),
]


def _features_raising(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    import features.job

    def broken(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(features.job, "run_job", broken)
    monkeypatch.setattr("userops.cmd_features.open_data", lambda *a, **k: None)  # the folder is empty


@pytest.mark.parametrize(("module", "name", "message"), EXPECTED_ERRORS)
def test_every_package_error_is_one_line_and_exit_code_1(
    module: str, name: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib

    error = getattr(importlib.import_module(module), name)(message)
    _features_raising(monkeypatch, error)
    result = runner.invoke(app, ["features", "--data", str(tmp_path), "--as-of", "2025-01-01", "--no-online"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: features: {message}"


def test_a_bug_inside_a_command_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _features_raising(monkeypatch, KeyError("a bug, not the user's mistake"))
    result = runner.invoke(app, ["features", "--data", str(tmp_path), "--as-of", "2025-01-01", "--no-online"])
    assert isinstance(result.exception, KeyError)
    assert "error:" not in result.output


def test_a_bug_shows_a_traceback_in_a_real_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import features.job\n"
        "def broken(*a, **k): raise ZeroDivisionError('injected')\n"
        "features.job.run_job = broken\n"
        "import userops.options\n"
        "userops.options.open_data = lambda *a, **k: None\n"
        "from userops.cli import app\n"
        f"app(['features', '--data', {str(tmp_path)!r}, '--as-of', '2025-01-01'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "ZeroDivisionError: injected" in done.stderr
