"""Serving a fitted recommender by id: filters, the cold-start fallback, similar items, real-time updates.

A :class:`Recommender` bundles what serving needs and nothing else: the chosen model, the popularity
fallback (global and per segment), the id maps, each user's interaction history and purchases, item
availability and categories, and the interaction weights (so new events are weighed as in training).
Everything is numpy; the single-user path touches no pandas.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.interactions import InteractionWeights
from training.recommenders.base import RecommenderModel, mask_rows, top_k
from training.recommenders.families import load_model
from training.recommenders.popularity import PopularityRecommender


@dataclass(frozen=True)
class Recommendations:
    """One user's list: item ids best first, their scores, and ``source`` (``model`` or ``fallback``)."""

    item_ids: list[str]
    scores: list[float]
    source: str


def category_codes(values: Iterable[object]) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 for missing) and the sorted names they index."""
    series = pd.Series(list(values), dtype="string")
    names = sorted(series.dropna().unique().tolist())
    codes = pd.Index(names).get_indexer(series.fillna("\x00").tolist())
    return codes.astype(np.int64), names


class Recommender:
    """A fitted model plus everything needed to answer "what do we show this user now?".

    Args:
        model: The fitted model (any family).
        fallback: Fitted popularity model (per segment when segments are known).
        history: Users × items confidences the model was fitted on (CSR).
        bought: Users × items, stored where the user purchased the item (CSR).
        user_ids: Row ids.
        item_ids: Column ids.
        weights: Interaction weights used to build ``history``.
        user_segment: Segment code per user (-1: none).
        segment_names: Names of the segment codes.
        item_category: Category code per item (-1: none).
        category_names: Names of the category codes.
        available: Whether each item can be shown.
        meta: Free-form facts (family, parameters, as-of date, segment attribute).
        histories_replaced: ``history`` is not what the model was fitted on (see :meth:`with_history`).
    """

    def __init__(  # noqa: PLR0913 - keyword-only parts, each named as saved; a dataclass would add nothing
        self,
        *,
        model: RecommenderModel,
        fallback: PopularityRecommender,
        history: sp.csr_matrix,
        bought: sp.csr_matrix,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        weights: InteractionWeights,
        user_segment: np.ndarray | None = None,
        segment_names: list[str] | None = None,
        item_category: np.ndarray | None = None,
        category_names: list[str] | None = None,
        available: np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
        histories_replaced: bool = False,
    ) -> None:
        self.model = model
        self.fallback = fallback
        self.history = sp.csr_matrix(history, dtype=np.float32)
        self.bought = sp.csr_matrix(bought, dtype=np.float32)
        self.user_ids = np.asarray(user_ids).astype(str)
        self.item_ids = np.asarray(item_ids).astype(str)
        self.weights = weights
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        self.user_segment = (
            np.full(n_users, -1, np.int64) if user_segment is None else np.asarray(user_segment)
        )
        self.segment_names = list(segment_names or [])
        self.item_category = (
            np.full(n_items, -1, np.int64) if item_category is None else np.asarray(item_category)
        )
        self.category_names = list(category_names or [])
        self.available = np.ones(n_items, bool) if available is None else np.asarray(available, bool)
        self.meta = dict(meta or {})
        self._user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self._item_index = {t: i for i, t in enumerate(self.item_ids.tolist())}
        self._segment_index = {s: i for i, s in enumerate(self.segment_names)}
        self._category_index = {c: i for i, c in enumerate(self.category_names)}
        self._unavailable = np.where(self.available, 0.0, -np.inf).astype(np.float32)
        self._live: dict[str, tuple[dict[int, float], set[int]]] = {}
        self._stale = histories_replaced  # the model's learned user state no longer matches the histories
        self._row_template = sp.csr_matrix((1, n_items), dtype=np.float32)  # see _one_row
        self._kept: tuple[np.ndarray, np.ndarray] | None = None  # see keep_lists

    def keep_lists(self, n: int = 50) -> None:
        """Work out every user's top ``n`` under the default filters now, so that such a request (``k <= n``,
        purchases and unavailable items left out, nothing else filtered) is a look-up.

        The answers are the ones :meth:`recommend` computes (:func:`top_k`'s order is total, so a shorter
        list is a prefix of this one). A user whose history changes after this (:meth:`add_events`) is
        scored afresh. Memory: ``users x n`` item numbers and scores, 8 bytes each.
        """
        n = min(n, len(self.item_ids))
        idx = np.full((len(self.user_ids), n), -2, np.int32)  # -2: no history, the fallback answers
        val = np.full((len(self.user_ids), n), -np.inf, np.float32)
        for u in np.flatnonzero(np.diff(self.history.indptr)).tolist():
            # one user at a time, as a request scores: batch products round floats differently
            best, score = top_k(self._filtered_scores(str(self.user_ids[u]))[0], n)
            idx[u] = np.where(np.isfinite(score), best, -1)
            val[u] = score
        self._kept = (idx, val)

    def _model_rows(self, users: np.ndarray) -> np.ndarray:
        """Rows the model may use its learned user state for (none once histories were replaced)."""
        return np.full(len(users), -1) if self._stale else users

    def with_history(
        self, history: sp.csr_matrix, bought: sp.csr_matrix, user_ids: np.ndarray, user_segment: np.ndarray
    ) -> Recommender:
        """The same model over other histories (e.g. events up to a later date), in this item space.

        Factor models then fold every user in from the new history instead of using trained factors.
        """
        return Recommender(
            model=self.model,
            fallback=self.fallback,
            history=history,
            bought=bought,
            user_ids=user_ids,
            item_ids=self.item_ids,
            weights=self.weights,
            user_segment=user_segment,
            segment_names=self.segment_names,
            item_category=self.item_category,
            category_names=self.category_names,
            available=self.available,
            meta=self.meta,
            histories_replaced=True,
        )

    # ------------------------------------------------------------------ single user
    def _row(self, u: int) -> sp.csr_matrix:
        lo, hi = self.history.indptr[u], self.history.indptr[u + 1]
        return self._one_row(self.history.data[lo:hi], self.history.indices[lo:hi])

    def _one_row(self, data: np.ndarray, indices: np.ndarray) -> sp.csr_matrix:
        """A 1 x items CSR row over ``data``/``indices`` (sorted, in range; not copied).

        Made from a checked empty row with the arrays swapped in: scipy's constructor checks its input
        for about 0.1 ms, more than scoring the user takes, on every request.
        """
        row = sp.csr_matrix.__new__(sp.csr_matrix)
        row.__dict__.update(self._row_template.__dict__)
        row.data, row.indices = data, indices
        row.indptr = np.array([0, len(indices)], dtype=indices.dtype)
        return row

    def _penalty(
        self,
        exclude_unavailable: bool,
        include_categories: Iterable[str] | None,
        exclude_categories: Iterable[str] | None,
    ) -> np.ndarray:
        pen = self._unavailable.copy() if exclude_unavailable else np.zeros(len(self.item_ids), np.float32)
        if include_categories is not None:
            codes = [self._category_index[c] for c in include_categories if c in self._category_index]
            pen[~np.isin(self.item_category, codes)] = -np.inf
        if exclude_categories is not None:
            codes = [self._category_index[c] for c in exclude_categories if c in self._category_index]
            pen[np.isin(self.item_category, codes)] = -np.inf
        return pen

    def is_known(self, user_id: str) -> bool:
        """Whether the user has a history (from training or from live updates)."""
        u = self._user_index.get(user_id, -1)
        return user_id in self._live or (u >= 0 and self.history.indptr[u + 1] > self.history.indptr[u])

    def _user_scores(
        self, user_id: str, segment: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Raw scores of every item for one user, their seen and bought columns, and the source."""
        u = self._user_index.get(user_id, -1)
        live = self._live.get(user_id)
        if live is not None:
            cells, bought_set = live
            idx = np.fromiter(cells.keys(), np.int32, len(cells))
            order = np.argsort(idx)  # a canonical row: sorted indices
            row = self._one_row(np.fromiter(cells.values(), np.float32, len(cells))[order], idx[order])
            scores = self.model.score(row, np.array([-1]))[0]
            return scores, idx, np.fromiter(bought_set, np.int64, len(bought_set)), "model"
        if u >= 0 and self.history.indptr[u + 1] > self.history.indptr[u]:
            row = self._row(u)
            scores = self.model.score(row, self._model_rows(np.array([u])))[0]
            lo, hi = self.bought.indptr[u], self.bought.indptr[u + 1]
            return scores, row.indices, self.bought.indices[lo:hi], "model"
        seg = self.user_segment[u] if u >= 0 else self._segment_index.get(segment or "", -1)
        scores = self.fallback.segment_scores(np.array([seg]))[0].astype(np.float32)
        empty = np.zeros(0, np.int64)
        return scores, empty, empty, "fallback"

    def recommend(  # noqa: PLR0913 - independent keyword-only filters, set one at a time by name
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_bought: bool = True,
        exclude_seen: bool = False,
        exclude_unavailable: bool = True,
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] | None = None,
        exclude_items: Iterable[str] = (),
        segment: str | None = None,
    ) -> Recommendations:
        """Top ``k`` items for one user, filters applied; unknown users get the popularity fallback.

        Args:
            user_id: The user.
            k: How many items.
            exclude_bought: Drop items the user purchased.
            exclude_seen: Drop every item the user interacted with.
            exclude_unavailable: Drop items marked unavailable.
            include_categories: Show only these categories (``None``: all).
            exclude_categories: Never show these categories.
            exclude_items: Never show these items.
            segment: Segment of a user the model does not know (their own segment wins when known).

        Returns:
            Up to ``k`` items (fewer when filters leave fewer).
        """
        kept = self._kept
        if (
            kept is not None
            and 0 < k <= kept[0].shape[1]
            and exclude_bought
            and exclude_unavailable
            and not exclude_seen
            and include_categories is None
            and exclude_categories is None
            and not exclude_items
            and user_id not in self._live
        ):
            u = self._user_index.get(user_id, -1)
            if u >= 0 and kept[0][u, 0] != -2:
                idx, val = kept[0][u, :k], kept[1][u, :k]
                idx, val = idx[idx >= 0], val[idx >= 0]
                return Recommendations(self.item_ids[idx].tolist(), val.astype(float).tolist(), "model")
        scores, source = self._filtered_scores(
            user_id,
            exclude_bought=exclude_bought,
            exclude_seen=exclude_seen,
            exclude_unavailable=exclude_unavailable,
            include_categories=include_categories,
            exclude_categories=exclude_categories,
            exclude_items=exclude_items,
            segment=segment,
        )
        return self._listing(scores, k, source)

    def _filtered_scores(
        self,
        user_id: str,
        *,
        exclude_bought: bool = True,
        exclude_seen: bool = False,
        exclude_unavailable: bool = True,
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] | None = None,
        exclude_items: Iterable[str] = (),
        segment: str | None = None,
    ) -> tuple[np.ndarray, str]:
        """Every item's score for one user, filters applied (``-inf``: never shown), and the source."""
        scores, seen, bought_idx, source = self._user_scores(user_id, segment)
        scores = scores + self._penalty(exclude_unavailable, include_categories, exclude_categories)
        if exclude_bought:
            scores[bought_idx] = -np.inf
        if exclude_seen:
            scores[seen] = -np.inf
        for item in exclude_items:
            j = self._item_index.get(item)
            if j is not None:
                scores[j] = -np.inf
        return scores, source

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        *,
        exclude_unavailable: bool = True,
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] | None = None,
    ) -> Recommendations:
        """The ``k`` items most similar to ``item_id`` by the model; an unknown item gets the global list."""
        j = self._item_index.get(item_id)
        pen = self._penalty(exclude_unavailable, include_categories, exclude_categories)
        if j is None:
            scores = self.fallback.global_scores_.astype(np.float32) + pen
            source = "fallback"
        else:
            idx, val = self.model.similar_items(j, len(self.item_ids))
            scores = np.full(len(self.item_ids), -np.inf, np.float32)
            scores[idx] = val
            scores = scores + pen
            scores[j] = -np.inf
            source = "model"
        return self._listing(scores, k, source)

    def _listing(self, scores: np.ndarray, k: int, source: str) -> Recommendations:
        idx, val = top_k(scores, k)
        keep = np.isfinite(val)
        return Recommendations(self.item_ids[idx[keep]].tolist(), val[keep].astype(float).tolist(), source)

    # ------------------------------------------------------------------ real-time updates
    def add_events(self, user_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        """Add a user's new events (``item_id``, ``event_type``) to their history; no retraining.

        The next :meth:`recommend` for this user scores from the updated history (factor models recompute
        the user's factors from it). Events on unknown items are ignored; new events are not decayed.
        The user's history is rebuilt aside and swapped in whole, so a request reading it meanwhile sees
        the old one or the new one, never half of each (writers must still take turns).
        """
        by_type = self.weights.by_type()
        live = self._live.get(user_id)
        if live is None:
            cells: dict[int, float] = {}
            bought: set[int] = set()
            u = self._user_index.get(user_id, -1)
            if u >= 0:
                row = self._row(u)
                cells = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
                lo, hi = self.bought.indptr[u], self.bought.indptr[u + 1]
                bought = set(self.bought.indices[lo:hi].tolist())
        else:
            cells, bought = dict(live[0]), set(live[1])
        for event in events:
            j = self._item_index.get(str(event.get("item_id")))
            if j is None:
                continue
            kind = str(event.get("event_type"))
            cells[j] = max(0.0, cells.get(j, 0.0) + by_type.get(kind, 0.0))
            if kind == "purchase":
                bought.add(j)
        self._live[user_id] = ({j: v for j, v in cells.items() if v > 0}, bought)

    # ------------------------------------------------------------------ batch
    def recommend_batch(  # noqa: PLR0913 - the keyword filters of recommend, plus the batch inputs
        self,
        user_ids: Iterable[str],
        k: int = 10,
        *,
        exclude_bought: bool = True,
        exclude_seen: bool = False,
        exclude_unavailable: bool = True,
        include_categories: Iterable[str] | None = None,
        exclude_categories: Iterable[str] | None = None,
        exclude: sp.csr_matrix | None = None,
        segments: Iterable[str | None] | None = None,
        block: int = 4096,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item indices and scores for many users at once (``-1`` pads a list cut by filters).

        Args:
            user_ids: Users (unknown ones get the popularity fallback of their segment).
            k: List length.
            exclude_bought: Drop each user's purchases.
            exclude_seen: Drop each user's interacted items.
            exclude_unavailable: Drop unavailable items.
            include_categories: Only these categories.
            exclude_categories: Never these categories.
            exclude: Extra ``(len(user_ids), items)`` CSR of items never to show per user.
            segments: Segment of each user, used for users the recommender does not know.
            block: Users scored per matrix product.

        Returns:
            ``(indices, scores)`` of shape ``(users, k)``; map indices with ``item_ids``.
        """
        ids = list(user_ids)
        rows = np.array([self._user_index.get(u, -1) for u in ids], dtype=np.int64)
        pen = self._penalty(exclude_unavailable, include_categories, exclude_categories)
        n_items = len(self.item_ids)
        k = min(k, n_items)
        out_idx = np.full((len(ids), k), -1, np.int64)
        out_val = np.full((len(ids), k), -np.inf, np.float32)
        has_history = np.diff(self.history.indptr)
        given_seg = np.full(len(ids), -1, np.int64)
        if segments is not None:
            codes = [self._segment_index.get(str(s), -1) if s is not None else -1 for s in segments]
            given_seg = np.array(codes, dtype=np.int64)
        for lo in range(0, len(ids), block):
            r = rows[lo : lo + block]
            safe = np.maximum(r, 0)
            hist = self.history[safe]
            known = (r >= 0) & (has_history[safe] > 0)
            scores = np.empty((len(r), n_items), np.float32)
            if known.any():
                kn = np.flatnonzero(known)
                scores[kn] = self.model.score(hist[kn], self._model_rows(r[kn]))
            if (~known).any():
                un = np.flatnonzero(~known)
                seg = np.where(r[un] >= 0, self.user_segment[safe[un]], given_seg[lo : lo + block][un])
                scores[un] = self.fallback.segment_scores(seg)
            scores += pen
            zero_unknown = sp.diags((r >= 0).astype(np.float32))
            if exclude_bought:
                mask_rows(scores, zero_unknown @ self.bought[safe])
            if exclude_seen:
                mask_rows(scores, zero_unknown @ hist)
            if exclude is not None:
                mask_rows(scores, sp.csr_matrix(exclude[lo : lo + block]))
            for j in [j for j, u in enumerate(ids[lo : lo + block]) if u in self._live]:
                raw, seen, bought_idx, _ = self._user_scores(ids[lo + j])
                scores[j] = raw + pen
                scores[j, bought_idx if exclude_bought else []] = -np.inf
                scores[j, seen if exclude_seen else []] = -np.inf
                if exclude is not None:
                    extra = exclude[lo + j]
                    scores[j, extra.indices] = -np.inf
            idx, val = top_k(scores, k)
            out_idx[lo : lo + len(r)] = np.where(np.isfinite(val), idx, -1)
            out_val[lo : lo + len(r)] = val
        return out_idx, out_val

    def recommend_frame(self, user_ids: Iterable[str], k: int = 10, **filters: Any) -> pd.DataFrame:
        """``user_id, rank, item_id, score`` for many users (the batch output)."""
        ids = np.asarray(list(user_ids)).astype(str)
        idx, val = self.recommend_batch(ids, k, **filters)
        keep = idx >= 0
        rank = np.broadcast_to(np.arange(1, idx.shape[1] + 1), idx.shape)
        return pd.DataFrame(
            {
                "user_id": np.repeat(ids, idx.shape[1]).reshape(idx.shape)[keep],
                "rank": rank[keep].astype(np.int64),
                "item_id": self.item_ids[idx[keep]],
                "score": val[keep].astype(np.float64),
            }
        )

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write everything to ``folder`` (``model.npz``, ``fallback.npz``, ``state.npz``, ``meta.json``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model.npz")
        self.fallback.save(folder / "fallback.npz")
        np.savez(
            folder / "state.npz",
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            history_data=self.history.data,
            history_indices=self.history.indices,
            history_indptr=self.history.indptr,
            bought_indices=self.bought.indices,
            bought_indptr=self.bought.indptr,
            user_segment=self.user_segment,
            item_category=self.item_category,
            available=self.available,
        )
        meta = {
            "weights": self.weights.to_dict(),
            "segment_names": self.segment_names,
            "category_names": self.category_names,
            "meta": self.meta,
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Recommender:
        """Read a recommender written by :meth:`save`."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        model = load_model(folder / "model.npz")
        fallback = PopularityRecommender.load(folder / "fallback.npz")
        with np.load(folder / "state.npz", allow_pickle=False) as s:
            shape = (len(s["user_ids"]), len(s["item_ids"]))
            history = sp.csr_matrix(
                (s["history_data"], s["history_indices"], s["history_indptr"]), shape=shape
            )
            bought = sp.csr_matrix(
                (np.ones(len(s["bought_indices"]), np.float32), s["bought_indices"], s["bought_indptr"]),
                shape=shape,
            )
            return cls(
                model=model,
                fallback=fallback,
                history=history,
                bought=bought,
                user_ids=s["user_ids"],
                item_ids=s["item_ids"],
                weights=InteractionWeights(**meta["weights"]),
                user_segment=s["user_segment"],
                segment_names=meta["segment_names"],
                item_category=s["item_category"],
                category_names=meta["category_names"],
                available=s["available"],
                meta=meta["meta"],
            )
