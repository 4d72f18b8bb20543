"""Train, evaluate by time, log and register the recommender; load it back for serving.

Protocol (``as_of`` = D, ``horizon`` = H):

1. Tuning on a per-user holdout: of the interactions before D, each user's latest 20% of items (by the
   time of their first positive interaction) are held out, the rest fitted on, so users active early in
   the data count as much as recent ones; without a usable time order (every event at one timestamp)
   a random 20% of each user's items is held out instead, and the summary says so. (A fixed validation
   window ``[D − V, D)`` is still available: ``RecommenderTuning(validation_days=V)``.) Every candidate
   setting is fitted and scored (each trial an MLflow child run); where the best value of EASE's λ,
   item-kNN's neighbours or ALS's factors, regularisation or confidence scaling sits at the edge of the
   values tried, the grid is widened that way, and EASE's λ and item-kNN's neighbours are refined
   between grid values (:mod:`training.rec_tuning`); an edge still reached is a warning in the summary
   and the run's tags.
2. Choice: the family with the best validation NDCG@10 (``kind="recommender"``), or the family named by
   ``kind`` (``als``, ``bpr``, ``itemknn``, ``ease``); never on the test window. On a random holdout the
   families within 5% of the best are compared, each with its two best settings, on the mean of three
   disjoint folds.
3. Test: every family's best setting and every baseline is refitted on all events before D and scored side
   by side on ``[D, D + H)`` when the folder has those events (else the summary says so).
4. The chosen model, refitted on everything before D, is logged with what serving needs and promoted with
   the champion/challenger rule on the same holdout (the test window; without one, the validation window).

Nothing here reads a data folder's ``truth/``: a caller that knows the folder is simulated passes its true
preferences as ``reference`` (:func:`simulator.oracle.recommender_reference`), and only then does the test
table gain the oracle's row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import load_table, read_raw
from features.errors import ContractError
from training.errors import ModelNotFoundError, TrainingDataError
from training.interactions import Interactions, InteractionWeights, build_interactions, weights_for
from training.rec_eval import (
    HOLDOUT_SHARE,
    Holdout,
    K,
    RecommenderReference,
    make_holdout,
    per_user_holdout,
    score_model,
    score_recommender,
    side_by_side,
)
from training.rec_tuning import (
    BASELINES,
    CANDIDATES,
    DEFAULT_GRID,
    EXTRA_FOLDS,
    choose,
    fit_model,
    score_on_folds,
    tune,
)
from training.recommenders import PopularityRecommender, RecommenderModel
from training.recommenders.service import Recommender, category_codes
from training.results import TrainOutcome

FITTED_ON_THE_FLY = "ALS fitted on the fly (no registered model)"
"""What :func:`load_or_fit` names as the source of a recommender it had to fit."""


@dataclass(frozen=True)
class RecommenderTuning:
    """How the recommender is tuned and validated; the defaults are what ``userops train`` uses.

    Attributes:
        weights: Interaction weights per event type (``None``: :func:`training.interactions.weights_for`
            the data: type weights for behaviour logs, one interaction per row for a purchases-only export).
        grid: Settings per family to try (``None``: :data:`DEFAULT_GRID`; families left out are skipped).
        validation_days: Validate on a window of this many days before the date instead of the per-user
            holdout (``None``: the per-user holdout).
        widen: Widen a grid whose best value sits at an edge and refine the best value
            (:data:`training.rec_tuning.WIDEN`, :data:`training.rec_tuning.REFINE`).
        extra_folds: Without a time order, the further random folds the closest families are compared
            on (:data:`training.rec_tuning.EXTRA_FOLDS`; 0: one fold).
    """

    weights: InteractionWeights | None = None
    grid: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
    validation_days: int | None = None
    widen: bool = True
    extra_folds: int = EXTRA_FOLDS


@dataclass
class World:
    """A data folder's tables as the recommender needs them."""

    events: pd.DataFrame
    users: pd.DataFrame | None
    items: pd.DataFrame | None


def load_world(data_dir: str | Path) -> World:
    """Events, users and items of a data folder (only ``events`` is required)."""
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    return World(events, load_table(data_dir, "users"), load_table(data_dir, "items"))


def read_user_ids(path: str | Path) -> list[str]:
    """The distinct ``user_id`` values of a CSV or Parquet file, stripped, in file order, missing ids skipped.

    Raises:
        ContractError: The file cannot be read, or has no ``user_id`` column.
    """
    frame = read_raw(path)
    if "user_id" not in frame.columns:
        raise ContractError(f"{path}: no user_id column")
    return frame["user_id"].dropna().astype(str).str.strip().drop_duplicates().tolist()


