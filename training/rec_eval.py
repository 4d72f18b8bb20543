"""Ranking metrics for top-k recommendations, measured by time.

For each evaluated user: ``rel`` = items they interacted with in the test window that they had not had
before (the caller removes those), ``rec`` = the model's top ``k`` with already-had items excluded.

* Recall@k = hits / min(|rel|, k)  (1.0 is reachable for every user)
* NDCG@k   = Σ hits 1/log2(rank+1) / Σ_{i ≤ min(|rel|, k)} 1/log2(i+1)
* MAP@k    = Σ_{hit at rank r} precision@r / min(|rel|, k)
* coverage = distinct items recommended to anyone / catalogue size

Averages are over users with at least one relevant item.

Where the true preferences are known (a simulated world), the caller hands them in as a
:class:`RecommenderReference` and the table gains the oracle's row; this module never looks for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.interactions import Interactions, InteractionWeights, relevant_items
from training.recommenders.base import RecommenderModel
from training.recommenders.service import Recommender

METRICS: tuple[str, ...] = ("recall", "ndcg", "map", "coverage")
K = 10


@dataclass(frozen=True)
class RecommenderReference:
    """What an evaluation may compare models with when the truth is known: the oracle's inputs.

    Attributes:
        preferences: User id -> item ids in that user's true order of preference, best first.
        popularity: Item ids by true global popularity, most popular first; it continues a user's oracle
            list once their known preferred items run out (empty: no continuation).
    """

    preferences: Mapping[str, Sequence[str]]
    popularity: Sequence[str] = ()


@dataclass
class Holdout:
    """Users with relevant items in a window, what they had before it, and what became relevant."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    had: sp.csr_matrix
    relevant: sp.csr_matrix


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.csr_matrix, k: int = 10, n_items: int | None = None
) -> dict[str, float]:
    """Recall@k, NDCG@k, MAP@k and coverage.

    Args:
        recommended: ``(users, >= k)`` item indices, best first; ``-1`` pads a short list.
        relevant: ``(users, items)`` CSR; stored entries are the relevant items.
        k: Cut-off.
        n_items: Catalogue size for coverage (default: ``relevant.shape[1]``).

    Returns:
        ``recall_at_k, ndcg_at_k, map_at_k, coverage_at_k, users`` (metric names carry ``k``).
    """
    rec = np.asarray(recommended)[:, :k]
    rel = sp.csr_matrix(relevant)
    n_rel = np.diff(rel.indptr)
    users = np.flatnonzero(n_rel > 0)
    n_items = rel.shape[1] if n_items is None else n_items
    if len(users) == 0:
        return {
            f"recall_at_{k}": float("nan"),
            f"ndcg_at_{k}": float("nan"),
            f"map_at_{k}": float("nan"),
            f"coverage_at_{k}": 0.0,
            "users": 0,
        }
    rec = rec[users]
    rel = rel[users]
    rows = np.repeat(np.arange(len(users)), rec.shape[1])
    cols = rec.ravel()
    valid = cols >= 0
    hit = np.zeros(rec.shape, dtype=bool)
    flat_hit = np.asarray(rel[rows[valid], cols[valid]]).ravel() > 0
    hit.ravel()[np.flatnonzero(valid)] = flat_hit
    denom = np.minimum(n_rel[users], k).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, rec.shape[1] + 2))
    dcg = (hit * discounts).sum(axis=1)
    idcg = np.cumsum(discounts)[denom.astype(int) - 1]
    precision_at = np.cumsum(hit, axis=1) / np.arange(1, rec.shape[1] + 1)
    ap = (precision_at * hit).sum(axis=1) / denom
    recommended_items = np.unique(rec)
    coverage = len(recommended_items[recommended_items >= 0]) / max(n_items, 1)
    return {
        f"recall_at_{k}": float((hit.sum(axis=1) / denom).mean()),
        f"ndcg_at_{k}": float((dcg / idcg).mean()),
        f"map_at_{k}": float(ap.mean()),
        f"coverage_at_{k}": float(coverage),
        "users": len(users),
    }


