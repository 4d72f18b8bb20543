"""Labels as of a date, and the back-test dates that stack into a training set.

* churn: for users with qualifying activity (any event except ``refund``) in ``[as_of - lookback,
  as_of)``, ``churned`` is true when they have no qualifying activity in ``[as_of, as_of + horizon)``.
* conversion: for users who signed up before ``as_of``, ``converted`` is true when they make a purchase
  in ``[as_of, as_of + horizon)``.

A label window never reaches past the data: asking for one that ends after the data's last day raises.
Features as of D read only ``ts < D``; labels only ``[D, D + horizon)`` (and the look-back for the churn
population), so stacking several as-of dates whose windows end by a target date is leak-free.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.errors import DataError
from features.sources import Sources, as_of_timestamp, open_sources, population

DateLike = str | dt.date | pd.Timestamp


def _lit(ts: pd.Timestamp) -> ir.Scalar:
    return ibis.literal(ts.to_pydatetime(), "timestamp")


def data_end(src: Sources) -> pd.Timestamp:
    """The exclusive end of the data: the day after the day of the last event.

    Raises:
        DataError: The events table has no rows.
    """
    last = src.events.ts.cast("timestamp").max().execute()
    if last is None or pd.isna(last):
        raise DataError(f"{src.events_path}: the events table has no rows, so no label can be read")
    return pd.Timestamp(last).normalize() + pd.Timedelta(days=1)


def _window(
    src: Sources, as_of: DateLike, horizon: int, end: DateLike | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = as_of_timestamp(as_of)
    if horizon < 1:
        raise DataError(f"horizon must be at least 1 day, got {horizon}")
    stop = start + pd.Timedelta(days=horizon)
    limit = as_of_timestamp(end) if end is not None else data_end(src)
    if stop > limit:
        raise DataError(
            f"label window [{start:%Y-%m-%d}, {stop:%Y-%m-%d}) reaches past the data, "
            f"which ends before {limit:%Y-%m-%d}"
        )
    return start, stop


def _users_with(src: Sources, start: pd.Timestamp, stop: pd.Timestamp, purchase: bool) -> ir.Table:
    e = src.events
    kind = e.event_type.cast("string")
    cond = (e.ts.cast("timestamp") >= _lit(start)) & (e.ts.cast("timestamp") < _lit(stop))
    cond = cond & ((kind == "purchase") if purchase else (kind != "refund"))
    return e.filter(cond).select(hit_user=e.user_id.cast("string")).distinct()


def _label(base: ir.Table, hits: ir.Table, name: str, negate: bool) -> pd.DataFrame:
    joined = base.left_join(hits, base.user_id == hits.hit_user)
    hit = joined.hit_user.notnull()
    frame: pd.DataFrame = joined.select("user_id", **{name: ~hit if negate else hit}).to_pandas()
    frame = frame.sort_values("user_id", ignore_index=True)
    frame["user_id"] = frame["user_id"].astype(str)
    frame[name] = frame[name].astype(bool)
    return frame


def churn_labels(
    data_dir: str | Path,
    as_of: DateLike,
    horizon: int = 90,
    lookback: int = 90,
    *,
    con: ibis.BaseBackend | None = None,
    end: DateLike | None = None,
) -> pd.DataFrame:
    """Who of the recently active stops: ``user_id, churned``.

    Args:
        data_dir: Data folder.
        as_of: As-of date (UTC midnight).
        horizon: Days in the label window ``[as_of, as_of + horizon)``.
        lookback: The population is users active in ``[as_of - lookback, as_of)``.
        con: Ibis backend (default: DuckDB).
        end: Exclusive end of the data (default: the day after the last event).

    Raises:
        DataError: The label window ends after the data (or the horizon is under a day).
    """
    src = open_sources(data_dir, con)
    start, stop = _window(src, as_of, horizon, end)
    active = _users_with(src, start - pd.Timedelta(days=lookback), start, purchase=False)
    base = active.select(user_id=active.hit_user)
    return _label(base, _users_with(src, start, stop, purchase=False), "churned", negate=True)


def conversion_labels(
    data_dir: str | Path,
    as_of: DateLike,
    horizon: int = 30,
    *,
    lookback: int | None = None,
    con: ibis.BaseBackend | None = None,
    end: DateLike | None = None,
) -> pd.DataFrame:
    """Who buys within the horizon: ``user_id, converted`` for users who signed up before ``as_of``.

    Args:
        data_dir: Data folder.
        as_of: As-of date (UTC midnight).
        horizon: Days in the label window ``[as_of, as_of + horizon)``.
        lookback: Keep only users active in ``[as_of - lookback, as_of)`` (default: everyone).
        con: Ibis backend (default: DuckDB).
        end: Exclusive end of the data (default: the day after the last event).

    Raises:
        DataError: The label window ends after the data (or the horizon is under a day).
    """
    src = open_sources(data_dir, con)
    start, stop = _window(src, as_of, horizon, end)
    base = population(src, start).select("user_id")
    if lookback is not None:
        active = _users_with(src, start - pd.Timedelta(days=lookback), start, purchase=False)
        base = base.filter(base.user_id.isin(active.hit_user))
    return _label(base, _users_with(src, start, stop, purchase=True), "converted", negate=False)


def backtest_dates(target: DateLike, horizon: int, step: int = 30, n: int = 4) -> list[pd.Timestamp]:
    """As-of dates, oldest first, whose label windows end on or before ``target``.

    The latest is ``target - horizon``, then every ``step`` days back: ``n`` dates in all.

    Raises:
        DataError: ``step`` or ``n`` is under 1.
    """
    if step < 1 or n < 1:
        raise DataError(f"step and n must be at least 1, got step {step} and n {n}")
    last = as_of_timestamp(target) - pd.Timedelta(days=horizon)
    return [last - pd.Timedelta(days=step * k) for k in range(n - 1, -1, -1)]


def training_set(
    data_dir: str | Path,
    target: DateLike,
    *,
    label: str = "churn",
    horizon: int = 90,
    step: int = 30,
    n: int = 4,
    lookback: int = 90,
    con: ibis.BaseBackend | None = None,
) -> pd.DataFrame:
    """Features joined to labels for each back-test date, stacked (``as_of`` tells them apart).

    Args:
        data_dir: Data folder.
        target: No label window ends after this date (e.g. the first day of the test period).
        label: ``churn`` or ``conversion``.
        horizon: Label window in days.
        step: Days between back-test dates.
        n: Number of back-test dates.
        lookback: Churn population look-back (and the lifecycle ``churned`` threshold).
        con: Ibis backend (default: DuckDB).

    Raises:
        DataError: An unknown label, or a label window that ends after the data.
    """
    from features.job import build_features

    if label not in ("churn", "conversion"):
        raise DataError(f"unknown label {label!r}; use churn or conversion")
    frames = []
    for as_of in backtest_dates(target, horizon, step, n):
        feats = build_features(data_dir, as_of, con=con, lookback=lookback)
        if label == "churn":
            labels = churn_labels(data_dir, as_of, horizon, lookback, con=con)
        else:
            labels = conversion_labels(data_dir, as_of, horizon, con=con)
        frames.append(feats.merge(labels, on="user_id", how="inner"))
    return pd.concat(frames, ignore_index=True)
