"""User × item confidence matrices built from events: weights per event type, optional time decay.

A view, an add-to-cart and a purchase say "this user likes this item" with growing confidence; a refund
says the opposite. Each event contributes its type's weight (times a decay ``0.5 ** (age / half_life)``
when a half-life is given); the sum per user and item is clipped at zero, so a refunded purchase that was
only bought once leaves nothing behind.

An export with one kind of positive interaction only (every row a purchase, a play, a rating or a like,
ingested as ``purchase``; refunds allowed) has no event types to weigh: each row is one interaction
(``strength="interactions"``, which :func:`weights_for` picks for such data). A cell is then
``log(1 + amount)`` summed over the pair's rows (refunded amounts subtracted), so ten plays count more
than one and a thousand not a hundred times more; without amounts a cell is 1 (binary).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class InteractionWeights:
    """How much each event type says about a user's liking of an item.

    Args:
        view: Weight of a view.
        add_to_cart: Weight of an add-to-cart.
        purchase: Weight of a purchase.
        refund: Weight of a refund (negative: it counts against the item).
        half_life_days: Age in days at which an event counts half (``None``: no decay).
        strength: ``events`` (sum the type weights) or ``interactions`` (every positive row is one
            interaction: ``log(1 + amount)`` per cell, 1 without amounts; see the module docstring).
    """

    view: float = 1.0
    add_to_cart: float = 3.0
    purchase: float = 5.0
    refund: float = -5.0
    half_life_days: float | None = None
    strength: str = "events"

    def by_type(self) -> dict[str, float]:
        """Event type -> weight."""
        return {
            "view": self.view,
            "add_to_cart": self.add_to_cart,
            "purchase": self.purchase,
            "refund": self.refund,
        }

    def to_dict(self) -> dict[str, float | str | None]:
        """Plain values, for MLflow parameters and the saved model."""
        return asdict(self)


@dataclass
class Interactions:
    """A users × items confidence matrix and the ids of its rows and columns.

    Args:
        matrix: CSR ``float32``, users × items, non-negative; zero rows are allowed.
        user_ids: Row ids.
        item_ids: Column ids.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray

    def user_index(self) -> dict[str, int]:
        """User id -> row."""
        return {str(u): i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """Item id -> column."""
        return {str(t): i for i, t in enumerate(self.item_ids)}


def _ts(value: date | pd.Timestamp | str) -> pd.Timestamp:
    return pd.Timestamp(value)


def window(
    events: pd.DataFrame, start: date | pd.Timestamp | str | None, end: date | pd.Timestamp | str | None
) -> pd.DataFrame:
    """Events with ``start <= ts < end`` (either bound may be ``None``) that name an item."""
    keep = events["item_id"].notna() if "item_id" in events else pd.Series(False, index=events.index)
    if start is not None:
        keep &= events["ts"] >= _ts(start)
    if end is not None:
        keep &= events["ts"] < _ts(end)
    return events.loc[keep]


def event_weights(
    events: pd.DataFrame, weights: InteractionWeights, as_of: date | pd.Timestamp | str | None = None
) -> np.ndarray:
    """Each event's signed weight (types outside the vocabulary weigh 0), decayed to ``as_of`` if asked."""
    codes, kinds = pd.factorize(events["event_type"])  # a handful of types: map those, not every row
    by_type = weights.by_type()
    per_kind = np.array([by_type.get(str(k), 0.0) for k in kinds] + [0.0])
    w = per_kind[codes]  # code -1 (missing) picks the trailing 0
    if weights.half_life_days is not None and as_of is not None and len(events):
        age = (_ts(as_of) - events["ts"]).dt.total_seconds().to_numpy() / 86_400.0
        w = w * np.power(0.5, np.maximum(age, 0.0) / weights.half_life_days)
    return w


def weights_for(events: pd.DataFrame) -> InteractionWeights:
    """The weights that fit the data: type weights for behaviour logs, one interaction per row for an
    export whose only positive type is ``purchase`` (purchases, plays, ratings, likes; refunds allowed)."""
    types = set(events["event_type"].dropna().unique()) - {"refund"}
    return InteractionWeights(strength="interactions") if types <= {"purchase"} else InteractionWeights()


def _cell_values(events: pd.DataFrame, w: np.ndarray, weights: InteractionWeights) -> np.ndarray:
    """Each event's signed contribution to its cell: the type weight, or for ``interactions`` its amount
    (1 when unknown) signed by the type (a refund subtracts)."""
    if weights.strength == "events":
        return w
    if weights.strength != "interactions":
        raise ValueError(f"unknown interaction strength {weights.strength!r}; use events or interactions")
    amount = np.ones(len(events))
    if "amount" in events:
        given = pd.to_numeric(events["amount"], errors="coerce").abs().to_numpy(dtype=float)
        amount = np.where(np.isfinite(given) & (given > 0), given, 1.0)
    by_type = weights.by_type()
    scale = np.abs(w) / max(abs(by_type["purchase"]), 1e-12)  # the decay, when one applies
    return np.asarray(np.sign(w) * amount * scale, dtype=float)


def _has_amounts(events: pd.DataFrame) -> bool:
    if "amount" not in events:
        return False
    amount = pd.to_numeric(events["amount"], errors="coerce")
    return bool((amount.abs() > 0).any())


def _positions(values: pd.Series, ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Position of each value among ``ids`` (-1 if absent), and the ids (default: sorted distinct values).

    Factorizing first keeps string work to the distinct values, not every one of millions of rows.
    """
    codes, uniques = pd.factorize(values, sort=True)
    names = np.asarray(uniques).astype(str)
    if ids is None:
        return codes, names
    ids = np.asarray(ids).astype(str)
    where = np.append(pd.Index(ids).get_indexer(pd.Index(names)), -1)
    return where[codes], ids


def build_interactions(
    events: pd.DataFrame,
    *,
    weights: InteractionWeights,
    start: date | pd.Timestamp | str | None = None,
    end: date | pd.Timestamp | str | None = None,
    user_ids: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
) -> Interactions:
    """The confidence matrix of the events in ``[start, end)``.

    Args:
        events: Contract events (``user_id``, ``ts``, ``event_type``, ``item_id``).
        weights: Event weights and decay; the decay is measured back from ``end``.
        start: First timestamp included (``None``: from the beginning).
        end: First timestamp excluded (``None``: to the end).
        user_ids: Fix the rows (events of other users are dropped); default: users seen, sorted.
        item_ids: Fix the columns (events of other items are dropped); default: items seen, sorted.

    Returns:
        The matrix with its ids; each cell is ``max(0, sum of weights)``.
    """
    ev = window(events, start, end)
    w = event_weights(ev, weights, end)
    values = _cell_values(ev, w, weights)
    rows, user_ids = _positions(ev["user_id"], user_ids)
    cols, item_ids = _positions(ev["item_id"], item_ids)
    ok = (rows >= 0) & (cols >= 0) & (w != 0)
    coo = sp.coo_matrix((values[ok], (rows[ok], cols[ok])), shape=(len(user_ids), len(item_ids)))
    matrix = coo.tocsr()  # duplicates are summed here
    matrix.data = np.maximum(matrix.data, 0.0)
    matrix.eliminate_zeros()
    if weights.strength == "interactions":
        matrix.data = np.log1p(matrix.data) if _has_amounts(ev) else np.ones_like(matrix.data)
    matrix.sort_indices()
    return Interactions(matrix.astype(np.float32), user_ids, item_ids)


def relevant_items(
    events: pd.DataFrame,
    *,
    start: date | pd.Timestamp | str,
    end: date | pd.Timestamp | str,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    weights: InteractionWeights,
) -> sp.csr_matrix:
    """Binary users × items matrix of what each user positively interacted with in ``[start, end)``.

    A cell is 1 when the net (undecayed) weight is positive: a purchase later refunded is not relevant.
    """
    flat = replace(weights, half_life_days=None)
    test = build_interactions(
        events, weights=flat, start=start, end=end, user_ids=user_ids, item_ids=item_ids
    )
    out = test.matrix.copy()
    out.data = np.ones_like(out.data)
    return out
