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
DEAL_CHANNELS = ("paid_search", "email")  # where deal seekers come from
OFFER_DAYS = 60  # how long an offer lowers the hazard
BOOST_DAYS = 30  # how long it raises purchases
CAMPAIGN = "retention_campaign"
CAMPAIGN_RECENT_DAYS = 14  # the campaign reaches users seen in the last 14 days (and signed up 14+ days ago)
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


def price_sensitivity(draw: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """A user's price sensitivity in [0, 1] from their ``Beta(2, 2)`` draw and acquisition channel (index
    into :data:`CHANNELS`): deal seekers arrive from paid search and email (``sqrt(draw)``, mean about
    0.68), the others lean the other way (``draw ** 2``, mean 0.3). A monotone map of the draw, so the
    users' order within a channel is the draw's."""
    deal = np.isin(np.asarray(CHANNELS)[np.asarray(channel)], DEAL_CHANNELS)
    draw = np.asarray(draw, dtype=float)
    return np.asarray(np.where(deal, np.sqrt(draw), draw**2))


def offer_effect(
    offer_id: str,
    price_sensitivity: np.ndarray,
    engagement: np.ndarray,
    country: np.ndarray,
    device: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """True effect of an offer on a user, heterogeneous by design and along what a shop can see.

    Returns ``(tau, kappa)``: ``tau`` lowers the log churn hazard for 60 days (positive keeps the user;
    2 cuts the hazard to about a seventh), visits and purchases are multiplied by ``1 + kappa`` for 30
    days.

    * ``discount_10`` brings back the price-sensitive (who mostly arrive from paid search and email, see
      :func:`price_sensitivity`) and annoys the others: ``tau = 4 (ps - 0.3)``,
      ``kappa = 4 max(ps - 0.35, 0)``;
    * ``free_shipping`` matters where shipping is dear, abroad (outside GB): ``tau = 2``, ``kappa = 2``
      there; at home shipping is cheap already and it changes nothing;
    * ``points_500`` live in the app (iOS and Android users) and reward the engaged:
      ``tau = 0.5 + 0.5 min(engagement, 2)``, ``kappa = 1.5`` there; nothing on the web.

    These are the effects of a strong retention campaign on the users each offer suits (they come back
    two to three and a half times as often while it lasts); averaged over the campaign's users still
    there they move 30-day activity by two to four points, a plausible size for a retention offer.
    Channel, country and device are user attributes, so a model can find whom each offer suits;
    engagement shows only through the user's visits.
    """
    ps = np.asarray(price_sensitivity, dtype=float)
    e = np.asarray(engagement, dtype=float)
    if offer_id == "discount_10":
        return 4.0 * (ps - 0.3), 4.0 * np.maximum(ps - 0.35, 0.0)
    if offer_id == "free_shipping":
        abroad = np.asarray(country) != "GB"
        return np.where(abroad, 2.0, 0.0), np.where(abroad, 2.0, 0.0)
    if offer_id == "points_500":
        app = np.asarray(device) != "web"
        return np.where(app, 0.5 + 0.5 * np.minimum(e, 2.0), 0.0), np.where(app, 1.5, 0.0)
    raise KeyError(offer_id)
