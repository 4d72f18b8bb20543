"""Evaluation plots for a run's artifacts: ROC curves, calibration, lift by decile, feature importance.

Each function returns a matplotlib figure (the Agg backend; nothing is shown), so the caller decides
where it goes (``mlflow.log_figure``).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def roc_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> Figure:
    """ROC curves of every model on the same labels."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name, lw=1.5)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(
    y: np.ndarray, scores: Mapping[str, np.ndarray], title: str, n_bins: int = 10
) -> Figure:
    """Observed rate against mean predicted probability per equal-width bin."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    edges = np.linspace(0, 1, n_bins + 1)
    for name, p in scores.items():
        p = np.clip(np.asarray(p, dtype=float), 0, 1)
        bins = np.minimum(np.digitize(p, edges[1:-1]), n_bins - 1)
        frame = pd.DataFrame({"bin": bins, "p": p, "y": np.asarray(y, dtype=float)}).groupby("bin").mean()
        ax.plot(frame["p"], frame["y"], marker="o", ms=3, label=name)
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def lift_figure(y: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> Figure:
    """Outcome rate per score decile divided by the overall rate (decile 1 = highest scores)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    y = np.asarray(y, dtype=float)
    width = 0.8 / max(len(scores), 1)
    for i, (name, p) in enumerate(scores.items()):
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        deciles = np.array_split(y[order], 10)
        lift = [d.mean() / y.mean() if len(d) and y.mean() > 0 else np.nan for d in deciles]
        ax.bar(np.arange(1, 11) + (i - len(scores) / 2) * width + width / 2, lift, width=width, label=name)
    ax.axhline(1.0, ls=":", c="grey")
    ax.set(xlabel="score decile (1 = highest)", ylabel="lift", title=title, xticks=range(1, 11))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, title: str, top: int = 20) -> Figure:
    """Horizontal bars of the largest feature importances."""
    imp = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(imp) + 1.2))
    ax.barh(imp.index.astype(str), imp.to_numpy())
    ax.set(xlabel="total gain", title=title)
    fig.tight_layout()
    return fig