def segment_attribute(users: pd.DataFrame | None) -> str | None:
    """The users-table attribute used for per-segment popularity: ``country``, else ``channel``."""
    for col in ("country", "channel"):
        if users is not None and col in users.columns:
            return col
    return None


def user_segments(
    users: pd.DataFrame | None, user_ids: np.ndarray, attribute: str | None
) -> tuple[np.ndarray, list[str]]:
    """Segment code per user row (-1: unknown) and the segment names."""
    if users is None or attribute is None:
        return np.full(len(user_ids), -1, np.int64), []
    values = users.drop_duplicates("user_id").set_index("user_id")[attribute]
    return category_codes(pd.Series(user_ids).map(values).tolist())


def build_recommender(
    model: RecommenderModel,
    inter: Interactions,
    world: World,
    end: date,
    weights: InteractionWeights,
    meta: Mapping[str, Any],
) -> Recommender:
    """Bundle a fitted model with the fallback, histories, purchases and item facts for serving."""
    attr = segment_attribute(world.users)
    seg, seg_names = user_segments(world.users, inter.user_ids, attr)
    fallback = PopularityRecommender(by_segment=bool(seg_names)).fit(inter.matrix, seg if seg_names else None)
    purchases = InteractionWeights(view=0, add_to_cart=0, purchase=1, refund=0)
    bought = build_interactions(
        world.events, weights=purchases, end=end, user_ids=inter.user_ids, item_ids=inter.item_ids
    ).matrix
    cat = avail = None
    cat_names: list[str] = []
    if world.items is not None:
        items = world.items.drop_duplicates("item_id").set_index("item_id")
        ids = pd.Series(inter.item_ids)
        if "category" in items:
            cat, cat_names = category_codes(ids.map(items["category"]).tolist())
        if "available" in items:
            avail = ids.map(items["available"]).fillna(True).astype(bool).to_numpy()
    return Recommender(
        model=model,
        fallback=fallback,
        history=inter.matrix,
        bought=bought,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        weights=weights,
        user_segment=seg,
        segment_names=seg_names,
        item_category=cat,
        category_names=cat_names,
        available=avail,
        meta={**meta, "segment_attribute": attr},
    )


def load_recommender(model_uri: str) -> Recommender:
    """Load a logged recommender (``models:/recommender@champion``, ``runs:/…``) for serving.

    Raises:
        ModelNotFoundError: The model at ``model_uri`` is not a recommender logged by userops.
    """
    import mlflow

    from training.recommenders.mlflow_model import RecommenderPyfunc

    wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    if not isinstance(wrapper, RecommenderPyfunc):
        raise ModelNotFoundError(f"{model_uri}: not a recommender logged by userops")
    return wrapper.recommender


@dataclass
class Validation:
    """What tuning fits on and validates on.

    Attributes:
        fit: The interactions tuning fits on.
        holdout: What it validates on.
        words: That validation in words (for the summary).
        extra_folds: Further (fit, holdout) folds the finalists are scored on (random holdouts only).
    """

    fit: Interactions
    holdout: Holdout
    words: str
    extra_folds: list[tuple[Interactions, Holdout]]


def _validation_split(
    events: pd.DataFrame,
    full: Interactions,
    weights: InteractionWeights,
    as_of: date,
    tuning: RecommenderTuning,
) -> Validation:
    """What tuning fits on and validates on; without a time order, the finalists' extra folds too."""
    if tuning.validation_days is not None:
        val_start = as_of - timedelta(days=tuning.validation_days)
        fit_inter = build_interactions(events, weights=weights, end=val_start)
        if fit_inter.matrix.nnz == 0:
            raise TrainingDataError(f"recommender: no item events before {val_start} to tune on")
        val = make_holdout(events, fit_inter, val_start, as_of, weights)
        return Validation(fit_inter, val, f"interactions from {val_start} to the date", [])
    before = events.loc[events["ts"] < pd.Timestamp(as_of)]
    split = per_user_holdout(before, full, weights)
    if not len(split.holdout.user_ids):
        raise TrainingDataError(f"recommender: no user with two or more items before {as_of} to validate on")
    if split.temporal:
        return Validation(split.fit, split.holdout, f"each user's latest {HOLDOUT_SHARE:.0%} of items", [])
    extra = [per_user_holdout(before, full, weights, fold=f) for f in range(1, tuning.extra_folds + 1)]
    words = f"a random {HOLDOUT_SHARE:.0%} of each user's items"
    if extra:
        words += f", the closest families compared on {len(extra) + 1} such folds"
    words += " (the data has no usable time order)"
    return Validation(split.fit, split.holdout, words, [(e.fit, e.holdout) for e in extra])


