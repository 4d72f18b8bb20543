"""Recommender grids grow past an edge their best value sits on, refine the best value between grid
values, and an edge still reached is a warning."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from training.interactions import Interactions
from training.rec_tuning import DEFAULT_GRID, _edges, _refined, _widened, distinct_settings
from training.recommenders import EASERecommender, ItemKNNRecommender

EASE = [{"l2": 100.0}, {"l2": 500.0}, {"l2": 2000.0}]


def test_ease_lambda_steps_past_either_edge_only() -> None:
    assert _widened("ease", {"l2": 2000.0}, EASE) == [{"l2": 8000.0}]
    assert _widened("ease", {"l2": 100.0}, EASE) == [{"l2": 25.0}]
    assert _widened("ease", {"l2": 500.0}, EASE) == []
    assert _widened("ease", {"l2": 500.0}, EASE[:1]) == []  # one value tried: not a range, no edge
    assert _widened("bpr", {"learning_rate": 0.05}, DEFAULT_GRID["bpr"]) == []  # not widened


def test_itemknn_neighbours_widen_as_whole_numbers() -> None:
    grid = [{"neighbors": 50, "binary": True}, {"neighbors": 200, "binary": True}]
    assert _widened("itemknn", {"neighbors": 50, "binary": True}, grid) == [{"neighbors": 25, "binary": True}]
    assert _widened("itemknn", {"neighbors": 200, "binary": True}, grid) == [
        {"neighbors": 400, "binary": True}
    ]


def test_als_factors_regularisation_and_confidence_each_widen() -> None:
    grid = DEFAULT_GRID["als"]
    best = {"factors": 128, "alpha": 10.0, "regularization": 1.0, "iterations": 15}
    new = _widened("als", best, grid)
    assert {**best, "factors": 256} in new and isinstance(new[0]["factors"], int)
    assert {**best, "regularization": 0.1} in new and {**best, "alpha": 40.0} in new
    assert len(new) == 3


def test_an_edge_still_reached_reads_as_a_warning() -> None:
    assert _edges("ease", {"l2": 500.0}, EASE) == []
    assert _edges("ease", {"l2": 2000.0}, EASE) == [
        "ease: the best l2 (2000) is the highest value tried (100 to 2000); a better one may lie beyond"
    ]
    bounded = [{"l2": 250_000.0}, {"l2": 1_000_000.0}]
    assert _widened("ease", {"l2": 1_000_000.0}, bounded) == []  # the widest λ allowed
    assert _edges("ease", {"l2": 1_000_000.0}, bounded)[0].startswith("ease: the best l2 (1e+06)")


def test_the_best_value_is_refined_halfway_on_a_log_scale() -> None:
    new = _refined("ease", {"l2": 500.0}, EASE)
    assert [p["l2"] for p in new] == [220.0, 1000.0]  # √(100·500) = 224, √(500·2000) = 1000, two digits
    for p, low, high in zip(new, (100.0, 500.0), (500.0, 2000.0), strict=True):
        assert abs(math.log(p["l2"]) - (math.log(low) + math.log(high)) / 2) < math.log(1.05)
    # neighbours closer than a factor 1.5 are fine enough; a value already tried is not tried again
    assert _refined("ease", {"l2": 100.0}, [{"l2": 100.0}, {"l2": 140.0}]) == []
    assert _refined("ease", {"l2": 100.0}, [{"l2": 25.0}, {"l2": 50.0}, {"l2": 100.0}]) == [{"l2": 71.0}]
    assert _refined("bpr", {"learning_rate": 0.05}, DEFAULT_GRID["bpr"]) == []  # not refined


def test_refining_follows_the_best_settings_line_only() -> None:
    tried = [{"l2": x, "binary": b} for b in (True, False) for x in (100.0, 500.0)]
    tried.append({"l2": 2000.0, "binary": True})  # on the other line only
    assert _refined("ease", {"l2": 500.0, "binary": False}, tried) == [{"l2": 220.0, "binary": False}]
    knn = [{"neighbors": 50, "binary": True}, {"neighbors": 200, "binary": True}]
    assert _refined("itemknn", knn[0], knn) == [{"neighbors": 100, "binary": True}]  # an int stays an int


def test_strength_is_tried_only_where_the_matrix_has_strengths() -> None:
    rng = np.random.default_rng(3)
    counts = sp.csr_matrix((rng.random((60, 15)) < 0.3) * rng.integers(1, 5, (60, 15)), dtype=np.float32)
    ones = counts.copy()
    ones.data[:] = 1.0
    ids = np.arange(60).astype(str), np.arange(15).astype(str)
    grid = DEFAULT_GRID["ease"]
    assert distinct_settings(grid, Interactions(counts, *ids)) == grid
    on_ones = distinct_settings(grid, Interactions(ones, *ids))
    assert on_ones == [p for p in grid if p["binary"]]
    # the premise, checked on the models: on a matrix of ones the two inputs fit the same weights
    for binary in (True, False):
        ease = EASERecommender(l2=10.0, binary=binary).fit(ones)
        knn = ItemKNNRecommender(neighbors=5, binary=binary).fit(ones)
        np.testing.assert_allclose(ease.weights_, EASERecommender(l2=10.0).fit(ones).weights_, atol=1e-6)
        np.testing.assert_allclose(knn.similarity_, ItemKNNRecommender(neighbors=5).fit(ones).similarity_)
    # and on counts they do not
    strength = EASERecommender(l2=10.0, binary=False).fit(counts).weights_
    assert not np.allclose(strength, EASERecommender(l2=10.0, binary=True).fit(counts).weights_, atol=1e-3)
