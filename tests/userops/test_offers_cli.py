"""``userops train offers`` and ``userops offers choose`` on a campaign-only folder: summaries, the output
columns, reasons an operator reads, and one-line refusals that write nothing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from userops.cli import app

runner = CliRunner()
EXPOSED = pd.Timestamp("2025-03-01 10:00")
COSTS = {"free_shipping": 2.0, "points_500": 1.0}


def _folder(out: Path, n: int = 6000, seed: int = 1) -> Path:
    """Users with a plan and no history; free shipping keeps basic users (+30 pts), points do nothing."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    users = pd.DataFrame(
        {"user_id": [f"c{i:05d}" for i in range(n)], "signup_ts": "", "plan": rng.choice(["basic", "pro"], n)}
    )
    variants = np.array(["control", *COSTS])
    arm = rng.integers(0, 3, n)
    effect = np.where((arm == 1) & (users["plan"] == "basic"), 0.30, 0.0)
    active = rng.random(n) < 0.35 + effect
    delay = pd.to_timedelta(rng.uniform(0, 40, active.sum()), unit="D")
    pd.DataFrame(
        {"user_id": users["user_id"][active], "ts": EXPOSED + delay, "event_type": "purchase", "amount": 20.0}
    ).to_csv(out / "events.csv", index=False)
    users.to_csv(out / "users.csv", index=False)
    pd.DataFrame(
        {"experiment": "spring", "variant": variants[arm], "unit_id": users["user_id"], "ts": EXPOSED}
    ).to_csv(out / "exposures.csv", index=False)
    pd.DataFrame({"offer_id": list(COSTS), "cost": list(COSTS.values())}).to_csv(
        out / "offers.csv", index=False
    )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = _folder(tmp_path_factory.mktemp("cli") / "campaign")
    result = runner.invoke(app, ["train", "offers", "--data", str(folder), "--as-of", "2025-04-20"])
    assert result.exit_code == 0, result.output
    return folder, result.output


def test_train_summary(trained: tuple[Path, str]) -> None:
    _, output = trained
    assert "campaigns" in output and "spring" in output
    assert "user attributes only" in output
    assert re.search(r"model policy\s+\d+\.\d\d ± \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \| \d+%", output)
    assert "everyone gets free_shipping" in output and "no offer" in output
    assert "first offers model: version 1 becomes champion" in output
    assert "WARNING" not in output


def test_choose_for_known_and_new_users(trained: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = trained
    asked = pd.DataFrame({"user_id": ["c00001", "new_basic", "new_pro"], "plan": ["", "basic", "pro"]})
    asked.loc[0, "plan"] = None
    asked.to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "choice.csv"
    args = [
        "offers",
        "choose",
        "--data",
        str(folder),
        "--as-of",
        "2025-04-20",
        "--users",
        str(tmp_path / "users.csv"),
    ]
    result = runner.invoke(app, [*args, "--out", str(out), "--explore", "0"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("user_id")
    assert list(table.columns) == [
        "offer_id",
        "uplift_free_shipping",
        "uplift_points_500",
        "expected_value",
        "reason",
    ]
    assert table.loc["new_basic", "offer_id"] == "free_shipping"
    assert table.loc["new_pro", "offer_id"] == ""
    # "free shipping: +27.3 pts 30-day activity, worth 3.46 after cost"
    up = float(table.loc["new_basic", "uplift_free_shipping"])
    worth = float(table.loc["new_basic", "expected_value"])
    assert table.loc["new_basic", "reason"] == (
        f"free shipping: {100 * up:+.1f} pts 30-day activity, worth {worth:.2f} after cost"
    )
    assert 0.15 < up < 0.45
    assert worth == pytest.approx(up * 20 - 2.0, abs=0.5)
    assert table.loc["new_pro", "reason"].startswith("no offer: ")
    assert "_" not in table.loc["new_pro", "reason"].split("(")[0]


def test_choose_explores_through_an_experiment(trained: tuple[Path, str], tmp_path: Path) -> None:
    folder, _ = trained
    out = tmp_path / "all.parquet"
    result = runner.invoke(
        app,
        [
            "offers",
            "choose",
            "--data",
            str(folder),
            "--as-of",
            "2025-04-20",
            "--users",
            "all",
            "--out",
            str(out),
            "--explore",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    explored = table["reason"].str.startswith("exploration: randomized by experiment next_best_offer_explore")
    assert 0.15 < explored.mean() < 0.25
    assert set(table.loc[explored, "offer_id"]) == {"", "free_shipping", "points_500"}
    result = runner.invoke(app, ["experiments", "list", "--data", str(folder)])
    assert "next_best_offer_explore" in result.output


def test_refusals_are_one_line_and_write_nothing(
    trained: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = trained
    # the outcome window does not close by the date
    result = runner.invoke(
        app, ["train", "offers", "--data", str(folder), "--as-of", "2025-03-20", "--experiment", "spring"]
    )
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line
    assert (
        "campaign spring: the 30-day outcome window after its last exposure on 2025-03-01 ends "
        "2025-03-31, after the as-of date 2025-03-20" in line
    )
    result = runner.invoke(
        app, ["train", "offers", "--data", str(folder), "--as-of", "2025-04-20", "--experiment", "nope"]
    )
    assert result.exit_code == 1 and "no exposures of experiment(s) nope" in result.output
    result = runner.invoke(
        app, ["train", "churn", "--data", str(folder), "--as-of", "2025-04-20", "--outcome", "revenue"]
    )
    assert result.exit_code == 1 and "options of `train offers` only" in result.output
    # no model registered in another folder: nothing is written (MLflow keeps the last URI it was given
    # in the environment; a command run on its own has none)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    empty = _folder(tmp_path / "untrained", n=300)
    out = tmp_path / "never.csv"
    result = runner.invoke(
        app, ["offers", "choose", "--data", str(empty), "--as-of", "2025-04-20", "--out", str(out)]
    )
    assert result.exit_code == 1 and "train one first" in result.output
    assert not out.exists()
