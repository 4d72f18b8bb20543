"""Point-in-time training sets by back-testing: several as-of dates whose label windows close in time.

For a target date ``T`` and horizon ``H`` the latest usable as-of date is ``T - H`` (its label window
``[T - H, T)`` ends before ``T``); earlier ones step back by ``step_days``. Features for each as-of date
come from the feature job (events before that date) plus :data:`STACKED_FEATURES` (BG/NBD and Gamma-Gamma
fitted on events before that date), labels from ``features.labels`` (events in the window). The slices are
time-ordered, never random: the latest date is the holdout every model is compared on, the dates before it
the validation slice (early stopping, model choice; the latest of them calibrates), the rest the training
slice; and users are split once by a hash so that no user's rows are in both training and
validation/holdout (see :func:`build_backtest`). Nothing at or after ``T`` is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from training.baselines import BGNBD, GammaGamma, rfm_summary
from training.errors import TrainingDataError

LABELS: dict[str, str] = {"churn": "churned", "propensity": "converted"}
"""Label column of each model kind."""


def backtest_dates(target: date, horizon: int, *, n_dates: int = 6, step_days: int = 30) -> list[date]:
    """As-of dates whose label windows ``[d, d + horizon)`` end on or before ``target``, oldest first."""
    latest = target - timedelta(days=horizon)
    return [latest - timedelta(days=step_days * k) for k in range(n_dates)][::-1]


STACKED_FEATURES: tuple[str, ...] = (
    "bg_frequency",
    "bg_recency_weeks",
    "bg_T_weeks",
    "bg_rate_per_week",
    "bg_silent_share",
    "bg_p_alive",
    "bg_expected_13w",
    "gg_order_value",
)
"""Model inputs computed in training from the events before each as-of date: the BG/NBD summary
(``frequency``, ``recency``, ``T`` in weeks over activity days, every event type but refunds), the same
normalised by tenure (repeat days per week, share of the tenure since the last activity), the BG/NBD
probability alive and expected activity days in the next 13 weeks (fitted on the given users' history
before the as-of date), and the Gamma-Gamma expected order value (purchases)."""


def stacked_features(events: pd.DataFrame, as_of: date, user_ids: pd.Series) -> pd.DataFrame:
    """:data:`STACKED_FEATURES` of ``user_ids`` from events before ``as_of`` (point in time).

    Both models are fitted on these users' history before ``as_of`` only, so deleting later events
    changes nothing.

    Args:
        events: Contract events (``user_id, ts, event_type``, ``amount`` when known).
        as_of: Only events with ``ts < as_of`` are read.
        user_ids: The users to describe (usually the population as of ``as_of``).

    Returns:
        ``user_id`` then :data:`STACKED_FEATURES`, one row per user of ``user_ids`` in that order.
    """
    ts = pd.Timestamp(as_of)
    types = tuple(t for t in events["event_type"].dropna().unique() if t != "refund")
    s = rfm_summary(events, ts, event_types=types, user_ids=user_ids)
    x, t_x, big_t = (s[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    seen = s["n_transactions"].to_numpy() > 0
    out = pd.DataFrame({"user_id": s["user_id"].to_numpy()})
    out["bg_frequency"] = np.where(seen, x, np.nan)
    out["bg_recency_weeks"] = np.where(seen, t_x, np.nan)
    out["bg_T_weeks"] = np.where(seen, big_t, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bg_rate_per_week"] = np.where(seen & (big_t > 0), x / big_t, np.nan)
        out["bg_silent_share"] = np.where(seen & (big_t > 0), (big_t - t_x) / big_t, np.nan)
    p_alive = np.full(len(s), np.nan)
    expected = np.full(len(s), np.nan)
    fit = seen & (big_t > 0)
    if fit.sum() >= 10:
        bg = BGNBD(penalizer=0.001).fit(x[fit], t_x[fit], big_t[fit])
        p_alive = np.where(seen, bg.probability_alive(x, t_x, big_t), np.nan)
        expected = np.where(seen, bg.expected_transactions(13.0, x, t_x, big_t), np.nan)
    out["bg_p_alive"] = p_alive
    out["bg_expected_13w"] = expected
    out["gg_order_value"] = _order_value(events, ts, user_ids)
    return out


def _order_value(events: pd.DataFrame, ts: pd.Timestamp, user_ids: pd.Series) -> np.ndarray:
    """Gamma-Gamma expected spend per purchase day (nan without amounts or too few repeat buyers)."""
    if "amount" not in events or not events["amount"].notna().any():
        return np.full(len(user_ids), np.nan)
    p = rfm_summary(events, ts, event_types=("purchase",), user_ids=user_ids)
    x, m = p["frequency"].to_numpy(dtype=float), p["monetary_value"].to_numpy(dtype=float)
    try:
        value = GammaGamma(penalizer=0.001).fit(x, m).expected_spend(x, m)
    except TrainingDataError:
        return np.full(len(user_ids), np.nan)
    return np.where(p["n_transactions"].to_numpy() > 0, value, np.nan)


def with_stacked(frame: pd.DataFrame, events: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """``frame`` (one row per user, ``user_id``) with :data:`STACKED_FEATURES` added, same row order."""
    base = frame.drop(columns=[c for c in STACKED_FEATURES if c in frame])
    extra = stacked_features(events, as_of, base["user_id"].astype(str))
    extra.index = base.index
    return pd.concat([base, extra.drop(columns="user_id")], axis=1)


def load_events_before(data_dir: str | Path, end: date) -> pd.DataFrame:
    """The data folder's events with ``ts < end``."""
    from features.contract import load_table

    events = load_table(data_dir, "events", required=True)
    assert events is not None
    return events.loc[events["ts"] < pd.Timestamp(end)]


