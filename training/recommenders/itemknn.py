"""Item-item collaborative filtering: cosine similarity of item columns, each user scored by their history.

The similarity matrix is dense (items × items), so this family is meant for catalogues up to
``max_items`` (a few tens of thousands); only each item's ``neighbors`` most similar items are kept.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from training.errors import TrainingDataError
from training.recommenders.base import RecommenderModel


def keep_top_neighbors(sim: np.ndarray, neighbors: int | None) -> np.ndarray:
    """Zero all but the ``neighbors`` largest entries of each column (in place); returns ``sim``."""
    if neighbors is not None and neighbors < sim.shape[0]:
        cut = np.argpartition(-sim, neighbors - 1, axis=0)[neighbors:]
        np.put_along_axis(sim, cut, 0.0, axis=0)
    return sim


class ItemKNNRecommender(RecommenderModel):
    """Cosine item-item neighbourhood model.

    Args:
        neighbors: Similar items kept per item (``None``: all).
        shrink: Added to the norm product, damping similarities backed by few users.
        binary: Use presence instead of confidence when computing similarities.
        max_items: Refuse catalogues larger than this (the matrix is dense).
    """

    family = "itemknn"
    learned = ("similarity_",)

    def __init__(
        self, neighbors: int | None = 100, shrink: float = 0.0, binary: bool = False, max_items: int = 30_000
    ) -> None:
        self.neighbors = neighbors
        self.shrink = shrink
        self.binary = binary
        self.max_items = max_items

    def fit(self, user_items: sp.csr_matrix) -> ItemKNNRecommender:
        """Compute the pruned cosine similarity of item columns (diagonal zero).

        Raises:
            TrainingDataError: More items than ``max_items``.
        """
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise TrainingDataError(
                f"itemknn: {n_items} items is more than max_items={self.max_items} (a dense items × items "
                "matrix); use another family or raise max_items"
            )
        x = sp.csr_matrix(user_items, dtype=np.float64)
        if self.binary:
            x.data = np.ones_like(x.data)
        gram = np.asarray((x.T @ x).toarray())
        norms = np.sqrt(np.diag(gram))
        sim = gram / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        self.similarity_ = keep_top_neighbors(sim, self.neighbors).astype(np.float32)
        return self

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """History × similarity: always from the history passed, so updates apply at once."""
        self._check_fitted()
        x = sp.csr_matrix(user_items, dtype=np.float32)
        if self.binary:
            x.data = np.ones_like(x.data)
        return np.asarray(x @ self.similarity_, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Similarity columns, unit length (similar items = items with similar neighbourhoods)."""
        self._check_fitted()
        v = self.similarity_.T
        return np.asarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12))

    def similar_items(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The items with the highest cosine similarity to ``item`` (itself excluded)."""
        from training.recommenders.base import top_k

        self._check_fitted()
        sims = self.similarity_[:, item].astype(np.float64)
        sims[item] = -np.inf
        return top_k(sims, n)
