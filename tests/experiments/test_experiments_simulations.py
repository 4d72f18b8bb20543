"""Simulated experiments: A/A calibration, daily peeking with confidence sequences, CUPED variance reduction.

Seeds are fixed once, before running, and never searched: with 2,000 A/A tests the false-positive rate
has a binomial standard deviation of about 0.005, so the [0.04, 0.06] band is a ±2 sd check of a
correctly calibrated test. Everything is vectorised over simulations with numpy and fed to the product's
own vectorised statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from experiments import stats

SIMULATIONS = 2000
ALPHA = 0.05


def moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    return values.mean(axis=1), values.var(axis=1, ddof=1), values.shape[1]


def zero_inflated_revenue(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Revenue per user: 30% buy, amounts lognormal — skewed like real revenue."""
    return (rng.random(shape) < 0.3) * rng.lognormal(3.0, 1.0, shape)


def test_aa_tests_are_calibrated_and_p_values_uniform() -> None:
    rng = np.random.default_rng(20240601)
    n = 1000
    treatment, control = (
        zero_inflated_revenue(rng, (SIMULATIONS, n)),
        zero_inflated_revenue(rng, (SIMULATIONS, n)),
    )
    mt, vt, nt = moments(treatment)
    mc, vc, nc = moments(control)
    out = stats.welch_from_moments(mean_t=mt, var_t=vt, n_t=nt, mean_c=mc, var_c=vc, n_c=nc, alpha=ALPHA)
    p_values = out["p_value"]
    false_positive_rate = float(np.mean(p_values < ALPHA))
    assert 0.04 <= false_positive_rate <= 0.06, false_positive_rate
    assert sps.kstest(p_values, "uniform").pvalue > 0.01
    # The interval and the p-value tell the same story.
    excludes_zero = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    assert np.array_equal(excludes_zero, p_values < ALPHA)


def test_aa_conversion_and_ratio_metrics_are_calibrated() -> None:
    rng = np.random.default_rng(20240602)
    n = 1000
    converted = rng.random((2, SIMULATIONS, n)) < 0.1
    mt, vt, nt = moments(converted[0].astype(float))
    mc, vc, nc = moments(converted[1].astype(float))
    conversion_p = stats.welch_from_moments(mean_t=mt, var_t=vt, n_t=nt, mean_c=mc, var_c=vc, n_c=nc)[
        "p_value"
    ]
    orders = rng.poisson(0.8, (2, SIMULATIONS, n)).astype(float)
    revenue = orders * rng.gamma(2.0, 15.0, (2, SIMULATIONS, n))
    ratio_p = np.array(
        [
            stats.delta_ratio(
                numerator_t=revenue[0, i],
                denominator_t=orders[0, i],
                numerator_c=revenue[1, i],
                denominator_c=orders[1, i],
            ).p_value
            for i in range(SIMULATIONS)
        ]
    )
    for p_values in (conversion_p, ratio_p):
        rate = float(np.mean(p_values < ALPHA))
        assert 0.035 <= rate <= 0.065, rate  # ±3 sd: secondary metrics, wider band
        assert sps.kstest(p_values, "uniform").pvalue > 0.001


def test_daily_peeking_inflates_naive_p_values_but_not_confidence_sequences() -> None:
    rng = np.random.default_rng(20240603)
    days, per_day = 14, 100  # units per arm per day
    converted = rng.random((2, SIMULATIONS, days, per_day)) < 0.2
    daily = converted.sum(axis=3).astype(float)  # conversions per arm, simulation, day
    successes = np.cumsum(daily, axis=2)
    n = per_day * np.arange(1, days + 1)  # units per arm at each look
    p_hat = successes / n
    variance = p_hat * (1 - p_hat) * n / (n - 1)  # ddof=1 variance of 0/1 values
    out = stats.welch_from_moments(
        mean_t=p_hat[0], var_t=variance[0], n_t=n, mean_c=p_hat[1], var_c=variance[1], n_c=n, alpha=ALPHA
    )
    naive_any_look = np.any(out["p_value"] < ALPHA, axis=1).mean()
    low, high = stats.confidence_sequence(
        diff=out["diff"], se=out["se"], n=2 * n, planned_n=2 * n[-1], alpha=ALPHA
    )
    sequence_any_look = np.any((low > 0) | (high < 0), axis=1).mean()
    assert sequence_any_look <= ALPHA, sequence_any_look
    assert naive_any_look > 0.08, naive_any_look  # why sequences are needed: peeking at p-values misleads
    # The single last look alone is an ordinary calibrated test.
    assert 0.04 <= np.mean(out["p_value"][:, -1] < ALPHA) <= 0.06


@pytest.mark.parametrize(
    ("name", "rho_squared"),
    [("normal", 0.25), ("normal", 0.64), ("skewed", 0.5)],
)
def test_cuped_variance_reduction_matches_one_minus_rho_squared(name: str, rho_squared: float) -> None:
    rng = np.random.default_rng(20240604 + int(rho_squared * 100))
    reps, n = 3000, 500
    shape = (reps, 2 * n)
    if name == "normal":
        x = rng.normal(0, 1, shape)
        y = np.sqrt(rho_squared) * x + np.sqrt(1 - rho_squared) * rng.normal(0, 1, shape)
    else:  # gamma covariate (var 2) plus exponential noise (var 2): rho² = 2 / (2 + 2)
        x = rng.gamma(2.0, 1.0, shape)
        y = x + rng.exponential(np.sqrt(2.0), shape)
    arm = np.zeros(2 * n, dtype=bool)
    arm[:n] = True
    plain = y[:, arm].mean(axis=1) - y[:, ~arm].mean(axis=1)
    theta = stats.cuped_theta(y=y, x=x)  # one θ per simulated experiment
    adjusted = stats.cuped_adjust(y=y, x=x, theta=theta, x_mean=x.mean(axis=1))
    adjusted_diff = adjusted[:, arm].mean(axis=1) - adjusted[:, ~arm].mean(axis=1)

    def standard_errors(values: np.ndarray) -> np.ndarray:
        mt, vt, nt = moments(values[:, arm])
        mc, vc, nc = moments(values[:, ~arm])
        return stats.welch_from_moments(mean_t=mt, var_t=vt, n_t=nt, mean_c=mc, var_c=vc, n_c=nc)["se"]

    se_ratio = (standard_errors(adjusted) / standard_errors(y)) ** 2
    empirical = adjusted_diff.var() / plain.var()
    theory = 1 - rho_squared
    assert abs(empirical / theory - 1) < 0.10, (empirical, theory)
    assert abs(se_ratio.mean() / theory - 1) < 0.10, (se_ratio.mean(), theory)
    assert abs(adjusted_diff.mean()) < 4 * adjusted_diff.std() / np.sqrt(reps)  # still unbiased
