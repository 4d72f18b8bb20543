"""The interface every recommender family shares, and the fast top-k that all of them use.

Models work on indices: rows of a users × items confidence matrix (CSR) and its columns. Ids, filters and
fallbacks live one level up, in :mod:`training.recommenders.service`. Learned state ends in ``_`` and is
saved as one ``.npz`` of arrays plus the hyperparameters, so ``load(save(m))`` recommends exactly as
``m`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first; ties go to the lower index.

    The order (score down, then index up) is total, so the first ``k`` of a longer list are exactly the
    ``k`` list: a list kept at length ``n`` answers every ``k <= n``.

    Args:
        scores: ``(n, items)`` or ``(items,)``; ``-inf`` marks an item that must not be shown (NaN counts
            as ``-inf``).
        k: How many.

    Returns:
        ``(indices, scores)`` of shape ``(n, k')`` (or ``(k',)``), ``k' = min(k, items)``; filtered items
        that had to fill the list keep their ``-inf`` score so callers can drop them.
    """
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if scores.ndim == 1:
        return _top_of_row(scores, k)
    n, m = scores.shape
    k = min(k, m)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), scores[:, :0]
    s = scores
    part = _best_columns(s, k) if k < m else np.broadcast_to(np.arange(m), s.shape)
    ps = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-ps, axis=1, kind="stable")  # part is in index order: ties stay lower index first
    idx = np.take_along_axis(part, order, axis=1)
    val = np.take_along_axis(ps, order, axis=1)
    return idx, val


def _top_of_row(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of one row without the batch bookkeeping (one user's request pays for it)."""
    m = len(s)
    k = min(k, m)
    if 0 < k < m:
        kth = s[np.argpartition(s, m - k)[m - k]]
        above = np.flatnonzero(s > kth)
        tied = np.flatnonzero(s == kth)[: k - len(above)]
        part = np.sort(np.concatenate([above, tied]))
    else:
        part = np.arange(k)
    ps = s[part]
    order = np.argsort(-ps, kind="stable")
    return part[order], ps[order]


def _best_columns(s: np.ndarray, k: int) -> np.ndarray:
    """The columns of each row's ``k`` best scores, in index order: all above the ``k``-th best score,
    then the lowest-index ones equal to it (``0 < k < columns``)."""
    n, m = s.shape
    kth = np.partition(s, m - k, axis=1)[:, m - k : m - k + 1]
    above = s > kth
    tied = s == kth
    room = k - np.count_nonzero(above, axis=1)
    take = above | tied
    crowded = np.flatnonzero(np.count_nonzero(tied, axis=1) > room)  # more ties than places left
    if len(crowded):
        first = np.cumsum(tied[crowded], axis=1, dtype=np.int32) <= room[crowded, None]
        take[crowded] = above[crowded] | (tied[crowded] & first)
    return np.nonzero(take)[1].reshape(n, k)


def mask_rows(scores: np.ndarray, exclude: sp.csr_matrix | None) -> np.ndarray:
    """Set ``-inf`` where ``exclude`` (same shape, CSR) has a stored entry; in place, returns ``scores``."""
    if exclude is not None and exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    return scores


class RecommenderModel:
    """Base of every family: ``fit``, ``score``, ``recommend``, ``similar_items``, ``save``, ``load``.

    Subclasses set ``family``, list their learned arrays in ``learned``, and implement ``fit``, ``score``
    and ``item_vectors`` (what ``similar_items`` compares).
    """

    family: ClassVar[str] = "base"
    learned: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (everything ``__init__`` stored)."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, user_items: sp.csr_matrix) -> RecommenderModel:  # pragma: no cover - interface
        """Learn from a users × items confidence matrix; returns ``self``."""
        raise NotImplementedError

    def score(self, user_items: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
        """Scores of every item for each row of ``user_items`` (a user's history, possibly updated).

        Args:
            user_items: ``(b, items)`` CSR histories.
            users: Training row of each history, ``-1`` for a user the model has not learned (or whose
                history changed since): such users are scored from their history alone. ``None``: all -1.

        Returns:
            ``(b, items)`` float32 scores.
        """
        raise NotImplementedError  # pragma: no cover - interface

    def item_vectors(self) -> np.ndarray:  # pragma: no cover - interface
        """Unit-normalised vectors whose dot products are the item-item similarities."""
        raise NotImplementedError

    def recommend(
        self,
        user_items: sp.csr_matrix,
        n: int = 10,
        *,
        users: np.ndarray | None = None,
        exclude: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` items for each row; ``exclude`` (CSR, same shape) holds items never to show."""
        scores = mask_rows(self.score(user_items, users), exclude)
        return top_k(scores, n)

    def similar_items(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to ``item`` (cosine of the model's item vectors), itself excluded."""
        vectors = self._unit_vectors()
        sims = (vectors @ vectors[item]).astype(np.float64)
        sims[item] = -np.inf
        return top_k(sims, n)

    def __getstate__(self) -> dict[str, Any]:
        """What pickling keeps: not the similar-items cache, which is made again on first use."""
        state = dict(self.__dict__)
        state.pop("_unit_cache", None)
        return state

    def _unit_vectors(self) -> np.ndarray:
        """:meth:`item_vectors`, made once per fit (a server asks for similar items on every request)."""
        fitted = tuple(id(getattr(self, name)) for name in self.learned)
        cached: tuple[tuple[int, ...], np.ndarray] | None = getattr(self, "_unit_cache", None)
        if cached is None or cached[0] != fitted:
            cached = (fitted, self.item_vectors())
            self._unit_cache = cached
        return cached[1]

    def _check_fitted(self) -> None:
        if not all(hasattr(self, name) for name in self.learned):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")

    def save(self, path: str | Path) -> Path:
        """Write the hyperparameters and learned arrays to ``path`` (``.npz``)."""
        self._check_fitted()
        path = Path(path)
        arrays = {name: np.asarray(getattr(self, name)) for name in self.learned}
        meta = json.dumps({"family": self.family, "params": self.get_params()})
        arrays["__meta__"] = np.array(meta)
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model of this family written by :meth:`save`.

        A file of any family is read by :func:`training.recommenders.families.load_model`.

        Raises:
            ValueError: The file holds another family's model.
        """
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            if meta["family"] != cls.family:
                raise ValueError(f"{path} holds a {meta['family']} model, not {cls.family}")
            model = cls(**meta["params"])
            for name in model.learned:
                setattr(model, name, data[name])
        return model


def saved_family(path: str | Path) -> str:
    """The family of a model file written by :meth:`RecommenderModel.save`."""
    with np.load(Path(path), allow_pickle=False) as data:
        return str(json.loads(str(data["__meta__"]))["family"])


def dense_rows(user_items: sp.csr_matrix) -> np.ndarray:
    """A CSR block as a dense float32 array."""
    return np.asarray(user_items.toarray(), dtype=np.float32)
