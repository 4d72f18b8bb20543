"""Training data from randomized offer campaigns: one row per unit, features as of its first exposure,
the outcome over ``[exposure, exposure + horizon)``.

An offer campaign is an experiment in ``exposures`` whose variants are offer ids plus ``control``.
Several campaigns stack; a unit exposed more than once counts once, with its first exposure. Units
whose features are unknown (not a user of the folder before the exposure) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from training.errors import OfferDataError
from training.offers.catalogue import Catalogue

Outcome = Literal["activity", "purchase", "revenue"]
OUTCOMES: tuple[str, ...] = ("activity", "purchase", "revenue")
CONTROL = "control"
ID_COLUMNS: tuple[str, ...] = ("user_id", "as_of", "signup_ts")


@dataclass(frozen=True)
class CampaignData:
    """Randomized units ready for uplift models.

    Attributes:
        units: ``user_id, experiment, variant, arm`` (0 = control, k = the k-th offer of ``offer_ids``),
            ``exposure_ts, propensity`` (the arm's share in its campaign), ``y`` (the outcome), then the
            features.
        features: Feature columns of ``units``.
        categorical: The features among them that are categories.
        offer_ids: Offers in arm order (arm k is ``offer_ids[k - 1]``).
        experiments: Campaigns used.
        excluded: Left-out units or exposures by reason (for the summary).
        outcome: What ``y`` measures.
        horizon: Outcome window in days.
    """

    units: pd.DataFrame
    features: list[str]
    categorical: list[str]
    offer_ids: list[str]
    experiments: list[str]
    excluded: dict[str, int] = field(default_factory=dict)
    outcome: str = "activity"
    horizon: int = 30


def offer_campaigns(exposures: pd.DataFrame, offer_ids: Sequence[str]) -> list[str]:
    """Experiments whose variants are ``control`` plus at least one catalogue offer."""
    known = set(offer_ids)
    found = []
    for key, variants in exposures.groupby("experiment")["variant"]:
        names = set(variants.astype(str))
        if CONTROL in names and names & known:
            found.append(str(key))
    return sorted(found)


def _check_campaign(key: str, rows: pd.DataFrame, offer_ids: Sequence[str], explicit: bool) -> str | None:
    """Why a campaign cannot be used (``None``: it can); raised when the caller named it."""
    names = set(rows["variant"].astype(str))
    missing = sorted(names - set(offer_ids) - {CONTROL})
    reason = None
    if missing and explicit:
        reason = f"campaign {key}: offer(s) {', '.join(missing)} not in the offers catalogue"
    elif CONTROL not in names:
        reason = f"campaign {key} has no control arm: uplift needs units without an offer"
    elif len(names & set(offer_ids)) == 0:
        reason = f"campaign {key} has one arm only ({', '.join(sorted(names))}): nothing to compare"
    if reason and explicit:
        raise OfferDataError(reason)
    return reason


def campaign_units(
    exposures: pd.DataFrame,
    catalogue: Catalogue,
    *,
    as_of: date,
    horizon: int,
    experiments: Sequence[str] = (),
    last_event: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """The randomized units of the chosen campaigns: first exposure per unit, arm, propensity.

    Args:
        exposures: The contract ``exposures`` table.
        catalogue: The offers catalogue.
        as_of: Only outcome windows that close by this date are used.
        horizon: Outcome window in days.
        experiments: Campaigns to use (default: every offer campaign whose window closes by ``as_of``).
        last_event: The last event in the folder; a window past it is refused.

    Returns:
        ``(units, experiments used, excluded counts)``.

    Raises:
        OfferDataError: A named campaign is unknown, has one arm, an offer missing from the catalogue, or
            a window that does not close by ``as_of``; or no campaign is left.
    """
    end = pd.Timestamp(as_of)
    span = pd.Timedelta(days=horizon)
    offer_ids = catalogue.offer_ids
    excluded: dict[str, int] = {}
    explicit = bool(experiments)
    keys = list(experiments) if explicit else offer_campaigns(exposures, offer_ids)
    unknown = sorted(set(keys) - set(exposures["experiment"].astype(str)))
    if unknown:
        raise OfferDataError(f"no exposures of experiment(s) {', '.join(unknown)} in the exposures table")
    used: list[str] = []
    parts = []
    for key in keys:
        rows = exposures.loc[(exposures["experiment"] == key) & (exposures["ts"] < end)]
        if rows.empty:
            if explicit:
                raise OfferDataError(f"campaign {key} has no exposure before {as_of}")
            continue
        if _check_campaign(key, rows, offer_ids, explicit) is not None:
            excluded[f"campaigns left out ({key}: one arm or no control)"] = len(rows)
            continue
        closes = rows["ts"].max() + span
        if closes > end:
            text = (
                f"campaign {key}: the {horizon}-day outcome window after its last exposure on "
                f"{rows['ts'].max().date()} ends {closes.date()}, after the as-of date {as_of}"
            )
            if explicit:
                raise OfferDataError(text + "; use a shorter --horizon or a later --as-of")
            excluded[f"campaigns whose window is still open ({key})"] = len(rows)
            continue
        if last_event is not None and closes > last_event + pd.Timedelta(days=1):
            raise OfferDataError(
                f"campaign {key}: the {horizon}-day outcome window ends {closes.date()}, past the last "
                f"event in the data on {last_event.date()}"
            )
        missing = ~rows["variant"].isin([CONTROL, *offer_ids])
        if missing.any():
            names = ", ".join(sorted(set(rows.loc[missing, "variant"].astype(str))))
            excluded[f"exposures to offers missing from the catalogue ({names})"] = int(missing.sum())
            rows = rows.loc[~missing]
        share = rows.groupby("variant")["unit_id"].transform("size") / len(rows)
        parts.append(rows.assign(propensity=share.to_numpy()))
        used.append(key)
    if not parts:
        reasons = "; ".join(excluded) or "no experiment with control and catalogue offers"
        raise OfferDataError(f"no offer campaign to learn from before {as_of} ({reasons})")
    stacked = pd.concat(parts, ignore_index=True).sort_values(["ts", "unit_id"], kind="stable")
    first = ~stacked["unit_id"].duplicated(keep="first")
    if (~first).sum():
        excluded["repeat exposures of a unit (its first one counts)"] = int((~first).sum())
    units = stacked.loc[first].rename(columns={"unit_id": "user_id", "ts": "exposure_ts"})
    arm_of = {CONTROL: 0, **{o: k + 1 for k, o in enumerate(offer_ids)}}
    units = units.assign(
        user_id=units["user_id"].astype(str),
        variant=units["variant"].astype(str),
        arm=units["variant"].astype(str).map(arm_of).astype(int),
    )
    cols = ["user_id", "experiment", "variant", "arm", "exposure_ts", "propensity"]
    return units[cols].reset_index(drop=True), used, excluded


def outcomes(
    events: pd.DataFrame, units: pd.DataFrame, horizon: int, outcome: str = "activity"
) -> np.ndarray:
    """Each unit's outcome over ``[exposure_ts, exposure_ts + horizon)``.

    ``activity``: any event but a refund (1/0); ``purchase``: any purchase (1/0); ``revenue``: the sum of
    purchase and refund amounts.
    """
    if outcome not in OUTCOMES:
        raise OfferDataError(f"unknown outcome {outcome!r}; use {', '.join(OUTCOMES)}")
    kinds = events["event_type"].astype(str)
    if outcome == "activity":
        ev = events.loc[kinds != "refund", ["user_id", "ts"]]
    elif outcome == "purchase":
        ev = events.loc[kinds == "purchase", ["user_id", "ts"]]
    else:
        if "amount" not in events:
            raise OfferDataError("outcome revenue needs an amount column in events")
        ev = events.loc[kinds.isin(["purchase", "refund"]), ["user_id", "ts", "amount"]]
    ev = ev.assign(user_id=ev["user_id"].astype(str))
    index = pd.Series(np.arange(len(units)), index=units["user_id"].to_numpy())
    ev = ev.loc[ev["user_id"].isin(index.index)]
    pos = index.loc[ev["user_id"].to_numpy()].to_numpy()
    start = units["exposure_ts"].to_numpy()[pos]
    inside = (ev["ts"].to_numpy() >= start) & (ev["ts"].to_numpy() < start + np.timedelta64(horizon, "D"))
    y = np.zeros(len(units))
    if outcome == "revenue":
        np.add.at(y, pos[inside], ev["amount"].fillna(0.0).to_numpy(dtype=float)[inside])
    else:
        y[np.unique(pos[inside])] = 1.0
    return y


def read_attributes(data_dir: str | Path) -> pd.DataFrame | None:
    """The users table's attribute columns, read leniently (an empty ``signup_ts`` is allowed here).

    Returns:
        ``user_id`` and attribute columns (numbers as floats, the rest as text), or ``None``.
    """
    from features.contract import read_raw, table_path

    path = table_path(data_dir, "users")
    if path is None:
        return None
    raw = read_raw(path)
    if "user_id" not in raw:
        raise OfferDataError(f"{path}: no user_id column")
    out = pd.DataFrame({"user_id": raw["user_id"].astype(str).str.strip()})
    for column in raw.columns:
        if column in ID_COLUMNS:
            continue
        number = pd.to_numeric(raw[column], errors="coerce")
        if raw[column].notna().sum() and number.notna().sum() == raw[column].notna().sum():
            out[column] = number.astype(float).to_numpy()
        else:
            out[column] = raw[column].astype("string").to_numpy()
    return out.drop_duplicates("user_id")


def unit_features(data_dir: str | Path, units: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Features of each unit as of the day of its first exposure (events before that day only).

    Behaviour features come from the feature job, one snapshot per exposure day; user attributes from
    the users table. When the feature job cannot run on the folder (a campaign-only folder whose users
    have no signup time), the attributes are the features.

    Returns:
        ``(frame with user_id + features, a note on what was used)``; a unit without any feature is absent.
    """
    from features.errors import FeaturesError
    from features.job import build_features

    days = units["exposure_ts"].dt.normalize()
    parts = []
    note = "behaviour as of each unit's exposure day, and user attributes"
    try:
        for day, who in units.groupby(days)["user_id"]:
            snap = build_features(data_dir, pd.Timestamp(day))
            parts.append(snap.loc[snap["user_id"].astype(str).isin(set(who))])
    except FeaturesError as exc:
        note = f"user attributes only (no behaviour features: {str(exc).splitlines()[0]})"
        parts = []
    attrs = read_attributes(data_dir)
    if parts and sum(len(p) for p in parts) == 0:  # no unit was a user with history before its exposure
        note = "user attributes only (no unit has behaviour before its exposure)"
        parts = []
    if parts:
        frame = pd.concat(parts, ignore_index=True).drop(columns=["as_of"], errors="ignore")
        frame["user_id"] = frame["user_id"].astype(str)
        frame = frame.drop_duplicates("user_id")
        if attrs is not None:
            extra = [c for c in attrs.columns if c not in frame.columns]
            frame = frame.merge(attrs[["user_id", *extra]], on="user_id", how="left")
        return frame, note
    if attrs is None:
        return pd.DataFrame({"user_id": pd.Series(dtype=str)}), "no features: no users table"
    return attrs.loc[attrs["user_id"].isin(set(units["user_id"]))], note


def feature_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Model inputs of a feature frame: every column but ids; text columns are categories."""
    features, categorical = [], []
    for column in frame.columns:
        if column in ID_COLUMNS or column.startswith("_"):
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            features.append(column)
        elif pd.api.types.is_datetime64_any_dtype(values):
            continue
        else:
            features.append(column)
            categorical.append(column)
    return features, categorical


def build_campaign_data(
    data_dir: str | Path,
    catalogue: Catalogue,
    *,
    as_of: date,
    horizon: int = 30,
    outcome: str = "activity",
    experiments: Sequence[str] = (),
) -> tuple[CampaignData, str]:
    """Everything :mod:`training.offers.uplift` learns from, for a data folder.

    Returns:
        ``(data, a note on the features used)``.

    Raises:
        OfferDataError: No exposures table, no usable campaign (see :func:`campaign_units`), or no unit
            with features.
    """
    from features.contract import load_table

    if outcome not in OUTCOMES:
        raise OfferDataError(f"unknown outcome {outcome!r}; use {', '.join(OUTCOMES)}")
    exposures = load_table(data_dir, "exposures")
    if exposures is None:
        raise OfferDataError(f"{data_dir}: no exposures.parquet or exposures.csv: no offer campaign")
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    last = events["ts"].max() if len(events) else None
    units, used, excluded = campaign_units(
        exposures,
        catalogue,
        as_of=as_of,
        horizon=horizon,
        experiments=experiments,
        last_event=last,
    )
    feats, note = unit_features(data_dir, units)
    known = units["user_id"].isin(set(feats["user_id"]))
    if (~known).sum():
        excluded["units with no features (not a user before their exposure)"] = int((~known).sum())
    units = units.loc[known].reset_index(drop=True)
    if units.empty:
        raise OfferDataError("no campaign unit has features: none is a user of the folder before exposure")
    units["y"] = outcomes(events.loc[events["ts"] < pd.Timestamp(as_of)], units, horizon, outcome)
    frame = units.merge(feats, on="user_id", how="left")
    features, categorical = feature_columns(feats.drop(columns=["user_id"]))
    arms = sorted(set(frame["arm"]))
    if len(arms) < 2 or arms[0] != 0:
        raise OfferDataError("the campaigns have one arm left once units without features are left out")
    data = CampaignData(
        units=frame,
        features=features,
        categorical=categorical,
        offer_ids=catalogue.offer_ids,
        experiments=used,
        excluded=excluded,
        outcome=outcome,
        horizon=horizon,
    )
    return data, note
