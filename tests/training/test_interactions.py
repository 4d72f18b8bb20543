"""Interaction matrices: weights per event type, refunds against, clipping, decay, windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.interactions import InteractionWeights, build_interactions, relevant_items, weights_for


def _events() -> pd.DataFrame:
    rows = [
        ("a", "2025-01-01", "view", "x"),
        ("a", "2025-01-02", "add_to_cart", "x"),
        ("a", "2025-01-02", "purchase", "x"),
        ("a", "2025-01-03", "view", "y"),
        ("b", "2025-01-01", "purchase", "y"),
        ("b", "2025-01-05", "refund", "y"),
        ("b", "2025-01-06", "view", "z"),
        ("c", "2025-01-01", "view", None),
        ("c", "2025-02-01", "view", "x"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "item_id"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


def test_weights_sum_per_cell_and_refunds_clip_at_zero() -> None:
    w = InteractionWeights(view=1, add_to_cart=3, purchase=5, refund=-5)
    inter = build_interactions(_events(), weights=w, end="2025-01-31")
    dense = pd.DataFrame(inter.matrix.toarray(), index=inter.user_ids, columns=inter.item_ids)
    # c's only item event is later than the window
    assert list(inter.user_ids) == ["a", "b"] and list(inter.item_ids) == ["x", "y", "z"]
    assert dense.loc["a", "x"] == 1 + 3 + 5 and dense.loc["a", "y"] == 1
    assert dense.loc["b", "y"] == 0 and dense.loc["b", "z"] == 1  # 5 - 5, refunded
    assert inter.matrix.nnz == 3  # the refunded cell is not stored


def test_time_decay_halves_at_the_half_life() -> None:
    w = InteractionWeights(view=1, add_to_cart=0, purchase=0, refund=0, half_life_days=10)
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a"],
            "ts": pd.to_datetime(["2025-01-01", "2025-01-21"]),
            "event_type": ["view", "view"],
            "item_id": ["x", "y"],
        }
    )
    inter = build_interactions(ev, weights=w, end="2025-01-31")
    np.testing.assert_allclose(inter.matrix.toarray()[0], [0.125, 0.5], rtol=1e-6)


def test_fixed_ids_and_windows() -> None:
    w = InteractionWeights()
    inter = build_interactions(
        _events(),
        weights=w,
        start="2025-01-02",
        end="2025-01-04",
        user_ids=np.array(["b", "a"]),
        item_ids=np.array(["y", "x"]),
    )
    np.testing.assert_allclose(inter.matrix.toarray(), [[0, 0], [1, 8]])
    rel = relevant_items(
        _events(),
        start="2025-01-01",
        end="2025-03-01",
        user_ids=np.array(["a", "b", "c"]),
        item_ids=np.array(["x", "y", "z"]),
        weights=w,
    )
    np.testing.assert_array_equal(rel.toarray(), [[1, 1, 0], [0, 0, 1], [1, 0, 0]])


def _export(amounts: list[float] | None) -> pd.DataFrame:
    """Plays: one row per interaction, all ``purchase`` (as ingested), one refund."""
    rows = [("a", "x"), ("a", "x"), ("a", "y"), ("b", "y"), ("b", "z")]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"])
    frame["event_type"] = "purchase"
    frame["ts"] = pd.Timestamp("2025-01-01")
    if amounts is not None:
        frame["amount"] = amounts
    return frame


def test_an_interactions_export_weighs_log_amounts_or_presence() -> None:
    plays = _export([3.0, 4.0, 1.0, 99.0, 2.0])
    assert weights_for(plays).strength == "interactions"
    assert weights_for(_events()).strength == "events"  # views and carts: weigh the types
    inter = build_interactions(plays, weights=weights_for(plays))
    dense = pd.DataFrame(inter.matrix.toarray(), index=inter.user_ids, columns=inter.item_ids)
    # a cell is log(1 + the pair's total amount): 3 + 4 plays of x count as 7
    expected = {("a", "x"): 7.0, ("a", "y"): 1.0, ("b", "y"): 99.0, ("b", "z"): 2.0}
    for (u, i), total in expected.items():
        assert dense.loc[u, i] == pytest.approx(np.log1p(total), rel=1e-6)
    assert dense.loc["a", "z"] == 0
    # without amounts every pair is one, however many rows it has
    binary = build_interactions(_export(None), weights=weights_for(_export(None)))
    np.testing.assert_array_equal(binary.matrix.toarray(), [[1, 1, 0], [0, 1, 1]])


def test_a_refund_takes_its_amount_back_in_an_interactions_export() -> None:
    sales = pd.concat(
        [
            _export([10.0, 10.0, 5.0, 8.0, 2.0]),
            pd.DataFrame(
                {
                    "user_id": ["a", "b"],
                    "item_id": ["x", "z"],
                    "event_type": "refund",
                    "ts": pd.Timestamp("2025-01-02"),
                    "amount": [15.0, 2.0],
                }
            ),
        ],
        ignore_index=True,
    )
    weights = weights_for(sales)
    assert weights.strength == "interactions"
    dense = pd.DataFrame(
        build_interactions(sales, weights=weights).matrix.toarray(), index=["a", "b"], columns=["x", "y", "z"]
    )
    assert dense.loc["a", "x"] == pytest.approx(np.log1p(5.0))  # 20 bought, 15 refunded
    assert dense.loc["b", "z"] == 0  # all of it refunded
