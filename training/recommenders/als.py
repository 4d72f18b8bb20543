"""Implicit-feedback matrix factorisation with alternating least squares (``implicit``), the default family.

Confidence is ``alpha × interaction weight`` (Hu, Koren & Volinsky 2008). A user whose history changed
after training — or who arrived after it — gets factors recomputed from that history against the fixed
item factors, the same least-squares step ALS itself alternates (no retraining).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommenders.base import RecommenderModel


def fold_in(
    item_factors: np.ndarray,
    user_items: sp.csr_matrix,
    *,
    alpha: float,
    regularization: float,
    gram: np.ndarray | None = None,
) -> np.ndarray:
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


class FactorModel(RecommenderModel):
    """What the ``implicit`` factor models share: learned user and item factors, scores by dot product,
    and least-squares factors folded in for a user whose history is new or changed.

    A subclass sets ``bias_column`` when ``implicit`` stores an item bias in the last column (and fixes
    the user's last factor at 1), and says which confidence and penalty fold a history in.
    """

    learned = ("user_factors_", "item_factors_")
    bias_column = False

    def _fold_in_params(self) -> tuple[float, float]:  # pragma: no cover - interface
        """``(alpha, regularization)`` for :func:`fold_in`."""
        raise NotImplementedError

    def _fit_implicit(self, make_model: Callable[[], Any], user_items: sp.csr_matrix) -> None:
        with threadpool_limits(1, "blas"):  # implicit warns (and runs slower) with a BLAS pool
            model = make_model()  # built inside the limit: implicit checks the BLAS pool when constructed
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _taste_factors(self) -> np.ndarray:
        """Item factors without the bias column (all of them when there is none)."""
        return self.item_factors_[:, :-1] if self.bias_column else self.item_factors_

    def user_vectors(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Learned factors for known rows (``users >= 0``), folded-in factors for the others."""
        self._check_fitted()
        n = user_items.shape[0]
        users = np.full(n, -1) if users is None else np.asarray(users)
        out = np.empty((n, self.item_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        out[known] = self.user_factors_[users[known]]
        if (~known).any():
            alpha, regularization = self._fold_in_params()
            folded = fold_in(
                self._taste_factors(),
                user_items[np.flatnonzero(~known)],
                alpha=alpha,
                regularization=regularization,
                gram=self._gram(),
            )
            if self.bias_column:
                folded = np.hstack([folded, np.ones((len(folded), 1), dtype=np.float32)])
            out[~known] = folded
        return out

    def _gram(self) -> np.ndarray:
        """``YᵀY`` of the taste factors, computed once (a cache, not learned state: never saved)."""
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            y = self._taste_factors().astype(np.float64)
            cached = (self.item_factors_, y.T @ y)
            self._gram_cache = cached
        return cached[1]

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Dot products of user and item factors (a bias column adds each item's bias)."""
        return self.user_vectors(user_items, users) @ self.item_factors_.T

    def item_vectors(self) -> np.ndarray:
        """Taste factors scaled to unit length."""
        self._check_fitted()
        v = self._taste_factors()
        return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))


class ALSRecommender(FactorModel):
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

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, user_items: sp.csr_matrix) -> ALSRecommender:
        """Learn user and item factors from a users × items confidence matrix."""
        from implicit.cpu.als import AlternatingLeastSquares

        self._fit_implicit(
            lambda: AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
            ),
            user_items,
        )
        return self

    def _fold_in_params(self) -> tuple[float, float]:
        return self.alpha, self.regularization
