"""Churn and propensity models: back-test, fit, calibrate, compare with baselines, log and promote.

``churn`` predicts no activity (any event but a refund) within the horizon; ``propensity`` predicts a
purchase within it. Both are the same calibrated LightGBM estimator (:class:`RiskModel`) with opposite
monotone constraints on recency, trained on back-test slices (:mod:`training.datasets`, bi-weekly as-of
dates, fitting users apart from check users) and compared on the holdout with a recency rule, an RFM
logistic regression and a BG/NBD model. Its inputs include the BG/NBD and Gamma-Gamma outputs computed
point in time for each as-of date, and its hyperparameters come from a small grid scored on the
validation slice (:func:`search_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from training.baselines import BGNBD, RecencyRule, RFMLogistic, rfm_summary
from training.datasets import STACKED_FEATURES, BacktestSet, build_backtest
from training.evaluate import metrics_table
from training.risk_model import RECENCY_FEATURES, RiskModel

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
SEARCH_GRID: tuple[dict[str, object], ...] = tuple(
    {"num_leaves": leaves, "min_child_samples": child, "colsample": cols, "reg_lambda": l2}
    for leaves, child in ((4, 200), (7, 100))
    for cols, l2 in ((0.5, 1.0), (0.8, 10.0))
)
"""Hyperparameters tried by :func:`search_model`, each scored on the validation slice (check users)."""


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


def new_model(kind: str, seed: int = 0, **params: object) -> RiskModel:
    """An unfitted model of ``kind`` with its feature list and monotone constraints on recency."""
    spec = spec_for(kind)
    features, categorical = feature_list(kind)
    monotone = dict.fromkeys(RECENCY_FEATURES, spec.sign)
    return RiskModel(features=features, categorical=categorical, monotone=monotone, seed=seed, **params)  # type: ignore[arg-type]


def fit_model(kind: str, bt: BacktestSet, seed: int = 0, **params: object) -> RiskModel:
    """Fit on the back-test's training slice; early stopping and calibration on its validation slice."""
    model = new_model(kind, seed=seed, **params)
    return model.fit(bt.train, bt.train["label"].to_numpy(), bt.valid, bt.valid["label"].to_numpy())


def search_model(
    kind: str,
    bt: BacktestSet,
    seed: int = 0,
    *,
    grid: tuple[dict[str, object], ...] = SEARCH_GRID,
    params: dict[str, object] | None = None,
) -> RiskModel:
    """Fit one model per ``grid`` entry and keep the best validation ROC-AUC (the holdout is not read).

    The trials are kept on the returned model as ``search_`` (parameters, validation ROC-AUC, rounds).
    """
    best: RiskModel | None = None
    best_auc = -np.inf
    trials: list[dict[str, object]] = []
    y_valid = bt.valid["label"].to_numpy()
    for trial in grid:
        model = fit_model(kind, bt, seed=seed, **{**(params or {}), **trial})
        auc = float(roc_auc_score(y_valid, model.predict_raw(bt.valid)))
        trials.append({**trial, "valid_roc_auc": auc, "best_iteration": model.best_iteration_})
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
    model: RiskModel, bt: BacktestSet, events: pd.DataFrame, horizon: int, kind: str
) -> dict[str, np.ndarray]:
    """Probabilities of the model and of each baseline on the holdout (baselines fitted before it)."""
    spec = spec_for(kind)
    before = pd.concat([bt.train, bt.valid], ignore_index=True)
    y_before = before["label"].to_numpy()
    rfm_cols = (spec.recency_column, "orders_180d", "spend_180d")
    return {
        MODEL_NAME: model.predict_proba(bt.holdout),
        "recency_rule": RecencyRule(spec.recency_column).fit(before, y_before).predict_proba(bt.holdout),
        "rfm_logistic": RFMLogistic(rfm_cols).fit(before, y_before).predict_proba(bt.holdout),
        "bg_nbd": bg_nbd_score(events, bt.holdout, bt.holdout_date, horizon, spec),
    }


