"""The oracle of the synthetic world: what each user would truly do, computed from the latent state.

A user who does not visit has no bad experience, so the chance of "no activity in ``[D, D + H)``" has a
closed form given the state when day ``D`` begins; no Monte-Carlo noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.world import (
    BOOST_DAYS,
    CAMPAIGN,
    OFFER_DAYS,
    OFFERS,
    RHO,
    WorldConfig,
    hazard,
    offer_effect,
    trend_shift,
    visit_probability,
)


def load_config(world: str | Path) -> WorldConfig:
    """The parameters a simulated data folder was made with."""
    path = Path(world) / "truth" / "params.json"
    if not path.exists():
        raise FileNotFoundError(f"{world}: not a simulated world (no truth/params.json)")
    return WorldConfig(**json.loads(path.read_text()))


def _no_activity(  # noqa: PLR0913 - private: the state and both offer windows, as they are
    cfg: WorldConfig,
    truth: pd.DataFrame,
    bad_start: np.ndarray,
    day: int,
    horizon: int,
    tau: np.ndarray,
    tau_until: int,
    kappa: np.ndarray,
    kappa_until: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact P(no visit) and P(no purchase) over ``[day, day + horizon)`` for users alive entering ``day``."""
    e = truth["engagement"].to_numpy()
    s_visit = np.ones(len(truth))
    s_buy = np.ones(len(truth))
    p_visit = np.zeros(len(truth))
    p_buy = np.zeros(len(truth))
    for j in range(day, day + horizon):
        tau_j = tau if j < tau_until else 0.0
        kappa_j = kappa if j < kappa_until else 0.0
        h = hazard(
            truth["h0"].to_numpy(),
            e,
            j - truth["signup_day"].to_numpy(),
            bad_start * RHO ** (j - day),
            np.asarray(tau_j),
            trend_shift(cfg, j),
        )
        v = visit_probability(cfg, e, j, kappa_j)
        b = np.minimum(0.95, truth["buy_prob"].to_numpy() * (1 + np.asarray(kappa_j)))
        p_visit += s_visit * h
        p_buy += s_buy * h
        s_visit *= (1 - h) * (1 - v)
        s_buy *= (1 - h) * (1 - v * b)
    return p_visit + s_visit, p_buy + s_buy


def _state(world: Path, cfg: WorldConfig, day: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    truth = pd.read_parquet(world / "truth" / "users.parquet")
    orders = pd.read_parquet(world / "truth" / "bad_orders.parquet")
    orders = orders[orders["day"] < day]
    weights = RHO ** (day - orders["day"].to_numpy())
    bad = orders.assign(w=weights).groupby("user_id")["w"].sum()
    bad_start = truth["user_id"].map(bad).fillna(0.0).to_numpy()
    alive = (truth["signup_day"].to_numpy() < day) & (
        (truth["churn_day"] < 0) | (truth["churn_day"] >= day)
    ).to_numpy()
    return truth, bad_start, alive


def _effect(offer: str, users: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The offer's ``(tau, kappa)`` for these users: the simulator's own function."""
    return offer_effect(
        offer,
        users["price_sensitivity"].to_numpy(),
        users["engagement"].to_numpy(),
        users["country"].to_numpy(),
        users["device"].to_numpy(),
    )


def _offer_state(cfg: WorldConfig, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    tau = np.zeros(len(truth))
    kappa = np.zeros(len(truth))
    for offer in OFFERS["offer_id"]:
        who = (truth["offer"] == offer).to_numpy()
        tau[who], kappa[who] = _effect(offer, truth.loc[who])
    return tau, kappa


def true_churn_probability(world: str | Path, as_of: str | pd.Timestamp, horizon: int = 90) -> pd.DataFrame:
    """The oracle: each user's true probability of no activity (and of no purchase) in the horizon.

    "Activity" is a visit (views, carts, purchases; refunds are not activity). Computed exactly from the
    latent state when ``as_of`` begins, for users who signed up before ``as_of``.

    Args:
        world: A simulated data folder.
        as_of: The as-of date (UTC midnight).
        horizon: Days in the label window.

    Returns:
        ``user_id, alive, p_churn, p_no_purchase`` (``alive``: latent, not yet gone when ``as_of`` begins).
    """
    world = Path(world)
    cfg = load_config(world)
    day = (pd.Timestamp(as_of) - pd.Timestamp(cfg.start)).days
    truth, bad_start, alive = _state(world, cfg, day)
    tau, kappa = _offer_state(cfg, truth)
    camp = cfg.campaign_day if cfg.campaign_day >= 0 else -(10**6)
    tau = np.where(camp <= day, tau, 0.0)  # an offer not yet made is not in the state
    kappa = np.where(camp <= day, kappa, 0.0)
    p_visit, p_buy = _no_activity(
        cfg, truth, bad_start, day, horizon, tau, camp + OFFER_DAYS, kappa, camp + BOOST_DAYS
    )
    population = truth["signup_day"].to_numpy() < day
    frame = pd.DataFrame(
        {
            "user_id": truth["user_id"],
            "alive": alive,
            "p_churn": np.where(alive, p_visit, 1.0),
            "p_no_purchase": np.where(alive, p_buy, 1.0),
        }
    )
    return frame[population].reset_index(drop=True)


def true_uplift(world: str | Path) -> pd.DataFrame:
    """Each campaign user's true uplift of each offer on retention over ``uplift_horizon`` days.

    Retention is "any visit in ``[campaign day, + horizon)``"; uplift is its probability with the offer
    minus without, from the latent state on the campaign day (zero for users already gone).

    Returns:
        ``user_id, offer_id, tau, true_uplift`` for every user in the campaign and every offer.
    """
    world = Path(world)
    cfg = load_config(world)
    day = cfg.campaign_day
    exposures = pd.read_parquet(world / "exposures.parquet")
    truth, bad_start, alive = _state(world, cfg, day)
    in_campaign = (
        truth["user_id"].isin(exposures.loc[exposures["experiment"] == CAMPAIGN, "unit_id"]).to_numpy()
    )
    truth, bad_start, alive = (
        truth[in_campaign].reset_index(drop=True),
        bad_start[in_campaign],
        alive[in_campaign],
    )
    zeros = np.zeros(len(truth))
    base, _ = _no_activity(cfg, truth, bad_start, day, cfg.uplift_horizon, zeros, day, zeros, day)
    rows = []
    for offer in OFFERS["offer_id"]:
        tau, kappa = _effect(offer, truth)
        treated, _ = _no_activity(
            cfg, truth, bad_start, day, cfg.uplift_horizon, tau, day + OFFER_DAYS, kappa, day + BOOST_DAYS
        )
        rows.append(
            pd.DataFrame(
                {
                    "user_id": truth["user_id"],
                    "offer_id": offer,
                    "tau": tau,
                    "true_uplift": np.where(alive, base - treated, 0.0),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)
