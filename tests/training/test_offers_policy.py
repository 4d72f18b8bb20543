"""The policy's rules always hold (hypothesis), and it never spends on an offer that cannot pay."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.errors import OfferDataError
from training.offers.catalogue import catalogue_from_frame
from training.offers.policy import NONE, choose, eligibility

AS_OF = date(2025, 6, 1)
STAGES = ["new", "active", "core", "at_risk", "dormant"]
SEGMENTS = ["champions", "loyal", "at_risk", "hibernating"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A catalogue with random rules, users with stages and values, past exposures, uplifts."""
    k = draw(st.integers(1, 4))
    n = draw(st.integers(1, 30))
    offers = pd.DataFrame(
        {
            "offer_id": [f"o{i}" for i in range(k)],
            "cost": draw(st.lists(st.floats(0, 5), min_size=k, max_size=k)),
            "cooldown_days": draw(st.lists(st.sampled_from([0.0, 7.0, 30.0]), min_size=k, max_size=k)),
            "max_per_user": draw(st.lists(st.sampled_from([np.nan, 1.0, 2.0]), min_size=k, max_size=k)),
            "valid_from": draw(
                st.lists(st.sampled_from(["", "2025-05-01", "2025-06-02"]), min_size=k, max_size=k)
            ),
            "valid_to": draw(
                st.lists(st.sampled_from(["", "2025-06-01", "2025-07-01"]), min_size=k, max_size=k)
            ),
            "eligible_stages": draw(
                st.lists(st.sampled_from(["", "at_risk", "at_risk,dormant"]), min_size=k, max_size=k)
            ),
            "eligible_segments": draw(
                st.lists(st.sampled_from(["", "champions,loyal"]), min_size=k, max_size=k)
            ),
            "min_value_at_stake": draw(st.lists(st.sampled_from([0.0, 50.0]), min_size=k, max_size=k)),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "lifecycle_stage": draw(st.lists(st.sampled_from(STAGES), min_size=n, max_size=n)),
            "rfm_segment": draw(st.lists(st.sampled_from(SEGMENTS), min_size=n, max_size=n)),
            "value_at_stake": draw(st.lists(st.floats(0, 200), min_size=n, max_size=n)),
        }
    )
    m = draw(st.integers(0, 40))
    history = pd.DataFrame(
        {
            "user_id": draw(st.lists(st.sampled_from(users["user_id"].tolist()), min_size=m, max_size=m)),
            "variant": draw(
                st.lists(st.sampled_from([*offers["offer_id"], "control"]), min_size=m, max_size=m)
            ),
            "ts": pd.Timestamp(AS_OF)
            - pd.to_timedelta(draw(st.lists(st.integers(1, 120), min_size=m, max_size=m)), unit="D"),
        }
    )
    uplift = np.array(draw(st.lists(st.floats(-0.5, 0.5), min_size=n * k, max_size=n * k))).reshape(n, k)
    return offers, users, history, uplift


def _allowed_by_hand(offer: pd.Series, user: pd.Series, history: pd.DataFrame) -> bool:
    day = pd.Timestamp(AS_OF)
    if offer["valid_from"] and day < pd.Timestamp(offer["valid_from"]):
        return False
    if offer["valid_to"] and day >= pd.Timestamp(offer["valid_to"]):
        return False
    if offer["eligible_stages"] and user["lifecycle_stage"] not in offer["eligible_stages"].split(","):
        return False
    if offer["eligible_segments"] and user["rfm_segment"] not in offer["eligible_segments"].split(","):
        return False
    if user["value_at_stake"] < offer["min_value_at_stake"]:
        return False
    mine = history[(history["user_id"] == user["user_id"]) & (history["variant"] == offer["offer_id"])]
    age = (day - mine["ts"]).dt.days
    if offer["cooldown_days"] > 0 and (age < offer["cooldown_days"]).any():
        return False
    return not (np.isfinite(offer["max_per_user"]) and (age < 90).sum() >= offer["max_per_user"])


