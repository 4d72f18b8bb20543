"""A world whose churn rate trends: the hazard really moves, and the oracle still tells the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.simulate import WorldConfig, simulate, true_churn_probability
from simulator.world import hazard, trend_shift

TREND = 1.5


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    flat, trending = tmp_path_factory.mktemp("flat"), tmp_path_factory.mktemp("trending")
    simulate(WorldConfig(n_users=3000, days=240, seed=3), flat)
    simulate(WorldConfig(n_users=3000, days=240, seed=3, churn_trend=TREND), trending)
    return flat, trending


def _churned(world: Path, as_of: str, horizon: int, user_ids: pd.Series) -> np.ndarray:
    events = pd.read_parquet(world / "events.parquet", columns=["user_id", "ts", "event_type"])
    start = pd.Timestamp(as_of)
    window = events[
        (events["ts"] >= start)
        & (events["ts"] < start + pd.Timedelta(days=horizon))
        & (events["event_type"] != "refund")
    ]
    return np.asarray(~user_ids.isin(set(window["user_id"])))


def test_the_trend_multiplies_every_hazard_by_exp_trend_times_years() -> None:
    cfg = WorldConfig(churn_trend=TREND)
    assert trend_shift(cfg, 0) == 0.0 and trend_shift(WorldConfig(), 200) == 0.0
    args = (np.array([0.003]), np.array([1.0]), np.array([100.0]), np.array([0.0]), np.array([0.0]))
    rate = -np.log(1 - hazard(*args))
    rate_year = -np.log(1 - hazard(*args, trend_shift(cfg, 365)))
    np.testing.assert_allclose(rate_year / rate, np.exp(TREND))


def test_churn_rises_over_time_only_in_the_trending_world(worlds: tuple[Path, Path]) -> None:
    flat, trending = worlds
    rates = {}
    for name, world in (("flat", flat), ("trending", trending)):
        for as_of in ("2025-03-01", "2025-06-01"):
            truth = true_churn_probability(world, as_of, horizon=45)
            rates[name, as_of] = truth.loc[truth["alive"], "p_churn"].mean()
    rise_flat = rates["flat", "2025-06-01"] / rates["flat", "2025-03-01"]
    rise_trending = rates["trending", "2025-06-01"] / rates["trending", "2025-03-01"]
    assert rise_trending > rise_flat * 1.15, rates


@pytest.mark.parametrize("as_of", ["2025-03-01", "2025-06-01"])
def test_the_oracle_is_calibrated_in_the_trending_world(worlds: tuple[Path, Path], as_of: str) -> None:
    _, trending = worlds
    truth = true_churn_probability(trending, as_of, horizon=45)
    churned = _churned(trending, as_of, 45, truth["user_id"])
    p = truth["p_churn"].to_numpy()
    # the sum of Bernoulli outcomes has sd sqrt(sum p(1-p)); 4 sd fails only when the oracle is wrong
    assert abs(churned.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
