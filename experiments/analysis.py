"""Experiment reads: per variant against control, for each metric, with the checks analysts need.

For each metric and each non-control variant: the absolute effect (mean difference), the relative
effect (difference / control mean), a confidence interval for the absolute effect, a p-value (Welch;
delta method for ratio metrics), a multiple-testing adjusted p-value (Holm or Benjamini–Hochberg over
every primary metric × variant comparison; guardrail metrics are reported on their raw p-values and kept
out of the family), and an always-valid confidence sequence. Every read also checks the sample ratio.

With ``options.cuped`` non-ratio metrics are CUPED-adjusted with the same metric over the ``pre_days``
before exposure; the reported means are then the adjusted means, so ``diff = mean_t - mean_c`` still holds.

Control rows are included in ``results`` with their ``n`` and ``mean`` and the effect fields null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments import stats
from experiments.errors import DataError
from experiments.metrics import Metric, first_exposures, join_events, parse_metric, unit_values
from experiments.options import AnalysisOptions, Correction

DEFAULT_OPTIONS = AnalysisOptions()


@dataclass
class Row:
    """One metric for one variant."""

    metric: str
    variant: str
    n: int
    mean: float
    diff_abs: float | None = None
    diff_rel: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    cs_low: float | None = None
    cs_high: float | None = None
    guardrail: bool = False
    cuped: bool = False


@dataclass
class Analysis:
    """A complete read of one experiment."""

    experiment: str
    control: str
    counts: dict[str, int]
    expected_shares: dict[str, float]
    srm_p_value: float
    rows: list[Row]
    correction: Correction
    alpha: float
    window_days: float | None
    mixed_units: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def srm_flagged(self) -> bool:
        """Whether the sample ratio is off (p < 0.001): then the effects are not to be trusted."""
        return bool(self.srm_p_value < stats.SRM_THRESHOLD)

    def to_json(self, *, details: bool = False) -> dict[str, Any]:
        """The ``analyze --json`` document.

        Args:
            details: Also include adjusted p-values, confidence sequences, guardrail flags, counts, warnings.

        Returns:
            ``{"experiment", "srm_p_value", "results": [...]}`` (plus extra keys with ``details``).
        """
        base = ("metric", "variant", "n", "mean", "diff_abs", "diff_rel", "ci_low", "ci_high", "p_value")
        results = []
        for row in self.rows:
            data = asdict(row)
            keys = list(data) if details else list(base)
            results.append({key: _clean(data[key]) for key in keys})
        document: dict[str, Any] = {
            "experiment": self.experiment,
            "srm_p_value": _clean(self.srm_p_value),
            "results": results,
        }
        if details:
            document.update(
                control=self.control,
                srm_flagged=self.srm_flagged,
                counts=self.counts,
                expected_shares=self.expected_shares,
                correction=self.correction,
                alpha=self.alpha,
                window_days=self.window_days,
                mixed_units=self.mixed_units,
                warnings=self.warnings,
            )
        return document


def analyze(
    *,
    exposures: pd.DataFrame,
    events: pd.DataFrame,
    experiment: str,
    options: AnalysisOptions = DEFAULT_OPTIONS,
    shares: Mapping[str, float] | None = None,
) -> Analysis:
    """Analyse one experiment from the contract's exposures and events.

    Args:
        exposures: Exposures table (``experiment, variant, unit_id, ts``).
        events: Events table (``user_id, ts, event_type`` and ``amount``).
        experiment: Experiment key.
        options: Metrics, window, CUPED, baseline, confidence and correction (see
            :class:`~experiments.options.AnalysisOptions`); no metrics = ``conversion, revenue, orders``.
        shares: Expected traffic share per variant for the sample-ratio check (the store's design);
            None = equal shares.

    Returns:
        The analysis.

    Raises:
        DataError: If the experiment has no exposures or no control variant.
    """
    units = first_exposures(exposures, experiment=experiment)
    if units.empty:
        raise DataError(f"no exposures for experiment {experiment!r}")
    analysis = analyze_units(
        units=units,
        joined=join_events(units, events),
        data_end=events["ts"].max() if len(events) else None,
        experiment=experiment,
        options=options,
        shares=shares,
    )
    dropped = int(events.attrs.get("dropped", 0)) + int(exposures.attrs.get("dropped", 0))
    if dropped:
        analysis.warnings.append(f"{dropped} rows with a missing id or unreadable timestamp were left out")
    return analysis


def analyze_units(
    *,
    units: pd.DataFrame,
    joined: pd.DataFrame,
    data_end: pd.Timestamp | None,
    experiment: str,
    options: AnalysisOptions = DEFAULT_OPTIONS,
    shares: Mapping[str, float] | None = None,
) -> Analysis:
    """:func:`analyze` on already prepared units and joined events (lets a caller reuse one join).

    Args:
        units: Output of :func:`experiments.metrics.first_exposures` (not empty).
        joined: Output of :func:`experiments.metrics.join_events` for those units.
        data_end: Timestamp of the last event in the data (for retention maturity).
        experiment: Experiment key.
        options: See :func:`analyze`.
        shares: See :func:`analyze`.

    Returns:
        The analysis.

    Raises:
        DataError: If no unit is in the control variant.
    """
    control = options.control
    metrics, guardrails = options.primary, options.guardrails
    names = list(dict.fromkeys([*metrics, *guardrails]))
    parsed = {name: parse_metric(name) for name in names}
    variants = sorted(units["variant"].unique(), key=lambda v: (v != control, v))
    if control not in variants:
        raise DataError(
            f"experiment {experiment!r} has no variant named {control!r} (found {', '.join(variants)})"
        )
    if shares is not None:
        variants += sorted(set(shares) - set(variants))
    counts = {v: int((units["variant"] == v).sum()) for v in variants}
    expected = {v: float(shares.get(v, 0.0)) for v in variants} if shares else dict.fromkeys(variants, 1.0)
    total_share = sum(expected.values())
    expected = {v: s / total_share for v, s in expected.items()}
    srm = stats.srm_p_value(counts=np.array(list(counts.values())), shares=np.array(list(expected.values())))

    planned_n = options.planned_n or len(units)
    rows: list[Row] = []
    for name, metric in parsed.items():
        rows += _metric_rows(
            metric,
            joined=joined,
            units=units,
            variants=[v for v in variants if counts[v] > 0],
            data_end=data_end,
            options=options,
            planned_n=planned_n,
            guardrail=name in guardrails and name not in metrics,
        )
    family = [r for r in rows if r.p_value is not None and not r.guardrail]
    adjusted = stats.adjust_p_values(
        np.array([r.p_value for r in family], dtype=float), method=options.correction
    )
    for row, value in zip(family, adjusted, strict=True):
        row.p_value_adjusted = _clean(value)
    for row in rows:
        if row.guardrail and row.p_value is not None:
            row.p_value_adjusted = row.p_value
    warnings = []
    if srm < stats.SRM_THRESHOLD:
        warnings.append(
            f"sample ratio mismatch (p = {srm:.2g} < {stats.SRM_THRESHOLD}): do not trust these effects"
        )
    mixed = int(units.attrs.get("mixed_units", 0))
    if mixed:
        warnings.append(
            f"{mixed} units were exposed to more than one variant; each counts in its first variant"
        )
    return Analysis(
        experiment=experiment,
        control=control,
        counts=counts,
        expected_shares=expected,
        srm_p_value=srm,
        rows=rows,
        correction=options.correction,
        alpha=options.alpha,
        window_days=options.window_days,
        mixed_units=mixed,
        warnings=warnings,
    )


def _metric_rows(
    metric: Metric,
    *,
    joined: pd.DataFrame,
    units: pd.DataFrame,
    variants: list[str],
    data_end: pd.Timestamp | None,
    options: AnalysisOptions,
    planned_n: int,
    guardrail: bool,
) -> list[Row]:
    control, alpha = options.control, options.alpha
    arm = units["variant"].to_numpy()

    def values_of(part: Metric, pre: float | None = None) -> np.ndarray:
        return unit_values(
            part,
            joined=joined,
            units=units,
            window_days=options.window_days,
            data_end=data_end,
            pre_days=pre,
        )

    rows: list[Row] = []
    if metric.is_ratio:
        assert metric.numerator is not None and metric.denominator is not None
        top = values_of(metric.numerator)
        bottom = values_of(metric.denominator)
        ok = ~(np.isnan(top) | np.isnan(bottom))
        arm_ok = arm[ok]
        top, bottom = top[ok], bottom[ok]
        measurable = {v: arm_ok == v for v in variants}
        estimates = {
            v: stats.ratio_and_variance(numerator=top[m], denominator=bottom[m])
            for v, m in measurable.items()
        }
        for variant in variants:
            n = int(measurable[variant].sum())
            row = Row(metric.name, variant, n, _clean(estimates[variant][0]), guardrail=guardrail)
            if variant != control:
                effect = stats.normal_effect(
                    estimate_t=estimates[variant][0],
                    estimate_c=estimates[control][0],
                    variance=estimates[variant][1] + estimates[control][1],
                    alpha=alpha,
                )
                _fill(
                    row, effect, n_total=n + int(measurable[control].sum()), planned_n=planned_n, alpha=alpha
                )
            rows.append(row)
        return rows

    values = values_of(metric)
    ok = ~np.isnan(values)
    applied = False
    if options.cuped:
        covariate = values_of(metric, options.pre_days)[ok]
        theta = stats.cuped_theta(y=values[ok], x=covariate)
        values = values.copy()
        values[ok] = stats.cuped_adjust(
            y=values[ok], x=covariate, theta=theta, x_mean=float(covariate.mean())
        )
        applied = True
    groups = {v: values[ok & (arm == v)] for v in variants}
    for variant in variants:
        sample = groups[variant]
        mean = float(sample.mean()) if sample.size else float("nan")
        row = Row(metric.name, variant, int(sample.size), _clean(mean), guardrail=guardrail, cuped=applied)
        if variant != control:
            effect = stats.welch(treatment=sample, control=groups[control], alpha=alpha)
            _fill(row, effect, n_total=sample.size + groups[control].size, planned_n=planned_n, alpha=alpha)
        rows.append(row)
    return rows


def _fill(row: Row, effect: stats.Effect, *, n_total: int, planned_n: int, alpha: float) -> None:
    row.diff_abs = _clean(effect.diff)
    row.diff_rel = _clean(effect.rel)
    row.ci_low = _clean(effect.ci_low)
    row.ci_high = _clean(effect.ci_high)
    row.p_value = _clean(effect.p_value)
    low, high = stats.confidence_sequence(
        diff=effect.diff, se=effect.se, n=n_total, planned_n=planned_n, alpha=alpha
    )
    row.cs_low, row.cs_high = _clean(float(low)), _clean(float(high))


def _clean(value: Any) -> Any:
    """NaN and infinities become None (JSON null); numpy scalars become Python numbers."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None
