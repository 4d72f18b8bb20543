"""Champion/challenger promotion against a real (embedded SQLite) MLflow registry."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from training.registry import CHALLENGER, CHAMPION, default_tracking_uri, promote, use_experiment


class _Constant(mlflow.pyfunc.PythonModel):
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, context, model_input: pd.DataFrame, params=None):
        return [self.value] * len(model_input)


def _log(value: float) -> str:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(value))
    return info.model_uri


def test_champion_moves_only_when_beaten_on_the_same_holdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    uri = default_tracking_uri(tmp_path)
    use_experiment(uri, "toy", tmp_path / "artifacts")
    holdout = pd.DataFrame({"x": [1, 2, 3]})
    target = 0.7

    def score(model_uri: str) -> float:  # closeness of the constant to the target, on the holdout
        return -abs(mlflow.pyfunc.load_model(model_uri).predict(holdout)[0] - target)

    first = promote(
        tracking_uri=uri, name="toy", model_uri=_log(0.5), score=-0.2, metric="neg_err", score_champion=score
    )
    assert first.alias == CHAMPION and first.champion_score is None
    worse = promote(
        tracking_uri=uri, name="toy", model_uri=_log(0.1), score=-0.6, metric="neg_err", score_champion=score
    )
    assert worse.alias == CHALLENGER and "does not beat" in worse.reason
    assert abs(worse.champion_score - (-0.2)) < 1e-9  # the champion was re-scored on the holdout
    better = promote(
        tracking_uri=uri,
        name="toy",
        model_uri=_log(0.69),
        score=-0.01,
        metric="neg_err",
        score_champion=score,
    )
    assert better.alias == CHAMPION
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("toy", CHAMPION).version) == better.version
    assert str(client.get_model_version_by_alias("toy", CHALLENGER).version) == worse.version
    loaded = mlflow.pyfunc.load_model("models:/toy@champion").predict(holdout)
    assert loaded[0] == 0.69
    assert Path(tmp_path / "artifacts").exists()
    printed = capfd.readouterr()
    for line in ("Successfully registered", "Created version", "already exists"):  # MLflow's own prints
        assert line not in printed.out + printed.err
