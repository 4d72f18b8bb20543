"""Tuning the recommender families on a per-user holdout: grids, their edges, the optimum, the choice.

* **Grids** (:data:`DEFAULT_GRID`): every setting is fitted on the holdout's fitting matrix and scored by
  NDCG@10 on the held-out items. EASE and item-kNN are tried on presence (``binary``) and on the
  interaction strength: a play count or a repeat purchase can say more than "had it" (on the simulated
  world EASE on strength beats EASE on presence by 3% NDCG@10), or only add noise (Online Retail). When
  every cell is 1 the two are the same model and only presence is fitted.
* **Edges** (:data:`WIDEN`): where the best value of EASE's λ, item-kNN's neighbours or ALS's factors,
  regularisation or confidence scaling is the highest or lowest value tried, the grid steps past it (up to
  :data:`WIDEN_ROUNDS` times); an edge still reached is a warning.
* **The optimum** (:data:`REFINE`): grids are coarse (λ 100, 500, 2000), and EASE's NDCG@10 moves by
  1-2% between neighbouring values, so the best value is refined once by the geometric midpoints with
  its neighbours tried, where they are more than a factor 1.5 apart (EASE's NDCG@10 is flat to about
  0.5% within a factor 2 of its best λ, so a second round rarely pays for its fits).
* **The choice** (:func:`choose`): the family with the best validation NDCG@10. Without a time order the
  holdout is a random share of each user's items, so the score of one split is itself noisy (a λ best on
  one split can lose to its neighbour on the next): the finalists (families within :data:`FINALIST_GAP`
  of the best) have their :data:`SETTINGS_ON_FOLDS` best settings scored again on :data:`EXTRA_FOLDS`
  further random folds (:func:`training.rec_eval.per_user_holdout`, disjoint held-out items), and
  family and setting are chosen on the mean. A temporal holdout has one fold, each user's latest items.

Regularisation is not rescaled when the chosen setting is refitted on all the data: EASE's penalty adds
to the unnormalised Gram matrix (λ is a ratio of noise to prior variance, not a per-row weight), and on
both the simulated world and Online Retail the λ best on the 80% fitting split is within one grid step
of the one best on the test (bench/bench_recommender_shapes.py). Item-kNN's neighbours are a count of
items, which does not grow with users.

Why more than one family stays in the race: on less data item-kNN holds up better than EASE (on the
simulated world, fitted on 80% of the training rows item-kNN is ahead by 1%, on all of them EASE is ahead
by 1.5%), so validation, which fits on 80%, leans towards item-kNN; a choice between near-equals is where
that bias and the split's noise matter, hence the finalists' extra folds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.interactions import Interactions
from training.rec_eval import Holdout, K, ranking_metrics, score_model
from training.recommenders import FAMILIES, PopularityRecommender, RecommenderModel

CANDIDATES = ("als", "bpr", "itemknn", "ease")
BASELINES = ("popularity", "popularity_segment")
DEFAULT_GRID: dict[str, list[dict[str, Any]]] = {
    "als": [
        {"factors": f, "alpha": a, "regularization": r, "iterations": 15}
        for f in (16, 64, 128)
        for r in (1.0, 10.0)
        for a in (1.0, 10.0)
    ],
    "bpr": [{"factors": 64, "learning_rate": lr, "iterations": 100} for lr in (0.01, 0.05)],
    "itemknn": [{"neighbors": n, "binary": b} for b in (True, False) for n in (50, 200)],
    "ease": [{"l2": x, "binary": b} for b in (True, False) for x in (100.0, 500.0, 2000.0)],
}


WIDEN: dict[str, dict[str, tuple[float, float, float]]] = {
    "ease": {"l2": (4.0, 1.0, 1e6)},
    "itemknn": {"neighbors": (2.0, 5.0, 2000.0)},
    "als": {"factors": (2.0, 4.0, 512.0), "regularization": (10.0, 1e-4, 1e4), "alpha": (4.0, 0.01, 1e4)},
}
"""Family -> setting -> (step factor, lowest, highest): how a grid grows past an edge its best value is at."""
WIDEN_ROUNDS = 3

REFINE: dict[str, dict[str, float]] = {"ease": {"l2": 1.5}, "itemknn": {"neighbors": 1.5}}
"""Family -> setting -> the ratio of neighbouring values tried below which the best is not refined."""
REFINE_ROUNDS = 1

EXTRA_FOLDS = 2
"""Further random folds the finalists are scored on when the holdout has no time order."""
FINALIST_GAP = 0.05
"""A family is a finalist when its validation NDCG@10 is within this share of the best family's."""
SETTINGS_ON_FOLDS = 2
"""How many of a finalist's best settings on the first fold are scored on the extra folds too."""

