"""The offer policy: for each user, the eligible offer with the largest expected incremental value
``uplift x value_per_unit - cost``, or none when none is positive.

The catalogue's rules always hold: validity dates, eligibility (lifecycle stages, RFM segments, minimum
value at stake), cooldowns and caps (counted from past exposures to the same offer). With a budget, the
users with the best expected value per unit of cost get their offer first until the costs reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from training.offers.catalogue import CAP_WINDOW_DAYS, Catalogue

NONE = -1


@dataclass(frozen=True)
class Choice:
    """What the policy chose for each user.

    Attributes:
        offer: Index into the catalogue's offers, or ``-1`` for none.
        expected_value: Expected incremental value after cost of the chosen offer (0 for none).
        gain: ``uplift x value - cost`` of every offer, ``(n, K)``.
        eligible: Whether each offer may be given to each user under the rules, ``(n, K)``.
        over_budget: Users whose best offer was dropped to keep within the budget.
    """

    offer: np.ndarray
    expected_value: np.ndarray
    gain: np.ndarray
    eligible: np.ndarray
    over_budget: np.ndarray


def _text(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), "", dtype=object)
    return frame[column].astype("object").where(frame[column].notna(), "").astype(str).to_numpy()


def eligibility(
    catalogue: Catalogue,
    users: pd.DataFrame,
    *,
    as_of: date,
    history: pd.DataFrame | None = None,
) -> np.ndarray:
    """Which offer each user may get as of ``as_of``, ``(n, K)``.

    Args:
        catalogue: Offers and their rules.
        users: ``user_id`` and, where the rules need them, ``lifecycle_stage``, ``rfm_segment``,
            ``value_at_stake`` (a user missing a column a rule needs is not eligible for that offer).
        as_of: The day the offers would be given.
        history: Past exposures ``user_id`` (or ``unit_id``), ``variant`` (offer id), ``ts``; only those
            before ``as_of`` count.
    """
    n, cat = len(users), catalogue.frame
    day = pd.Timestamp(as_of)
    ok = np.ones((n, len(cat)), dtype=bool)
    stage, segment = _text(users, "lifecycle_stage"), _text(users, "rfm_segment")
    value = (
        pd.to_numeric(users["value_at_stake"], errors="coerce").to_numpy(dtype=float)
        if "value_at_stake" in users
        else np.full(n, np.nan)
    )
    ids = users["user_id"].astype(str).to_numpy()
    past = None
    if history is not None and len(history):
        if "user_id" not in history and "unit_id" in history:  # the contract's exposures table
            history = history.rename(columns={"unit_id": "user_id"})
        past = history.loc[history["ts"] < day, ["user_id", "variant", "ts"]].copy()
        past["user_id"] = past["user_id"].astype(str)
        past = past.loc[past["user_id"].isin(set(ids))]
    offer_ids = [str(o) for o in cat["offer_id"]]
    valid_from = pd.to_datetime(cat["valid_from"]).tolist()
    valid_to = pd.to_datetime(cat["valid_to"]).tolist()
    cooldown = cat["cooldown_days"].to_numpy(dtype=float)
    cap = cat["max_per_user"].to_numpy(dtype=float)
    min_value = cat["min_value_at_stake"].to_numpy(dtype=float)
    stages: list[tuple[str, ...]] = list(cat["eligible_stages"])
    segments: list[tuple[str, ...]] = list(cat["eligible_segments"])
    for k, offer_id in enumerate(offer_ids):
        if pd.notna(valid_from[k]) and day < valid_from[k]:
            ok[:, k] = False
        if pd.notna(valid_to[k]) and day >= valid_to[k]:
            ok[:, k] = False
        if stages[k]:
            ok[:, k] &= np.isin(stage, list(stages[k]))
        if segments[k]:
            ok[:, k] &= np.isin(segment, list(segments[k]))
        if min_value[k] > 0:
            ok[:, k] &= np.nan_to_num(value, nan=-np.inf) >= min_value[k]
        if past is None:
            continue
        mine = past.loc[past["variant"].astype(str) == offer_id]
        if mine.empty:
            continue
        ts = mine["ts"].to_numpy(dtype="datetime64[ns]")
        who = mine["user_id"].to_numpy(dtype=object)
        if cooldown[k] > 0:
            recent = who[ts > np.datetime64(day - pd.Timedelta(days=float(cooldown[k])))]
            ok[:, k] &= ~np.isin(ids, recent)
        if np.isfinite(cap[k]):
            window = who[ts > np.datetime64(day - pd.Timedelta(days=CAP_WINDOW_DAYS))]
            counts = pd.Series(window).value_counts()
            used = pd.Series(ids).map(counts).fillna(0).to_numpy(dtype=float)
            ok[:, k] &= used < cap[k]
    return ok


def choose(
    uplift: np.ndarray,
    value: np.ndarray,
    catalogue: Catalogue,
    eligible: np.ndarray,
    *,
    budget: float | None = None,
    margin: float = 0.0,
) -> Choice:
    """The best eligible offer per user, none when no expected value after cost is positive.

    Args:
        uplift: Predicted uplift of each offer on the outcome, ``(n, K)``.
        value: Value of one unit of outcome per user (``(n,)``; NaN counts as 0).
        catalogue: Offers (their costs) in the columns' order.
        eligible: :func:`eligibility`'s mask.
        budget: Total cost allowed (``None``: no limit); best value per unit of cost first.
        margin: Expected value after cost an offer must exceed to be given (0: any positive value);
            set by training from validation units, so that noise in the uplifts is not paid for.
    """
    value = np.nan_to_num(np.asarray(value, dtype=float), nan=0.0)
    gain = np.asarray(uplift, dtype=float) * value[:, None] - catalogue.costs[None, :]
    masked = np.where(eligible, gain, -np.inf)
    n = len(value)
    best = np.argmax(masked, axis=1) if masked.shape[1] else np.zeros(n, dtype=int)
    top = masked[np.arange(n), best] if masked.shape[1] else np.full(n, -np.inf)
    offer = np.where(top > max(margin, 0.0), best, NONE)
    over = np.zeros(n, dtype=bool)
    if budget is not None:
        given = np.flatnonzero(offer >= 0)
        cost = catalogue.costs[offer[given]]
        with np.errstate(over="ignore"):  # a near-free offer's ratio is as good as infinite: it goes first
            ratio = np.divide(top[given], cost, out=np.full(len(given), np.inf), where=cost > 0)
        order = given[np.lexsort((given, -ratio))]
        # greedy in ratio order: a cheaper offer further down may still fit once a dear one does not
        running = 0.0
        keep = np.zeros(n, dtype=bool)
        for i in order:
            c = catalogue.costs[offer[i]]
            if running + c <= budget + 1e-9:
                keep[i] = True
                running += c
        dropped = given[~keep[given]]
        over[dropped] = True
        offer[dropped] = NONE
    expected = np.where(offer >= 0, top, 0.0)
    return Choice(offer=offer, expected_value=expected, gain=gain, eligible=eligible, over_budget=over)
