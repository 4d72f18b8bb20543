"""The simulated world's oracle (truth/uplift.parquet) judges the policy chosen from its campaign.

The world's offers act along what a shop sees: the coupon on the price-sensitive (who mostly arrive from
paid search and email), free shipping abroad, points in the app, more on users who rarely come. Judged by
the simulator's true uplifts on the held-out campaign units, the chosen policy reaches 85% of the oracle
policy's true value, beats "no offer" and every "everyone gets X".

The world: 150,000 users over 120 days, about 59,000 campaign units (11,800 held out), a 30-day
activity window. Seed 12 is tested: 0.897 of the oracle; the same size with seeds 11 and 13 gave 0.866
and 0.888. The learner's noise at this size moves the ratio by a few points from seed to seed.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from simulator.oracle import offer_policy_values
from simulator.simulate import WorldConfig, simulate
from training.offers.catalogue import load_catalogue
from training.offers.data import build_campaign_data
from training.offers.train import fit_offers, unit_values


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offers_truth")
    simulate(WorldConfig(n_users=150_000, days=120, seed=12, uplift_horizon=30), out)
    return out


@pytest.mark.slow
def test_policy_reaches_85_percent_of_the_oracle(world: Path) -> None:
    cat = load_catalogue(world)
    data, _ = build_campaign_data(world, cat, as_of=date(2025, 5, 1), horizon=30)
    values, default = unit_values(world, data)
    fit = fit_offers(data, values, cat, default_value=default)
    got = offer_policy_values(world, fit.holdout, cat.offer_ids, cat.costs)
    singles = got[[f"everyone gets {offer}" for offer in cat.offer_ids]]
    assert got["oracle"] > 0
    assert got["model policy"] >= 0.85 * got["oracle"]
    assert got["model policy"] > got["no offer"] == 0.0
    assert got["model policy"] > singles.max()  # better than the best single offer for everyone
