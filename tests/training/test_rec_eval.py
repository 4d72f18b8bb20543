"""Ranking metrics against a plain loop, and the holdout helpers."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from training.rec_eval import drop_had, oracle_ranking, ranking_metrics


def _by_hand(rec: np.ndarray, rel: np.ndarray, k: int) -> tuple[float, float, float, float]:
    recall, ndcg, ap, seen = [], [], [], set()
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
