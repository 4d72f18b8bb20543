"""Calibration of raw model scores into probabilities: isotonic or Platt, chosen on data.

The method is picked by cross-validated log-loss on the calibration slice (isotonic needs more data to
beat Platt's two parameters); the chosen map is then fitted on the whole slice. Both maps are
non-decreasing, so a calibrated score keeps every monotone property of the raw one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from training.errors import TrainingDataError

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.asarray(np.log(p / (1 - p)))


def _fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw)[:, None], y)
    slope, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if slope <= 0:  # a useless score: keep the map monotone, fall back to the base rate
        slope, intercept = 0.0, float(_logit(np.array([y.mean()]))[0])
    return slope, intercept


def _fit_isotonic(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(raw, y)
    return np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class Calibrator:
    """Maps raw scores in ``[0, 1]`` to calibrated probabilities.

    Args:
        method: ``"auto"`` (choose by cross-validated log-loss), ``"isotonic"`` or ``"platt"``.
        n_folds: Folds for the choice.
        seed: Seed of the fold split.
    """

    def __init__(self, method: str = "auto", n_folds: int = 5, seed: int = 0) -> None:
        self.method = method
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Choose and fit the map on scores ``raw`` with outcomes ``y``; returns ``self``.

        Raises:
            ValueError: Unknown ``method``.
            TrainingDataError: ``y`` has one outcome only.
        """
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=int)
        if self.method not in ("auto", "isotonic", "platt"):
            raise ValueError(f"unknown calibration method {self.method!r}; use auto, isotonic or platt")
        if len(np.unique(y)) < 2:
            raise TrainingDataError("calibration needs both outcomes in the calibration slice")
        self.cv_log_loss_: dict[str, float] = {}
        method = self.method
        if method == "auto":
            folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.seed)
            losses: dict[str, list[float]] = {"isotonic": [], "platt": []}
            for fit_idx, test_idx in folds.split(raw, y):
                a, b = _fit_platt(raw[fit_idx], y[fit_idx])
                losses["platt"].append(_log_loss(y[test_idx], _platt(raw[test_idx], a, b)))
                xs, ys = _fit_isotonic(raw[fit_idx], y[fit_idx])
                losses["isotonic"].append(_log_loss(y[test_idx], np.interp(raw[test_idx], xs, ys)))
            self.cv_log_loss_ = {k: float(np.mean(v)) for k, v in losses.items()}
            method = min(self.cv_log_loss_, key=lambda k: self.cv_log_loss_[k])
        self.method_ = method
        if method == "platt":
            self.slope_, self.intercept_ = _fit_platt(raw, y)
        else:
            self.x_thresholds_, self.y_thresholds_ = _fit_isotonic(raw, y)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores."""
        raw = np.asarray(raw, dtype=float)
        if self.method_ == "platt":
            return _platt(raw, self.slope_, self.intercept_)
        return np.asarray(np.interp(raw, self.x_thresholds_, self.y_thresholds_))

    def to_dict(self) -> dict[str, Any]:
        """The fitted map as plain JSON-able values."""
        state: dict[str, Any] = {
            "method": self.method,
            "method_": self.method_,
            "cv_log_loss_": self.cv_log_loss_,
        }
        if self.method_ == "platt":
            state.update(slope_=self.slope_, intercept_=self.intercept_)
        else:
            state.update(x_thresholds_=self.x_thresholds_.tolist(), y_thresholds_=self.y_thresholds_.tolist())
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Calibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict`."""
        cal = cls(method=state["method"])
        cal.method_ = state["method_"]
        cal.cv_log_loss_ = dict(state.get("cv_log_loss_", {}))
        if cal.method_ == "platt":
            cal.slope_, cal.intercept_ = float(state["slope_"]), float(state["intercept_"])
        else:
            cal.x_thresholds_ = np.asarray(state["x_thresholds_"], dtype=float)
            cal.y_thresholds_ = np.asarray(state["y_thresholds_"], dtype=float)
        return cal


def _platt(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(slope * _logit(raw) + intercept)))
