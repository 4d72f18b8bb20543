"""Failures that are the user's to fix come out as named training errors with a one-line message."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pytest
import scipy.sparse as sp

from tests.training.test_churn_model import feature_frame
from training.baselines import BGNBD, GammaGamma
from training.churn_mlflow import load_risk_model
from training.datasets import BacktestPlan, build_backtest
from training.errors import ModelNotFoundError, TrainingDataError, TrainingError
from training.recommenders import EASERecommender, ItemKNNRecommender
from training.registry import default_tracking_uri
from training.risk_model import RiskModel


def _one_line(error: pytest.ExceptionInfo[TrainingError]) -> str:
    text = str(error.value)
    assert text and "\n" not in text
    return text


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store where ``propensity`` is registered with no version, and ``churn`` is not at all."""
    uri = default_tracking_uri(tmp_path_factory.mktemp("registry"))
    mlflow.MlflowClient(uri, registry_uri=uri).create_registered_model("propensity")
    return uri


def test_loading_an_unregistered_model_says_to_train_first(registry: str) -> None:
    with pytest.raises(ModelNotFoundError) as error:
        load_risk_model(registry, "churn")
    assert isinstance(error.value, TrainingError)
    assert "userops train churn" in _one_line(error)


def test_a_registered_name_without_the_alias_is_not_found(registry: str) -> None:
    with pytest.raises(ModelNotFoundError, match="alias 'champion'") as error:
        load_risk_model(registry, "propensity")
    _one_line(error)


def test_a_registry_that_cannot_be_read_is_not_reported_as_a_missing_model() -> None:
    # MLflow's own error (here: a store URI it cannot use) is not the user's missing model
    with pytest.raises(mlflow.exceptions.MlflowException) as error:
        load_risk_model("unknown-scheme://nowhere", "churn")
    assert not isinstance(error.value, ModelNotFoundError)


def test_one_outcome_only_cannot_train_a_risk_model() -> None:
    (x, y), (xv, yv) = feature_frame(500, 0), feature_frame(300, 1)
    with pytest.raises(TrainingDataError, match="both outcomes") as error:
        RiskModel(seed=0).fit(x, np.zeros_like(y), xv, yv)
    _one_line(error)


def test_too_few_customers_cannot_fit_the_baselines() -> None:
    few = np.array([1.0, 2.0, 3.0])
    with pytest.raises(TrainingDataError, match="at least 10 customers"):
        BGNBD().fit(few, few, few + 1)
    with pytest.raises(TrainingDataError, match="at least 10 customers"):
        GammaGamma().fit(few, few * 10)


@pytest.mark.parametrize("family", [EASERecommender, ItemKNNRecommender])
def test_a_catalogue_past_max_items_names_the_way_out(
    family: type[EASERecommender | ItemKNNRecommender],
) -> None:
    x = sp.csr_matrix(np.eye(6, dtype=np.float32))
    with pytest.raises(TrainingDataError, match="use another family or raise max_items") as error:
        family(max_items=5).fit(x)
    _one_line(error)


@pytest.mark.slow
def test_too_short_a_history_for_the_back_test(tmp_path: Path) -> None:
    from simulator.simulate import WorldConfig, simulate

    simulate(WorldConfig(n_users=200, days=100, seed=2), tmp_path)
    plan = BacktestPlan(n_dates=3, step_days=14)
    with pytest.raises(TrainingDataError, match="usable back-test date") as error:
        build_backtest(tmp_path, date(2025, 4, 1), horizon=60, kind="churn", plan=plan)
    assert "shorter --horizon" in _one_line(error)
