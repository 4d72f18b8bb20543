"""The model contract, run on every family; each family checked against an independent computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from training.recommenders import (
    FAMILIES,
    ALSRecommender,
    EASERecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RecommenderModel,
    load_model,
)
from training.recommenders.base import top_k

SMALL = {
    "als": {"factors": 8, "iterations": 5},
    "bpr": {"factors": 8, "iterations": 20},
    "itemknn": {"neighbors": 10},
    "ease": {"l2": 10.0},
    "popularity": {},
}


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    """Users in two taste groups over 40 items, confidences 1-5."""
    rng = np.random.default_rng(0)
    n_users, n_items = 120, 40
    group = rng.integers(0, 2, n_users)
    p = np.where((np.arange(n_items) < 20)[None, :] == (group[:, None] == 0), 0.25, 0.03)
    dense = (rng.random((n_users, n_items)) < p) * rng.integers(1, 6, (n_users, n_items))
    return sp.csr_matrix(dense.astype(np.float32))


def _fit(family: str, x: sp.csr_matrix) -> RecommenderModel:
    return FAMILIES[family](**SMALL[family]).fit(x)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_init_stores_only_hyperparameters_and_fit_returns_self(family: str, matrix: sp.csr_matrix) -> None:
    model = FAMILIES[family](**SMALL[family])
    assert not [k for k in vars(model) if k.endswith("_")]
    assert FAMILIES[family](**model.get_params()).get_params() == model.get_params()
    assert model.fit(matrix) is model
    assert all(hasattr(model, name) for name in model.learned)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_load_gives_the_same_recommendations(family: str, matrix: sp.csr_matrix, tmp_path: Path) -> None:
    model = _fit(family, matrix)
    path = model.save(tmp_path / "m.npz")
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    assert type(model).load(path).get_params() == model.get_params()  # the family's own reader
    rows = np.arange(30)
    for users in (rows, None):  # learned user state, and scoring from the history alone
        a = model.recommend(matrix[rows], 10, users=users, exclude=matrix[rows])
        b = loaded.recommend(matrix[rows], 10, users=users, exclude=matrix[rows])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1])
    np.testing.assert_array_equal(model.similar_items(3, 5)[0], loaded.similar_items(3, 5)[0])


def test_a_family_reads_only_its_own_files(matrix: sp.csr_matrix, tmp_path: Path) -> None:
    path = PopularityRecommender().fit(matrix).save(tmp_path / "p.npz")
    with pytest.raises(ValueError, match="holds a popularity model, not als"):
        ALSRecommender.load(path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_same_result(family: str, matrix: sp.csr_matrix) -> None:
    a, b = _fit(family, matrix), _fit(family, matrix)
    rows = np.arange(matrix.shape[0])
    np.testing.assert_allclose(a.score(matrix, rows), b.score(matrix, rows))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_recommendations_exclude_and_rank(family: str, matrix: sp.csr_matrix) -> None:
    model = _fit(family, matrix)
    rows = np.arange(matrix.shape[0])
    idx, val = model.recommend(matrix, 10, users=rows, exclude=matrix)
    for r in rows:
        assert not set(idx[r][np.isfinite(val[r])]) & set(matrix[r].indices)
        assert np.all(np.diff(val[r]) <= 0)
    sim, _ = model.similar_items(5, 8)
    assert 5 not in sim and len(sim) == 8


@pytest.mark.parametrize("family", ["als", "bpr", "itemknn", "ease"])
def test_personal_models_beat_chance_on_two_taste_groups(family: str, matrix: sp.csr_matrix) -> None:
    model = _fit(family, matrix)
    idx, _ = model.recommend(matrix, 5, users=np.arange(matrix.shape[0]), exclude=matrix)
    in_group = (idx < 20) == (
        np.asarray(matrix[:, :20].sum(axis=1)).ravel() > np.asarray(matrix[:, 20:].sum(axis=1)).ravel()
    )[:, None]
    assert in_group.mean() > 0.8


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 40),
    k=st.integers(0, 45),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_k_is_a_full_sort_by_score_then_index(rows: int, cols: int, k: int, seed: int) -> None:
    """Both paths (one row, many rows) pick exactly what sorting by (score down, index up) picks, with
    ties, filtered items and NaN (counted as filtered) everywhere; a shorter list is a prefix."""
    rng = np.random.default_rng(seed)
    s = rng.choice(np.array([0.0, 0.5, 1.0, 2.0, -np.inf, np.nan]), (rows, cols))
    idx, val = top_k(s, k)
    one = [top_k(s[r], k) for r in range(rows)]
    clean = np.where(np.isnan(s), -np.inf, s)
    for r in range(rows):
        order = np.lexsort((np.arange(cols), -clean[r]))[: min(k, cols)]  # last key sorts first
        np.testing.assert_array_equal(idx[r], order)
        np.testing.assert_array_equal(val[r], clean[r, order])
        np.testing.assert_array_equal(one[r][0], order)
        np.testing.assert_array_equal(one[r][1], clean[r, order])
    shorter = top_k(s, max(k - 3, 0))[0]
    np.testing.assert_array_equal(shorter, idx[:, : shorter.shape[1]])


def test_ease_matches_a_brute_force_constrained_ridge(matrix: sp.csr_matrix) -> None:
    l2 = 10.0
    model = EASERecommender(l2=l2, binary=True).fit(matrix)
    x = (matrix.toarray() > 0).astype(float)
    n = x.shape[1]
    for j in (0, 7, 33):  # column j regresses item j on all other items, ridge l2, no self-weight
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        coef = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
        np.testing.assert_allclose(model.weights_[others, j], coef, atol=1e-4)
        assert model.weights_[j, j] == 0


def test_itemknn_matches_sklearn_cosine(matrix: sp.csr_matrix) -> None:
    from sklearn.metrics.pairwise import cosine_similarity

    model = ItemKNNRecommender(neighbors=None).fit(matrix)
    want = cosine_similarity(matrix.T.toarray())
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(model.similarity_, want, atol=1e-5)
    np.testing.assert_allclose(model.score(matrix[:3]), matrix[:3].toarray() @ want, rtol=1e-4, atol=1e-4)


def test_als_fold_in_matches_implicit_recalculate_user(matrix: sp.csr_matrix) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    model = ALSRecommender(factors=8, iterations=5, alpha=2.0, regularization=0.1).fit(matrix)
    ref = AlternatingLeastSquares(factors=8, alpha=2.0, regularization=0.1, num_threads=1)
    ref.user_factors = model.user_factors_.copy()
    ref.item_factors = model.item_factors_.copy()
    for u in (0, 5, 17):
        want = ref.recalculate_user(u, matrix[u])
        got = model.user_vectors(matrix[u])[0]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_popularity_per_segment_shrinks_to_global(matrix: sp.csr_matrix) -> None:
    seg = np.r_[np.zeros(60, int), np.ones(60, int)]
    model = PopularityRecommender(by_segment=True, shrinkage=0.0).fit(matrix, seg)
    counts0 = (matrix[:60].toarray() > 0).sum(axis=0) / 60
    np.testing.assert_allclose(model.segment_scores_[0], counts0)
    np.testing.assert_allclose(model.segment_scores(np.array([-1]))[0], model.global_scores_)
    huge = PopularityRecommender(by_segment=True, shrinkage=1e9).fit(matrix, seg)
    np.testing.assert_allclose(huge.segment_scores_[1], huge.global_scores_, atol=1e-6)
