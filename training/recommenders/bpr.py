"""Bayesian personalised ranking (``implicit``): factors trained to rank a user's items above the rest.

``implicit`` appends a bias column: the last item factor is the item's bias and the last user factor is
fixed at 1. A new or updated history is folded in by least squares against the other item factors (BPR has
no closed-form user step; this is the standard approximation), keeping the bias column at 1.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.recommenders.als import fold_in
from training.recommenders.base import RecommenderModel


class BPRRecommender(RecommenderModel):
    """Matrix factorisation trained with the BPR pairwise loss.

    Args:
        factors: Latent dimensions (plus one bias column).
        learning_rate: SGD step.
        regularization: L2 penalty.
        iterations: Epochs.
        random_state: Seed.
        num_threads: Threads (1 keeps results reproducible: SGD across threads races).
        fold_in_alpha: Confidence per unit weight when folding in a history.
    """

    family = "bpr"
    learned = ("user_factors_", "item_factors_")

    def __init__(self, factors: int = 64, learning_rate: float = 0.05, regularization: float = 0.01,
                 iterations: int = 100, random_state: int = 0, num_threads: int = 1,
                 fold_in_alpha: float = 1.0) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.fold_in_alpha = fold_in_alpha

    def fit(self, user_items: sp.csr_matrix) -> BPRRecommender:
        """Learn factors from a users × items matrix (BPR uses only which cells are positive)."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with threadpool_limits(1, "blas"):  # implicit warns (and runs slower) with a BLAS pool
            model = BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                                regularization=self.regularization,
                                                iterations=self.iterations,
                                                random_state=self.random_state, num_threads=self.num_threads)
            model.fit(sp.csr_matrix(user_items, dtype=np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def user_vectors(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Learned factors for known rows, folded-in factors (bias column 1) for the others."""
        self._check_fitted()
        n = user_items.shape[0]
        users = np.full(n, -1) if users is None else np.asarray(users)
        out = np.empty((n, self.item_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        out[known] = self.user_factors_[users[known]]
        if (~known).any():
            folded = fold_in(self.item_factors_[:, :-1], user_items[np.flatnonzero(~known)],
                             alpha=self.fold_in_alpha, regularization=self.regularization + 1e-3,
                             gram=self._gram())
            out[~known] = np.hstack([folded, np.ones((len(folded), 1), dtype=np.float32)])
        return out

    def _gram(self) -> np.ndarray:
        """``YᵀY`` of the item factors without the bias column, computed once (a cache, never saved)."""
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            y = self.item_factors_[:, :-1].astype(np.float64)
            cached = (self.item_factors_, y.T @ y)
            self._gram_cache = cached
        return cached[1]

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Dot products of user and item factors (the bias column adds each item's bias)."""
        return self.user_vectors(user_items, users) @ self.item_factors_.T

    def item_vectors(self) -> np.ndarray:
        """Item factors without the bias column, unit length."""
        self._check_fitted()
        v = self.item_factors_[:, :-1]
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
