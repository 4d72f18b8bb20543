"""Recommender grids grow past an edge their best value sits on, and an edge still reached is a warning."""

from __future__ import annotations

from training.recommend import DEFAULT_GRID, _edges, _widened

EASE = [{"l2": 100.0}, {"l2": 500.0}, {"l2": 2000.0}]


def test_ease_lambda_steps_past_either_edge_only() -> None:
    assert _widened("ease", {"l2": 2000.0}, EASE) == [{"l2": 8000.0}]
    assert _widened("ease", {"l2": 100.0}, EASE) == [{"l2": 25.0}]
    assert _widened("ease", {"l2": 500.0}, EASE) == []
    assert _widened("ease", {"l2": 500.0}, EASE[:1]) == []  # one value tried: not a range, no edge
    assert _widened("bpr", {"learning_rate": 0.05}, DEFAULT_GRID["bpr"]) == []  # not widened


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
