"""Tuning reaches the best λ a fine sweep finds, and the choice between close families uses several folds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.interactions import Interactions, InteractionWeights, build_interactions
from training.rec_eval import Holdout, UserHoldout, per_user_holdout
from training.rec_tuning import (
    FINALIST_GAP,
    Tuned,
    choose,
    finalists,
    fit_model,
    score_on_folds,
    tune,
    validation_metrics,
)
from training.recommenders import EASERecommender

WEIGHTS = InteractionWeights(strength="interactions")


@pytest.fixture(scope="module")
def export() -> pd.DataFrame:
    """A play-count export without times: 800 users with four latent tastes of varying strength, 60 items."""
    rng = np.random.default_rng(11)
    n_users, n_items, tastes = 800, 60, 4
    affinity = rng.gamma(1.0, 1.0, (n_users, tastes)) @ rng.gamma(0.3, 1.0, (tastes, n_items))
    p = 1.0 - np.exp(-0.15 * rng.gamma(2.0, 1.0, (n_users, 1)) * affinity)
    users, items = np.nonzero(rng.random((n_users, n_items)) < p)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{j}" for j in items],
            "event_type": "purchase",
            "ts": pd.Timestamp("2024-01-01"),
            "amount": rng.integers(1, 8, len(users)).astype(float),
        }
    )


def _folds(events: pd.DataFrame, n: int) -> tuple[Interactions, list[UserHoldout]]:
    inter = build_interactions(events, weights=WEIGHTS)
    return inter, [per_user_holdout(events, inter, WEIGHTS, fold=f) for f in range(n)]


def _key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def _no_segments(inter: Interactions) -> np.ndarray:
    return np.full(inter.matrix.shape[0], -1, np.int64)


def _ndcg(model: Any, fit: Interactions, holdout: Holdout) -> float:
    return validation_metrics(model, fit, holdout)["ndcg_at_10"]


def test_tuning_reaches_the_best_lambda_of_a_fine_sweep(export: pd.DataFrame) -> None:
    _, (split,) = _folds(export, 1)
    assert not split.temporal
    grid = {"ease": [{"l2": x, "binary": True} for x in (1.0, 100.0, 10_000.0)]}
    tried: list[float] = []
    scores: list[float] = []

    def trial(family: str, params: Any, metrics: Any) -> None:
        if family == "ease":
            tried.append(params["l2"])
            scores.append(metrics["ndcg_at_10"])

    tuned = tune(split.fit, split.holdout, grid, _no_segments(split.fit), trial)
    sweep = {
        lam: _ndcg(EASERecommender(l2=lam).fit(split.fit.matrix), split.fit, split.holdout)
        for lam in np.geomspace(0.5, 50_000, 50)
    }
    best_score = tuned.best["ease"][1]
    assert best_score >= 0.99 * max(sweep.values())
    assert len(tried) < len(sweep) / 3  # with a fraction of the fits
    grid_only = [
        tuned_score for lam, tuned_score in zip(tried, scores, strict=True) if lam in (1.0, 100.0, 10_000.0)
    ]
    assert max(grid_only) < 0.99 * max(sweep.values())  # the grid alone falls short: refining found it
    assert tuned.edges == []


def test_close_families_are_chosen_on_the_mean_of_several_folds(export: pd.DataFrame) -> None:
    _, splits = _folds(export, 3)
    first = splits[0]
    grid = {"ease": [{"l2": 30.0}, {"l2": 300.0}], "itemknn": [{"neighbors": 20}], "bpr": [{"iterations": 2}]}
    tuned = tune(first.fit, first.holdout, grid, _no_segments(first.fit), lambda *_: None, widen=False)
    extra = [(s.fit, s.holdout) for s in splits[1:]]
    averaged = score_on_folds(tuned, extra, _no_segments)
    top = max(tuned.best[f][1] for f in ("ease", "itemknn", "bpr"))
    close = finalists(tuned.best)
    assert close == [f for f in ("bpr", "itemknn", "ease") if tuned.best[f][1] >= (1 - FINALIST_GAP) * top]
    assert "ease" in close or "itemknn" in close
    for family in ("ease", "itemknn", "bpr", "popularity"):
        params, score = averaged.best[family]
        if family in close:  # its two best settings, each the mean over the three folds fitted on their own
            top_two = sorted(tuned.trials[family], key=lambda t: -t[1])[:2]
            by_hand = {
                _key(p): np.mean(
                    [
                        _ndcg(fit_model(family, p, s.fit, _no_segments(s.fit)), s.fit, s.holdout)
                        for s in splits
                    ]
                )
                for p, _ in top_two
            }
            assert score == pytest.approx(max(by_hand.values()), rel=1e-9) and averaged.folds[family] == 3
            assert by_hand[_key(params)] == pytest.approx(score, rel=1e-9)
        else:
            assert score == tuned.best[family][1] and averaged.folds[family] == 1
    assert choose("recommender", averaged.best) == max(close, key=lambda f: averaged.best[f][1])
    assert choose("bpr", averaged.best) == "bpr"
    assert score_on_folds(tuned, [], _no_segments) is tuned


def test_finalists_are_the_families_near_the_best() -> None:
    best = {"als": ({}, 0.30), "ease": ({}, 0.29), "itemknn": ({}, 0.20), "popularity": ({}, 0.31)}
    assert finalists(best) == ["als", "ease"]  # baselines never; itemknn is a third behind
    assert finalists({"popularity": ({}, 0.3)}) == []
    assert isinstance(Tuned(best, []).folds, dict)
