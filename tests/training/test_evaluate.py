"""Metrics against independent computations: brute-force pairs, loops over bins, scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from training.evaluate import binary_metrics, expected_calibration_error, format_table, lift_at, metrics_table


@pytest.fixture()
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    p = rng.beta(2, 3, 600)
    y = (rng.random(600) < p).astype(int)
    return y, p


def test_roc_auc_is_the_share_of_correctly_ordered_pairs(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert binary_metrics(y, p)["roc_auc"] == pytest.approx(pairs)


def test_ece_matches_a_loop_over_bins(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    total = 0.0
    for k in range(10):
        inside = (p >= k / 10) & ((p < (k + 1) / 10) if k < 9 else (p <= 1))
        if inside.any():
            total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    assert expected_calibration_error(y, p) == pytest.approx(total / len(y))
    # sklearn's reliability curve agrees on the per-bin gaps
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert np.all(np.abs(frac - mean) <= 1)
    assert expected_calibration_error(y, np.full(len(y), y.mean())) == pytest.approx(0.0, abs=1e-12)


def test_lift_in_the_top_decile() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0] * 10)
    score = np.where(y == 1, 1.0, 0.0) + np.linspace(0, 0.1, 100)
    # the top 10 by score are all positives: rate 1 over a base rate 0.2
    assert lift_at(y, score, 0.1) == pytest.approx(5.0)
    assert lift_at(y, -score, 0.1) == pytest.approx(0.0)


def test_table_has_every_metric_for_every_model(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    table = metrics_table(y, {"good": p, "noise": np.random.default_rng(2).random(len(y))})
    assert list(table.columns) == ["roc_auc", "pr_auc", "lift_at_10", "brier", "ece"]
    assert table.loc["good", "roc_auc"] > table.loc["noise", "roc_auc"]
    assert table.loc["good", "brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert "| good |" in format_table(table)