@dataclass
class Chosen:
    """A recommender chosen on validation and refitted on everything before the date (no MLflow).

    Attributes:
        family: The chosen family.
        params: Its best setting.
        model: Fitted on ``inter``.
        inter: The interactions before the date.
        validation: How it was validated, in words.
        validation_ndcg: Best validation NDCG@10 per family and baseline.
        grid_edges: Warnings of settings left at a grid's edge.
    """

    family: str
    params: dict[str, Any]
    model: RecommenderModel
    inter: Interactions
    validation: str
    validation_ndcg: dict[str, float]
    grid_edges: list[str]


def choose_and_fit(
    events: pd.DataFrame, as_of: date, *, tuning: RecommenderTuning | None = None, kind: str = "recommender"
) -> Chosen:
    """Tune every family on the validation split, choose one and refit it on all events before ``as_of``:
    what ``userops train recommender`` does, without MLflow, users' segments or a test window.

    Raises:
        TrainingDataError: Nothing to validate on.
    """
    tuning = tuning or RecommenderTuning()
    grid = dict(DEFAULT_GRID if tuning.grid is None else tuning.grid)
    before = events.loc[events["ts"] < pd.Timestamp(as_of)]
    weights = tuning.weights or weights_for(before)
    full = build_interactions(before, weights=weights, end=as_of)
    val = _validation_split(before, full, weights, as_of, tuning)

    def no_segments(inter: Interactions) -> np.ndarray:
        return np.full(inter.matrix.shape[0], -1, np.int64)

    tuned = tune(val.fit, val.holdout, grid, no_segments(val.fit), lambda *_: None, widen=tuning.widen)
    tuned = score_on_folds(tuned, val.extra_folds, no_segments)
    chosen = choose(kind, tuned.best)
    params = tuned.best.get(chosen, ({}, float("nan")))[0]
    model = fit_model(chosen, params, full, no_segments(full))
    scores = {f: v for f, (_, v) in tuned.best.items()}
    return Chosen(chosen, params, model, full, val.words, scores, tuned.edges)


