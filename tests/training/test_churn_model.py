"""The estimator contract of the risk model: fit -> predict -> save -> load (also through MLflow) -> same
predictions; the same seed gives the same model; probabilities are calibrated on later data."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from training.churn_mlflow import RiskPyfunc, model_input
from training.errors import TrainingDataError
from training.evaluate import binary_metrics
from training.registry import default_tracking_uri, use_experiment
from training.risk_model import RECENCY_FEATURES, RiskModel

MONOTONE = dict.fromkeys(RECENCY_FEATURES, 1)


def feature_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Users with recency, frequency, spend, a trend and a categorical stage; churn driven by all of them."""
    rng = np.random.default_rng(seed)
    since = rng.exponential(35, n).round()
    gap = rng.gamma(2, 8, n).round(1) + 1
    purchase_since = np.where(rng.random(n) < 0.2, np.nan, since + rng.integers(0, 20, n))
    orders = rng.poisson(4, n)
    trend = np.clip(rng.normal(0, 0.5, n), -1, 1)
    stage = np.where(since > 45, "dormant", np.where(orders > 5, "core", "active"))
    logit = -1.5 + 0.06 * since - 0.25 * orders - 0.8 * trend + np.where(stage == "core", -0.5, 0.0)
    logit = logit + 0.03 * np.nan_to_num(purchase_since / gap, nan=2.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{seed}_{i:05d}" for i in range(n)],
            "days_since_last_event": since,
            "days_since_last_purchase": purchase_since,
            "purchase_gap_mean_days": gap,
            "purchase_overdue_ratio": purchase_since / gap,
            "orders_90d": orders,
            "spend_90d": orders * rng.gamma(3, 10, n),
            "activity_trend_30d": trend,
            "lifecycle_stage": stage,
            "channel": rng.choice(["organic", "paid_search", "email"], n),
        }
    )
    return frame, y


@pytest.fixture(scope="module")
def frames() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    return {"train": feature_frame(6000, 0), "valid": feature_frame(3000, 1), "test": feature_frame(3000, 2)}


@pytest.fixture(scope="module")
def fitted(frames: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> RiskModel:
    (x, y), (xv, yv) = frames["train"], frames["valid"]
    return RiskModel(categorical=["lifecycle_stage", "channel"], monotone=MONOTONE, seed=3).fit(x, y, xv, yv)


def test_fit_learns_calibrated_probabilities(fitted: RiskModel, frames: dict) -> None:
    x, y = frames["test"]
    p = fitted.predict_proba(x)
    assert p.shape == (len(x),) and np.all((p >= 0) & (p <= 1))
    metrics = binary_metrics(y, p)
    assert metrics["roc_auc"] > 0.8 and metrics["ece"] < 0.03
    assert set(fitted.features_) == set(x.columns) - {"user_id"}
    assert fitted.categories_["lifecycle_stage"] == ["active", "core", "dormant"]
    assert 0 < fitted.best_iteration_ < fitted.n_estimators  # early stopping on the validation slice


def test_save_load_gives_the_same_predictions(fitted: RiskModel, frames: dict, tmp_path: Path) -> None:
    x, _ = frames["test"]
    loaded = RiskModel.load(fitted.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_proba(x), fitted.predict_proba(x))
    head = x.head(300)
    np.testing.assert_array_equal(loaded.contributions(head), fitted.contributions(head))
    assert loaded.get_params() == fitted.get_params()


def test_same_seed_same_model_other_seed_other_model(fitted: RiskModel, frames: dict) -> None:
    (x, y), (xv, yv), (xt, _) = frames["train"], frames["valid"], frames["test"]
    again = RiskModel(categorical=["lifecycle_stage", "channel"], monotone=MONOTONE, seed=3).fit(x, y, xv, yv)
    assert again.booster_.model_to_string() == fitted.booster_.model_to_string()
    np.testing.assert_array_equal(again.predict_proba(xt), fitted.predict_proba(xt))
    other = RiskModel(categorical=["lifecycle_stage", "channel"], monotone=MONOTONE, seed=4).fit(x, y, xv, yv)
    assert other.booster_.model_to_string() != fitted.booster_.model_to_string()


def test_unknown_levels_and_missing_values_are_scored(fitted: RiskModel, frames: dict) -> None:
    x, _ = frames["test"]
    odd = x.head(5).assign(channel=["tiktok", None, "email", "", "organic"], days_since_last_purchase=np.nan)
    assert np.isfinite(fitted.predict_proba(odd)).all()
    with pytest.raises(TrainingDataError, match="lacks"):
        fitted.predict_proba(x.drop(columns=["orders_90d"]))


def test_contributions_add_up_to_the_raw_log_odds(fitted: RiskModel, frames: dict) -> None:
    x, _ = frames["test"]
    contrib = fitted.contributions(x.head(50))
    full = fitted.booster_.predict(
        fitted.prepare(x.head(50)), num_iteration=fitted.best_iteration_, pred_contrib=True
    )
    raw = fitted.predict_raw(x.head(50))
    np.testing.assert_allclose(contrib.sum(axis=1) + full[:, -1], np.log(raw / (1 - raw)), atol=1e-6)


@pytest.mark.slow
def test_round_trip_through_mlflow(fitted: RiskModel, frames: dict, tmp_path: Path) -> None:
    x, _ = frames["test"]
    uri = default_tracking_uri(tmp_path)
    use_experiment(uri, "contract", tmp_path / "mlartifacts")
    example = model_input(fitted, x.head(5))
    with mlflow.start_run():
        saved = fitted.save(tmp_path / "saved")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RiskPyfunc(),
            artifacts={"model": str(saved)},
            signature=mlflow.models.infer_signature(example, fitted.predict_proba(example)),
            input_example=example,
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.get_input_schema() is not None
    np.testing.assert_array_equal(np.asarray(loaded.predict(model_input(fitted, x))), fitted.predict_proba(x))
    np.testing.assert_array_equal(
        loaded.unwrap_python_model().model.predict_proba(x), fitted.predict_proba(x)
    )
