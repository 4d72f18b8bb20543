"""Popularity, global or per segment: the baseline every model must beat, and the cold-start fallback.

An item's popularity is the share of users who interacted with it. Per segment, the share among the
segment's users is shrunk towards the global share by ``shrinkage`` pseudo-users, so a small segment does
not chase noise. A user without a segment (or unknown to the model) gets the global list.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.recommenders.base import RecommenderModel, top_k


class PopularityRecommender(RecommenderModel):
    """Most-interacted items, the same for everyone (or for everyone in a segment).

    Args:
        by_segment: Rank per segment (``fit`` then needs ``segments``).
        shrinkage: Pseudo-users pulling a segment's shares towards the global ones.
    """

    family = "popularity"
    learned = ("global_scores_", "segment_scores_", "user_segment_")

    def __init__(self, by_segment: bool = False, shrinkage: float = 50.0) -> None:
        self.by_segment = by_segment
        self.shrinkage = shrinkage

    def fit(self, user_items: sp.csr_matrix, segments: np.ndarray | None = None) -> PopularityRecommender:
        """Count users per item, globally and (if asked) per segment code (``-1``: no segment)."""
        x = sp.csr_matrix(user_items)
        n_users = max(x.shape[0], 1)
        present = (x > 0).astype(np.float64)
        counts = np.asarray(present.sum(axis=0)).ravel()
        # a tiny, decreasing tie-breaker keeps the order total and stable
        self.global_scores_ = (counts / n_users - 1e-9 * np.arange(x.shape[1])).astype(np.float64)
        if self.by_segment:
            if segments is None or len(segments) != x.shape[0]:
                raise ValueError("popularity by segment: give one segment code per user row")
            seg = np.asarray(segments, dtype=np.int64)
            n_seg = int(seg.max()) + 1 if len(seg) and seg.max() >= 0 else 0
            scores = np.empty((n_seg, x.shape[1]))
            for s in range(n_seg):
                rows = np.flatnonzero(seg == s)
                c = np.asarray(present[rows].sum(axis=0)).ravel()
                scores[s] = (c + self.shrinkage * self.global_scores_) / (len(rows) + self.shrinkage)
            self.segment_scores_ = scores
            self.user_segment_ = seg
        else:
            self.segment_scores_ = np.zeros((0, x.shape[1]))
            self.user_segment_ = np.full(x.shape[0], -1, dtype=np.int64)
        return self

    def segment_scores(self, segments: np.ndarray) -> np.ndarray:
        """Score rows for segment codes (``-1`` or unknown codes: global)."""
        self._check_fitted()
        seg = np.asarray(segments, dtype=np.int64)
        out = np.tile(self.global_scores_, (len(seg), 1))
        ok = (seg >= 0) & (seg < len(self.segment_scores_))
        out[ok] = self.segment_scores_[seg[ok]]
        return out

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """The user's segment list for known users, the global list otherwise."""
        self._check_fitted()
        n = user_items.shape[0]
        users = np.full(n, -1) if users is None else np.asarray(users)
        own = self.user_segment_[np.maximum(users, 0)] if len(self.user_segment_) else np.full(n, -1)
        seg = np.where(users >= 0, own, -1)
        return self.segment_scores(seg).astype(np.float32)

    def item_vectors(self) -> np.ndarray:  # pragma: no cover - not used: similar_items is overridden
        raise NotImplementedError

    def similar_items(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Popularity knows no similarity: the most popular other items."""
        self._check_fitted()
        s = self.global_scores_.copy()
        s[item] = -np.inf
        return top_k(s, n)
