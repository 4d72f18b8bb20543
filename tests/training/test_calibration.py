"""Calibration: a distorted score becomes a probability again; the choice of method follows the data."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import Calibrator
from training.errors import TrainingDataError
from training.evaluate import expected_calibration_error


def _distorted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.beta(1.5, 2.5, n)
    y = (rng.random(n) < truth).astype(int)
    return truth**3, y, truth  # a monotone but badly calibrated score


@pytest.mark.parametrize("method", ["auto", "isotonic", "platt"])
def test_calibration_restores_probabilities(method: str) -> None:
    raw, y, _ = _distorted(20000, 0)
    raw_test, y_test, _ = _distorted(20000, 1)
    cal = Calibrator(method).fit(raw, y)
    before = expected_calibration_error(y_test, raw_test)
    after = expected_calibration_error(y_test, cal.predict(raw_test))
    assert before > 0.1 and after < 0.03
    assert cal.method_ in ("isotonic", "platt")
    restored = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(restored.predict(raw_test), cal.predict(raw_test))
    grid = np.linspace(0, 1, 201)
    assert np.all(np.diff(cal.predict(grid)) >= -1e-12)  # non-decreasing: keeps monotone constraints


def test_auto_prefers_platt_when_the_distortion_is_logistic_and_data_few() -> None:
    rng = np.random.default_rng(5)
    truth = rng.uniform(0.05, 0.95, 300)
    y = (rng.random(300) < truth).astype(int)
    logit = np.log(truth / (1 - truth))
    raw = 1 / (1 + np.exp(-0.5 * logit))  # a logistic map of the truth: Platt's model exactly
    cal = Calibrator("auto").fit(raw, y)
    assert cal.method_ == "platt" and cal.cv_log_loss_["platt"] <= cal.cv_log_loss_["isotonic"]


def test_one_outcome_only_is_refused() -> None:
    with pytest.raises(TrainingDataError, match="both outcomes"):
        Calibrator().fit(np.linspace(0, 1, 50), np.zeros(50))
