"""The LightGBM risk model behind churn and propensity: fit with early stopping, calibrate, explain, save.

One estimator serves both kinds: it predicts the probability of a binary outcome within the horizon
(churn: no activity; propensity: a purchase). Recency features carry monotone constraints so that, all
else equal, more recent activity never raises the churn risk (and never lowers the purchase propensity);
the calibration map is non-decreasing, so the calibrated probability keeps that property.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypedDict

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.calibration import Calibrator, DatedScores, choose_date_shift, date_offset, shift_logit
from training.drift import build_reference
from training.errors import TrainingDataError

RECENCY_FEATURES: tuple[str, ...] = (
    "days_since_last_event",
    "days_since_last_purchase",
    "purchase_overdue_ratio",
)
"""Features that measure time since the last activity: risk may only rise with them."""

NOT_FEATURES: frozenset[str] = frozenset({"user_id", "as_of", "label", "churned", "converted"})


class RiskParams(TypedDict, total=False):
    """Hyperparameters of :class:`RiskModel` that a caller or a search may set (see its arguments)."""

    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    subsample: float
    colsample: float
    reg_lambda: float
    early_stopping_rounds: int
    calibration: str
    num_threads: int


@dataclass(frozen=True)
class Trial:
    """One trial of a hyperparameter search: what it set, how it scored on validation, its rounds."""

    params: RiskParams
    valid_roc_auc: float
    best_iteration: int


class RiskModel:
    """Gradient-boosted probability of an outcome within the horizon, calibrated on a validation slice.

    Args:
        features: Feature columns (default: every column of the training frame but ids and labels).
            Columns absent from the training frame or null everywhere are dropped at fit time.
        categorical: Which of them are categorical.
        monotone: Feature -> +1 (score may only rise with it) or -1 (may only fall).
        n_estimators: Most boosting rounds; early stopping on the validation slice picks fewer.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_child_samples: Fewest rows in a leaf.
        subsample: Row share per round.
        colsample: Feature share per tree.
        reg_lambda: L2 penalty on leaf values.
        early_stopping_rounds: Rounds without improvement of the validation log-loss before stopping.
        calibration: ``auto``, ``isotonic`` or ``platt``.
        seed: Seed of every random choice (the same seed gives the same model).
        num_threads: Threads LightGBM uses (fixed, so results do not depend on the machine).
    """

    def __init__(  # noqa: PLR0913 - estimator contract: each hyperparameter is a keyword of __init__
        self,
        features: list[str] | None = None,
        categorical: list[str] | None = None,
        monotone: dict[str, int] | None = None,
        n_estimators: int = 2000,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        min_child_samples: int = 40,
        subsample: float = 0.8,
        colsample: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 100,
        calibration: str = "auto",
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.features = features
        self.categorical = categorical
        self.monotone = monotone
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample = colsample
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.calibration = calibration
        self.seed = seed
        self.num_threads = num_threads
        self.search_: list[Trial] = []  # trials of a hyperparameter search, when one chose this

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters (for MLflow and for :meth:`load`)."""
        return {
            k: getattr(self, k)
            for k in (
                "features",
                "categorical",
                "monotone",
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "subsample",
                "colsample",
                "reg_lambda",
                "early_stopping_rounds",
                "calibration",
                "seed",
                "num_threads",
            )
        }

    # ---- data preparation -------------------------------------------------------------------------
    def _select(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        wanted = (
            self.features
            if self.features is not None
            else [c for c in frame.columns if c not in NOT_FEATURES]
        )
        categorical = set(self.categorical or [])
        present = [c for c in wanted if c in frame.columns and frame[c].notna().any()]
        for c in present:  # text columns not declared categorical are categorical all the same
            if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]):
                categorical.add(c)
        return present, [c for c in present if c in categorical]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: numeric columns as floats, categoricals with the training levels.

        Raises:
            TrainingDataError: ``frame`` lacks a feature the model was fitted on.
        """
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise TrainingDataError(
                f"feature frame lacks {len(missing)} model feature(s): {', '.join(missing[:5])}; "
                "build the features with this version or train the model again"
            )
        out: dict[str, Any] = {}
        for c in self.features_:
            if c in self.categories_:
                known = frame[c].notna() & frame[c].isin(self.categories_[c])
                # a value unseen in training is missing to the model, said explicitly (pandas 4 refuses it)
                values = frame[c].astype("object").where(known, None)
                out[c] = pd.Categorical(values, categories=self.categories_[c])
            else:
                out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64").to_numpy()
        return pd.DataFrame(out, index=frame.index)

    def _params(self) -> dict[str, Any]:
        mono = self.monotone or {}
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1 if self.subsample < 1 else 0,
            "feature_fraction": self.colsample,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            "monotone_constraints": [int(mono.get(c, 0)) for c in self.features_],
            "monotone_constraints_method": "intermediate",
            "max_cat_to_onehot": 8,
        }

    # ---- estimator contract -----------------------------------------------------------------------
    def fit(
        self, frame: pd.DataFrame, y: np.ndarray, valid_frame: pd.DataFrame, valid_y: np.ndarray
    ) -> RiskModel:
        """Fit on the training slice, stop early and calibrate on the (later) validation slice.

        Early stopping uses every validation row; the calibration map only the rows of the latest
        ``as_of`` (all rows when there is no ``as_of`` column), the closest to scoring time. The drift
        reference is likewise the training rows of the latest ``as_of``: the snapshot whose population
        is closest to the one scored.

        Args:
            frame: Training features.
            y: Training outcomes (0/1).
            valid_frame: Validation features (a later as-of date than every training row).
            valid_y: Validation outcomes.

        Returns:
            ``self``.

        Raises:
            TrainingDataError: A slice has one outcome only, or no feature column has values.
        """
        y, valid_y = np.asarray(y, dtype=int), np.asarray(valid_y, dtype=int)
        if len(np.unique(y)) < 2 or len(np.unique(valid_y)) < 2:
            raise TrainingDataError(
                "training and validation slices each need both outcomes (some users with it, some "
                "without); use more history or another horizon"
            )
        self.features_, categorical = self._select(frame)
        if not self.features_:
            raise TrainingDataError("no usable feature columns in the training frame (all missing or empty)")
        self.categories_ = {
            c: sorted(map(str, pd.concat([frame[c], valid_frame[c]]).dropna().unique())) for c in categorical
        }
        x, xv = self.prepare(frame), self.prepare(valid_frame)
        train = lgb.Dataset(x, y, categorical_feature=categorical or "auto", free_raw_data=False)
        valid = lgb.Dataset(xv, valid_y, reference=train, free_raw_data=False)
        evals: dict[str, Any] = {}
        self.booster_ = lgb.train(
            self._params(),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(self.early_stopping_rounds, verbose=False),
                lgb.record_evaluation(evals),
            ],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        latest = _latest(valid_frame)
        self.calibrator_ = Calibrator(self.calibration, seed=self.seed).fit(
            self.predict_raw(valid_frame.loc[latest]), valid_y[latest]
        )
        self.drift_reference_ = build_reference(
            frame.loc[_latest(frame)],
            [c for c in self.features_ if c not in self.categories_],
            list(self.categories_),
        )
        self.train_rate_ = float(y.mean())
        self.date_shift_ = "none"
        self.date_offset_ = 0.0
        self.date_shift_backtest_: dict[str, float] = {}
        return self

    def shift_to_date(
        self,
        valid_frame: pd.DataFrame,
        valid_y: np.ndarray,
        target: pd.DataFrame,
        target_date: date,
        *,
        step_days: int,
        method: str = "auto",
    ) -> RiskModel:
        """Move the probabilities from the calibration date to ``target_date`` (no label of it is read).

        The calibration map stays as fitted on the latest validation date; one log-odds offset moves every
        probability to the scored date's base rate (:mod:`training.calibration`). With ``method="auto"``
        the way the offset is estimated is chosen by back-testing it on the validation dates: calibrate at
        one, shift to the date as many steps later as the scored date is, measure the ECE there.

        Args:
            valid_frame: The validation slice (``as_of`` column), as passed to :meth:`fit`.
            valid_y: Its outcomes.
            target: The scored date's population (features only).
            target_date: The scored date.
            step_days: Days between back-test dates.
            method: ``auto`` or one of :data:`training.calibration.DATE_SHIFTS`.

        Returns:
            ``self`` with ``date_shift_``, ``date_offset_`` and ``date_shift_backtest_`` set.
        """
        as_of = pd.to_datetime(valid_frame["as_of"]).dt.date.to_numpy()
        raw = self.predict_raw(valid_frame)
        y = np.asarray(valid_y, dtype=int)
        history = [DatedScores(d, raw[as_of == d], y[as_of == d]) for d in sorted(set(as_of))]
        ahead = max(1, round((target_date - history[-1].as_of).days / step_days))
        if method == "auto":
            method, self.date_shift_backtest_ = choose_date_shift(
                history, ahead, method=self.calibrator_.method_, seed=self.seed
            )
        self.date_shift_ = method
        self.date_offset_ = date_offset(
            method, self.calibrator_, history, DatedScores(target_date, self.predict_raw(target))
        )
        return self

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's uncalibrated probability."""
        return np.asarray(self.booster_.predict(self.prepare(frame), num_iteration=self.best_iteration_))

    def predict_proba(self, frame: pd.DataFrame, *, shifted: bool = True) -> np.ndarray:
        """Calibrated probability of the outcome within the horizon, one per row.

        Args:
            frame: Feature rows.
            shifted: Apply the date shift to the scored date (:meth:`shift_to_date`); ``False`` gives the
                probabilities as of the calibration date (for back-test dates before the scored one).
        """
        p = self.calibrator_.predict(self.predict_raw(frame))
        return shift_logit(p, self.date_offset_) if shifted else p

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each feature's additive contribution to each row's log-odds (TreeSHAP), same index as ``frame``."""
        raw = self.booster_.predict(
            self.prepare(frame), num_iteration=self.best_iteration_, pred_contrib=True
        )
        return pd.DataFrame(np.asarray(raw)[:, :-1], columns=self.features_, index=frame.index)

    def feature_importance(self) -> pd.Series:
        """Total gain of each feature, largest first."""
        gain = self.booster_.feature_importance("gain", iteration=self.best_iteration_)
        return pd.Series(gain, index=self.features_).sort_values(ascending=False)

    def save(self, path: str | Path) -> Path:
        """Write the model into folder ``path`` (booster text and a JSON of everything else)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(path / "booster.txt"), num_iteration=self.best_iteration_)
        meta = {
            "params": self.get_params(),
            "features_": self.features_,
            "categories_": self.categories_,
            "best_iteration_": self.best_iteration_,
            "calibrator_": self.calibrator_.to_dict(),
            "drift_reference_": self.drift_reference_,
            "train_rate_": self.train_rate_,
            "date_shift_": self.date_shift_,
            "date_offset_": self.date_offset_,
            "date_shift_backtest_": self.date_shift_backtest_,
        }
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RiskModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model = cls(**meta["params"])
        model.features_ = list(meta["features_"])
        model.categories_ = {k: list(v) for k, v in meta["categories_"].items()}
        model.best_iteration_ = int(meta["best_iteration_"])
        model.booster_ = lgb.Booster(model_file=str(path / "booster.txt"))
        model.calibrator_ = Calibrator.from_dict(meta["calibrator_"])
        model.drift_reference_ = meta["drift_reference_"]
        model.train_rate_ = float(meta["train_rate_"])
        model.date_shift_ = str(meta.get("date_shift_", "none"))  # models saved before date shifts had none
        model.date_offset_ = float(meta.get("date_offset_", 0.0))
        model.date_shift_backtest_ = dict(meta.get("date_shift_backtest_", {}))
        return model


def _latest(frame: pd.DataFrame) -> np.ndarray:
    """Rows of the latest ``as_of`` (every row when the frame has no ``as_of`` column)."""
    if "as_of" not in frame or frame["as_of"].isna().all():
        return np.ones(len(frame), dtype=bool)
    as_of = pd.to_datetime(frame["as_of"])
    return np.asarray(as_of == as_of.max())