Trial = Callable[[str, Mapping[str, Any], Mapping[str, float]], None]
"""Called with (family, setting, validation metrics) after every setting is scored (an MLflow child run)."""


def fit_model(
    family: str, params: Mapping[str, Any], inter: Interactions, segments: np.ndarray
) -> RecommenderModel:
    """Fit one family (``popularity_segment`` = popularity per segment) on an interaction matrix."""
    if family in BASELINES:
        return PopularityRecommender(by_segment=family == "popularity_segment", **params).fit(
            inter.matrix, segments if family == "popularity_segment" else None
        )
    return FAMILIES[family](**params).fit(inter.matrix)


def validation_metrics(
    model: RecommenderModel, fit_inter: Interactions, holdout: Holdout
) -> dict[str, float]:
    """Ranking metrics at :data:`~training.rec_eval.K` of a model fitted on ``fit_inter`` on a holdout."""
    return ranking_metrics(score_model(model, fit_inter, holdout), holdout.relevant, K)


def _key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def _like(value: Any, new: float) -> Any:
    return round(new) if isinstance(value, int) and not isinstance(value, bool) else new


def _widened(
    family: str, best: Mapping[str, Any], tried: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Settings one step past each edge the best setting sits on (settings tried with one value only are
    not a range, so they have no edge)."""
    out = []
    for name, (factor, lowest, highest) in WIDEN.get(family, {}).items():
        values = sorted({float(p[name]) for p in tried if name in p})
        if len(values) < 2 or name not in best:
            continue
        value = float(best[name])
        step = value * factor if value == values[-1] else value / factor if value == values[0] else None
        if step is None or not lowest <= step <= highest:
            continue
        out.append({**best, name: _like(best[name], step)})
    return out


def _two_digits(x: float) -> float:
    """``x`` to two significant digits (a λ of 710 reads better than 707.1067811865476)."""
    return float(f"{x:.2g}")


def _refined(
    family: str, best: Mapping[str, Any], tried: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The geometric midpoints between the best value and its neighbours tried with the best's other
    settings, where the two are more than :data:`REFINE`'s ratio apart."""
    out = []
    for name, ratio in REFINE.get(family, {}).items():
        if name not in best:
            continue
        others = {k: v for k, v in best.items() if k != name}
        line = {float(p[name]) for p in tried if name in p and {k: p.get(k) for k in others} == others}
        value = float(best[name])
        below = [v for v in line if v < value]
        above = [v for v in line if v > value]
        for near in ([max(below)] if below else []) + ([min(above)] if above else []):
            if max(near, value) / min(near, value) > ratio:
                mid = _like(best[name], _two_digits(float(np.sqrt(near * value))))
                if float(mid) not in line:
                    out.append({**best, name: mid})
    return out


def _edges(family: str, best: Mapping[str, Any], tried: Sequence[Mapping[str, Any]]) -> list[str]:
    """A warning per setting whose best value is still the highest or lowest value tried."""
    out = []
    for name in WIDEN.get(family, {}):
        values = sorted({float(p[name]) for p in tried if name in p})
        if len(values) >= 2 and name in best and float(best[name]) in (values[0], values[-1]):
            side = "highest" if float(best[name]) == values[-1] else "lowest"
            out.append(
                f"{family}: the best {name} ({best[name]:g}) is the {side} value tried "
                f"({values[0]:g} to {values[-1]:g}); a better one may lie beyond"
            )
    return out


def distinct_settings(settings: Sequence[Mapping[str, Any]], inter: Interactions) -> list[dict[str, Any]]:
    """``settings`` without the ones that fit the same model: on a matrix of ones (no strengths), fitting
    on strength is fitting on presence, so ``binary=False`` becomes ``binary=True`` (once)."""
    one_value = bool(np.all(inter.matrix.data == 1.0))
    out: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for params in settings:
        p = {**params, "binary": True} if one_value and params.get("binary") is False else dict(params)
        if _key(p) not in seen:
            seen.add(_key(p))
            out.append(p)
    return out


@dataclass
class Tuned:
    """What tuning found.

    Attributes:
        best: Family or baseline -> (best setting, validation NDCG@10; for finalists scored on several
            folds, the mean over them).
        edges: Warnings of settings left at a grid's edge.
        folds: Folds each family's score is the mean of (1 unless it was a finalist on a random holdout).
        trials: Family -> every setting scored on the first fold, with its NDCG@10, in the order tried.
    """

    best: dict[str, tuple[dict[str, Any], float]]
    edges: list[str]
    folds: dict[str, int] = field(default_factory=dict)
    trials: dict[str, list[tuple[dict[str, Any], float]]] = field(default_factory=dict)


def tune(
    fit_inter: Interactions,
    holdout: Holdout,
    grid: Mapping[str, Sequence[Mapping[str, Any]]],
    segments: np.ndarray,
    run_child: Trial,
    *,
    widen: bool = True,
) -> Tuned:
    """Best setting and validation NDCG@10 per family (baselines have one setting each), and the warnings
    of settings left at a grid's edge."""
    best: dict[str, tuple[dict[str, Any], float]] = {}
    trials: dict[str, list[tuple[dict[str, Any], float]]] = {}

    def trial(family: str, params: Mapping[str, Any]) -> None:
        metrics = validation_metrics(fit_model(family, params, fit_inter, segments), fit_inter, holdout)
        run_child(family, params, metrics)
        trials.setdefault(family, []).append((dict(params), metrics[f"ndcg_at_{K}"]))
        if family not in best or metrics[f"ndcg_at_{K}"] > best[family][1]:
            best[family] = (dict(params), metrics[f"ndcg_at_{K}"])

    def grow(family: str, tried: list[dict[str, Any]], step: Callable[..., list[dict[str, Any]]]) -> None:
        for _ in range(WIDEN_ROUNDS if step is _widened else REFINE_ROUNDS):
            seen = {_key(p) for p in tried}
            new = [p for p in step(family, best[family][0], tried) if _key(p) not in seen]
            if not new:
                break
            for params in new:
                trial(family, params)
            tried += new

    warnings: list[str] = []
    for family in (f for f in CANDIDATES if f in grid):
        tried = distinct_settings(grid[family], fit_inter)
        for params in tried:
            trial(family, params)
        if widen:
            grow(family, tried, _widened)
            grow(family, tried, _refined)
        warnings += _edges(family, best[family][0], tried)
    for baseline in BASELINES:
        trial(baseline, {})
    return Tuned(best, warnings, dict.fromkeys(best, 1), trials)


def finalists(best: Mapping[str, tuple[dict[str, Any], float]]) -> list[str]:
    """The tuned families within :data:`FINALIST_GAP` of the best one on validation."""
    tuned = [f for f in CANDIDATES if f in best]
    if not tuned:
        return []
    top = max(best[f][1] for f in tuned)
    return [f for f in tuned if best[f][1] >= (1.0 - FINALIST_GAP) * top]


def score_on_folds(
    tuned: Tuned,
    folds: Sequence[tuple[Interactions, Holdout]],
    segments: Callable[[Interactions], np.ndarray],
) -> Tuned:
    """The finalists' :data:`SETTINGS_ON_FOLDS` best settings scored on further folds too: each finalist
    keeps the setting with the best mean over all folds, and that mean is its score."""
    if not folds:
        return tuned
    best = dict(tuned.best)
    counts = dict(tuned.folds)
    for family in finalists(best):
        ranked = sorted(tuned.trials.get(family) or [best[family]], key=lambda t: -t[1])
        means = []
        for params, first in ranked[:SETTINGS_ON_FOLDS]:
            scores = [first]
            for fit_inter, holdout in folds:
                model = fit_model(family, params, fit_inter, segments(fit_inter))
                scores.append(validation_metrics(model, fit_inter, holdout)[f"ndcg_at_{K}"])
            means.append((params, float(np.mean(scores))))
        best[family] = max(means, key=lambda t: t[1])
        counts[family] = len(folds) + 1
    return Tuned(best, tuned.edges, counts, tuned.trials)


def choose(kind: str, best: Mapping[str, tuple[dict[str, Any], float]]) -> str:
    """The family to register: the one forced by ``kind``, else the tuned one best on validation."""
    if kind in CANDIDATES:
        return kind
    tuned = [f for f in CANDIDATES if f in best]
    if not tuned:
        raise ValueError("recommender: no candidate family in the grid")
    return max(tuned, key=lambda f: best[f][1])
