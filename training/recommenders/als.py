"""Implicit-feedback matrix factorisation with alternating least squares (``implicit``), the default family.

Confidence is ``alpha × interaction weight`` (Hu, Koren & Volinsky 2008). A user whose history changed
after training — or who arrived after it — gets factors recomputed from that history against the fixed
item factors, the same least-squares step ALS itself alternates (no retraining).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommenders.base import RecommenderModel


def fold_in(item_factors: np.ndarray, user_items: sp.csr_matrix, *, alpha: float,
            regularization: float, gram: np.ndarray | None = None) -> np.ndarray:
    """Least-squares user factors for each history against fixed item factors.

    Solves ``(YᵀY + λI + Yᵀ(Cᵤ − I)Y) xᵤ = YᵀCᵤpᵤ`` with ``Cᵤ = alpha × row`` (``pᵤ`` = 1 where stored).

    Args:
        item_factors: ``(items, factors)``.
        user_items: ``(rows, items)`` CSR histories.
        alpha: Confidence per unit of weight.
        regularization: L2 penalty.
        gram: ``YᵀY`` if already known (it costs items × factors² to compute; serving caches it).

    Returns:
        ``(rows, factors)`` float32; an empty history gets zeros.
    """
    y = item_factors
    f = y.shape[1]
    base = (y.T.astype(np.float64) @ y if gram is None else gram) + regularization * np.eye(f)
    out = np.zeros((user_items.shape[0], f), dtype=np.float32)
    for r in range(user_items.shape[0]):
        lo, hi = user_items.indptr[r], user_items.indptr[r + 1]
        if hi == lo:
            continue
        yi = y[user_items.indices[lo:hi]].astype(np.float64)
        c = alpha * user_items.data[lo:hi].astype(np.float64)
        a = base + (yi.T * (c - 1.0)) @ yi
        out[r] = np.linalg.solve(a, yi.T @ c)
    return out


class ALSRecommender(RecommenderModel):
    """Weighted matrix factorisation by ALS.

    Args:
        factors: Latent dimensions.
        regularization: L2 penalty.
        alpha: Confidence per unit of interaction weight.
        iterations: ALS sweeps.
        random_state: Seed of the initial factors.
        num_threads: Threads for ``implicit`` (1 keeps results bit-for-bit reproducible).
    """

    family = "als"
    learned = ("user_factors_", "item_factors_")

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0,
                 iterations: int = 15, random_state: int = 0, num_threads: int = 1) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, user_items: sp.csr_matrix) -> ALSRecommender:
        """Learn user and item factors from a users × items confidence matrix."""
        from implicit.cpu.als import AlternatingLeastSquares

        with threadpool_limits(1, "blas"):  # implicit warns (and runs slower) with a BLAS pool
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            random_state=self.random_state, num_threads=self.num_threads)
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def user_vectors(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Learned factors for known rows (``users >= 0``), folded-in factors for the others."""
        self._check_fitted()
        n = user_items.shape[0]
        users = np.full(n, -1) if users is None else np.asarray(users)
        out = np.empty((n, self.item_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        out[known] = self.user_factors_[users[known]]
        if (~known).any():
            out[~known] = fold_in(self.item_factors_, user_items[np.flatnonzero(~known)], alpha=self.alpha,
                                  regularization=self.regularization, gram=self._gram())
        return out

    def _gram(self) -> np.ndarray:
        """``YᵀY`` of the item factors, computed once (a cache, not learned state: never saved)."""
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            y = self.item_factors_.astype(np.float64)
            cached = (self.item_factors_, y.T @ y)
            self._gram_cache = cached
        return cached[1]

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Dot products of user and item factors."""
        return self.user_vectors(user_items, users) @ self.item_factors_.T

    def item_vectors(self) -> np.ndarray:
        """Item factors scaled to unit length."""
        self._check_fitted()
        norms = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
        return self.item_factors_ / np.maximum(norms, 1e-12)
