"""Churn training end to end on a simulated world: oracle comparison, no leakage, behaviour, MLflow.

The world runs 365 days; the target is day 270, so the test labels ``[day 270, day 360)`` are inside the
simulated span and never seen by training.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from simulator.oracle import out_of_time_table
from simulator.simulate import WorldConfig, simulate
from training.churn import ChurnOptions, TrainResult, train_kind
from training.churn_mlflow import load_risk_model, log_and_promote
from training.churn_run import train_and_register
from training.registry import CHALLENGER, CHAMPION, default_tracking_uri
from training.risk_model import RECENCY_FEATURES

pytestmark = pytest.mark.slow
TARGET = date(2025, 9, 28)  # day 270 of a world starting 2025-01-01
HORIZON = 90


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(n_users=3000, days=365, seed=1), out)
    return out


@pytest.fixture(scope="module")
def trained(world: Path) -> TrainResult:
    return train_kind(world, TARGET, horizon=HORIZON, kind="churn", options=ChurnOptions(seed=0))


def test_close_to_the_oracle_and_calibrated(trained: TrainResult, world: Path) -> None:
    table = out_of_time_table(trained, world, TARGET, horizon=HORIZON, oracle=True)
    assert table["auc_ratio"]["lightgbm"] >= 0.95
    assert table["ece"]["lightgbm"] <= 0.02
    assert set(table.index) == {"lightgbm", "recency_rule", "rfm_logistic", "bg_nbd", "oracle"}
    # the back-test holdout precedes the target and its label window closes by it
    bt = trained.backtest
    assert (
        bt.dates == sorted(bt.dates)
        and bt.holdout_date == date(2025, 6, 30)
        and bt.valid_date < bt.holdout_date
    )
    assert set(bt.train["as_of"].dt.date) == set(bt.dates[:-2])  # training: every date before validation
    # no user is in both training and validation/holdout (their label windows overlap from date to date)
    assert not set(bt.train["user_id"]) & (set(bt.valid["user_id"]) | set(bt.holdout["user_id"]))
    assert set(bt.valid["as_of"].dt.date) == set(bt.dates[:-1]) and len(trained.model.search_) > 1


def test_no_event_at_or_after_the_target_is_read(trained: TrainResult, world: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(world, cut, ignore=shutil.ignore_patterns("truth", "mlflow.db", "mlartifacts"))
    events = pd.read_parquet(cut / "events.parquet")
    kept = events.loc[events["ts"] < pd.Timestamp(TARGET)]
    assert len(kept) < len(events)
    kept.to_parquet(cut / "events.parquet", index=False)
    exposures = pd.read_parquet(cut / "exposures.parquet")
    exposures.loc[exposures["ts"] < pd.Timestamp(TARGET)].to_parquet(cut / "exposures.parquet", index=False)
    again = train_kind(cut, TARGET, horizon=HORIZON, kind="churn", options=ChurnOptions(seed=0))
    assert again.model.booster_.model_to_string() == trained.model.booster_.model_to_string()
    pd.testing.assert_frame_equal(again.table, trained.table)
    # the shift to the target's base rate reads the target's features, never its labels
    assert again.model.date_offset_ == trained.model.date_offset_
    assert again.model.date_shift_ == trained.model.date_shift_
    # without the target's label window nothing is measured there; with it, every model is
    assert again.scored is None and trained.scored is not None
    assert list(trained.scored.index) == [
        "lightgbm",
        "recency_rule",
        "rfm_logistic",
        "bg_nbd",
        "lightgbm_unshifted",
    ]


def test_more_recent_activity_never_raises_risk_on_the_world(trained: TrainResult) -> None:
    users = trained.backtest.holdout
    base = trained.model.predict_proba(users)
    for days in (3, 15, 45):
        recent = users.copy()
        for c in RECENCY_FEATURES:
            if c == "purchase_overdue_ratio":
                recent[c] = recent[c] * 0.5
            else:
                recent[c] = (recent[c] - days).clip(lower=0)
        assert np.all(trained.model.predict_proba(recent) <= base + 1e-12)


def test_mlflow_run_champion_then_challenger(trained: TrainResult, world: Path) -> None:
    uri = default_tracking_uri(world)
    first = log_and_promote(trained, data_dir=world, tracking_uri=uri)
    assert first.alias == CHAMPION and first.kind == "churn" and first.model_uri
    run = mlflow.MlflowClient(uri).get_run(first.run_id)
    for name in (
        "roc_auc",
        "pr_auc",
        "lift_at_10",
        "brier",
        "ece",
        "bg_nbd_roc_auc",
        "recency_rule_brier",
        "rfm_logistic_ece",
        "scored_ece",
        "scored_brier",
        "scored_bg_nbd_ece",
        "scored_lightgbm_unshifted_ece",
    ):
        assert name in run.data.metrics
    assert run.data.params["holdout_as_of"] == "2025-06-30" and run.data.params["target_as_of"] == str(TARGET)
    assert run.data.params["lookback"] == "365" and run.data.params["seed"] == "0"
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(first.run_id, "plots")}
    assert artifacts == {
        "plots/roc.png",
        "plots/calibration.png",
        "plots/lift.png",
        "plots/feature_importance.png",
        "plots/calibration_scored_date.png",  # the world holds the target's label window
    }
    champion = load_risk_model(uri, "churn")
    holdout = trained.backtest.holdout
    np.testing.assert_array_equal(champion.predict_proba(holdout), trained.model.predict_proba(holdout))
    info = mlflow.models.get_model_info("models:/churn@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    # the same data and seed give the same model: it does not beat the champion, so it is challenger
    outcome = train_and_register(
        data_dir=world, as_of=TARGET, horizon=HORIZON, tracking_uri=uri, kind="churn", options=ChurnOptions()
    )
    assert outcome.alias == CHALLENGER and "does not beat" in outcome.decision
    assert int(outcome.version) == int(first.version) + 1 and outcome.run_id != first.run_id
    assert list(outcome.metrics.index) == ["lightgbm", "recency_rule", "rfm_logistic", "bg_nbd"]
    pd.testing.assert_frame_equal(outcome.metrics, trained.table)
    bt = trained.backtest
    assert outcome.facts == {
        "backtest_dates": bt.dates,
        "training_rows": len(bt.train),
        "holdout_users": len(bt.holdout),
        "holdout_date": date(2025, 6, 30),
        "holdout_rate": pytest.approx(bt.holdout["label"].mean()),
        "date_shift": trained.model.date_shift_,
    }
    assert (
        str(mlflow.MlflowClient(uri).get_model_version_by_alias("churn", CHAMPION).version) == first.version
    )