def labelled_snapshot(
    data_dir: str | Path,
    as_of: date,
    *,
    horizon: int,
    kind: str,
    lookback: int,
    end: date | None = None,
    events: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features as of ``as_of`` joined with the label, over users active in the ``lookback`` days before it.

    ``end`` (exclusive) bounds what the labels may read: a window reaching past it raises. The
    :data:`STACKED_FEATURES` come from ``events`` (default: the folder's), before ``as_of`` only; the
    other features from ``features``, the feature job's snapshot as of ``as_of`` (default: built now).

    Returns:
        ``user_id, as_of``, the features, and ``label`` (0/1).
    """
    from features.job import build_features
    from features.labels import churn_labels, conversion_labels

    if kind not in LABELS:
        raise ValueError(f"unknown model kind {kind!r}; use churn or propensity")
    population = churn_labels(data_dir, as_of, horizon=horizon, lookback=lookback, end=end)
    if kind == "churn":
        labels = population.rename(columns={"churned": "label"})[["user_id", "label"]]
    else:
        conv = conversion_labels(data_dir, as_of, horizon, end=end)
        labels = population[["user_id"]].merge(conv, on="user_id", how="left")
        labels = labels.assign(label=labels["converted"].fillna(False))[["user_id", "label"]]
    if features is None:
        features = build_features(data_dir, as_of)
    frame = features.merge(labels, on="user_id", how="inner")
    frame["label"] = frame["label"].astype(int)
    if events is None:
        events = load_events_before(data_dir, as_of)
    return with_stacked(frame, events, as_of)


def check_users(user_ids: pd.Series, share: float) -> np.ndarray:
    """Whether each user is a check user (validation and holdout), by a stable hash of the id."""
    hashed = pd.util.hash_pandas_object(user_ids.astype(str), index=False).to_numpy()
    return np.asarray((hashed % 10_000) < share * 10_000)


@dataclass
class BacktestSet:
    """Slices of a back-test, ordered by time and split by user.

    ``train``: fitting users at the dates before ``valid_date``; ``valid``: check users at every date
    before ``holdout_date`` (early stopping, model choice; the rows as of ``valid_date`` calibrate);
    ``holdout``: check users as of ``holdout_date``.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    dates: list[date]
    holdout_date: date
    valid_date: date
    skipped: list[date]

    def window(self) -> dict[str, str]:
        """The data window, for the run's parameters."""
        train_dates = sorted({d for d in self.dates if d < self.valid_date})
        return {
            "train_from": str(train_dates[0]),
            "train_to": str(train_dates[-1]),
            "valid_as_of": str(self.valid_date),
            "holdout_as_of": str(self.holdout_date),
        }


def _snapshots(data_dir: str | Path, dates: list[date]) -> list[pd.DataFrame]:
    """Feature snapshots as of ``dates`` (ascending) from one feature-job run, which aggregates each day
    once for every date, in a scratch folder (the data folder's snapshots and online copy are untouched)."""
    import tempfile

    from features.job import run_job

    with tempfile.TemporaryDirectory() as tmp:
        paths = run_job(data_dir, dates, Path(tmp) / "features", write_online=False)
        return [pd.read_parquet(p) for p in paths]


@dataclass(frozen=True)
class BacktestPlan:
    """Which as-of dates a back-test takes and how it splits users.

    Attributes:
        lookback: Population: users active in this many days before each as-of date.
        n_dates: Back-test as-of dates, the latest ``horizon`` days before the target.
        step_days: Days between them.
        min_rows: A date with fewer users (or a single outcome) is skipped.
        check_share: Share of users kept for validation and holdout (never fitted on).
    """

    lookback: int = 365
    n_dates: int = 6
    step_days: int = 30
    min_rows: int = 50
    check_share: float = 0.3


def build_backtest(
    data_dir: str | Path,
    target: date,
    *,
    horizon: int,
    kind: str,
    plan: BacktestPlan | None = None,
    progress: Callable[[str], None] | None = None,
) -> BacktestSet:
    """Labelled snapshots for the back-test dates, split into training, validation and holdout by time.

    Dates with fewer than ``plan.min_rows`` users or a single outcome are skipped (the earliest dates of
    a short history). Users are split once, by a hash of their id, into fitting users and check users
    (``plan.check_share`` of them): the training slice holds only fitting users' rows, the validation
    and holdout slices only check users' rows. With as-of dates closer than the horizon, a user's label
    windows overlap from one date to the next, so a booster that recognises a training user would
    otherwise "predict" that user's validation label from the training one.

    Args:
        data_dir: Data folder.
        target: Every label window closes on or before it; nothing at or after it is read.
        horizon: Label window in days.
        kind: ``churn`` or ``propensity``.
        plan: Dates, population and user split (default: :class:`BacktestPlan`'s defaults).
        progress: Called with a line of text before each long step.

    Raises:
        TrainingDataError: Fewer than three usable dates.
    """
    plan = plan or BacktestPlan()
    frames: dict[date, pd.DataFrame] = {}
    skipped: list[date] = []
    events = load_events_before(data_dir, target)
    dates = backtest_dates(target, horizon, n_dates=plan.n_dates, step_days=plan.step_days)
    if progress is not None:
        progress(f"{kind}: feature snapshots as of {dates[0]} .. {dates[-1]}")
    for d, snapshot in zip(dates, _snapshots(data_dir, dates), strict=True):
        if progress is not None:
            progress(f"{kind}: labels and BG/NBD inputs as of {d}")
        frame = labelled_snapshot(
            data_dir,
            d,
            horizon=horizon,
            kind=kind,
            lookback=plan.lookback,
            end=target,
            events=events,
            features=snapshot,
        )
        if len(frame) < plan.min_rows or frame["label"].nunique() < 2:
            skipped.append(d)
            continue
        frames[d] = frame
    usable = sorted(frames)
    if len(usable) < 3:
        raise TrainingDataError(
            f"{kind}: only {len(usable)} usable back-test date(s) before {target} with horizon "
            f"{horizon} days (need 3: training, validation, holdout); use more history or a "
            "shorter --horizon"
        )
    holdout_date, valid_date = usable[-1], usable[-2]
    check = {d: frames[d].loc[check_users(frames[d]["user_id"], plan.check_share)] for d in usable}
    fit = {d: frames[d].loc[~check_users(frames[d]["user_id"], plan.check_share)] for d in usable}
    return BacktestSet(
        train=pd.concat([fit[d] for d in usable[:-2]], ignore_index=True),
        valid=pd.concat([check[d] for d in usable[:-1]], ignore_index=True),
        holdout=check[holdout_date].reset_index(drop=True),
        dates=usable,
        holdout_date=holdout_date,
        valid_date=valid_date,
        skipped=skipped,
    )
