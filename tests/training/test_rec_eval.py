"""Ranking metrics against a plain loop, and the holdout helpers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from training.interactions import InteractionWeights, build_interactions
from training.rec_eval import (
    UserHoldout,
    drop_had,
    has_time_order,
    oracle_ranking,
    per_user_holdout,
    ranking_metrics,
)


def _by_hand(rec: np.ndarray, rel: np.ndarray, k: int) -> tuple[float, float, float, float]:
    recall, ndcg, ap = [], [], []
    seen: set[int] = set()
    for u in range(rel.shape[0]):
        r = set(np.flatnonzero(rel[u]))
        if not r:
            continue
        hits = [1 if i in r else 0 for i in rec[u][:k]]
        seen.update(int(i) for i in rec[u][:k] if i >= 0)
        d = min(len(r), k)
        recall.append(sum(hits) / d)
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        ndcg.append(dcg / sum(1 / math.log2(i + 2) for i in range(d)))
        s, c = 0.0, 0
        for i, h in enumerate(hits):
            if h:
                c += 1
                s += c / (i + 1)
        ap.append(s / d)
    return float(np.mean(recall)), float(np.mean(ndcg)), float(np.mean(ap)), len(seen) / rel.shape[1]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8), density=st.floats(0.05, 0.5))
def test_metrics_match_a_hand_loop(seed: int, k: int, density: float) -> None:
    rng = np.random.default_rng(seed)
    n, m = 30, 12
    rel = (rng.random((n, m)) < density).astype(float)
    rel[0, 0] = 1.0
    rec = np.array([rng.permutation(m)[:k] for _ in range(n)])
    rec[1, -1] = -1  # a list cut short by filters
    got = ranking_metrics(rec, sp.csr_matrix(rel), k)
    want = _by_hand(rec, rel, k)
    assert math.isclose(got[f"recall_at_{k}"], want[0], rel_tol=1e-9)
    assert math.isclose(got[f"ndcg_at_{k}"], want[1], rel_tol=1e-9)
    assert math.isclose(got[f"map_at_{k}"], want[2], rel_tol=1e-9)
    assert math.isclose(got[f"coverage_at_{k}"], want[3], rel_tol=1e-9)


def test_perfect_lists_score_one_and_had_items_are_dropped() -> None:
    rel = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 1, 0]], float))
    got = ranking_metrics(np.array([[1, 0], [2, 3]]), rel, 2)
    assert got["recall_at_2"] == got["ndcg_at_2"] == got["map_at_2"] == 1.0
    had = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], float))
    np.testing.assert_array_equal(drop_had(rel, had).toarray(), [[0, 1, 0, 0], [0, 0, 1, 0]])


def test_oracle_skips_had_items_and_keeps_true_order() -> None:
    had = sp.csr_matrix(np.array([[0, 1, 0, 0]], float))
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    out = oracle_ranking({"u": ["b", "c", "zz", "a"]}, np.array(["u"]), index, had, 3)
    np.testing.assert_array_equal(out, [[2, -1, 0]])


def _log(times: bool, seed: int = 0) -> pd.DataFrame:
    """Users with 1, 5 and 10 items, one purchase each at distinct times (or all at one instant)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user, n in (("solo", 1), ("five", 5), ("ten", 10)):
        for j in rng.permutation(n):
            ts = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(j) if times else 0)
            rows.append((user, f"{user}-item{j}", "purchase", ts))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts"])


def _split(events: pd.DataFrame) -> tuple[UserHoldout, dict[str, set[str]]]:
    weights = InteractionWeights()
    inter = build_interactions(events, weights=weights)
    split = per_user_holdout(events, inter, weights, share=0.2)
    held = {
        str(u): {str(split.holdout.item_ids[j]) for j in split.holdout.relevant[r].indices}
        for r, u in enumerate(split.holdout.user_ids)
    }
    return split, held


def test_per_user_holdout_keeps_each_users_latest_items() -> None:
    split, held = _split(_log(times=True))
    assert split.temporal
    # 20% of 5 is 1, of 10 is 2: the latest by time; the single item stays for fitting
    assert held == {"five": {"five-item4"}, "ten": {"ten-item8", "ten-item9"}}
    events = _log(times=True)
    inter = build_interactions(events, weights=InteractionWeights())
    fewer = per_user_holdout(events, inter, InteractionWeights(), min_items=6).holdout
    assert list(fewer.user_ids) == ["ten"] and fewer.relevant.nnz == 2  # "five" has too few items
    fit = pd.DataFrame(split.fit.matrix.toarray(), index=split.fit.user_ids, columns=split.fit.item_ids)
    ten, solo = fit.loc["ten"].to_numpy(dtype=float), fit.loc["solo"].to_numpy(dtype=float)
    cols = list(fit.columns)
    assert ten[cols.index("ten-item9")] == 0 and ten[cols.index("ten-item7")] > 0 and solo.sum() > 0
    # what each held-out user "had" is the fitting row, without the held-out items
    for r, u in enumerate(split.holdout.user_ids):
        had = {str(split.holdout.item_ids[j]) for j in split.holdout.had[r].indices}
        assert not had & held[str(u)] and len(had) == {"five": 4, "ten": 8}[str(u)]


def test_without_a_time_order_a_random_share_is_held_out() -> None:
    events = _log(times=False)
    split, held = _split(events)
    assert not split.temporal
    assert {u: len(items) for u, items in held.items()} == {"five": 1, "ten": 2}
    # random, not the first or last rows of the file: another seed holds out other items
    weights = InteractionWeights()
    inter = build_interactions(events, weights=weights)
    others = [per_user_holdout(events, inter, weights, seed=s).holdout.relevant for s in range(1, 6)]
    assert any((o != split.holdout.relevant).nnz for o in others)


def test_random_folds_hold_out_disjoint_items_of_the_same_number() -> None:
    events = _log(times=False)
    weights = InteractionWeights()
    inter = build_interactions(events, weights=weights)
    folds = [per_user_holdout(events, inter, weights, fold=f).holdout for f in range(5)]
    held = [
        {(str(h.user_ids[r]), int(j)) for r in range(len(h.user_ids)) for j in h.relevant[r].indices}
        for h in folds
    ]
    # "ten" holds out 2 items per fold and "five" 1: five folds cover each of their items exactly once
    assert all(
        sum(u == "ten" for u, _ in fold) == 2 and sum(u == "five" for u, _ in fold) == 1 for fold in held
    )
    everything = [cell for fold in held for cell in fold]
    assert len(everything) == len(set(everything)) == 15
    for h in folds:  # what a fold fits on never contains what it holds out
        assert h.had.multiply(h.relevant).nnz == 0
    with pytest.raises(ValueError, match="one fold"):
        dated = _log(times=True)
        per_user_holdout(dated, build_interactions(dated, weights=weights), weights, fold=1)


def test_time_order_needs_distinct_times_for_most_users() -> None:
    cells = pd.DataFrame({"row": [0, 0, 1, 1], "col": [0, 1, 0, 1]})
    same = pd.Timestamp("2025-01-01")
    assert not has_time_order(cells.assign(ts=[same] * 4))
    assert has_time_order(
        cells.assign(ts=[same, same + pd.Timedelta(days=1), same, same + pd.Timedelta(days=2)])
    )
    # one user with an order, one stamped at a single instant: not most
    assert not has_time_order(
        cells.assign(ts=[same, same + pd.Timedelta(days=1), same, same]).iloc[[0, 2, 3]]
    )
