"""Each statistic equals an independent computation (statsmodels, scipy, a hand formula) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import integrate
from scipy import stats as sps
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from experiments import stats

TOL = 1e-6


@pytest.fixture(scope="module")
def samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    return {
        "t": rng.lognormal(1.0, 1.1, 400) * (rng.random(400) < 0.3),
        "c": rng.lognormal(0.9, 1.0, 650) * (rng.random(650) < 0.3),
    }


def test_welch_matches_statsmodels(samples: dict[str, np.ndarray]) -> None:
    t, c = samples["t"], samples["c"]
    effect = stats.welch(treatment=t, control=c, alpha=0.05)
    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    tstat, p_value, df = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    assert effect.diff == pytest.approx(t.mean() - c.mean(), abs=TOL)
    assert effect.rel == pytest.approx((t.mean() - c.mean()) / c.mean(), abs=TOL)
    assert effect.p_value == pytest.approx(p_value, abs=TOL)
    assert (effect.ci_low, effect.ci_high) == (pytest.approx(low, abs=TOL), pytest.approx(high, abs=TOL))
    assert effect.diff / effect.se == pytest.approx(tstat, abs=TOL)
    out = stats.welch_from_moments(
        mean_t=t.mean(), var_t=t.var(ddof=1), n_t=t.size, mean_c=c.mean(), var_c=c.var(ddof=1), n_c=c.size
    )
    assert float(out["df"]) == pytest.approx(df, abs=TOL)
    # 90% interval too, so alpha is really used.
    low90, high90 = compare.tconfint_diff(alpha=0.10, usevar="unequal")
    effect90 = stats.welch(treatment=t, control=c, alpha=0.10)
    assert (effect90.ci_low, effect90.ci_high) == (
        pytest.approx(low90, abs=TOL),
        pytest.approx(high90, abs=TOL),
    )


def test_welch_is_vectorised_consistently(samples: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(5)
    t, c = rng.normal(0.1, 1, (50, 80)), rng.normal(0, 2, (50, 120))
    out = stats.welch_from_moments(
        mean_t=t.mean(1), var_t=t.var(1, ddof=1), n_t=80, mean_c=c.mean(1), var_c=c.var(1, ddof=1), n_c=120
    )
    reference = sps.ttest_ind(t, c, axis=1, equal_var=False)
    np.testing.assert_allclose(out["p_value"], reference.pvalue, atol=TOL)
    ci = reference.confidence_interval(0.95)
    np.testing.assert_allclose(out["ci_low"], ci.low, atol=TOL)
    np.testing.assert_allclose(out["ci_high"], ci.high, atol=TOL)


def test_delta_method_ratio_matches_statsmodels_numerical_delta() -> None:
    rng = np.random.default_rng(8)
    results = {}
    for arm, n, scale in (("t", 500, 1.2), ("c", 700, 1.0)):
        orders = rng.poisson(1.5, n).astype(float)
        revenue = orders * rng.gamma(2.0, 10 * scale, n)
        ratio, variance = stats.ratio_and_variance(numerator=revenue, denominator=orders)
        means = np.array([revenue.mean(), orders.mean()])
        cov_of_means = np.cov(np.vstack([revenue, orders]), ddof=1) / n
        delta = NonlinearDeltaCov(lambda p: np.array([p[0] / p[1]]), means, cov_of_means)
        assert ratio == pytest.approx(revenue.sum() / orders.sum(), rel=1e-12)
        assert variance == pytest.approx(float(delta.cov()[0, 0]), rel=1e-6)
        # Second route: the variance of the linearised per-unit values (x - R y) / mean(y).
        linear = (revenue - ratio * orders) / orders.mean()
        assert variance == pytest.approx(linear.var(ddof=1) / n, rel=1e-9)
        results[arm] = (revenue, orders, ratio, variance)
    effect = stats.delta_ratio(
        numerator_t=results["t"][0],
        denominator_t=results["t"][1],
        numerator_c=results["c"][0],
        denominator_c=results["c"][1],
    )
    se = np.sqrt(results["t"][3] + results["c"][3])
    diff = results["t"][2] - results["c"][2]
    assert effect.diff == pytest.approx(diff, abs=TOL)
    assert effect.p_value == pytest.approx(2 * sps.norm.sf(abs(diff / se)), abs=TOL)
    assert effect.ci_low == pytest.approx(diff - 1.959963984540054 * se, abs=TOL)


def test_cuped_matches_ols_slope_and_statsmodels_ttest() -> None:
    rng = np.random.default_rng(9)
    n = 3000
    x = rng.gamma(2.0, 3.0, n)
    arm = rng.random(n) < 0.5
    y = 0.8 * x + rng.normal(0, 3, n) + 0.4 * arm
    theta = stats.cuped_theta(y=y, x=x)
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    assert theta == pytest.approx(slope, abs=TOL)
    adjusted = stats.cuped_adjust(y=y, x=x, theta=theta, x_mean=x.mean())
    assert adjusted.mean() == pytest.approx(y.mean(), abs=TOL)
    by_hand = y - slope * (x - x.mean())
    effect = stats.welch(treatment=adjusted[arm], control=adjusted[~arm])
    compare = CompareMeans(DescrStatsW(by_hand[arm]), DescrStatsW(by_hand[~arm]))
    _, p_value, _ = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(usevar="unequal")
    assert effect.p_value == pytest.approx(p_value, abs=TOL)
    assert (effect.ci_low, effect.ci_high) == (pytest.approx(low, abs=TOL), pytest.approx(high, abs=TOL))
    assert stats.cuped_theta(y=y, x=np.ones(n)) == 0.0
    stacked = stats.cuped_theta(y=np.vstack([y, 2 * y]), x=np.vstack([x, x]))
    np.testing.assert_allclose(stacked, [slope, 2 * slope], atol=TOL)


def test_srm_matches_the_chi_square_formula() -> None:
    counts = np.array([5120, 4880, 2050])
    shares = np.array([0.4, 0.4, 0.2])
    expected = counts.sum() * shares
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert stats.srm_p_value(counts=counts, shares=shares) == pytest.approx(
        sps.chi2.sf(statistic, 2), abs=TOL
    )
    assert stats.srm_p_value(counts=np.array([500, 500]), shares=np.array([1, 1])) == pytest.approx(1.0)
    assert stats.srm_p_value(counts=np.array([5300, 4700]), shares=np.array([1, 1])) < stats.SRM_THRESHOLD
    assert stats.srm_p_value(counts=np.array([10, 3]), shares=np.array([1, 0])) == 0.0


@pytest.mark.parametrize(("method", "reference"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_multiple_testing_matches_statsmodels(method: str, reference: str) -> None:
    rng = np.random.default_rng(4)
    for _ in range(8):  # statsmodels' multipletests runs gc.collect() on every call: keep the count small
        p = np.concatenate([rng.uniform(0, 0.05, rng.integers(1, 4)), rng.uniform(0, 1, rng.integers(1, 8))])
        rng.shuffle(p)
        np.testing.assert_allclose(
            stats.adjust_p_values(p, method=method), multipletests(p, method=reference)[1], atol=1e-12
        )
    with_nan = np.array([0.01, np.nan, 0.04])
    adjusted = stats.adjust_p_values(with_nan, method=method)
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], multipletests([0.01, 0.04], method=reference)[1])


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_confidence_sequence_boundary_is_where_the_normal_mixture_reaches_one_over_alpha(
    alpha: float,
) -> None:
    """Independent route: integrate the mixture martingale numerically at the sequence's edge."""
    planned, n, se = 5000, 1200, 0.37
    low, high = stats.confidence_sequence(diff=1.5, se=se, n=n, planned_n=planned, alpha=alpha)
    log_term = -2 * np.log(alpha)
    rho2 = (log_term + np.log(log_term + 1)) / planned
    sigma = se * np.sqrt(n)  # per-unit standard deviation implied by the standard error
    s = n * (float(high) - 1.5) / sigma  # standardised sum at the edge, intrinsic time V = n

    def integrand(lam: float) -> float:
        return np.exp(lam * s - lam**2 * n / 2) * sps.norm.pdf(lam, scale=np.sqrt(rho2))

    martingale, _ = integrate.quad(integrand, -1, 1, points=[s / n], limit=200)
    assert martingale == pytest.approx(1 / alpha, rel=1e-6)
    assert float(high) - 1.5 == pytest.approx(1.5 - float(low), rel=1e-12)
    # Always wider than the fixed-sample interval at the same look.
    assert float(high) - 1.5 > sps.norm.ppf(1 - alpha / 2) * se