@dataclass
class TrainResult:
    """A fitted model and its side-by-side evaluation on the holdout."""

    kind: str
    model: RiskModel
    backtest: BacktestSet
    scores: dict[str, np.ndarray]
    table: pd.DataFrame


def train_kind(
    data_dir: str | Path,
    target: date,
    *,
    horizon: int,
    kind: str,
    lookback: int = 365,
    n_dates: int = 12,
    step_days: int = 14,
    seed: int = 0,
    search: bool = True,
    progress: Callable[[str], None] | None = None,
    **params: object,
) -> TrainResult:
    """Back-test, fit and evaluate one kind as of ``target`` (reads no event at or after it).

    Args:
        data_dir: Data folder.
        target: Target date; every label window closes on or before it.
        horizon: Label window in days.
        kind: ``churn`` or ``propensity``.
        lookback: Population: users active in this many days before each as-of date.
        n_dates: Back-test as-of dates.
        step_days: Days between them.
        seed: Model seed.
        search: Choose the hyperparameters from :data:`SEARCH_GRID` on the validation slice (else
            ``params`` as given).
        progress: Called with a line of text before each long step.
        **params: Model hyperparameters (see :class:`RiskModel`).

    Returns:
        The fitted model, the back-test and the holdout metrics of the model and the baselines.
    """
    from features.contract import load_table

    spec_for(kind)
    bt = build_backtest(
        data_dir,
        target,
        horizon=horizon,
        kind=kind,
        lookback=lookback,
        n_dates=n_dates,
        step_days=step_days,
        progress=progress,
    )
    if progress is not None:
        progress(f"{kind}: fitting LightGBM on {len(bt.train):,} rows, validating on {len(bt.valid):,}")
    model = (
        search_model(kind, bt, seed=seed, params=params)
        if search
        else fit_model(kind, bt, seed=seed, **params)
    )
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    events = events.loc[events["ts"] < pd.Timestamp(target)]
    if progress is not None:
        progress(f"{kind}: scoring the model and baselines on the holdout as of {bt.holdout_date}")
    scores = holdout_scores(model, bt, events, horizon, kind)
    table = metrics_table(bt.holdout["label"].to_numpy(), scores)
    return TrainResult(kind=kind, model=model, backtest=bt, scores=scores, table=table)


def train_and_register(
    *, data_dir: str | Path, as_of: date, horizon: int, tracking_uri: str, kind: str, **options: object
) -> dict[str, object]:
    """Train ``kind`` as of ``as_of``, log the run to MLflow (experiment ``kind``) and promote it.

    The new version becomes ``champion`` only if its holdout ROC-AUC beats the current champion's,
    re-scored on the same holdout; otherwise ``challenger``.

    Args:
        data_dir: Data folder (artifacts go to ``data_dir/mlartifacts``).
        as_of: Target date.
        horizon: Label window in days.
        tracking_uri: MLflow tracking and registry URI.
        kind: ``churn`` or ``propensity``.
        **options: Passed to :func:`train_kind` (``lookback``, ``n_dates``, ``step_days``, ``seed``, ...).

    Returns:
        Summary rows: holdout date and size, the metrics table in brief, the version, alias and reason.
    """
    from training.churn_mlflow import log_and_promote

    result = train_kind(data_dir, as_of, horizon=horizon, kind=kind, **options)  # type: ignore[arg-type]
    decision, run_id = log_and_promote(
        result, data_dir=data_dir, target=as_of, horizon=horizon, tracking_uri=tracking_uri, options=options
    )
    bt = result.backtest
    rows: dict[str, object] = {
        "back-test dates": ", ".join(str(d) for d in bt.dates),
        "training rows": len(bt.train),
        "holdout": f"{len(bt.holdout):,} users as of {bt.holdout_date} "
        f"(outcome rate {bt.holdout['label'].mean():.3f})",
    }
    for name, row in result.table.iterrows():
        rows[f"holdout {name}"] = " ".join(f"{k} {v:.3f}" for k, v in row.items())
    rows.update(
        {"run": run_id, "version": decision.version, "alias": decision.alias, "decision": decision.reason}
    )
    return rows
