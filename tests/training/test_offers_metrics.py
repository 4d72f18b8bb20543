"""Qini, uplift by decile, IPS and DR against hand-computed cases; IPS unbiased over 200 repeats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from training.offers.metrics import dr_value, ips_value, qini_coefficient, qini_curve, uplift_by_decile


def test_qini_curve_by_hand() -> None:
    # ranked: (T,1), (C,0), (T,1), (C,1)
    score = np.array([4.0, 3.0, 2.0, 1.0])
    treated = np.array([True, False, True, False])
    y = np.array([1.0, 0.0, 1.0, 1.0])
    x, gain = qini_curve(score, treated, y)
    # t=1: 1 - 0; t=2: 1 - 0*1/1; t=3: 2 - 0*2/1; t=4: 2 - 1*2/2
    assert x.tolist() == [0, 1, 2, 3, 4]
    assert gain.tolist() == pytest.approx([0.0, 1.0, 1.0, 2.0, 1.0])
    # area by trapezoids of gain - random line (1 * x / 4): [0, .75, .5, 1.25, 0] -> 2.5; / n^2
    assert qini_coefficient(score, treated, y) == pytest.approx(2.5 / 16)


def test_perfect_ranking_beats_reversed() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    effect = rng.uniform(-0.2, 0.4, n)
    treated = rng.random(n) < 0.5
    y = (rng.random(n) < 0.4 + treated * effect).astype(float)
    assert qini_coefficient(effect, treated, y) > 0 > qini_coefficient(-effect, treated, y)
    table = uplift_by_decile(effect, treated, y)
    assert table["observed"].iloc[0] > table["observed"].iloc[-1]


def test_ips_and_dr_by_hand() -> None:
    choice = np.array([1, 0, 1, 0])
    arm = np.array([1, 1, 0, 0])
    prop = np.array([0.5, 0.5, 0.5, 0.5])
    reward = np.array([2.0, 3.0, 1.0, 4.0])
    # matches: unit 0 (arm 1 = choice 1) and unit 3 (arm 0 = choice 0): terms 4, 0, 0, 8
    ips = ips_value(choice, arm, prop, reward)
    assert ips.value == pytest.approx(3.0)
    assert ips.se == pytest.approx(np.std([4, 0, 0, 8], ddof=1) / 2)
    q = np.array([[1.0, 1.5], [2.0, 2.5], [0.5, 1.0], [3.0, 3.5]])
    # q[choice] + match * (reward - q[arm]) / p: 1.5+(2-1.5)/.5, 2.0, 1.0, 3+(4-3)/.5
    dr = dr_value(choice, arm, prop, reward, q)
    assert dr.value == pytest.approx(np.mean([2.5, 2.0, 1.0, 5.0]))


def test_ips_is_unbiased_over_200_repeats() -> None:
    """On randomized data with known arm effects, IPS's mean is within 2 SE of the truth and its 95%
    interval covers the true policy value 90-97% of the time."""
    rng = np.random.default_rng(42)
    n, k, repeats = 2000, 3, 200
    costs = np.array([0.0, 1.0, 0.5, 2.0])
    x_all = rng.normal(size=(n, 2))

    def mean_reward(x: np.ndarray) -> np.ndarray:  # (n, K + 1) expected reward per arm
        base = 5 + x[:, 0]
        effects = np.column_stack([np.zeros(len(x)), 2 * x[:, 1], 1 + 0 * x[:, 0], 3 * (x[:, 0] > 0)])
        return base[:, None] + effects - costs[None, :]

    policy = np.argmax(mean_reward(x_all) + rng.normal(0, 1, (n, k + 1)), axis=1)  # a fixed noisy policy
    truth = mean_reward(x_all)[np.arange(n), policy].mean()
    estimates, covered = [], 0
    for _ in range(repeats):
        arm = rng.integers(0, k + 1, n)
        reward = mean_reward(x_all)[np.arange(n), arm] + rng.normal(0, 2, n)
        est = ips_value(policy, arm, np.full(n, 1 / (k + 1)), reward)
        estimates.append(est.value)
        covered += abs(est.value - truth) <= 1.96 * est.se
    mean = float(np.mean(estimates))
    se_of_mean = float(np.std(estimates, ddof=1) / np.sqrt(repeats))
    assert abs(mean - truth) <= 2 * se_of_mean
    assert 0.90 <= covered / repeats <= 0.97


def test_fewer_units_than_deciles_leave_the_empty_ones_blank_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach a command's output
        table = uplift_by_decile(np.array([0.3, 0.1, 0.2]), np.array([True, False, True]), np.ones(3))
    assert table["units"].tolist() == [1, 1, 1] + [0] * 7
    assert table["predicted"].iloc[:3].tolist() == [0.3, 0.2, 0.1]
    assert table["predicted"].iloc[3:].isna().all() and table["observed"].isna().all()