def _run_training(
    *,
    data_dir: Path,
    as_of: date,
    horizon: int,
    tracking_uri: str,
    kind: str,
    tuning: RecommenderTuning,
    reference: RecommenderReference | None,
) -> TrainOutcome:
    import mlflow

    from training.recommenders.mlflow_model import RecommenderPyfunc
    from training.registry import promote, use_experiment

    if kind != "recommender" and kind not in CANDIDATES:
        raise ValueError(
            f"recommender: unknown kind {kind!r}; use recommender or one of {', '.join(CANDIDATES)}"
        )
    grid = dict(DEFAULT_GRID if tuning.grid is None else tuning.grid)

    world = load_world(data_dir)
    before = world.events.loc[world.events["ts"] < pd.Timestamp(as_of)]
    weights = tuning.weights or weights_for(before)
    test_end = as_of + timedelta(days=horizon)
    attr = segment_attribute(world.users)
    full = build_interactions(world.events, weights=weights, end=as_of)
    val = _validation_split(world.events, full, weights, as_of, tuning)
    has_test = bool((world.events["ts"] >= pd.Timestamp(as_of)).any())
    test = make_holdout(world.events, full, as_of, test_end, weights) if has_test else None
    if test is not None and not len(test.user_ids):
        test = None
    holdout = test if test is not None else val.holdout
    use_experiment(tracking_uri, "recommender", data_dir / "mlartifacts")
    with mlflow.start_run(run_name=f"recommender as of {as_of}") as parent:
        mlflow.log_params(
            {
                "as_of": str(as_of),
                "horizon": horizon,
                "validation": val.words,
                "kind": kind,
                "segment_attribute": attr,
                **{f"weight_{k}": v for k, v in weights.to_dict().items()},
            }
        )

        def child(family: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
            with mlflow.start_run(run_name=f"trial {family}", nested=True):
                mlflow.log_params({"family": family, **params})
                mlflow.log_metrics({f"val_{k}": float(v) for k, v in metrics.items()})

        def segments_of(inter: Interactions) -> np.ndarray:
            return user_segments(world.users, inter.user_ids, attr)[0]

        found = tune(val.fit, val.holdout, grid, segments_of(val.fit), child, widen=tuning.widen)
        found = score_on_folds(found, val.extra_folds, segments_of)
        best, edge_warnings = found.best, found.edges
        if edge_warnings:
            mlflow.set_tag("grid_edge_warnings", "; ".join(edge_warnings)[:5000])
        tuned = [f for f in CANDIDATES if f in best]
        chosen = choose(kind, best)
        best.setdefault(chosen, ({}, float("nan")))  # a forced family the grid left out: its defaults
        segments = user_segments(world.users, full.user_ids, attr)[0]
        models = {f: fit_model(f, best[f][0], full, segments) for f in [*tuned, *BASELINES]}
        if chosen not in models:
            models[chosen] = fit_model(chosen, best[chosen][0], full, segments)
        table = pd.DataFrame()
        if test is not None:
            recs = {f: score_model(m, full, test) for f, m in models.items()}
            table = side_by_side(recs, test, reference, K)
            mlflow.log_metrics(
                {
                    f"test_{f}_{c}": float(v)
                    for f, row in table.iterrows()
                    for c, v in row.items()
                    if np.isfinite(v)
                }
            )
            mlflow.log_text(table.round(4).to_csv(), "test_side_by_side.csv")
        rec = build_recommender(
            models[chosen],
            full,
            world,
            as_of,
            weights,
            {"family": chosen, "params": best[chosen][0], "as_of": str(as_of)},
        )
        score = score_recommender(rec, holdout)[f"ndcg_at_{K}"]
        mlflow.log_metric(f"holdout_ndcg_at_{K}", score)
        with tempfile.TemporaryDirectory() as tmp:
            folder = rec.save(Path(tmp) / "recommender")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=RecommenderPyfunc(),
                artifacts={"recommender": str(folder)},
                pip_requirements=["numpy", "scipy", "pandas", "implicit"],
            )

        def score_champion(uri: str) -> float:
            return score_recommender(load_recommender(uri), holdout)[f"ndcg_at_{K}"]

        decision = promote(
            tracking_uri=tracking_uri,
            name="recommender",
            model_uri=info.model_uri,
            score=score,
            metric=f"ndcg_at_{K}",
            score_champion=score_champion,
        )
        mlflow.set_tag("promotion", decision.reason)
    facts: dict[str, object] = {
        "as_of": as_of,
        "horizon": horizon,
        "training_events": int((world.events["ts"] < pd.Timestamp(as_of)).sum()),
        "users": int(full.matrix.shape[0]),
        "items": int(full.matrix.shape[1]),
        "interactions": int(full.matrix.nnz),
        "interaction_strength": weights.strength,
        "validation": val.words,
        "validation_users": len(val.holdout.user_ids),
        "chosen": chosen,
        "chosen_params": dict(best[chosen][0]),
        f"validation_ndcg_at_{K}": best[chosen][1],
        "grid_edges": "; ".join(edge_warnings) if edge_warnings else "none",
        "test_end": test_end,
        "test_users": 0 if test is None else len(test.user_ids),
        "promotion_holdout": "validation" if test is None else "test",
        f"holdout_ndcg_at_{K}": score,
    }
    return TrainOutcome(
        kind="recommender",
        run_id=parent.info.run_id,
        model_uri=info.model_uri,
        version=decision.version,
        alias=decision.alias,
        decision=decision.reason,
        metrics=table,
        facts=facts,
    )


def train_and_register(
    *,
    data_dir: str | Path,
    as_of: date,
    horizon: int,
    tracking_uri: str,
    kind: str,
    tuning: RecommenderTuning | None = None,
    reference: RecommenderReference | None = None,
) -> TrainOutcome:
    """Tune, evaluate side by side, log the chosen recommender to MLflow and promote it.

    Args:
        data_dir: Data folder (events; users for segments; items for categories and availability).
        as_of: Training uses events before this date.
        horizon: Test window in days after ``as_of``.
        tracking_uri: MLflow tracking and registry URI.
        kind: ``recommender`` (choose the family on validation) or a family name to force it.
        tuning: Interaction weights, the grid of settings and the validation window (default
            :class:`RecommenderTuning`).
        reference: The true preferences of a simulated world
            (:func:`simulator.oracle.recommender_reference`): the test table then gains the oracle's row,
            ``true_recall_at_10`` and ``oracle_fraction``. ``None`` (real data): no oracle.

    Returns:
        The outcome: run, model, promotion decision; ``metrics`` = every family's and baseline's test-window
        metrics side by side (empty without test-window events); ``facts`` = ``as_of``, ``horizon``,
        ``training_events``, ``users``, ``items``, ``interactions``, ``validation_start``,
        ``validation_users``, ``chosen``, ``chosen_params``, ``validation_ndcg_at_10``, ``test_end``,
        ``test_users`` (0: no test window), ``promotion_holdout`` (``test`` or ``validation``) and
        ``holdout_ndcg_at_10``.

    Raises:
        TrainingDataError: No item events before the validation window to tune on.
    """
    return _run_training(
        data_dir=Path(data_dir),
        as_of=as_of,
        horizon=horizon,
        tracking_uri=tracking_uri,
        kind=kind,
        tuning=tuning or RecommenderTuning(),
        reference=reference,
    )


