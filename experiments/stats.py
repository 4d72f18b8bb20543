"""Statistics for experiment reads. Every function is vectorised where that is natural.

Formulas (``t`` = treatment, ``c`` = control, variances with ``ddof=1``):

- Welch: ``diff = m_t - m_c``, ``se² = v_t/n_t + v_c/n_c``,
  ``df = se⁴ / ((v_t/n_t)²/(n_t-1) + (v_c/n_c)²/(n_c-1))``; p-value from scipy's
  ``ttest_ind_from_stats(equal_var=False)``; interval ``diff ± t_{1-α/2, df} · se``.
- Ratio metrics ``R = Σx / Σy`` by the delta method:
  ``Var(R) ≈ (s_x² - 2 R s_xy + R² s_y²) / (n · ȳ²)``; difference of two independent ratios with a normal
  interval and a two-sided z-test.
- CUPED (Deng et al. 2013): ``θ = cov(y, x) / var(x)`` over all units of both arms,
  ``y' = y - θ (x - x̄)``, then Welch on ``y'``. The variance of the effect shrinks by ``1 - ρ²``.
- Sample-ratio mismatch: Pearson chi-square of observed counts against the design's shares.
- Multiple testing: Holm (step-down) or Benjamini–Hochberg adjusted p-values.
- Always-valid confidence sequence (normal mixture; Howard et al. 2021, Waudby-Smith et al. 2023,
  "Time-uniform central limit theory and asymptotic confidence sequences"): with ``N`` units so far,
  ``diff ± se · sqrt(2 (Nρ² + 1) / (Nρ²) · log(sqrt(Nρ² + 1) / α))`` where
  ``ρ² = (-2 log α + log(-2 log α + 1)) / N*`` tunes the width to be smallest at the planned size ``N*``.
  It holds simultaneously at every look, so analysts may peek daily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from experiments.options import Correction

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class Effect:
    """Treatment minus control: absolute and relative effect, interval for the absolute one, p-value."""

    diff: float
    rel: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float


def welch_from_moments(
    *,
    mean_t: np.ndarray | float,
    var_t: np.ndarray | float,
    n_t: np.ndarray | float,
    mean_c: np.ndarray | float,
    var_c: np.ndarray | float,
    n_c: np.ndarray | float,
    alpha: float = 0.05,
) -> dict[str, np.ndarray]:
    """Welch's unequal-variance t-test from summary statistics (vectorised over any shape).

    Args:
        mean_t: Treatment means.
        var_t: Treatment variances (``ddof=1``).
        n_t: Treatment sizes.
        mean_c: Control means.
        var_c: Control variances (``ddof=1``).
        n_c: Control sizes.
        alpha: 1 - confidence level of the interval.

    Returns:
        Arrays ``diff, rel, se, df, ci_low, ci_high, p_value``.
    """
    mt, vt, nt = (np.asarray(a, dtype=float) for a in (mean_t, var_t, n_t))
    mc, vc, nc = (np.asarray(a, dtype=float) for a in (mean_c, var_c, n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        at, ac = vt / nt, vc / nc
        se = np.sqrt(at + ac)
        df = (at + ac) ** 2 / (at**2 / (nt - 1) + ac**2 / (nc - 1))
        p_value = stats.ttest_ind_from_stats(mt, np.sqrt(vt), nt, mc, np.sqrt(vc), nc, equal_var=False).pvalue
        half = stats.t.ppf(1 - alpha / 2, df) * se
        diff = mt - mc
        rel = diff / mc
    return {
        "diff": diff,
        "rel": rel,
        "se": se,
        "df": df,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "p_value": np.asarray(p_value, dtype=float),
    }


def welch(*, treatment: np.ndarray, control: np.ndarray, alpha: float = 0.05) -> Effect:
    """Welch's t-test of treatment minus control on per-unit values.

    Args:
        treatment: Per-unit metric values in the treatment arm.
        control: Per-unit metric values in the control arm.
        alpha: 1 - confidence level.

    Returns:
        The effect.
    """
    t, c = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    out = welch_from_moments(
        mean_t=t.mean() if t.size else np.nan,
        var_t=t.var(ddof=1) if t.size > 1 else np.nan,
        n_t=t.size,
        mean_c=c.mean() if c.size else np.nan,
        var_c=c.var(ddof=1) if c.size > 1 else np.nan,
        n_c=c.size,
        alpha=alpha,
    )
    return _effect(out)


def ratio_and_variance(*, numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """A ratio metric ``Σx / Σy`` over units and its delta-method variance.

    Args:
        numerator: Per-unit numerators ``x`` (e.g. revenue).
        denominator: Per-unit denominators ``y`` (e.g. orders).

    Returns:
        ``(ratio, variance of the ratio)``; NaN when the denominator sums to zero or n < 2.
    """
    x, y = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    n = x.size
    if n < 2 or y.sum() == 0:
        return float("nan"), float("nan")
    mean_x, mean_y = x.mean(), y.mean()
    ratio = mean_x / mean_y
    cov = np.cov(x, y, ddof=1)
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * mean_y**2)
    return float(ratio), float(variance)


def delta_ratio(
    *,
    numerator_t: np.ndarray,
    denominator_t: np.ndarray,
    numerator_c: np.ndarray,
    denominator_c: np.ndarray,
    alpha: float = 0.05,
) -> Effect:
    """Difference of two ratio metrics by the delta method (normal interval, two-sided z-test).

    Args:
        numerator_t: Treatment per-unit numerators.
        denominator_t: Treatment per-unit denominators.
        numerator_c: Control per-unit numerators.
        denominator_c: Control per-unit denominators.
        alpha: 1 - confidence level.

    Returns:
        The effect.
    """
    r_t, v_t = ratio_and_variance(numerator=numerator_t, denominator=denominator_t)
    r_c, v_c = ratio_and_variance(numerator=numerator_c, denominator=denominator_c)
    return normal_effect(estimate_t=r_t, estimate_c=r_c, variance=v_t + v_c, alpha=alpha)


def normal_effect(*, estimate_t: float, estimate_c: float, variance: float, alpha: float = 0.05) -> Effect:
    """Effect with a normal interval and a two-sided z-test, given the variance of the difference.

    Args:
        estimate_t: Treatment estimate.
        estimate_c: Control estimate.
        variance: Variance of ``estimate_t - estimate_c``.
        alpha: 1 - confidence level.

    Returns:
        The effect.
    """
    diff = estimate_t - estimate_c
    se = float(np.sqrt(variance)) if variance >= 0 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / se if se > 0 else float("nan")
        rel = diff / estimate_c if estimate_c != 0 else float("nan")
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    p_value = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else float("nan")
    return Effect(diff=diff, rel=rel, se=se, ci_low=diff - half, ci_high=diff + half, p_value=p_value)


def cuped_theta(*, y: np.ndarray, x: np.ndarray) -> Any:
    """CUPED coefficient ``cov(y, x) / var(x)`` pooled over both arms (0 when x is constant).

    Works along the last axis, so a stack of simulated experiments is handled in one call.

    Args:
        y: Per-unit metric in the experiment window.
        x: Per-unit pre-exposure covariate.

    Returns:
        θ: a float for 1-D input, else an array over the leading axes.
    """
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    n = x.shape[-1]
    if n < 2:
        return 0.0 if x.ndim == 1 else np.zeros(x.shape[:-1])
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    var_x = (dx * dx).sum(axis=-1) / (n - 1)
    cov_xy = (dx * dy).sum(axis=-1) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(var_x > 0, cov_xy / var_x, 0.0)
    return float(theta) if x.ndim == 1 else theta


def cuped_adjust(*, y: np.ndarray, x: np.ndarray, theta: Any, x_mean: Any) -> np.ndarray:
    """CUPED-adjusted values ``y - θ (x - x̄)``; the mean over all units is unchanged.

    Args:
        y: Per-unit metric (last axis = units).
        x: Per-unit covariate.
        theta: Coefficient(s) from :func:`cuped_theta`.
        x_mean: Mean(s) of the covariate over all units of both arms.

    Returns:
        Adjusted per-unit values.
    """
    theta_, mean_ = np.asarray(theta, dtype=float)[..., None], np.asarray(x_mean, dtype=float)[..., None]
    adjusted: np.ndarray = np.asarray(y, dtype=float) - theta_ * (np.asarray(x, dtype=float) - mean_)
    return adjusted


def srm_p_value(*, counts: np.ndarray, shares: np.ndarray) -> float:
    """Sample-ratio-mismatch chi-square p-value of observed counts against expected shares.

    Args:
        counts: Units observed per variant.
        shares: Expected share per variant (normalised here).

    Returns:
        The p-value (flag a mismatch when below :data:`SRM_THRESHOLD`); NaN with no units or one variant.
    """
    observed = np.asarray(counts, dtype=float)
    expected_share = np.asarray(shares, dtype=float)
    total = observed.sum()
    if total == 0 or observed.size < 2:
        return float("nan")
    expected = total * expected_share / expected_share.sum()
    if np.any((expected == 0) & (observed > 0)):
        return 0.0
    keep = expected > 0
    return float(stats.chisquare(observed[keep], expected[keep]).pvalue)


def adjust_p_values(p_values: np.ndarray, *, method: Correction = "holm") -> np.ndarray:
    """Adjust a family of p-values for multiple testing (NaNs stay NaN and are not counted).

    Args:
        p_values: The family's raw p-values.
        method: ``holm``, ``bh`` (Benjamini–Hochberg) or ``none``.

    Returns:
        Adjusted p-values in the original order.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if method == "none" or not finite.any():
        return p.copy()
    q = p[finite]
    if method == "bh":
        out[finite] = stats.false_discovery_control(q, method="bh")
    elif method == "holm":
        m = q.size
        order = np.argsort(q, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        out[finite] = adjusted
    else:
        raise ValueError(f"unknown correction {method!r}; use holm, bh or none")
    return out


def confidence_sequence(
    *,
    diff: np.ndarray | float,
    se: np.ndarray | float,
    n: np.ndarray | float,
    planned_n: float,
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid (asymptotic, normal-mixture) confidence sequence for a difference in means.

    Args:
        diff: Current estimate(s) of the effect.
        se: Current standard error(s) of the estimate (as for a fixed-sample interval).
        n: Units observed so far (both arms together).
        planned_n: Sample size at which the sequence should be narrowest; fix it before the test starts.
        alpha: Error probability over all looks together.

    Returns:
        ``(low, high)`` arrays.
    """
    d, s, m = (np.asarray(a, dtype=float) for a in (diff, se, n))
    log_term = -2 * np.log(alpha)
    rho2 = (log_term + np.log(log_term + 1)) / float(planned_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        width = s * np.sqrt(2 * (m * rho2 + 1) / (m * rho2) * np.log(np.sqrt(m * rho2 + 1) / alpha))
    return d - width, d + width


def _effect(out: dict[str, np.ndarray]) -> Effect:
    return Effect(
        diff=float(out["diff"]),
        rel=float(out["rel"]),
        se=float(out["se"]),
        ci_low=float(out["ci_low"]),
        ci_high=float(out["ci_high"]),
        p_value=float(out["p_value"]),
    )
