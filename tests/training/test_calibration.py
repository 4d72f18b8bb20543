"""Calibration: a distorted score becomes a probability again; the choice of method follows the data."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from training.calibration import (
    DATE_SHIFTS,
    Calibrator,
    DatedScores,
    choose_date_shift,
    date_offset,
    em_base_rate,
    offset_for_rate,
    prior_shift,
    shift_logit,
)
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


# ---- the shift from the calibration date to the scored date ------------------------------------------


def test_prior_shift_by_hand() -> None:
    # odds 0.8/0.2 = 4 under a 50% prior; a 20% prior multiplies the odds by 0.25: odds 1, so 0.5
    np.testing.assert_allclose(prior_shift(np.array([0.8, 0.5]), 0.5, 0.2), [0.5, 0.2])
    np.testing.assert_allclose(prior_shift(np.array([0.3]), 0.4, 0.4), [0.3])
    assert shift_logit(np.array([0.5]), np.log(3.0))[0] == pytest.approx(0.75)


def test_em_recovers_a_known_shifted_prior() -> None:
    """Classes N(+1, 1) and N(-1, 1): the posterior under a 50% prior is sigmoid(2x), exactly calibrated."""
    rng = np.random.default_rng(0)
    n, rate = 200_000, 0.2
    y = rng.random(n) < rate
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    posterior = 1 / (1 + np.exp(-2 * x))  # calibrated where the base rate was 0.5
    estimate = em_base_rate(posterior, 0.5)
    assert estimate == pytest.approx(rate, abs=0.005)
    # re-weighted to the estimate, the posteriors are the true ones of the shifted sample
    truth = 1 / (1 + np.exp(-(2 * x + np.log(rate / (1 - rate)))))
    np.testing.assert_allclose(prior_shift(posterior, 0.5, estimate), truth, atol=0.01)
    assert expected_calibration_error(y, prior_shift(posterior, 0.5, estimate)) < 0.01
    assert expected_calibration_error(y, posterior) > 0.1
    # no shift: the estimate stays at the calibration rate
    same = rng.random(n) < 0.5
    x_same = rng.normal(np.where(same, 1.0, -1.0), 1.0)
    assert em_base_rate(1 / (1 + np.exp(-2 * x_same)), 0.5) == pytest.approx(0.5, abs=0.005)


def test_offset_for_rate_hits_the_rate() -> None:
    p = np.linspace(0.05, 0.95, 101)
    for rate in (0.1, 0.5, 0.77):
        assert shift_logit(p, offset_for_rate(p, rate)).mean() == pytest.approx(rate, abs=1e-8)
    assert offset_for_rate(np.full(10, 0.3), 0.3) == 0.0


def _identity() -> Calibrator:
    return Calibrator.from_dict({"method": "platt", "method_": "platt", "slope_": 1.0, "intercept_": 0.0})


def test_trend_extrapolates_the_needed_offset_linearly() -> None:
    """A constant score of 0.5 needs offset logit(rate); rates whose logit is linear in time extrapolate."""
    start, n = date(2024, 1, 1), 100_000
    history = []
    for k in range(6):
        rate = 1 / (1 + np.exp(-(-0.5 + 0.01 * 14 * k)))
        ones = round(rate * n)
        history.append(
            DatedScores(
                start + timedelta(days=14 * k), np.full(n, 0.5), np.r_[np.ones(ones), np.zeros(n - ones)]
            )
        )
    target = DatedScores(start + timedelta(days=14 * 5 + 104), np.full(10, 0.5))
    offset = date_offset("trend", _identity(), history, target)
    assert offset == pytest.approx(-0.5 + 0.01 * (14 * 5 + 104), abs=1e-3)
    assert date_offset("none", _identity(), history, target) == 0.0
    assert date_offset("trend", _identity(), history[:2], target) == 0.0  # too few dates for a line
    with pytest.raises(ValueError, match="unknown date shift"):
        date_offset("magic", _identity(), history, target)


def _drifting_history(drift_per_day: float, seed: int = 1) -> list[DatedScores]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(11):
        x = rng.normal(0, 1.5, 4000)
        truth = 1 / (1 + np.exp(-(x - 0.3 + drift_per_day * 14 * k)))
        out.append(
            DatedScores(
                date(2024, 1, 1) + timedelta(days=14 * k), 1 / (1 + np.exp(-x)), rng.random(4000) < truth
            )
        )
    return out


def test_the_back_test_of_the_choice_picks_the_trend_when_the_rate_trends() -> None:
    chosen, means = choose_date_shift(_drifting_history(0.012), ahead=7, method="platt")
    assert set(means) == set(DATE_SHIFTS)
    assert chosen == "trend" and means["trend"] < 0.5 * means["none"]


def test_the_back_test_of_the_choice_keeps_close_to_none_when_nothing_moves() -> None:
    chosen, means = choose_date_shift(_drifting_history(0.0), ahead=7, method="platt")
    assert means[chosen] <= means["none"] and means["none"] < 0.03
    assert choose_date_shift(_drifting_history(0.0)[:3], ahead=7) == ("none", {})
