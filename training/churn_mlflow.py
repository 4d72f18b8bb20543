"""MLflow side of the churn and propensity models: the pyfunc wrapper, the run's logging, promotion, loading.

The logged model is a pyfunc around a saved :class:`RiskModel` (booster, calibration map, drift reference),
so ``models:/churn@champion`` both scores through MLflow's generic interface and gives back the
estimator for reasons and drift (:func:`load_risk_model`).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel
from sklearn.metrics import roc_auc_score

from training.churn import MODEL_NAME, TrainResult
from training.errors import ModelNotFoundError
from training.evaluate import format_table
from training.plots import calibration_figure, importance_figure, lift_figure, roc_figure
from training.registry import connect, promote, use_experiment
from training.results import TrainOutcome
from training.risk_model import RiskModel

PROMOTION_METRIC = "roc_auc"
MISSING_CODES: frozenset[str] = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
"""MLflow's error codes, when looking up an alias, for a registered model or an alias that does not exist."""


class RiskPyfunc(PythonModel):
    """Pyfunc wrapper: input is the feature frame, output the calibrated probability per row."""

    def load_context(self, context: Any) -> None:
        self.model = RiskModel.load(context.artifacts["model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.model.predict_proba(model_input)


def model_input(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's features in plain types for a signature: floats, and strings (``""`` for missing)."""
    out: dict[str, Any] = {}
    for c in model.features_:
        if c in model.categories_:
            out[c] = frame[c].astype("object").where(frame[c].notna(), "").astype(str).to_numpy(dtype=object)
        else:
            out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
    return pd.DataFrame(out)


def load_risk_model(tracking_uri: str, name: str, alias: str = "champion") -> RiskModel:
    """The estimator behind ``models:/<name>@<alias>``.

    Raises:
        ModelNotFoundError: No such registered model or alias in the tracking store, or it is not a churn
            or propensity model.
        mlflow.exceptions.MlflowException: The registry cannot be read (unusable URI, no answer).
    """
    connect(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)  # a URI it cannot use raises here
    try:
        client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in MISSING_CODES:  # e.g. a tracking server that does not answer
            raise
        raise ModelNotFoundError(
            f"no {name} model with alias {alias!r} in {tracking_uri}; train one first: "
            f"`userops train {name}` or `userops pipeline`"
        ) from exc
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    wrapper = loaded.unwrap_python_model()
    if not isinstance(wrapper, RiskPyfunc):
        raise ModelNotFoundError(
            f"models:/{name}@{alias} in {tracking_uri} is not a churn or propensity model"
        )
    return wrapper.model


def _log_plots(result: TrainResult) -> None:
    y = result.backtest.holdout["label"].to_numpy()
    title = f"{result.kind}, holdout as of {result.backtest.holdout_date}"
    figures = {
        "plots/roc.png": roc_figure(y, result.scores, title),
        "plots/calibration.png": calibration_figure(y, result.scores, title),
        "plots/lift.png": lift_figure(y, result.scores, title),
        "plots/feature_importance.png": importance_figure(result.model.feature_importance(), title),
    }
    if result.scored is not None and result.scored_labels is not None:  # the scored date's own labels
        figures["plots/calibration_scored_date.png"] = calibration_figure(
            result.scored_labels, result.scored_scores, f"{result.kind}, scored date {result.target}"
        )
    import matplotlib.pyplot as plt

    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def log_and_promote(result: TrainResult, *, data_dir: str | Path, tracking_uri: str) -> TrainOutcome:
    """Log one run (parameters, data window, metrics, plots, model) and promote the model.

    The new version becomes ``champion`` only if its holdout ROC-AUC beats the current champion's,
    re-scored on the same holdout; otherwise ``challenger``.

    Args:
        result: The trained model and its holdout evaluation (:func:`training.churn.train_kind`).
        data_dir: Data folder (a new experiment's artifacts go to ``data_dir/mlartifacts``).
        tracking_uri: MLflow tracking and registry URI.

    Returns:
        The run, the registered version, its alias and why, the metrics table and the run's facts.
    """
    use_experiment(tracking_uri, result.kind, Path(data_dir) / "mlartifacts")
    bt, model, target = result.backtest, result.model, result.target
    options = dataclasses.asdict(result.options)
    holdout = bt.holdout
    y = holdout["label"].to_numpy()
    with mlflow.start_run(run_name=f"{result.kind} as of {target}") as run:
        params: dict[str, object] = {
            "kind": result.kind,
            "target_as_of": str(target),
            "horizon_days": result.horizon,
            "backtest_dates": ",".join(str(d) for d in bt.dates),
            "skipped_dates": ",".join(map(str, bt.skipped)),
            "train_rows": len(bt.train),
            "valid_rows": len(bt.valid),
            "holdout_rows": len(holdout),
            "best_iteration": model.best_iteration_,
            "calibration": model.calibrator_.method_,
            "date_shift": model.date_shift_,
            "date_offset": round(model.date_offset_, 6),
            "n_features": len(model.features_),
            **bt.window(),
            **{k: v for k, v in options.items() if isinstance(v, int | float | str)},
            **{
                f"model_{k}": v for k, v in model.get_params().items() if k not in ("features", "categorical")
            },
        }
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        for i, trial in enumerate(model.search_):  # the hyperparameter search, one child run per trial
            with mlflow.start_run(run_name=f"{result.kind} trial {i}", nested=True):
                mlflow.log_params({**trial.params, "best_iteration": trial.best_iteration})
                mlflow.log_metric("valid_roc_auc", trial.valid_roc_auc)
        metrics = {"holdout_outcome_rate": float(y.mean())}
        for name, row in result.table.iterrows():
            prefix = "" if name == MODEL_NAME else f"{name}_"
            metrics.update({f"{prefix}{k}": float(v) for k, v in row.items() if np.isfinite(v)})
        metrics.update({f"date_shift_backtest_ece_{m}": v for m, v in model.date_shift_backtest_.items()})
        if result.scored is not None:  # measured at the scored date itself (its labels are in the folder)
            for name, row in result.scored.iterrows():
                prefix = "scored_" if name == MODEL_NAME else f"scored_{name}_"
                metrics.update({f"{prefix}{k}": float(v) for k, v in row.items() if np.isfinite(v)})
            mlflow.log_text(format_table(result.scored) + "\n", "metrics_scored_date.md")
        mlflow.log_metrics(metrics)
        mlflow.log_text(format_table(result.table) + "\n", "metrics.md")
        mlflow.log_text(result.table.to_csv(), "metrics.csv")
        mlflow.log_text(
            json.dumps({"features": model.features_, "categories": model.categories_}, indent=1),
            "features.json",
        )
        _log_plots(result)
        example = model_input(model, holdout.head(5))
        signature = mlflow.models.infer_signature(example, model.predict_proba(example))
        with tempfile.TemporaryDirectory() as tmp:
            saved = model.save(Path(tmp) / "risk_model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RiskPyfunc(),
                artifacts={"model": str(saved)},
                signature=signature,
                input_example=example,
            )

        def score_champion(uri: str) -> float:
            champion = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
            return float(roc_auc_score(y, champion.predict_proba(holdout)))

        score = float(result.table[PROMOTION_METRIC].to_numpy()[list(result.table.index).index(MODEL_NAME)])
        decision = promote(
            tracking_uri=tracking_uri,
            name=result.kind,
            model_uri=info.model_uri,
            score=score,
            metric=PROMOTION_METRIC,
            score_champion=score_champion,
        )
        mlflow.set_tags({"decision": decision.reason, "alias": decision.alias, "version": decision.version})
    return TrainOutcome(
        kind=result.kind,
        run_id=run.info.run_id,
        model_uri=info.model_uri,
        version=decision.version,
        alias=decision.alias,
        decision=decision.reason,
        metrics=result.table,
        facts=result.facts(),
    )


@dataclasses.dataclass(frozen=True)
class RegisteredRisk:
    """A registered churn or propensity model pinned to one version, with what it was trained for.

    Attributes:
        model: The estimator.
        name: Registered model name (``churn``, ``propensity``).
        version: The version the alias pointed at when it was loaded.
        alias: The alias it was looked up by.
        horizon: Label window in days of its training run (``None`` when the run does not say).
        lookback: Population look-back in days of its training run (``None`` when the run does not say).
    """

    model: RiskModel
    name: str
    version: str
    alias: str
    horizon: int | None
    lookback: int | None


def _int_param(params: dict[str, str], key: str) -> int | None:
    value = params.get(key)
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def load_registered_risk(tracking_uri: str, name: str, alias: str = "champion") -> RegisteredRisk:
    """The version behind ``models:/<name>@<alias>``, loaded by its number (so a promotion while it loads
    cannot mix two versions), with the horizon and look-back its run logged.

    Raises:
        ModelNotFoundError: No such registered model or alias, or it is not a churn or propensity model.
        mlflow.exceptions.MlflowException: The registry cannot be read (unusable URI, no answer).
    """
    connect(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        found = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in MISSING_CODES:
            raise
        raise ModelNotFoundError(
            f"no {name} model with alias {alias!r} in {tracking_uri}; train one first: "
            f"`userops train {name}` or `userops pipeline`"
        ) from exc
    version = str(found.version)
    wrapper = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    if not isinstance(wrapper, RiskPyfunc):
        raise ModelNotFoundError(
            f"models:/{name}/{version} in {tracking_uri} is not a churn or propensity model"
        )
    params: dict[str, str] = client.get_run(found.run_id).data.params if found.run_id else {}
    return RegisteredRisk(
        model=wrapper.model,
        name=name,
        version=version,
        alias=alias,
        horizon=_int_param(params, "horizon_days"),
        lookback=_int_param(params, "lookback"),
    )
