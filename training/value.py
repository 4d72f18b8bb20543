"""Value at stake: each user's expected spend over the horizon if retained.

Expected purchases come from a BG/NBD fit on purchase days (conditional on being alive, i.e. retained),
the spend per purchase from a Gamma-Gamma fit that shrinks each user's mean order value toward the
population's by how many orders back it up. So a frequent big spender is worth more than an occasional
small one, and a single large order is not taken at face value.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from training.baselines import BGNBD, GammaGamma, rfm_summary
from training.errors import TrainingDataError

WEEK_DAYS = 7.0


def value_at_stake(events: pd.DataFrame, as_of: date, user_ids: pd.Series, horizon: int) -> pd.DataFrame:
    """Expected purchases, order value and spend over ``[as_of, as_of + horizon)`` for retained users.

    Both models are fitted on purchases before ``as_of`` of the given users.

    Args:
        events: Contract events (purchases with ``amount``).
        as_of: Only events before this date are used.
        user_ids: Users to value.
        horizon: Days ahead.

    Returns:
        ``user_id, expected_purchases, expected_order_value, value_at_stake`` (0 when the data has no
        amounts).
    """
    ts = pd.Timestamp(as_of)
    summary = rfm_summary(events, ts, event_types=("purchase",), user_ids=user_ids, time_unit_days=WEEK_DAYS)
    x, t_x, big_t = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    buyers = summary["n_transactions"].to_numpy() > 0
    t = horizon / WEEK_DAYS
    purchases = np.zeros(len(summary))
    if buyers.sum() >= 10:
        bg = BGNBD(penalizer=0.001).fit(x[buyers], t_x[buyers], big_t[buyers])
        alive = np.maximum(bg.probability_alive(x, t_x, big_t), 1e-6)
        purchases = bg.expected_transactions(t, x, t_x, big_t) / alive
        # a user with no purchase yet: the rate of a fresh buyer (first purchase "now")
        purchases = np.where(buyers, purchases, bg.expected_transactions(t, *np.zeros((3, 1))))
    has_amount = "amount" in events and bool(events["amount"].notna().any())
    order_value = np.zeros(len(summary))
    if has_amount:
        m = summary["monetary_value"].to_numpy(dtype=float)
        try:
            gg = GammaGamma(penalizer=0.001).fit(x, m)
            order_value = gg.expected_spend(x, m)
        except TrainingDataError:  # too few repeat buyers to fit: each user's own mean, else the overall mean
            spend = events.loc[(events["ts"] < ts) & (events["event_type"] == "purchase"), "amount"]
            order_value = np.where(m > 0, m, float(spend.mean()) if len(spend) else 0.0)
    return pd.DataFrame(
        {
            "user_id": summary["user_id"].to_numpy(),
            "expected_purchases": purchases,
            "expected_order_value": order_value,
            "value_at_stake": purchases * order_value,
        }
    )
