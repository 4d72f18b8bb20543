"""``userops pipeline``, ``score churn`` and ``winback`` on a small simulated world, through the CLI.

One test walks the whole story (no model yet -> pipeline -> score -> win-back) so the expensive pipeline
runs once even when the tests are spread over several workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator.simulate import WorldConfig, simulate
from userops.cli import app

runner = CliRunner()
AS_OF = "2025-08-29"  # day 240 of 300


@pytest.mark.slow
def test_pipeline_then_score_and_winback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    world = tmp_path / "world"
    simulate(WorldConfig(n_users=2000, days=300, seed=3), world)

    # before any training: a one-line reason, no traceback
    early = runner.invoke(
        app, ["score", "churn", "--data", str(world), "--as-of", AS_OF, "--out", str(tmp_path / "early.csv")]
    )
    assert early.exit_code == 1 and "no churn model" in early.output and "Traceback" not in early.output

    result = runner.invoke(app, ["pipeline", "--data", str(world), "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert "becomes champion" in result.output and "time" in result.output
    assert (world / "mlflow.db").exists() and (world / "features" / f"as_of={AS_OF}.parquet").exists()
    assert (world / "online" / "features.sqlite").exists()  # the feature job also refreshed the online copy
    scores = pd.read_csv(world / "scores" / f"churn_as_of={AS_OF}.csv")
    listing = pd.read_csv(world / "winback" / f"winback_as_of={AS_OF}.csv", keep_default_na=False)
    assert list(scores.columns[:4]) == ["user_id", "churn_risk", "lifecycle_stage", "reasons"]
    assert scores["churn_risk"].between(0, 1).all() and scores["user_id"].is_unique
    assert set(listing["user_id"]) == set(scores["user_id"]) and (listing["offer_id"] == "").all()

    out = tmp_path / "out" / "scores.parquet"
    result = runner.invoke(app, ["score", "churn", "--data", str(world), "--as-of", AS_OF, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "users scored" in result.output
    scored = pd.read_parquet(out)
    assert scored["reasons"].str.len().gt(0).all()
    pd.testing.assert_series_equal(scored["churn_risk"], scores["churn_risk"], check_exact=False)

    wb = tmp_path / "out" / "wb.csv"
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
            str(wb),
        ],
    )
    assert result.exit_code == 0, result.output
    listing = pd.read_csv(wb, keep_default_na=False)
    assert 0 < len(listing) <= 25
    assert ((listing["lifecycle_stage"] == "dormant") | (listing["rfm_segment"] == "dormant")).all()
    assert (listing["value_at_stake"] >= 5).all()
    saved = listing["expected_value_saved"].to_numpy()
    assert np.all(saved[:-1] >= saved[1:])
    np.testing.assert_allclose(saved, listing["churn_risk"] * listing["value_at_stake"])

    bad = runner.invoke(app, ["winback", "--data", str(world), "--as-of", "someday", "--out", str(wb)])
    assert bad.exit_code == 1 and "not a date" in bad.output
