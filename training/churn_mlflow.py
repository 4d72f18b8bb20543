"""MLflow side of the churn and propensity models: the pyfunc wrapper, the run's logging, promotion, loading.

The logged model is a pyfunc around a saved :class:`RiskModel` (booster, calibration map, drift reference),
so ``models:/churn@champion`` both scores through MLflow's generic interface and gives back the
estimator for reasons and drift (:func:`load_risk_model`).
"""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.metrics import roc_auc_score

from training.evaluate import format_table
from training.plots import calibration_figure, importance_figure, lift_figure, roc_figure
from training.registry import Decision, promote, use_experiment
from training.risk_model import RiskModel

if TYPE_CHECKING:
    from training.churn import TrainResult

PROMOTION_METRIC = "roc_auc"


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
        RuntimeError: No such registered model or alias in the tracking store.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    except mlflow.exceptions.MlflowException as exc:
        raise RuntimeError(
            f"no {name} model with alias {alias!r} in {tracking_uri}; run `userops train {name}` or "
            f"`userops pipeline` first"
        ) from exc
    wrapper = loaded.unwrap_python_model()
    return wrapper.model  # type: ignore[no-any-return]


def _log_plots(result: TrainResult) -> None:
    y = result.backtest.holdout["label"].to_numpy()
    title = f"{result.kind}, holdout as of {result.backtest.holdout_date}"
    figures = {
        "plots/roc.png": roc_figure(y, result.scores, title),
        "plots/calibration.png": calibration_figure(y, result.scores, title),
        "plots/lift.png": lift_figure(y, result.scores, title),
        "plots/feature_importance.png": importance_figure(result.model.feature_importance(), title),
    }
    import matplotlib.pyplot as plt

    for path, fig in figures.items():
        mlflow.log_figure(fig, path)
        plt.close(fig)


def log_and_promote(
    result: TrainResult,
    *,
    data_dir: str | Path,
    target: date,
    horizon: int,
    tracking_uri: str,
    options: dict[str, object],
) -> tuple[Decision, str]:
    """Log one run (parameters, data window, metrics, plots, model) and promote the model.

    Returns:
        The promotion decision and the run id.
    """
    use_experiment(tracking_uri, result.kind, Path(data_dir) / "mlartifacts")
    bt, model = result.backtest, result.model
    holdout = bt.holdout
    y = holdout["label"].to_numpy()
    with mlflow.start_run(run_name=f"{result.kind} as of {target}") as run:
        params: dict[str, object] = {
            "kind": result.kind,
            "target_as_of": str(target),
            "horizon_days": horizon,
            "backtest_dates": ",".join(str(d) for d in bt.dates),
            "skipped_dates": ",".join(map(str, bt.skipped)),
            "train_rows": len(bt.train),
            "valid_rows": len(bt.valid),
            "holdout_rows": len(holdout),
            "best_iteration": model.best_iteration_,
            "calibration": model.calibrator_.method_,
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
                mlflow.log_params({k: v for k, v in trial.items() if k != "valid_roc_auc"})
                mlflow.log_metric("valid_roc_auc", float(trial["valid_roc_auc"]))  # type: ignore[arg-type]
        metrics = {"holdout_outcome_rate": float(y.mean())}
        for name, row in result.table.iterrows():
            prefix = "" if name == "lightgbm" else f"{name}_"
            metrics.update({f"{prefix}{k}": float(v) for k, v in row.items() if np.isfinite(v)})
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

        score = float(result.table[PROMOTION_METRIC].to_numpy()[list(result.table.index).index("lightgbm")])
        decision = promote(
            tracking_uri=tracking_uri,
            name=result.kind,
            model_uri=info.model_uri,
            score=score,
            metric=PROMOTION_METRIC,
            score_champion=score_champion,
        )
        mlflow.set_tags({"decision": decision.reason, "alias": decision.alias, "version": decision.version})
    return decision, run.info.run_id
