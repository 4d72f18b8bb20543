"""The synthetic world: deterministic, valid under the contract, and its truth is really true."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import load_table, validate
from simulator.simulate import WorldConfig, simulate, true_churn_probability


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_worlds(tmp_path: Path) -> None:
    cfg = WorldConfig(n_users=400, days=90, seed=11)
    simulate(cfg, tmp_path / "a")
    simulate(cfg, tmp_path / "b")
    simulate(WorldConfig(n_users=400, days=90, seed=12), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["events.parquet"] != _digest(tmp_path / "c")["events.parquet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(n_users=6000, days=300, seed=5), out)
    return out


def test_the_world_obeys_the_contract(world: Path) -> None:
    for name in ("events", "users", "items", "offers", "exposures"):
        raw = pd.read_parquet(world / f"{name}.parquet")
        _, quarantine = validate(name, raw, now=pd.Timestamp("2026-01-01"))
        assert quarantine.empty, (name, quarantine["reason"].value_counts().to_dict())
    events = load_table(world, "events")
    users = load_table(world, "users")
    assert events is not None and users is not None
    assert set(events["user_id"]) <= set(users["user_id"])
    first = events.groupby("user_id")["ts"].min()
    assert (users.set_index("user_id")["signup_ts"].loc[first.index] <= first).all()
    assert events["ts"].max() < pd.Timestamp("2025-01-01") + pd.Timedelta(days=300)
    exposures = load_table(world, "exposures")
    assert exposures is not None and set(exposures["variant"]) == {
        "control",
        "discount_10",
        "free_shipping",
        "points_500",
    }


def _realized_churn(world: Path, as_of: str, horizon: int) -> pd.Series:
    events = pd.read_parquet(world / "events.parquet", columns=["user_id", "ts", "event_type"])
    start = pd.Timestamp(as_of)
    window = events[
        (events["ts"] >= start)
        & (events["ts"] < start + pd.Timedelta(days=horizon))
        & (events["event_type"] != "refund")
    ]
    return pd.Series(True, index=pd.Index(sorted(set(events["user_id"])))).drop(window["user_id"].unique())


def test_higher_true_churn_deciles_really_churn_more_often(world: Path) -> None:
    truth = true_churn_probability(world, "2025-08-01", horizon=60)
    churned = truth["user_id"].isin(_realized_churn(world, "2025-08-01", 60).index)
    alive = truth["alive"].to_numpy()  # the already-gone are certain; rank the uncertain ones
    deciles = pd.qcut(truth.loc[alive, "p_churn"].rank(method="first"), 10, labels=False)
    rates = churned[alive].groupby(deciles.to_numpy()).mean().to_numpy()
    assert np.all(np.diff(rates[[0, 3, 6, 9]]) > 0), rates
    assert rates[9] > 3 * rates[0]
    assert churned[~alive].all()  # nobody who had left comes back


def test_true_churn_probability_is_calibrated_against_the_simulated_future(world: Path) -> None:
    truth = true_churn_probability(world, "2025-06-01", horizon=45)
    churned = truth["user_id"].isin(_realized_churn(world, "2025-06-01", 45).index).to_numpy()
    p = truth["p_churn"].to_numpy()
    # the sum of Bernoulli outcomes has sd sqrt(sum p(1-p)); 4 sd is a test that fails only when wrong
    assert abs(churned.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    groups = pd.qcut(pd.Series(p).rank(method="first"), 5, labels=False).to_numpy()
    for g in range(5):
        pg = p[groups == g]
        assert abs(churned[groups == g].sum() - pg.sum()) < 4 * np.sqrt((pg * (1 - pg)).sum()) + 1


def test_offers_truly_help_on_average_and_their_truth_is_heterogeneous(world: Path) -> None:
    uplift = pd.read_parquet(world / "truth" / "uplift.parquet")
    by_offer = uplift.groupby("offer_id")["true_uplift"]
    assert (by_offer.mean() > 0).all()
    assert (by_offer.std() > 0.005).all()
    assert (uplift.loc[uplift["offer_id"] == "discount_10", "true_uplift"] < 0).any()  # coupons annoy some
