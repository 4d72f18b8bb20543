"""Metrics for probability scores of a binary outcome, and the side-by-side table of several models.

Every model (LightGBM and each baseline) is scored on the same holdout users and labels, so the rows of
:func:`metrics_table` are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "lift_at_10", "brier", "ece")
"""The metrics reported for every model, in table order."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "pr_auc": True,
    "lift_at_10": True,
    "brier": False,
    "ece": False,
}


def expected_calibration_error(y_true: np.ndarray, prob: np.ndarray, n_bins: int = 10) -> float:
    """Mean absolute gap between predicted and observed rates over equal-width bins, weighted by bin size.

    Args:
        y_true: 0/1 outcomes.
        prob: Predicted probabilities in ``[0, 1]``.
        n_bins: Equal-width bins over ``[0, 1]``.

    Returns:
        The expected calibration error (0 is perfectly calibrated).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(prob, dtype=float), 0.0, 1.0)
    if len(y) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / len(y))


def lift_at(y_true: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Outcome rate among the top ``fraction`` by score, divided by the overall rate.

    Ties at the cut are broken by position (a stable sort), so the top group has exactly
    ``ceil(fraction * n)`` users.
    """
    y = np.asarray(y_true, dtype=float)
    base = y.mean() if len(y) else float("nan")
    if not len(y) or base == 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * len(y))))
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k]
    return float(y[top].mean() / base)


def binary_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, lift in the top decile, Brier score and expected calibration error.

    Args:
        y_true: 0/1 outcomes.
        prob: Predicted probabilities of the outcome.

    Returns:
        Metric name -> value (``nan`` where a metric is undefined, e.g. one class only).
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(prob, dtype=float)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "lift_at_10": lift_at(y, p, 0.1),
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p),
    }


def metrics_table(y_true: np.ndarray, scores: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per model with :data:`METRICS`, all on the same labels.

    Args:
        y_true: 0/1 outcomes of the holdout.
        scores: Model name -> predicted probabilities aligned with ``y_true``.

    Returns:
        A frame indexed by model name.
    """
    rows = {name: binary_metrics(y_true, np.asarray(p)) for name, p in scores.items()}
    return pd.DataFrame.from_dict(rows, orient="index")[list(METRICS)]


def format_table(table: pd.DataFrame) -> str:
    """The metrics table as a markdown table (for run artifacts and the README)."""
    lines = ["| model | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    for name, row in table.iterrows():
        lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row.to_numpy()) + " |")
    return "\n".join(lines)
