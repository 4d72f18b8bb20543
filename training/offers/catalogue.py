"""The offers catalogue: what each offer costs and the rules on who may get it and when.

The ``offers`` table holds ``offer_id`` and ``cost`` and, optionally, ``kind``, ``cooldown_days`` (days
after an exposure to the same offer before it may be given again), ``max_per_user`` (exposures to the
same offer per 90 days), ``valid_from``/``valid_to`` (dates; ``valid_to`` is the first day it is no
longer valid), ``eligible_stages`` and ``eligible_segments`` (comma-separated lifecycle stages and RFM
segments; empty = everyone) and ``min_value_at_stake``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.errors import OfferDataError

CAP_WINDOW_DAYS = 90
"""``max_per_user`` counts exposures to the same offer over this many days before the date."""
RULE_COLUMNS: tuple[str, ...] = (
    "kind",
    "cooldown_days",
    "max_per_user",
    "valid_from",
    "valid_to",
    "eligible_stages",
    "eligible_segments",
    "min_value_at_stake",
)


def _names(text: object) -> tuple[str, ...]:
    if text is None or (isinstance(text, float) and np.isnan(text)) or text is pd.NA:
        return ()
    return tuple(sorted({part.strip() for part in str(text).split(",") if part.strip()}))


def _date(frame: pd.DataFrame, column: str) -> pd.Series:
    """A validity column as timestamps (NaT = open ended); a value that is not a date is refused."""
    if column not in frame:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    raw = frame[column].astype("string").str.strip()
    raw = raw.mask(raw == "")
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
    bad = raw.notna() & parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise OfferDataError(
            f"offers: {column} {raw.iloc[row]!r} of offer {frame['offer_id'].iloc[row]} is not a date"
        )
    return parsed.astype("datetime64[ns]")


@dataclass(frozen=True)
class Catalogue:
    """The offers and their rules, one row per offer, in a fixed order (the order of ``uplift_`` columns).

    Attributes:
        frame: ``offer_id, cost, kind, cooldown_days, max_per_user, valid_from, valid_to, eligible_stages,
            eligible_segments, min_value_at_stake``; stages and segments as tuples, open rules as 0, NaN
            or NaT.
    """

    frame: pd.DataFrame

    @property
    def offer_ids(self) -> list[str]:
        return [str(o) for o in self.frame["offer_id"]]

    @property
    def costs(self) -> np.ndarray:
        return self.frame["cost"].to_numpy(dtype=float)

    def subset(self, offer_ids: list[str]) -> Catalogue:
        """The catalogue of these offers only, in this order."""
        frame = self.frame.set_index("offer_id").loc[offer_ids].reset_index()
        return Catalogue(frame)


def catalogue_from_frame(offers: pd.DataFrame) -> Catalogue:
    """Check and normalise an ``offers`` table (contract types, e.g. from ``load_table``).

    Raises:
        OfferDataError: No offer, an offer listed twice, a negative or missing cost, a negative cooldown
            or cap, a validity date that is not a date.
    """
    if offers.empty:
        raise OfferDataError("offers: the catalogue has no offer")
    frame = offers.copy()
    frame["offer_id"] = frame["offer_id"].astype(str)
    twice = frame["offer_id"][frame["offer_id"].duplicated()]
    if len(twice):
        raise OfferDataError(f"offers: offer {twice.iloc[0]} is listed more than once")
    cost = pd.to_numeric(frame["cost"], errors="coerce")
    for column, values in (
        ("cost", cost),
        ("cooldown_days", pd.to_numeric(frame.get("cooldown_days", pd.Series(0.0, frame.index)))),
        ("max_per_user", pd.to_numeric(frame.get("max_per_user", pd.Series(np.nan, frame.index)))),
        ("min_value_at_stake", pd.to_numeric(frame.get("min_value_at_stake", pd.Series(0.0, frame.index)))),
    ):
        bad = values.isna() if column == "cost" else values < 0
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            what = "has no cost" if column == "cost" and pd.isna(values.iloc[row]) else f"has {column} < 0"
            raise OfferDataError(f"offers: offer {frame['offer_id'].iloc[row]} {what}")
    out = pd.DataFrame(
        {
            "offer_id": frame["offer_id"].to_numpy(),
            "cost": cost.to_numpy(dtype=float),
            "kind": frame["kind"].astype("string").fillna("").to_numpy() if "kind" in frame else "",
            "cooldown_days": pd.to_numeric(frame.get("cooldown_days", pd.Series(0.0, frame.index)))
            .fillna(0.0)
            .to_numpy(dtype=float),
            "max_per_user": pd.to_numeric(frame.get("max_per_user", pd.Series(np.nan, frame.index))).to_numpy(
                dtype=float
            ),
            "valid_from": _date(frame, "valid_from").to_numpy(),
            "valid_to": _date(frame, "valid_to").to_numpy(),
            "eligible_stages": [
                _names(v) for v in frame.get("eligible_stages", pd.Series(None, frame.index))
            ],
            "eligible_segments": [
                _names(v) for v in frame.get("eligible_segments", pd.Series(None, frame.index))
            ],
            "min_value_at_stake": pd.to_numeric(frame.get("min_value_at_stake", pd.Series(0.0, frame.index)))
            .fillna(0.0)
            .to_numpy(dtype=float),
        }
    )
    return Catalogue(out)


def load_catalogue(data_dir: str | Path) -> Catalogue:
    """The data folder's ``offers`` table as a checked catalogue.

    Raises:
        OfferDataError: The folder has no offers table, or it breaks a rule of :func:`catalogue_from_frame`.
        ContractError: The table cannot be read or has rows that break the contract.
    """
    from features.contract import load_table

    offers = load_table(data_dir, "offers")
    if offers is None:
        raise OfferDataError(f"{data_dir}: no offers.parquet or offers.csv (the offer catalogue)")
    return catalogue_from_frame(offers)


def offer_name(offer_id: str) -> str:
    """An offer id as a person reads it: ``free_shipping`` -> ``free shipping``."""
    return str(offer_id).replace("_", " ").strip()
