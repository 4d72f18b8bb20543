"""``userops pipeline``, ``score churn`` and ``winback`` on a small simulated world, through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.simulate import WorldConfig, simulate
from userops.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
AS_OF = "2025-08-29"  # day 240 of 300


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    simulate(WorldConfig(n_users=2000, days=300, seed=3), out)
    return out


@pytest.fixture(scope="module")
def piped(world: Path) -> tuple[Path, str]:
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = runner.invoke(
        app, ["score", "churn", "--data", str(world), "--as-of", AS_OF, "--out", str(world / "early.csv")]
    )
    result = runner.invoke(app, ["pipeline", "--data", str(world), "--as-of", AS_OF])
    mp.undo()
    assert result.exit_code == 0, result.output
    return world, before.output + "\n-----\n" + result.output


def test_scoring_without_a_model_says_so_in_one_line(piped: tuple[Path, str]) -> None:
    early = piped[1].split("-----")[0]
    assert "error:" in early and "no churn model" in early and "Traceback" not in early


def test_pipeline_writes_every_output(piped: tuple[Path, str]) -> None:
    world, output = piped
    assert "becomes champion" in output and "time" in output
    assert (world / "mlflow.db").exists() and (world / "features" / f"as_of={AS_OF}.parquet").exists()
    scores = pd.read_csv(world / "scores" / f"churn_as_of={AS_OF}.csv")
    listing = pd.read_csv(world / "winback" / f"winback_as_of={AS_OF}.csv", keep_default_na=False)
    assert list(scores.columns[:4]) == ["user_id", "churn_risk", "lifecycle_stage", "reasons"]
    assert scores["churn_risk"].between(0, 1).all() and scores["user_id"].is_unique
    assert set(listing["user_id"]) == set(scores["user_id"])
    assert (listing["offer_id"] == "").all()


def test_score_and_winback_commands(piped: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    world, _ = piped
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = world / "out" / "scores.parquet"
    result = runner.invoke(app, ["score", "churn", "--data", str(world), "--as-of", AS_OF, "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert scores["reasons"].str.len().gt(0).all()
    assert "users scored" in result.output
    result = runner.invoke(
        app,
        [
            "winback",
            "--data",
            str(world),
            "--as-of",
            AS_OF,
            "--top",
            "25",
            "--segment",
            "dormant",
            "--min-value",
            "5",
            "--out",
            str(world / "out" / "wb.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    listing = pd.read_csv(world / "out" / "wb.csv", keep_default_na=False)
    assert 0 < len(listing) <= 25
    assert (listing["lifecycle_stage"] == "dormant").all() | (listing["rfm_segment"] == "dormant").all()
    assert (listing["value_at_stake"] >= 5).all()
    saved = listing["expected_value_saved"].to_numpy()
    assert np.all(saved[:-1] >= saved[1:])
    np.testing.assert_allclose(saved, listing["churn_risk"] * listing["value_at_stake"])
    bad = runner.invoke(app, ["winback", "--data", str(world), "--as-of", "someday", "--out", str(out)])
    assert bad.exit_code == 1 and "not a date" in bad.output
