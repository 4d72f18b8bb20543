"""Uplift and off-policy metrics on randomized units: Qini, uplift by decile, IPS and DR policy value.

Written here rather than taken from a library: scikit-uplift covers Qini for one treatment but not the
policy value of several offers with IPS and DR (causalml is a heavy install for a few formulas); each is
a few lines, tested against hand-computed cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def qini_curve(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve: units ranked by ``score`` (highest first); at each cut-off ``t`` the incremental
    outcomes ``Y_T(t) - Y_C(t) * N_T(t) / N_C(t)`` (Radcliffe 2007).

    Returns:
        ``(units targeted 0..n, incremental outcomes)``, both starting at 0.
    """
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    t = np.asarray(treated, dtype=bool)[order]
    yy = np.asarray(y, dtype=float)[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    y_t, y_c = np.cumsum(yy * t), np.cumsum(yy * ~t)
    ratio = np.divide(n_t, n_c, out=np.zeros(len(yy)), where=n_c > 0)
    gain = y_t - y_c * ratio
    return np.arange(len(yy) + 1), np.r_[0.0, gain]


def qini_coefficient(score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area between the Qini curve and the straight line of random targeting, per unit (trapezoids)."""
    x, gain = qini_curve(score, treated, y)
    if len(x) < 2:
        return 0.0
    random = gain[-1] * x / x[-1]
    return float(np.trapezoid(gain - random, x) / x[-1] ** 2)


def uplift_by_decile(score: np.ndarray, treated: np.ndarray, y: np.ndarray, n: int = 10) -> pd.DataFrame:
    """Observed uplift (treated mean - control mean) and mean predicted uplift per score decile.

    Returns:
        ``decile`` (1 = highest scores), ``predicted``, ``observed``, ``units``.
    """
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    rows = []
    for i, idx in enumerate(np.array_split(order, n), start=1):
        t = np.asarray(treated, dtype=bool)[idx]
        yy = np.asarray(y, dtype=float)[idx]
        obs = yy[t].mean() - yy[~t].mean() if t.any() and (~t).any() else np.nan
        predicted = float(np.mean(score[idx])) if len(idx) else np.nan  # fewer units than deciles
        rows.append({"decile": i, "predicted": predicted, "observed": obs, "units": len(idx)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class PolicyValue:
    """A policy's value per unit with its standard error."""

    value: float
    se: float


def ips_value(choice: np.ndarray, arm: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> PolicyValue:
    """Inverse-propensity estimate of the mean reward if each unit got ``choice`` (0 = no offer).

    ``mean(1[arm = choice] / propensity * reward)``, standard error from the terms' spread.
    """
    match = np.asarray(choice) == np.asarray(arm)
    terms = np.where(match, np.asarray(reward, float) / np.asarray(propensity, float), 0.0)
    n = len(terms)
    return PolicyValue(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"))


def dr_value(
    choice: np.ndarray, arm: np.ndarray, propensity: np.ndarray, reward: np.ndarray, q: np.ndarray
) -> PolicyValue:
    """Doubly-robust estimate: the model's reward ``q[:, choice]`` plus the propensity-weighted error of
    the model on units whose arm is the choice. ``q`` is ``(n, K + 1)``, column 0 = no offer."""
    choice = np.asarray(choice)
    rows = np.arange(len(choice))
    q_choice = q[rows, choice]
    q_arm = q[rows, np.asarray(arm)]
    match = choice == np.asarray(arm)
    terms = q_choice + np.where(
        match, (np.asarray(reward, float) - q_arm) / np.asarray(propensity, float), 0.0
    )
    n = len(terms)
    return PolicyValue(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"))