def drop_had(relevant: sp.csr_matrix, had: sp.csr_matrix) -> sp.csr_matrix:
    """``relevant`` without the cells stored in ``had`` (what users already had before the window)."""
    rel = sp.csr_matrix(relevant, dtype=np.float32, copy=True)
    had_bin = sp.csr_matrix(had, dtype=np.float32, copy=True)
    had_bin.data = np.ones_like(had_bin.data)
    out = rel - rel.multiply(had_bin)
    out = sp.csr_matrix(out)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def remap_columns(matrix: sp.csr_matrix, col_map: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Move each stored column ``j`` to ``col_map[j]`` (dropping entries mapped to ``-1``)."""
    coo = sp.csr_matrix(matrix).tocoo()
    new = col_map[coo.col]
    ok = new >= 0
    return sp.csr_matrix((coo.data[ok], (coo.row[ok], new[ok])), shape=(matrix.shape[0], n_cols))


def oracle_ranking(
    truth: Mapping[str, Sequence[str]],
    user_ids: np.ndarray,
    item_index: Mapping[str, int],
    had: sp.csr_matrix,
    k: int = 10,
    fill: Sequence[str] | None = None,
) -> np.ndarray:
    """The oracle's top ``k`` per user: true preference order with already-had items removed.

    Args:
        truth: User id -> item ids by true preference (:attr:`RecommenderReference.preferences`).
        user_ids: Users (rows of ``had``).
        item_index: Item id -> column.
        had: ``(users, items)`` CSR of what each user already had.
        k: List length.
        fill: Items in true global popularity order, to continue a user's list once their known true top
            items run out (a heavy user may already have had most of them).

    Returns:
        ``(users, k)`` column indices, ``-1`` where the oracle's list runs out (or names an unknown item).
    """
    out = np.full((len(user_ids), k), -1, np.int64)
    for r, u in enumerate(user_ids):
        had_r = set(had.indices[had.indptr[r] : had.indptr[r + 1]].tolist())
        ranked = [item_index.get(t, -1) for t in truth.get(str(u), [])]
        ranked = [j for j in ranked if j not in had_r][:k]
        for t in fill or []:
            if len(ranked) >= k:
                break
            j = item_index.get(t, -1)
            if j >= 0 and j not in had_r and j not in ranked:
                ranked.append(j)
        out[r, : len(ranked)] = ranked
    return out


def make_holdout(
    events: pd.DataFrame, inter: Interactions, start: date, end: date, weights: InteractionWeights
) -> Holdout:
    """Users of ``inter`` with new positive interactions in ``[start, end)``, minus what they had."""
    rel = drop_had(
        relevant_items(
            events, start=start, end=end, user_ids=inter.user_ids, item_ids=inter.item_ids, weights=weights
        ),
        inter.matrix,
    )
    rows = np.flatnonzero(np.diff(rel.indptr) > 0)
    return Holdout(inter.user_ids[rows], inter.item_ids, inter.matrix[rows], rel[rows])


def score_model(model: RecommenderModel, inter: Interactions, holdout: Holdout, k: int = K) -> np.ndarray:
    """Top-``k`` columns for the holdout's users from a model fitted on ``inter`` (had items excluded)."""
    rows = pd.Index(inter.user_ids).get_indexer(holdout.user_ids)
    out = np.empty((len(rows), k), np.int64)
    for lo in range(0, len(rows), 2048):
        r = rows[lo : lo + 2048]
        idx, val = model.recommend(inter.matrix[r], k, users=r, exclude=inter.matrix[r])
        out[lo : lo + len(r)] = np.where(np.isfinite(val), idx, -1)
    return out


def score_recommender(rec: Recommender, holdout: Holdout, k: int = K) -> dict[str, float]:
    """Metrics of a loaded :class:`Recommender` (e.g. the champion) on a holdout, in its own id space."""
    col_map = pd.Index(rec.item_ids).get_indexer(holdout.item_ids)
    had = remap_columns(holdout.had, col_map, len(rec.item_ids))
    idx, _ = rec.recommend_batch(
        holdout.user_ids, k, exclude_bought=False, exclude_seen=False, exclude_unavailable=False, exclude=had
    )
    back = pd.Index(holdout.item_ids).get_indexer(rec.item_ids[np.maximum(idx, 0)].ravel()).reshape(idx.shape)
    return ranking_metrics(np.where(idx >= 0, back, -1), holdout.relevant, k)


def side_by_side(
    recs: Mapping[str, np.ndarray],
    holdout: Holdout,
    reference: RecommenderReference | None = None,
    k: int = K,
) -> pd.DataFrame:
    """One row per model: Recall/NDCG/MAP@k and coverage on the window.

    Given a ``reference`` (the truth of a simulated world) also: the oracle's row (true preference order,
    continued by true popularity), ``true_recall_at_k`` (Recall@k against each user's true top-k items not
    yet had) and ``oracle_fraction`` (the model's NDCG@k ÷ the oracle's, both with already-had items
    excluded).
    """
    rows = {name: ranking_metrics(r, holdout.relevant, k) for name, r in recs.items()}
    table = pd.DataFrame(rows).T
    if reference is not None:
        truth, fill = reference.preferences, reference.popularity
        item_index = {t: i for i, t in enumerate(holdout.item_ids.tolist())}
        oracle = oracle_ranking(truth, holdout.user_ids, item_index, holdout.had, k, fill)
        known = oracle_ranking(truth, holdout.user_ids, item_index, holdout.had, k)  # true top items only
        found = known >= 0
        true_top = sp.csr_matrix(
            (np.ones(int(found.sum())), (np.nonzero(found)[0], known[found])), shape=holdout.relevant.shape
        )
        table.loc["oracle"] = pd.Series(ranking_metrics(oracle, holdout.relevant, k))
        recs = {**recs, "oracle": oracle}
        table[f"true_recall_at_{k}"] = [
            ranking_metrics(recs[str(n)], true_top, k)[f"recall_at_{k}"] for n in table.index
        ]
        oracle_ndcg = float(table.loc["oracle", f"ndcg_at_{k}"])  # type: ignore[arg-type]
        table["oracle_fraction"] = table[f"ndcg_at_{k}"] / oracle_ndcg
    table["users"] = table["users"].astype(int)
    return table


HOLDOUT_SHARE = 0.2
"""Share of each user's items held out for validation (at least one, never all of them)."""


@dataclass
class UserHoldout:
    """Each user's held-out items and what the model may fit on.

    Attributes:
        fit: The interactions without the held-out cells (same rows and columns as the input).
        holdout: Users with held-out items, what they had (``fit``'s rows) and the held-out items.
        temporal: ``True`` when each user's latest items were held out; ``False`` when the data has no
            usable time order and a random share of each user's items was held out instead.
    """

    fit: Interactions
    holdout: Holdout
    temporal: bool


def first_positive_times(
    events: pd.DataFrame, inter: Interactions, weights: InteractionWeights
) -> pd.DataFrame:
    """``row, col, ts``: each stored cell of ``inter`` with the time of its first positive event."""
    from training.interactions import event_weights

    ev = events.loc[events["item_id"].notna()] if "item_id" in events else events.iloc[:0]
    w = event_weights(ev, replace(weights, half_life_days=None))
    ev = ev.loc[w > 0]
    rows = pd.Index(inter.user_ids.astype(str)).get_indexer(ev["user_id"].astype(str))
    cols = pd.Index(inter.item_ids.astype(str)).get_indexer(ev["item_id"].astype(str))
    ok = (rows >= 0) & (cols >= 0)
    first = (
        pd.DataFrame({"row": rows[ok], "col": cols[ok], "ts": ev["ts"].to_numpy()[ok]})
        .groupby(["row", "col"], sort=False)["ts"]
        .min()
    )
    coo = inter.matrix.tocoo()
    cells = pd.DataFrame({"row": coo.row.astype(np.int64), "col": coo.col.astype(np.int64)})
    return cells.join(first, on=["row", "col"]).reset_index(drop=True)


def has_time_order(cells: pd.DataFrame) -> bool:
    """Whether the interaction times can order each user's items.

    Not when every event carries one timestamp (or none), nor when most users with several items got
    them all at one instant (an export stamped at its own creation, not at each interaction).
    """
    ts = cells["ts"].dropna()
    if ts.nunique() < 2:
        return False
    per_user = cells.dropna(subset=["ts"]).groupby("row")["ts"].agg(["size", "nunique"])
    several = per_user.loc[per_user["size"] >= 2]
    return bool(len(several)) and float((several["nunique"] == 1).mean()) < 0.5


def per_user_holdout(
    events: pd.DataFrame,
    inter: Interactions,
    weights: InteractionWeights,
    *,
    share: float = HOLDOUT_SHARE,
    min_items: int = 2,
    seed: int = 0,
    fold: int = 0,
) -> UserHoldout:
    """Hold out each user's latest ``share`` of items (by first positive interaction) for validation.

    Users with fewer than ``min_items`` items (at least 2) keep them all for fitting. Without a usable
    time order (:func:`has_time_order`) a random ``share`` of each user's items is held out instead,
    and ``fold`` picks which: fold ``f`` holds out the ``f``-th slice of the same random order, so
    folds 0, 1, … hold out disjoint items of each user until a user's items run out (then they wrap
    round). The held-out cells are removed from the fitting matrix, so a user's history at validation
    is everything else they had.

    Args:
        events: The events ``inter`` was built from.
        inter: The interactions to split.
        weights: Interaction weights (positive types define "first interaction").
        share: Share of each user's items to hold out (rounded; at least 1, at most all but one).
        min_items: Fewest items a user needs to have some held out.
        seed: Seed of the random order (ties in time, and the random fallback).
        fold: Which random slice to hold out (see above). A temporal holdout has one fold only: each
            user's latest items.

    Raises:
        ValueError: ``fold`` is not 0 and the data has a time order.
    """
    cells = first_positive_times(events, inter, weights)
    temporal = has_time_order(cells)
    if temporal and fold:
        raise ValueError("per_user_holdout: a temporal holdout has one fold (each user's latest items)")
    rng = np.random.default_rng(seed)
    cells["r"] = rng.random(len(cells))
    keys = ["row", "ts", "r"] if temporal else ["row", "r"]
    cells = cells.sort_values(keys, kind="stable", na_position="first")
    group = cells.groupby("row", sort=False)
    n = group["col"].transform("size").to_numpy()
    pos = group.cumcount().to_numpy()
    k = np.where(n >= max(2, min_items), np.clip(np.rint(share * n), 1, n - 1), 0)
    held = (pos + fold * k) % np.maximum(n, 1) >= n - k
    shape = inter.matrix.shape
    held_rows, held_cols = cells["row"].to_numpy()[held], cells["col"].to_numpy()[held]
    relevant = sp.csr_matrix((np.ones(int(held.sum()), np.float32), (held_rows, held_cols)), shape=shape)
    fit = drop_had(inter.matrix, relevant)
    fit_inter = Interactions(sp.csr_matrix(fit, dtype=np.float32), inter.user_ids, inter.item_ids)
    rows = np.flatnonzero(np.diff(relevant.indptr) > 0)
    holdout = Holdout(inter.user_ids[rows], inter.item_ids, fit_inter.matrix[rows], relevant[rows])
    return UserHoldout(fit_inter, holdout, temporal)
