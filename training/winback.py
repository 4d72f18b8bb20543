"""Batch scoring and win-back lists: who is about to leave, why, and how much is at stake.

:func:`score_churn` scores every user of the population (active in the look-back before the as-of date)
with the calibrated churn risk, the top reasons and the lifecycle stage, and compares each feature's
distribution with the training window (PSI). :func:`winback_list` ranks them by expected value saved,
``churn_risk x value_at_stake``, where value at stake is the user's expected spend over the horizon if
retained (BG/NBD purchases x Gamma-Gamma order value, :mod:`training.value`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from training.drift import PSI_WARN, drift_report
from training.errors import TrainingDataError
from training.reasons import top_reasons
from training.risk_model import RiskModel
from training.value import value_at_stake

SCORE_COLUMNS: tuple[str, ...] = ("user_id", "churn_risk", "lifecycle_stage", "reasons")
WINBACK_COLUMNS: tuple[str, ...] = (
    "user_id",
    "churn_risk",
    "value_at_stake",
    "expected_value_saved",
    "lifecycle_stage",
    "rfm_segment",
    "reasons",
    "offer_id",
    "expected_value",
)


@dataclass
class Scored:
    """A scoring run: one row per user of the population, and the drift of every feature."""

    scores: pd.DataFrame
    drift: pd.DataFrame
    features: pd.DataFrame

    @property
    def drifted(self) -> list[str]:
        """Features whose PSI against the latest training snapshot is past the warning line."""
        return [str(name) for name in self.drift.loc[self.drift["drifted"], "feature"]]


def population(features: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """Users active in the ``lookback`` days before the as-of date (the churn model's population)."""
    since = pd.to_numeric(features["days_since_last_event"], errors="coerce")
    return features.loc[since.notna() & (since <= lookback)].reset_index(drop=True)


def score_churn(
    model: RiskModel,
    features: pd.DataFrame,
    *,
    lookback: int = 365,
    propensity: RiskModel | None = None,
    psi_threshold: float = PSI_WARN,
) -> Scored:
    """Churn risk, reasons and lifecycle stage for every user of the population.

    Args:
        model: The churn model.
        features: A feature snapshot (``features.job.build_features``) as of the scoring date.
        lookback: Population look-back in days.
        propensity: A purchase-propensity model, to add ``purchase_propensity``.
        psi_threshold: PSI past which a feature is reported as drifted.

    Returns:
        Scores (``user_id, churn_risk, lifecycle_stage, reasons, rfm_segment``, ...) sorted by risk, and
        the drift report.

    Raises:
        TrainingDataError: No user was active in the look-back.
    """
    pop = population(features, lookback)
    if pop.empty:
        raise TrainingDataError(f"no user was active in the {lookback} days before the as-of date")
    risk = model.predict_proba(pop)
    reasons = top_reasons(pop, model.contributions(pop), k=3, sign=1)
    scores = pd.DataFrame(
        {
            "user_id": pop["user_id"].astype(str).to_numpy(),
            "churn_risk": risk,
            "lifecycle_stage": pop["lifecycle_stage"].to_numpy() if "lifecycle_stage" in pop else "",
            "reasons": reasons,
            "rfm_segment": pop["rfm_segment"].to_numpy() if "rfm_segment" in pop else "",
            "days_since_last_event": pop["days_since_last_event"].to_numpy(),
        }
    )
    if propensity is not None:
        scores["purchase_propensity"] = propensity.predict_proba(pop)
    scores = scores.sort_values(["churn_risk", "user_id"], ascending=[False, True], ignore_index=True)
    return Scored(scores=scores, drift=drift_report(model.drift_reference_, pop, psi_threshold), features=pop)


@dataclass(frozen=True)
class WinbackFilters:
    """Which users a win-back list keeps, as an operator asks for them.

    Attributes:
        top: Keep the first ``top`` rows (all when ``None``).
        segment: Keep users whose RFM segment or lifecycle stage is this (e.g. ``cant_lose``, ``at_risk``).
        min_value: Keep users with at least this value at stake.
    """

    top: int | None = None
    segment: str | None = None
    min_value: float = 0.0


def winback_list(
    scores: pd.DataFrame,
    values: pd.DataFrame,
    filters: WinbackFilters = WinbackFilters(),
    offers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Users ranked by expected value saved (``churn_risk x value_at_stake``), largest first.

    Args:
        scores: :func:`score_churn` scores.
        values: :func:`training.value.value_at_stake` output for the same users.
        filters: Which users to keep.
        offers: The next-best offer per user (``user_id, offer_id, expected_value``, as
            :meth:`training.offers.model.OfferModel.choose` gives it); without it no offer is named.

    Returns:
        :data:`WINBACK_COLUMNS` then ``expected_purchases, expected_order_value`` (``offer_id`` empty and
        ``expected_value`` 0 where no offer is worth its cost, or no offer model is given).

    Raises:
        TrainingDataError: ``segment`` is no user's RFM segment or lifecycle stage here.
    """
    frame = scores.merge(values, on="user_id", how="left")
    frame["value_at_stake"] = frame["value_at_stake"].fillna(0.0)
    frame["expected_value_saved"] = frame["churn_risk"] * frame["value_at_stake"]
    frame["offer_id"] = ""
    frame["expected_value"] = 0.0
    if offers is not None and len(offers):
        chosen = offers.drop_duplicates("user_id").set_index("user_id")
        ids = frame["user_id"].astype(str)
        frame["offer_id"] = ids.map(chosen["offer_id"]).fillna("").astype(str).to_numpy()
        frame["expected_value"] = ids.map(chosen["expected_value"]).fillna(0.0).astype(float).to_numpy()
    frame = filter_winback(frame, filters)
    extra = [c for c in ("expected_purchases", "expected_order_value") if c in frame]
    return frame[[*WINBACK_COLUMNS, *extra]].reset_index(drop=True)


def values_for(data_dir: str | Path, as_of: date, user_ids: pd.Series, horizon: int) -> pd.DataFrame:
    """Value at stake of ``user_ids`` from the data folder's events before ``as_of``."""
    from features.contract import load_table

    events = load_table(data_dir, "events", required=True)
    assert events is not None
    events = events.loc[events["ts"] < pd.Timestamp(as_of)]
    return value_at_stake(events, as_of, user_ids, horizon)


def score_population(
    model: RiskModel,
    features: pd.DataFrame,
    events: pd.DataFrame,
    as_of: date,
    *,
    lookback: int = 365,
    horizon: int = 90,
) -> pd.DataFrame:
    """Churn scores and value at stake of the population of one feature snapshot, as batch scoring makes
    them (``userops score churn``): the same population, stacked inputs, model and value model.

    Args:
        model: The churn model.
        features: A feature snapshot as of ``as_of``, one row per user (the population is taken from it).
        events: Contract events; only those before ``as_of`` are read.
        as_of: The snapshot's as-of date.
        lookback: Population look-back in days (the model's).
        horizon: Days over which value at stake is counted (the model's horizon).

    Returns:
        :func:`score_churn`'s scores, sorted by risk, with ``expected_purchases, expected_order_value,
        value_at_stake`` (0 when unknown) joined on.

    Raises:
        TrainingDataError: No user was active in the look-back.
    """
    from training.datasets import with_stacked

    before = events.loc[events["ts"] < pd.Timestamp(as_of)]
    # the BG/NBD and Gamma-Gamma inputs are fitted on the population's history, as in training
    frame = with_stacked(population(features, lookback), before, as_of)
    scores = score_churn(model, frame, lookback=lookback).scores
    values = value_at_stake(before, as_of, scores["user_id"], horizon)
    out = scores.merge(values, on="user_id", how="left")
    out["value_at_stake"] = out["value_at_stake"].fillna(0.0)
    return out


WINBACK_DIR = "winback"
WINBACK_PREFIX = "winback_as_of="
WINBACK_TEXT_COLUMNS: tuple[str, ...] = ("user_id", "lifecycle_stage", "rfm_segment", "reasons", "offer_id")


def latest_winback(data_dir: str | Path) -> tuple[date, Path] | None:
    """The newest written win-back list, ``DATA/winback/winback_as_of=YYYY-MM-DD.csv`` (or ``.parquet``).

    Args:
        data_dir: The data folder.

    Returns:
        ``(as_of, path)`` of the latest as-of date (the CSV when both kinds exist), or ``None`` when no list
        has been written (``userops pipeline`` writes one).
    """
    found: dict[date, Path] = {}
    folder = Path(data_dir) / WINBACK_DIR
    for path in sorted(folder.glob(f"{WINBACK_PREFIX}*")):
        if path.suffix not in (".csv", ".parquet"):
            continue
        try:
            as_of = date.fromisoformat(path.stem.removeprefix(WINBACK_PREFIX))
        except ValueError:
            continue  # not one of ours
        if as_of not in found or path.suffix == ".csv":
            found[as_of] = path
    if not found:
        return None
    newest = max(found)
    return newest, found[newest]


def read_winback(path: str | Path) -> pd.DataFrame:
    """A written win-back list, as written: ids and texts as text (no offer = ``""``), numbers as numbers."""
    path = Path(path)
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=dict.fromkeys(WINBACK_TEXT_COLUMNS, str))
    else:
        frame = pd.read_parquet(path)
    for column in WINBACK_TEXT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def filter_winback(frame: pd.DataFrame, filters: WinbackFilters) -> pd.DataFrame:
    """The rows of a written win-back list that ``filters`` keeps, ranked as :func:`winback_list` ranks.

    Args:
        frame: A list from :func:`winback_list` (or :func:`read_winback`).
        filters: Which users to keep.

    Returns:
        The kept rows, every column of ``frame``.

    Raises:
        TrainingDataError: ``segment`` is no user's RFM segment or lifecycle stage in the list.
    """
    segment = filters.segment
    if segment is not None:
        known = set(frame["rfm_segment"].astype(str)) | set(frame["lifecycle_stage"].astype(str))
        if segment not in known:
            raise TrainingDataError(f"unknown segment {segment!r}; known here: {', '.join(sorted(known))}")
        frame = frame.loc[(frame["rfm_segment"] == segment) | (frame["lifecycle_stage"] == segment)]
    frame = frame.loc[frame["value_at_stake"] >= filters.min_value]
    frame = frame.sort_values(["expected_value_saved", "user_id"], ascending=[False, True], ignore_index=True)
    if filters.top is not None:
        frame = frame.head(filters.top)
    return frame.reset_index(drop=True)