def fit_recommender(
    data_dir: str | Path,
    as_of: date,
    *,
    family: str = "als",
    params: Mapping[str, Any] | None = None,
    weights: InteractionWeights | None = None,
) -> Recommender:
    """Fit one family with default (or given) settings on events before ``as_of``, no tuning or MLflow."""
    weights = weights or InteractionWeights()
    world = load_world(data_dir)
    inter = build_interactions(world.events, weights=weights, end=as_of)
    segments = user_segments(world.users, inter.user_ids, segment_attribute(world.users))[0]
    model = fit_model(family, params or {}, inter, segments)
    return build_recommender(
        model,
        inter,
        world,
        as_of,
        weights,
        {"family": family, "params": dict(params or {}), "as_of": str(as_of)},
    )


def load_or_fit(
    model_uri: str, *, tracking_uri: str, data_dir: str | Path, as_of: date, fit: bool
) -> tuple[Recommender, str]:
    """The recommender registered at ``model_uri``, or one fitted now when none is and ``fit`` allows it.

    Args:
        model_uri: The model to load (``models:/recommender@champion``, ``runs:/…``).
        tracking_uri: MLflow tracking and registry URI holding it.
        data_dir: Data folder to fit on when no model is registered.
        as_of: A model fitted here uses events before this date only.
        fit: Without a registered model, fit ALS with default settings (no tuning, nothing logged).

    Returns:
        The recommender and where it came from: ``model_uri``, or :data:`FITTED_ON_THE_FLY`.

    Raises:
        ModelNotFoundError: Nothing is registered at ``model_uri`` and ``fit`` is false, or the model there
            is not a recommender.
    """
    import mlflow

    from training.registry import connect

    connect(tracking_uri)
    try:
        return load_recommender(model_uri), model_uri
    except mlflow.exceptions.MlflowException as exc:
        if not fit:
            raise ModelNotFoundError(
                f"no recommender at {model_uri} ({tracking_uri}); run `userops train recommender`"
            ) from exc
    return fit_recommender(data_dir, as_of), FITTED_ON_THE_FLY


def recommend_users(
    rec: Recommender, data_dir: str | Path, as_of: date, user_ids: list[str] | None, k: int = 10
) -> pd.DataFrame:
    """Batch top-``k`` (``user_id, rank, item_id, score``) from each user's history before ``as_of``.

    When the recommender was fitted as of another date, every user's history is rebuilt from the folder's
    events before ``as_of`` (in the model's item space) and factor models fold users in from it, so the
    output depends on the folder and the date, not on what the model saw.

    Args:
        rec: A fitted or loaded recommender.
        data_dir: Data folder.
        as_of: Histories use events before this date.
        user_ids: Users to recommend for (``None``: every user in the users table, else in the events).
        k: List length.

    Returns:
        The batch frame; users with no history get the popularity fallback of their segment.
    """
    world = load_world(data_dir)
    if user_ids is None:
        source = world.users if world.users is not None else world.events
        user_ids = sorted(source["user_id"].dropna().astype(str).unique().tolist())
    ids = np.asarray(user_ids, dtype=str)
    attr = rec.meta.get("segment_attribute")
    segments = None
    if attr and world.users is not None and attr in world.users:
        values = world.users.drop_duplicates("user_id").set_index("user_id")[attr].astype(str)
        segments = pd.Series(ids).map(values).tolist()
    if rec.meta.get("as_of") != str(as_of):
        inter = build_interactions(
            world.events, weights=rec.weights, end=as_of, user_ids=ids, item_ids=rec.item_ids
        )
        purchases = InteractionWeights(view=0, add_to_cart=0, purchase=1, refund=0)
        bought = build_interactions(
            world.events, weights=purchases, end=as_of, user_ids=ids, item_ids=rec.item_ids
        ).matrix
        seg = pd.Index(rec.segment_names).get_indexer(pd.Index([str(s) for s in segments or [""] * len(ids)]))
        rec = rec.with_history(inter.matrix, bought, ids, seg)
    return rec.recommend_frame(ids, k, segments=segments)
