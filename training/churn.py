"""Churn and propensity models: back-test, fit, calibrate and compare with baselines (no MLflow here).

``churn`` predicts no activity (any event but a refund) within the horizon; ``propensity`` predicts a
purchase within it. Both are the same calibrated LightGBM estimator (:class:`RiskModel`) with opposite
monotone constraints on recency, trained on back-test slices (:mod:`training.datasets`, bi-weekly as-of
dates, fitting users apart from check users) and compared on the holdout with a recency rule, an RFM
logistic regression and a BG/NBD model. Its inputs include the BG/NBD and Gamma-Gamma outputs computed
point in time for each as-of date, and its hyperparameters come from a small grid scored on the
validation slice (:func:`search_model`). Logging, registering and promoting the result is
:mod:`training.churn_mlflow`'s; :func:`training.churn_run.train_and_register` does both in one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Unpack

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.baselines import BGNBD, RecencyRule, RFMLogistic, rfm_summary
from training.datasets import (
    STACKED_FEATURES,
    BacktestPlan,
    BacktestSet,
    build_backtest,
    labelled_snapshot,
    with_stacked,
)
from training.evaluate import metrics_table
from training.risk_model import RECENCY_FEATURES, RiskModel, RiskParams, Trial

ACTIVITY_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase")
"""Events that count as activity (a refund does not)."""


@dataclass(frozen=True)
class KindSpec:
    """What distinguishes the two model kinds."""

    name: str
    sign: int  # +1: risk rises with recency (churn); -1: it falls (propensity)
    recency_column: str
    bg_event_types: tuple[str, ...] | None  # None: every type but refund


KINDS: dict[str, KindSpec] = {
    "churn": KindSpec("churn", 1, "days_since_last_event", None),
    "propensity": KindSpec("propensity", -1, "days_since_last_purchase", ("purchase",)),
}
MODEL_NAME = "lightgbm"
BASELINES: tuple[str, ...] = ("recency_rule", "rfm_logistic", "bg_nbd")
UNSHIFTED = "lightgbm_unshifted"
"""The model's row at the scored date without the date shift (as calibrated on the latest back-test date)."""
SEARCH_GRID: tuple[RiskParams, ...] = tuple(
    RiskParams(num_leaves=leaves, min_child_samples=child, colsample=cols, reg_lambda=l2)
    for leaves, child in ((4, 200), (7, 100))
    for cols, l2 in ((0.5, 1.0), (0.8, 10.0))
)
"""Hyperparameters tried by :func:`search_model`, each scored on the validation slice (check users)."""


PROPENSITY_DUPLICATES_CHURN = (
    "skipped: the only activity in this data is purchases (and refunds), so the purchase-propensity "
    "label is exactly the opposite of the churn label; the churn model already answers it"
)
"""Why a propensity model is not trained on such data (the run's decision, shown in the summary)."""


def propensity_duplicates_churn(event_types: Iterable[object]) -> bool:
    """Whether propensity's label is the complement of churn's on data with these event types.

    Churn is "no event but a refund in the horizon", propensity "a purchase in the horizon": when every
    event but a refund is a purchase, one is exactly ``1 -`` the other on the same population.
    """
    kinds = {t for t in event_types if isinstance(t, str)} - {"refund"}  # missing types are no activity
    return kinds <= {"purchase"}


def spec_for(kind: str) -> KindSpec:
    """The spec of a model kind.

    Raises:
        ValueError: Unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use churn or propensity")
    return KINDS[kind]


def feature_list(kind: str) -> tuple[list[str], list[str]]:
    """The reviewed feature list of a kind (``features.feature_sets``) plus the BG/NBD and Gamma-Gamma
    inputs computed in training (:data:`training.datasets.STACKED_FEATURES`), and the categorical ones."""
    from features import feature_sets

    names = feature_sets.CHURN_FEATURES if kind == "churn" else feature_sets.PROPENSITY_FEATURES
    return [*names, *STACKED_FEATURES], list(feature_sets.CATEGORICAL_FEATURES)


def new_model(kind: str, seed: int = 0, **params: Unpack[RiskParams]) -> RiskModel:
    """An unfitted model of ``kind`` with its feature list and monotone constraints on recency."""
    spec = spec_for(kind)
    features, categorical = feature_list(kind)
    monotone = dict.fromkeys(RECENCY_FEATURES, spec.sign)
    return RiskModel(features=features, categorical=categorical, monotone=monotone, seed=seed, **params)


def fit_model(kind: str, bt: BacktestSet, seed: int = 0, **params: Unpack[RiskParams]) -> RiskModel:
    """Fit on the back-test's training slice; early stopping and calibration on its validation slice."""
    model = new_model(kind, seed=seed, **params)
    return model.fit(bt.train, bt.train["label"].to_numpy(), bt.valid, bt.valid["label"].to_numpy())


