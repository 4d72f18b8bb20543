"""EASE (Steck 2019): a shallow linear autoencoder with a closed-form solution.

``B = I − P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹``, so ``diag(B) = 0``; a user's scores are
``x · B``. One dense items × items inverse: for catalogues up to ``max_items``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.errors import TrainingDataError
from training.recommenders.base import RecommenderModel


class EASERecommender(RecommenderModel):
    """Embarrassingly shallow autoencoder.

    Args:
        l2: Ridge penalty λ.
        binary: Fit on presence instead of confidence.
        max_items: Refuse catalogues larger than this.
    """

    family = "ease"
    learned = ("weights_",)

    def __init__(self, l2: float = 500.0, binary: bool = True, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.binary = binary
        self.max_items = max_items

    def _x(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        x = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
        if self.binary:
            x.data = np.ones_like(x.data)
        return x

    def fit(self, user_items: sp.csr_matrix) -> EASERecommender:
        """Solve for the item-item weights in closed form.

        Raises:
            TrainingDataError: More items than ``max_items``.
        """
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise TrainingDataError(
                f"ease: {n_items} items is more than max_items={self.max_items} (a dense items × items "
                "matrix); use another family or raise max_items"
            )
        x = self._x(user_items)
        gram = np.asarray((x.T @ x).toarray())
        gram[np.diag_indices(n_items)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        self.weights_ = b.astype(np.float32)
        return self

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """History × weights (from the history passed, so updates apply at once)."""
        self._check_fitted()
        return np.asarray(self._x(user_items).astype(np.float32) @ self.weights_, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Weight columns, unit length."""
        self._check_fitted()
        v = self.weights_.T
        return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))