@settings(max_examples=60, deadline=None)
@given(worlds(), st.one_of(st.none(), st.floats(0, 20)))
def test_rules_always_hold(world: tuple, budget: float | None) -> None:
    offers, users, history, uplift = world
    catalogue = catalogue_from_frame(offers)
    allowed = eligibility(catalogue, users, as_of=AS_OF, history=history)
    value = users["value_at_stake"].to_numpy()
    picked = choose(uplift, value, catalogue, allowed, budget=budget)
    for i, user in users.iterrows():
        for k, offer in offers.iterrows():
            assert allowed[i, k] == _allowed_by_hand(offer, user, history)
        chosen = picked.offer[i]
        if chosen != NONE:
            assert allowed[i, chosen]
            gain = uplift[i, chosen] * value[i] - offers["cost"].iloc[chosen]
            assert gain > 0
            assert picked.expected_value[i] == pytest.approx(gain)
            # nothing allowed is better
            assert gain >= max(
                uplift[i, k] * value[i] - offers["cost"].iloc[k] for k in np.flatnonzero(allowed[i])
            )
    if budget is not None:
        spent = sum(offers["cost"].iloc[c] for c in picked.offer if c != NONE)
        assert spent <= budget + 1e-6


@settings(max_examples=40, deadline=None)
@given(worlds())
def test_offer_dearer_than_any_gain_is_never_chosen(world: tuple) -> None:
    offers, users, _, uplift = world
    value = users["value_at_stake"].to_numpy()
    # uplift is at most 0.5 and value at most 200: no gain can reach 100
    offers = offers.assign(cost=np.where(np.arange(len(offers)) == 0, 101.0, offers["cost"]))
    catalogue = catalogue_from_frame(offers)
    allowed = np.ones_like(uplift, dtype=bool)
    picked = choose(uplift, value, catalogue, allowed)
    assert not (picked.offer == 0).any()


@settings(max_examples=40, deadline=None)
@given(worlds())
def test_harmful_free_offer_is_never_chosen(world: tuple) -> None:
    offers, users, _, uplift = world
    offers = offers.assign(cost=0.0)
    uplift = uplift.copy()
    uplift[:, 0] = -np.abs(uplift[:, 0]) - 1e-3  # it truly harms everyone
    catalogue = catalogue_from_frame(offers)
    picked = choose(
        uplift, users["value_at_stake"].to_numpy() + 1.0, catalogue, np.ones_like(uplift, dtype=bool)
    )
    assert not (picked.offer == 0).any()


def test_budget_takes_best_value_per_cost_first() -> None:
    catalogue = catalogue_from_frame(pd.DataFrame({"offer_id": ["cheap", "dear"], "cost": [1.0, 4.0]}))
    uplift = np.array([[0.1, -1.0], [-1.0, 0.1], [0.05, -1.0]])
    value = np.array([30.0, 100.0, 30.0])  # gains: 2 (ratio 2), 6 (ratio 1.5), 0.5 (ratio 0.5)
    picked = choose(uplift, value, catalogue, np.ones((3, 2), dtype=bool), budget=5.0)
    assert picked.offer.tolist() == [0, 1, NONE]  # 1 + 4 = 5; the third would pass the budget
    assert picked.over_budget.tolist() == [False, False, True]


def test_catalogue_refusals_are_one_line() -> None:
    with pytest.raises(OfferDataError, match="offer a has no cost"):
        catalogue_from_frame(pd.DataFrame({"offer_id": ["a"], "cost": [np.nan]}))
    with pytest.raises(OfferDataError, match="listed more than once"):
        catalogue_from_frame(pd.DataFrame({"offer_id": ["a", "a"], "cost": [1.0, 2.0]}))
    with pytest.raises(OfferDataError, match="valid_to 'soon' of offer a is not a date"):
        catalogue_from_frame(pd.DataFrame({"offer_id": ["a"], "cost": [1.0], "valid_to": ["soon"]}))