def search_model(
    kind: str,
    bt: BacktestSet,
    seed: int = 0,
    *,
    grid: tuple[RiskParams, ...] = SEARCH_GRID,
    params: RiskParams | None = None,
) -> RiskModel:
    """Fit one model per ``grid`` entry and keep the best validation ROC-AUC (the holdout is not read).

    The trials are kept on the returned model as ``search_`` (parameters, validation ROC-AUC, rounds).
    """
    best: RiskModel | None = None
    best_auc = -np.inf
    trials: list[Trial] = []
    y_valid = bt.valid["label"].to_numpy()
    for trial in grid:
        chosen: RiskParams = {**(params or {}), **trial}
        model = fit_model(kind, bt, seed=seed, **chosen)
        auc = float(roc_auc_score(y_valid, model.predict_raw(bt.valid)))
        trials.append(Trial(params=trial, valid_roc_auc=auc, best_iteration=model.best_iteration_))
        if auc > best_auc:
            best, best_auc = model, auc
    assert best is not None
    best.search_ = trials
    return best


def activity_events(events: pd.DataFrame, spec: KindSpec) -> tuple[str, ...]:
    """Event types that are a BG/NBD "transaction" for a kind."""
    if spec.bg_event_types is not None:
        return spec.bg_event_types
    return tuple(t for t in events["event_type"].dropna().unique() if t != "refund")


def bg_nbd_score(
    events: pd.DataFrame, frame: pd.DataFrame, as_of: date, horizon: int, spec: KindSpec
) -> np.ndarray:
    """BG/NBD probability of the kind's outcome for ``frame``'s users, fitted on history before ``as_of``.

    Churn: ``1 - P(any activity in the horizon)``; propensity: ``P(a purchase in the horizon)``.
    """
    summary = rfm_summary(
        events, pd.Timestamp(as_of), event_types=activity_events(events, spec), user_ids=frame["user_id"]
    )
    x, t_x, big_t = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    seen = summary["n_transactions"].to_numpy() > 0
    model = BGNBD(penalizer=0.001).fit(x[seen], t_x[seen], big_t[seen])
    active = np.where(seen, model.probability_active(horizon / 7.0, x, t_x, big_t), 0.0)
    return 1.0 - active if spec.sign > 0 else active


def holdout_scores(
    model: RiskModel,
    bt: BacktestSet,
    events: pd.DataFrame,
    horizon: int,
    kind: str,
    *,
    frame: pd.DataFrame | None = None,
    as_of: date | None = None,
) -> dict[str, np.ndarray]:
    """Probabilities of the model and of each baseline on the holdout (baselines fitted before it).

    Given ``frame`` and ``as_of`` (the scored date's population), the same models score that instead: the
    model with its shift to the scored date, the baselines as fitted on the back-test. On the holdout the
    model's probabilities are as of its calibration date (the holdout lies between it and the scored date).
    """
    spec = spec_for(kind)
    before = pd.concat([bt.train, bt.valid], ignore_index=True)
    y_before = before["label"].to_numpy()
    rfm_cols = (spec.recency_column, "orders_180d", "spend_180d")
    at = bt.holdout if frame is None else frame
    day = bt.holdout_date if as_of is None else as_of
    return {
        MODEL_NAME: model.predict_proba(at, shifted=frame is not None),
        "recency_rule": RecencyRule(spec.recency_column).fit(before, y_before).predict_proba(at),
        "rfm_logistic": RFMLogistic(rfm_cols).fit(before, y_before).predict_proba(at),
        "bg_nbd": bg_nbd_score(events, at, day, horizon, spec),
    }


@dataclass(frozen=True)
class ChurnOptions:
    """How a churn or propensity model is trained, built once at the edge and passed down whole.

    Attributes:
        lookback: Population: users active in this many days before each as-of date.
        n_dates: Back-test as-of dates.
        step_days: Days between them.
        seed: Model seed (the same seed and data give the same model).
        search: Choose the hyperparameters from :data:`SEARCH_GRID` on the validation slice (else
            ``params`` as given).
        params: Model hyperparameters (see :class:`RiskModel`); a search overrides the ones it tries.
        date_shift: How probabilities move from the calibration date to the scored date: ``auto`` (chosen
            by back-testing the choice) or one of :data:`training.calibration.DATE_SHIFTS`.
    """

    lookback: int = 365
    n_dates: int = 12
    step_days: int = 14
    seed: int = 0
    search: bool = True
    params: RiskParams = field(default_factory=RiskParams)
    date_shift: str = "auto"

    @property
    def backtest(self) -> BacktestPlan:
        """The back-test these options ask for."""
        return BacktestPlan(lookback=self.lookback, n_dates=self.n_dates, step_days=self.step_days)


