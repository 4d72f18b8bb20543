"""A campaign-only folder (users with attributes, exposures, outcome events, offers) trains and chooses,
and where the offers' effects show in the users' attributes the policy reaches 85% of the oracle's value."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.offers.catalogue import load_catalogue
from training.offers.data import build_campaign_data
from training.offers.run import policy_value_of
from training.offers.train import NO_OFFER, POLICY, fit_offers, unit_values

AS_OF = date(2025, 4, 20)
EXPOSED = pd.Timestamp("2025-03-01 10:00")
COSTS = {"coupon": 2.0, "points": 1.0, "gift": 0.5}
ORDER = 20.0  # every active unit places one order of this amount: the value of retaining one


def true_uplift(users: pd.DataFrame, window: float = 1.0) -> pd.DataFrame:
    """Each offer's true effect on the chance of an order within 40 days, or, with ``window``, of one
    within the first ``window`` share of them (orders fall uniformly over the 40 days)."""
    basic = (users["plan"] == "basic").to_numpy()
    old = (users["age"] > 45).to_numpy()
    return window * pd.DataFrame(
        {
            "coupon": np.where(basic, 0.30, -0.05),
            "points": np.where(old, 0.20, 0.0),
            "gift": np.full(len(users), -0.10),  # cheap and harmful for everyone
        },
        index=users["user_id"],
    )


def campaign_folder(out: Path, n: int = 8000, seed: int = 3) -> Path:
    """No behaviour history: users (signup_ts empty), one randomized campaign, outcome events, offers."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame(
        {
            "user_id": [f"c{i:05d}" for i in range(n)],
            "signup_ts": "",
            "plan": rng.choice(["basic", "pro"], n),
            "region": rng.choice(["north", "south", "east"], n),
            "age": rng.integers(18, 75, n),
        }
    )
    variants = np.array(["control", *COSTS])
    arm = rng.integers(0, len(variants), n)
    effect = np.column_stack([np.zeros(n), true_uplift(users).to_numpy()])[np.arange(n), arm]
    active = rng.random(n) < 0.35 + effect
    delay = pd.to_timedelta(rng.uniform(0, 40, n), unit="D")  # some fall after the 30-day window
    events = pd.DataFrame(
        {
            "user_id": users["user_id"][active],
            "ts": (EXPOSED + delay[active]).strftime("%Y-%m-%dT%H:%M:%S"),
            "event_type": "purchase",
            "amount": ORDER,
        }
    )
    users.to_csv(out / "users.csv", index=False)
    events.to_csv(out / "events.csv", index=False)
    pd.DataFrame(
        {
            "experiment": "spring_offers",
            "variant": variants[arm],
            "unit_id": users["user_id"],
            "ts": EXPOSED.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    ).to_csv(out / "exposures.csv", index=False)
    pd.DataFrame({"offer_id": list(COSTS), "cost": list(COSTS.values())}).to_csv(
        out / "offers.csv", index=False
    )
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 16,000 units: the policy reached 88-99% of the oracle over generator seeds 1-6 (8,000: 62-92%)
    return campaign_folder(tmp_path_factory.mktemp("campaign_only"), n=16000)


def test_policy_reaches_85_percent_of_the_oracle(folder: Path) -> None:
    cat = load_catalogue(folder)
    data, note = build_campaign_data(folder, cat, as_of=AS_OF, horizon=30)
    assert note.startswith("user attributes only")
    assert {"plan", "region", "age"} <= set(data.features)
    assert set(data.categorical) == {"plan", "region"}
    values, default = unit_values(folder, data)
    # no purchase before the campaign: a retained unit is worth the mean revenue of an active control unit
    assert default == pytest.approx(ORDER)
    fit = fit_offers(data, values, cat, default_value=default)
    hold = fit.holdout
    # the 30-day outcome sees 30 of the 40 days over which an active unit orders
    users = pd.read_csv(folder / "users.csv")
    truth = true_uplift(users, window=30 / 40).loc[hold["user_id"], cat.offer_ids].to_numpy()
    gain = truth * hold["value"].to_numpy()[:, None] - cat.costs[None, :]
    oracle = np.clip(gain.max(axis=1), 0, None).sum()
    choice = hold["choice"].to_numpy()
    ours = np.where(choice > 0, gain[np.arange(len(choice)), np.maximum(choice - 1, 0)], 0.0).sum()
    best_single = gain.sum(axis=0).max()
    assert ours >= 0.85 * oracle
    assert ours > max(best_single, 0.0)
    assert not (choice == 1 + cat.offer_ids.index("gift")).any()  # the harmful offer is never chosen
    # the off-line estimates agree: the policy beats no offer and every single offer on held-out units
    table = fit.policies
    assert table.loc[POLICY, "dr"] > table.drop(index=POLICY)["dr"].max()
    # promotion re-scores a model's policy on these units: the same figure the evaluation gave, and a
    # model that offers nothing scores as "no offer"
    features = data.units[["user_id", *data.features]]
    assert policy_value_of(fit.model, hold, features, "activity") == pytest.approx(table.loc[POLICY, "ips"])
    fit.model.margin = float("inf")
    assert policy_value_of(fit.model, hold, features, "activity") == pytest.approx(table.loc[NO_OFFER, "ips"])
