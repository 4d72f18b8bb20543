"""The oracles of the synthetic world: what a model is measured against when the truth is known.

Churn: :func:`out_of_time_table`. The model is trained as of ``target`` (nothing at or after it is read);
it then scores the population as of ``target`` and the labels come from the simulated events in
``[target, target + horizon)``. The oracle scores the same users with their exact churn probability from
the latent state (:func:`simulator.truth.true_churn_probability`), so the ratio of the two ROC-AUCs says how
much of the knowable signal the model recovers.

Offers: :func:`offer_policy_values` judges a policy's choices on campaign units by the simulator's true
uplifts (``truth/uplift.parquet``), beside the oracle policy that knows them.

Recommender: :func:`recommender_reference` reads a simulated folder's true preferences into the hook
:func:`training.recommend.train_and_register` takes, so training itself never reads ``truth/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.truth import true_churn_probability
from training.churn import TrainResult, holdout_scores
from training.datasets import BacktestSet, labelled_snapshot
from training.evaluate import metrics_table
from training.rec_eval import RecommenderReference


def recommender_reference(data_dir: str | Path) -> RecommenderReference | None:
    """The true item preferences of a simulated data folder, for the recommender's oracle rows.

    Args:
        data_dir: A data folder; a simulated one has ``truth/affinity.parquet`` (each user's truly preferred
            items by rank) and ``truth/items.parquet`` (each item's true popularity).

    Returns:
        Each user's true preference order and the items by true popularity, or ``None`` when the folder
        holds no truth (a user's own data).
    """
    truth = Path(data_dir) / "truth"
    affinity_path = truth / "affinity.parquet"
    if not affinity_path.exists():
        return None
    affinity = pd.read_parquet(affinity_path).sort_values(["user_id", "rank"])
    preferences = {
        str(u): list(map(str, v)) for u, v in affinity.groupby("user_id")["item_id"].agg(list).items()
    }
    popular: list[str] = []
    items_path = truth / "items.parquet"
    if items_path.exists():
        true_items = pd.read_parquet(items_path, columns=["item_id", "popularity"])
        ordered = true_items.sort_values("popularity", ascending=False, kind="stable")
        popular = ordered["item_id"].astype(str).tolist()
    return RecommenderReference(preferences=preferences, popularity=tuple(popular))


def out_of_time_table(
    result: TrainResult,
    data_dir: str | Path,
    target: date,
    *,
    horizon: int,
    lookback: int = 365,
    oracle: bool = False,
) -> pd.DataFrame:
    """Metrics of the model and the baselines (and the oracle) on the population as of ``target``.

    The labels come from ``[target, target + horizon)``, which the model never saw: this is the test a
    model trained as of ``target`` faces in production.

    Args:
        result: A model trained as of ``target`` (:func:`training.churn.train_kind`).
        data_dir: A data folder whose events reach ``target + horizon``.
        target: The as-of date of the test.
        horizon: Label window in days.
        lookback: Population look-back, as in training.
        oracle: Add the simulator's true probabilities (simulated data folders only) and ``auc_ratio``,
            each ROC-AUC over the oracle's.

    Returns:
        One row per model (``oracle`` last when asked) with the usual metrics.
    """
    from features.contract import load_table

    test = labelled_snapshot(data_dir, target, horizon=horizon, kind=result.kind, lookback=lookback)
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    events = events.loc[events["ts"] < pd.Timestamp(target)]
    bt = result.backtest
    shifted = BacktestSet(
        train=bt.train,
        valid=bt.valid,
        holdout=test,
        dates=bt.dates,
        holdout_date=target,
        valid_date=bt.valid_date,
        skipped=bt.skipped,
    )
    scores = holdout_scores(result.model, shifted, events, horizon, result.kind)
    if oracle:
        scores["oracle"] = _oracle(data_dir, test, target, horizon, result.kind)
    table = metrics_table(test["label"].to_numpy(), scores)
    if oracle:
        auc = table["roc_auc"].to_numpy()
        table["auc_ratio"] = auc / auc[-1]  # the oracle is the last row
    return table


def _oracle(data_dir: str | Path, test: pd.DataFrame, target: date, horizon: int, kind: str) -> np.ndarray:
    truth = true_churn_probability(data_dir, pd.Timestamp(target), horizon)
    column = "p_churn" if kind == "churn" else "p_no_purchase"
    oracle = test[["user_id"]].merge(truth, on="user_id", how="left")[column].to_numpy()
    if np.isnan(oracle).any():
        raise ValueError("the oracle lacks some users of the test population")
    return oracle if kind == "churn" else 1.0 - oracle


def offer_policy_values(
    data_dir: str | Path,
    units: pd.DataFrame,
    offer_ids: Sequence[str],
    costs: Sequence[float] | np.ndarray,
) -> pd.Series:
    """True value of offer policies on campaign units, from the simulator's true uplifts.

    A unit given offer ``k`` is worth ``true_uplift_k x value - cost_k`` (the incremental value after cost the
    policy itself maximizes), a unit given nothing 0. The oracle gives each unit its best offer when that is
    positive, knowing the true uplifts.

    Args:
        data_dir: A simulated data folder with ``truth/uplift.parquet``.
        units: ``user_id``, ``value`` (value of one unit of outcome, as the policy used it) and ``choice``
            (0 = no offer, ``k`` = ``offer_ids[k - 1]``), e.g. ``OfferFit.holdout``.
        offer_ids: The offers in arm order.
        costs: Their costs, in the same order.

    Returns:
        Summed true value of ``model policy``, ``oracle``, ``no offer`` and ``everyone gets <offer>`` for
        every offer.

    Raises:
        ValueError: A unit has no true uplift (not in the simulated campaign).
    """
    truth = pd.read_parquet(Path(data_dir) / "truth" / "uplift.parquet")
    table = truth.pivot(index="user_id", columns="offer_id", values="true_uplift")
    missing = ~units["user_id"].astype(str).isin(table.index)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} unit(s) have no true uplift (not in the simulated campaign)")
    true = table.reindex(index=units["user_id"].astype(str).to_numpy(), columns=list(offer_ids)).to_numpy(
        dtype=float
    )
    gain = true * units["value"].to_numpy(dtype=float)[:, None] - np.asarray(costs, dtype=float)[None, :]
    choice = units["choice"].to_numpy(dtype=int)
    rows = np.arange(len(choice))
    values = {
        "model policy": float(np.where(choice > 0, gain[rows, np.maximum(choice - 1, 0)], 0.0).sum()),
        "oracle": float(gain.max(axis=1, initial=0.0).sum()),
        "no offer": 0.0,
    }
    for k, offer in enumerate(offer_ids):
        values[f"everyone gets {offer}"] = float(gain[:, k].sum())
    return pd.Series(values, name="true value")