@dataclass
class TrainResult:
    """A fitted model and its side-by-side evaluation on the holdout.

    Attributes:
        kind: ``churn`` or ``propensity``.
        model: The fitted, calibrated model.
        backtest: The slices it was fitted, validated and checked on.
        scores: Holdout probabilities of the model and of each baseline, by name.
        table: Holdout metrics: one row per model (the model first), one column per metric.
        target: The target date (nothing at or after it was read for training).
        horizon: Label window in days.
        options: The options it was trained with.
        scored: Metrics of the model and each baseline at the target date itself, when the folder already
            holds that date's label window (a back-test of the scored date); else ``None``.
        scored_labels: The outcomes at the target date behind ``scored``.
        scored_scores: The probabilities at the target date behind ``scored``, by model.
    """

    kind: str
    model: RiskModel
    backtest: BacktestSet
    scores: dict[str, np.ndarray]
    table: pd.DataFrame
    target: date
    horizon: int
    options: ChurnOptions
    scored: pd.DataFrame | None = None
    scored_labels: np.ndarray | None = None
    scored_scores: dict[str, np.ndarray] = field(default_factory=dict)

    def facts(self) -> dict[str, object]:
        """What the model was fitted and checked on, as raw values for the caller to show."""
        bt = self.backtest
        return {
            "backtest_dates": list(bt.dates),
            "training_rows": len(bt.train),
            "holdout_users": len(bt.holdout),
            "holdout_date": bt.holdout_date,
            "holdout_rate": float(bt.holdout["label"].mean()),
            "date_shift": self.model.date_shift_,
        }


def train_kind(
    data_dir: str | Path,
    target: date,
    *,
    horizon: int,
    kind: str,
    options: ChurnOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Back-test, fit and evaluate one kind as of ``target``.

    Fitting, calibrating and the shift to the target's base rate read no event at or after ``target``.
    When the folder already holds the target's label window (a back-test of the scored date), the model
    and the baselines are also measured there (:attr:`TrainResult.scored`); nothing is fitted on it.

    Args:
        data_dir: Data folder.
        target: Target date; every label window closes on or before it.
        horizon: Label window in days.
        kind: ``churn`` or ``propensity``.
        options: Back-test, seed and hyperparameters (default: :class:`ChurnOptions`'s defaults).
        progress: Called with a line of text before each long step.

    Returns:
        The fitted model, the back-test and the holdout metrics of the model and the baselines.

    Raises:
        ValueError: Unknown ``kind``.
        TrainingDataError: The data cannot train it (too few usable back-test dates, one outcome only, ...).
    """
    from features.contract import load_table
    from features.errors import DataError
    from features.job import build_features

    options = options or ChurnOptions()
    spec_for(kind)
    bt = build_backtest(
        data_dir, target, horizon=horizon, kind=kind, plan=options.backtest, progress=progress
    )
    if progress is not None:
        progress(f"{kind}: fitting LightGBM on {len(bt.train):,} rows, validating on {len(bt.valid):,}")
    model = (
        search_model(kind, bt, seed=options.seed, params=options.params)
        if options.search
        else fit_model(kind, bt, seed=options.seed, **options.params)
    )
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    events = events.loc[events["ts"] < pd.Timestamp(target)]
    if progress is not None:
        progress(f"{kind}: shifting the probabilities to the base rate as of {target}")
    features = build_features(data_dir, target)
    population = features.loc[
        pd.to_numeric(features["days_since_last_event"], errors="coerce") <= options.lookback
    ].reset_index(drop=True)
    target_frame = with_stacked(population, events, target)
    model.shift_to_date(
        bt.valid,
        bt.valid["label"].to_numpy(),
        target_frame,
        target,
        step_days=options.step_days,
        method=options.date_shift,
    )
    if progress is not None:
        progress(f"{kind}: scoring the model and baselines on the holdout as of {bt.holdout_date}")
    scores = holdout_scores(model, bt, events, horizon, kind)
    table = metrics_table(bt.holdout["label"].to_numpy(), scores)
    result = TrainResult(
        kind=kind,
        model=model,
        backtest=bt,
        scores=scores,
        table=table,
        target=target,
        horizon=horizon,
        options=options,
    )
    try:  # the target's own labels, only when the folder already holds its window: never used to fit
        labelled = labelled_snapshot(
            data_dir,
            target,
            horizon=horizon,
            kind=kind,
            lookback=options.lookback,
            features=features,
            events=events,
        )
    except DataError:
        return result
    if labelled["label"].nunique() == 2:
        result.scored_labels = labelled["label"].to_numpy()
        result.scored_scores = {
            **holdout_scores(model, bt, events, horizon, kind, frame=labelled, as_of=target),
            UNSHIFTED: model.predict_proba(labelled, shifted=False),
        }
        result.scored = metrics_table(result.scored_labels, result.scored_scores)
    return result
