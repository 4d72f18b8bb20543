"""Calibration of raw model scores into probabilities: isotonic or Platt, chosen on data; and the shift of
those probabilities from the calibration date to the date scored.

The method is picked by cross-validated log-loss on the calibration slice (isotonic needs more data to
beat Platt's two parameters); the chosen map is then fitted on the whole slice. Both maps are
non-decreasing, so a calibrated score keeps every monotone property of the raw one.

The calibration slice is labelled, so it lies at least a horizon before the date scored; when the base
rate moves in between, every probability is off. A date shift moves all of them by one logit offset
(monotone again), estimated without the scored date's labels (:data:`DATE_SHIFTS`):

* ``none``: no shift;
* ``em``: the prior-shift EM of Saerens, Latinne and Decaestecker (2002) on the scored date's calibrated
  probabilities (the features there are known, the labels not);
* ``trend``: the offset each back-test date would have needed, a straight line through them over time,
  read at the scored date.

Which one is used is itself back-tested (:func:`choose_date_shift`): calibrate at one back-test date,
shift to a later one as far ahead as the scored date is, measure the ECE there, over every such pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from training.errors import TrainingDataError
from training.evaluate import expected_calibration_error

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


DATE_SHIFTS: tuple[str, ...] = ("none", "em", "trend")
MARGIN = 0.005
"""How much lower a shift's mean back-tested ECE must be than no shift's for it to be chosen."""
"""Ways to move calibrated probabilities from the calibration date to the scored date (module docstring)."""


def shift_logit(p: np.ndarray, offset: float) -> np.ndarray:
    """``p`` moved by ``offset`` on the log-odds scale (order kept; 0 changes nothing)."""
    if offset == 0:
        return np.asarray(p, dtype=float)
    return np.asarray(expit(_logit(p) + offset))


def prior_shift(p: np.ndarray, from_rate: float, to_rate: float) -> np.ndarray:
    """Bayes' rule for a new base rate: posteriors under prior ``from_rate`` re-weighted to ``to_rate``.

    ``p' = (r'/r) p / ((r'/r) p + ((1-r')/(1-r)) (1-p))``, the same as a log-odds offset of
    ``logit(r') - logit(r)``.
    """
    return shift_logit(p, float(_logit(np.array([to_rate]))[0] - _logit(np.array([from_rate]))[0]))


def em_base_rate(p: np.ndarray, rate: float, *, tol: float = 1e-8, max_iter: int = 1000) -> float:
    """The base rate of an unlabelled sample by EM (Saerens, Latinne and Decaestecker, 2002).

    Args:
        p: Calibrated probabilities of the sample's users, calibrated where the base rate was ``rate``.
        rate: The base rate of the calibration sample.
        tol: Stop when the estimate moves less than this.
        max_iter: Most iterations.

    Returns:
        The estimated base rate of the sample: the fixed point of "re-weight every posterior to the
        current estimate, then average them".
    """
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    rate = float(np.clip(rate, _EPS, 1 - _EPS))
    estimate = rate
    for _ in range(max_iter):
        new = float(prior_shift(p, rate, estimate).mean())
        new = float(np.clip(new, _EPS, 1 - _EPS))
        if abs(new - estimate) < tol:
            return new
        estimate = new
    return estimate


def offset_for_rate(p: np.ndarray, rate: float) -> float:
    """The log-odds offset that makes the mean of ``p`` equal ``rate`` (0 when it already does)."""
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    rate = float(np.clip(rate, 1e-4, 1 - 1e-4))
    logits = _logit(p)

    def gap(z: float) -> float:
        return float(expit(logits + z).mean()) - rate

    if gap(0.0) == 0:
        return 0.0
    return float(brentq(gap, -20.0, 20.0, xtol=1e-10))


@dataclass(frozen=True)
class DatedScores:
    """Raw scores of one as-of date's users, with their outcomes when known.

    Attributes:
        as_of: The as-of date.
        raw: The model's raw scores.
        y: 0/1 outcomes (``None``: not known yet, as at the scored date).
    """

    as_of: date
    raw: np.ndarray
    y: np.ndarray | None = None


def date_offset(
    method: str, calibrator: Calibrator, history: Sequence[DatedScores], target: DatedScores
) -> float:
    """The log-odds offset that moves ``calibrator``'s probabilities from ``history[-1]`` to ``target``.

    Args:
        method: One of :data:`DATE_SHIFTS`.
        calibrator: Fitted on ``history[-1]`` (the latest labelled date).
        history: Labelled dates, oldest first.
        target: The date scored (its outcomes are not read).

    Raises:
        ValueError: Unknown ``method``.
    """
    if method not in DATE_SHIFTS:
        raise ValueError(f"unknown date shift {method!r}; use {', '.join(DATE_SHIFTS)}")
    if method == "none":
        return 0.0
    if method == "em":
        base = float(calibrator.predict(history[-1].raw).mean())
        estimate = em_base_rate(calibrator.predict(target.raw), base)
        return float(_logit(np.array([estimate]))[0] - _logit(np.array([base]))[0])
    dated = [h for h in history if h.y is not None and 0 < h.y.mean() < 1]
    if len(dated) < 3:
        return 0.0
    days = np.array([(h.as_of - dated[-1].as_of).days for h in dated], dtype=float)
    needed = np.array([offset_for_rate(calibrator.predict(h.raw), float(h.y.mean())) for h in dated])  # type: ignore[union-attr]
    slope, intercept = np.polyfit(days, needed, 1)
    return float(intercept + slope * (target.as_of - dated[-1].as_of).days)


def choose_date_shift(
    history: Sequence[DatedScores], ahead: int, *, method: str = "auto", seed: int = 0
) -> tuple[str, dict[str, float]]:
    """Back-test the date shift itself and return the best one with each one's mean ECE.

    For every labelled date ``k`` and every later labelled date up to ``ahead`` steps on: calibrate on date
    ``k``, shift to the later date with each method (reading only dates up to ``k`` and the later date's
    scores), measure the ECE there. ``ahead`` is shortened when the history is too short for one pair.

    Args:
        history: Labelled dates, oldest first (at least three).
        ahead: Steps between the calibration date and the scored date in production.
        method: Calibration map method (see :class:`Calibrator`).
        seed: Seed of the calibration map's choice.

    Returns:
        The chosen method and the mean ECE of every method (empty when the history is too short to
        back-test: the choice is then ``none``). A shift is chosen only when it beats no shift on half
        the pairs or more and by :data:`MARGIN` on average (the lowest such mean wins); otherwise ``none``.
    """
    usable = [h for h in history if h.y is not None and len(np.unique(h.y)) == 2]
    ahead = max(1, min(ahead, len(usable) - 3))
    pairs = [(k, k + g) for g in range(1, ahead + 1) for k in range(2, len(usable) - g)]  # every gap up to it
    if not pairs:
        return "none", {}
    eces: dict[str, list[float]] = {m: [] for m in DATE_SHIFTS}
    for k, later in pairs:
        h = usable[k]
        assert h.y is not None
        cal = Calibrator(method, seed=seed).fit(h.raw, h.y)
        future = usable[later]
        assert future.y is not None
        for m in DATE_SHIFTS:
            offset = date_offset(m, cal, usable[: k + 1], DatedScores(future.as_of, future.raw))
            eces[m].append(expected_calibration_error(future.y, shift_logit(cal.predict(future.raw), offset)))
    means = {m: float(np.mean(v)) for m, v in eces.items()}
    # a shift must beat no shift on half the pairs or more, and clearly on average: a few lucky pairs
    # would otherwise move every probability
    clear = [
        m
        for m in DATE_SHIFTS[1:]
        if np.mean(np.less(eces[m], eces["none"])) >= 1 / 2 and means[m] <= means["none"] - MARGIN
    ]
    best = min(clear, key=lambda m: means[m]) if clear else "none"
    return best, means
