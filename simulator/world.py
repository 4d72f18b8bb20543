"""The synthetic world's parameters and equations, shared by the simulator and the oracle.

See :mod:`simulator.simulate` for the process these equations drive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

DOW_VISIT = np.array([1.0, 0.95, 0.95, 1.0, 1.05, 1.15, 1.1])  # Monday .. Sunday
RHO = float(np.exp(-1 / 20))  # daily fading of a bad experience
CHANNELS = ("organic", "paid_search", "social", "referral", "email")
CHANNEL_P = (0.35, 0.25, 0.2, 0.1, 0.1)
CHANNEL_ENGAGEMENT = (1.0, 0.8, 0.6, 1.25, 1.1)
COUNTRIES = ("GB", "DE", "FR", "NL", "US")
COUNTRY_P = (0.6, 0.12, 0.1, 0.08, 0.1)
DEVICES = ("ios", "android", "web")
OFFERS = pd.DataFrame(
    {
        "offer_id": ["discount_10", "free_shipping", "points_500"],
        "kind": ["coupon", "shipping", "points"],
        "cost": [4.0, 2.5, 1.5],
        "cooldown_days": [30.0, 30.0, 14.0],
    }
)
OFFER_KAPPA = {"discount_10": 0.4, "free_shipping": 0.25, "points_500": 0.15}
OFFER_DAYS = 60  # how long an offer lowers the hazard
BOOST_DAYS = 30  # how long it raises purchases
CAMPAIGN = "retention_campaign"
EVENT_CODES = ("view", "add_to_cart", "purchase", "refund")


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of one synthetic world (all of it is a function of these).

    Args:
        n_users: Users who sign up over the span.
        days: Days simulated.
        seed: Seed of the only random generator.
        start: First day (UTC midnight, ``YYYY-MM-DD``).
        n_items: Catalogue size (default: grows with users, 200 to 3,000).
        n_categories: Item categories.
        dim: Dimension of the latent tastes.
        top_c: Items in each user's personal shortlist (the rest of their views follow popularity).
        explore: Share of views drawn from global popularity instead of the user's tastes.
        campaign_day: Day of the randomized offer campaign (default: 55% into the span; -1 for none).
        uplift_horizon: Days over which the true uplift of an offer on retention is measured.
        churn_trend: Change of every user's log churn hazard per 365 days (0: no trend; 0.7 roughly
            doubles the hazard over a year), so the churn rate moves between as-of dates.
    """

    n_users: int = 2000
    days: int = 240
    seed: int = 0
    start: str = "2025-01-01"
    n_items: int = 0
    n_categories: int = 20
    dim: int = 8
    top_c: int = 50
    explore: float = 0.15
    campaign_day: int = 0
    uplift_horizon: int = 90
    churn_trend: float = 0.0

    def resolved(self) -> WorldConfig:
        """The config with defaults that depend on size filled in."""
        n_items = self.n_items or int(np.clip(self.n_users // 25, 200, 3000))
        campaign = self.campaign_day or (int(self.days * 0.55) if self.days >= 60 else -1)
        return WorldConfig(**{**asdict(self), "n_items": n_items, "campaign_day": campaign})


def _day_of_week(cfg: WorldConfig, day: np.ndarray | int) -> np.ndarray:
    return np.asarray((pd.Timestamp(cfg.start).day_of_week + np.asarray(day)) % 7)


def hazard(
    h0: np.ndarray,
    engagement: np.ndarray,
    tenure: np.ndarray,
    bad: np.ndarray,
    tau: np.ndarray,
    trend: float = 0.0,
) -> np.ndarray:
    """Daily probability that an alive user leaves (see the module docstring); ``trend`` shifts the log
    hazard of everyone (:func:`trend_shift`)."""
    rate = h0 * engagement**-0.7 * (1 + 2 * np.exp(-tenure / 30)) * np.exp(0.6 * bad - tau + trend)
    return np.asarray(np.minimum(1 - np.exp(-rate), 0.5))


def trend_shift(cfg: WorldConfig, day: int) -> float:
    """The shift of every log hazard on ``day``: ``churn_trend · day / 365``."""
    return cfg.churn_trend * day / 365.0


def visit_probability(
    cfg: WorldConfig, engagement: np.ndarray, day: np.ndarray | int, kappa: np.ndarray | float = 0.0
) -> np.ndarray:
    """Daily probability that an alive user visits (an active offer brings them back more often)."""
    dow = DOW_VISIT[_day_of_week(cfg, day)]
    return np.asarray(np.minimum(0.9, 0.12 * engagement * dow * (1 + np.asarray(kappa))))


def offer_tau(offer_id: str, price_sensitivity: np.ndarray, engagement: np.ndarray) -> np.ndarray:
    """True effect of an offer on a user's log-hazard (positive keeps the user): heterogeneous by design.

    Coupons work on price-sensitive users and annoy the others; free shipping helps those who rarely come;
    points reward the engaged.
    """
    if offer_id == "discount_10":
        return np.asarray(2.5 * (price_sensitivity - 0.35))
    if offer_id == "free_shipping":
        return np.asarray(1.5 * np.exp(-engagement))
    if offer_id == "points_500":
        return np.asarray(0.8 * np.minimum(engagement, 2.0) / 2.0)
    raise KeyError(offer_id)
