"""The analysis of a data folder equals a brute-force reading of the raw files plus statsmodels."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from experiments.analysis import analyze
from experiments.errors import DataError
from experiments.metrics import parse_metric, read_table
from experiments.options import AnalysisOptions
from experiments.over_time import effect_over_time

TOL = 1e-6
METRICS = ["conversion", "revenue", "orders", "net_revenue", "any:add_to_cart", "count:view", "retention:25"]


class BruteForce:
    """Reads the raw files with the csv module and pyarrow, and computes metrics with plain loops."""

    def __init__(self, folder: Any) -> None:
        self.first: dict[str, tuple[datetime, str]] = {}
        with open(folder.path / "exposures.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["experiment"] != "exp1":
                    continue
                ts = datetime.fromisoformat(row["ts"])
                if row["unit_id"] not in self.first or ts < self.first[row["unit_id"]][0]:
                    self.first[row["unit_id"]] = (ts, row["variant"])
        self.events: dict[str, list[tuple[datetime, str, float]]] = defaultdict(list)
        self.end = datetime.min
        for event in pq.read_table(folder.path / "events.parquet").to_pylist():
            amount = event["amount"] if event["amount"] == event["amount"] else 0.0  # NaN → 0
            self.events[event["user_id"]].append((event["ts"], event["event_type"], amount))
            self.end = max(self.end, event["ts"])

    def value(self, unit: str, metric: str, window: float | None, pre_days: float | None = None) -> float:
        start, _ = self.first[unit]
        total = 0.0
        for ts, kind, amount in self.events.get(unit, []):
            offset = (ts - start).total_seconds() / 86400
            if metric.startswith("retention:"):
                day = int(metric.split(":")[1])
                inside = -pre_days <= offset < 0 if pre_days else day <= offset < day + 1
                total = max(total, 1.0 if inside else 0.0)
                continue
            inside = (
                (-pre_days <= offset < 0)
                if pre_days
                else (offset >= 0 and (window is None or offset < window))
            )
            if not inside:
                continue
            if metric == "conversion" and kind == "purchase":
                total = 1.0
            elif (metric == "revenue" and kind == "purchase") or (
                metric == "net_revenue" and kind in ("purchase", "refund")
            ):
                total += amount
            elif metric == "orders" and kind == "purchase":
                total += 1
            elif metric.startswith("any:") and kind == metric[4:]:
                total = 1.0
            elif metric.startswith("count:") and kind == metric[6:]:
                total += 1
        return total

    def arms(self, metric: str, window: float | None) -> dict[str, np.ndarray]:
        groups: dict[str, list[float]] = defaultdict(list)
        for unit, (start, variant) in self.first.items():
            if metric.startswith("retention:"):
                day = int(metric.split(":")[1])
                if start + timedelta(days=day + 1) > self.end:
                    continue  # day N not over yet: not measurable
            groups[variant].append(self.value(unit, metric, window))
        return {k: np.array(v) for k, v in groups.items()}


@pytest.fixture(scope="module")
def brute(sim_folder: Any) -> BruteForce:
    return BruteForce(sim_folder)


@pytest.fixture(scope="module")
def tables(sim_folder: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(sim_folder.path, "exposures"), read_table(sim_folder.path, "events")


def check_welch(row: Any, treatment: np.ndarray, control: np.ndarray) -> None:
    compare = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    _, p_value, _ = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(usevar="unequal")
    diff = treatment.mean() - control.mean()
    assert row.n == treatment.size
    assert row.mean == pytest.approx(treatment.mean(), abs=TOL)
    assert row.diff_abs == pytest.approx(diff, abs=TOL)
    assert row.diff_rel == pytest.approx(diff / control.mean(), abs=TOL)
    assert (row.ci_low, row.ci_high) == (pytest.approx(low, abs=TOL), pytest.approx(high, abs=TOL))
    assert row.p_value == pytest.approx(p_value, abs=TOL)


@pytest.mark.parametrize("window", [None, 7.0])
def test_every_metric_and_statistic_matches_brute_force(
    brute: BruteForce, tables: Any, window: float | None
) -> None:
    exposures, events = tables
    result = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(metrics=tuple(METRICS), window_days=window),
    )
    rows = {(r.metric, r.variant): r for r in result.rows}
    assert len(rows) == len(METRICS) * 3
    for metric in METRICS:
        arms = brute.arms(metric, window)
        control = rows[(metric, "control")]
        assert control.n == arms["control"].size and control.diff_abs is None and control.p_value is None
        assert control.mean == pytest.approx(arms["control"].mean(), abs=TOL)
        for variant in ("treatment", "bigger"):
            check_welch(rows[(metric, variant)], arms[variant], arms["control"])
    # The retention metric only counts units whose day 25 is over.
    assert rows[("retention:25", "control")].n < rows[("conversion", "control")].n
    # Holm across every primary comparison, as statsmodels computes it.
    family = [r for r in result.rows if r.p_value is not None]
    expected = multipletests([r.p_value for r in family], method="holm")[1]
    np.testing.assert_allclose([r.p_value_adjusted for r in family], expected, atol=1e-12)
    # Sample-ratio check against equal shares.
    counts = np.array(
        [sum(1 for _, v in brute.first.values() if v == k) for k in ("control", "bigger", "treatment")]
    )
    statistic = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert result.srm_p_value == pytest.approx(sps.chi2.sf(statistic, 2), abs=TOL)
    assert result.mixed_units == 5


def test_window_boundaries_are_inclusive_at_exposure_and_exclusive_at_the_end(
    brute: BruteForce, tables: Any
) -> None:
    exposures, events = tables
    result = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(("orders",), window_days=7),
    )
    seven = brute.arms("orders", 7.0)
    just_over = brute.arms("orders", 7.0 + 1e-9)
    assert sum(a.sum() for a in just_over.values()) > sum(
        a.sum() for a in seven.values()
    )  # events at day 7 exist
    assert next(r for r in result.rows if r.variant == "control").mean == pytest.approx(
        seven["control"].mean()
    )


def test_ratio_metric_by_the_delta_method(brute: BruteForce, tables: Any) -> None:
    exposures, events = tables
    result = analyze(
        exposures=exposures, events=events, experiment="exp1", options=AnalysisOptions(("revenue_per_order",))
    )
    rows = {r.variant: r for r in result.rows}
    revenue, orders = brute.arms("revenue", None), brute.arms("orders", None)

    def ratio(arm: str) -> tuple[float, float]:
        x, y = revenue[arm], orders[arm]
        r = x.sum() / y.sum()
        linear = (x - r * y) / y.mean()  # delta-method linearisation, computed by hand
        return r, linear.var(ddof=1) / x.size

    r_c, v_c = ratio("control")
    assert rows["control"].mean == pytest.approx(r_c, abs=TOL)
    for arm in ("treatment", "bigger"):
        r_t, v_t = ratio(arm)
        se = np.sqrt(v_t + v_c)
        assert rows[arm].diff_abs == pytest.approx(r_t - r_c, abs=TOL)
        assert rows[arm].ci_low == pytest.approx(r_t - r_c - sps.norm.ppf(0.975) * se, abs=TOL)
        assert rows[arm].p_value == pytest.approx(2 * sps.norm.sf(abs(r_t - r_c) / se), abs=TOL)


def test_cuped_matches_ols_route_and_narrows_the_interval(brute: BruteForce, tables: Any) -> None:
    exposures, events = tables
    plain = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(("orders",), window_days=14),
    )
    cuped = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(("orders",), window_days=14, cuped=True, pre_days=14),
    )
    units = sorted(brute.first)
    y = np.array([brute.value(u, "orders", 14.0) for u in units])
    x = np.array([brute.value(u, "orders", None, pre_days=14.0) for u in units])
    arm = np.array([brute.first[u][1] for u in units])
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    adjusted = y - slope * (x - x.mean())
    rows = {r.variant: r for r in cuped.rows}
    for variant in ("treatment", "bigger"):
        check_welch(rows[variant], adjusted[arm == variant], adjusted[arm == "control"])
        before = next(r for r in plain.rows if r.variant == variant)
        assert rows[variant].ci_high - rows[variant].ci_low < before.ci_high - before.ci_low
    assert np.corrcoef(x, y)[0, 1] > 0.3  # the simulated covariate is informative


def test_guardrails_are_marked_and_kept_out_of_the_family(tables: Any) -> None:
    exposures, events = tables
    result = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(("conversion", "orders"), guardrails=("any:refund",), correction="bh"),
    )
    guard = [r for r in result.rows if r.guardrail]
    assert {r.metric for r in guard} == {"any:refund"}
    assert all(r.p_value_adjusted == r.p_value for r in guard if r.p_value is not None)
    family = [r for r in result.rows if r.p_value is not None and not r.guardrail]
    expected = multipletests([r.p_value for r in family], method="fdr_bh")[1]
    np.testing.assert_allclose([r.p_value_adjusted for r in family], expected, atol=1e-12)


def test_store_shares_drive_the_sample_ratio_check(tables: Any) -> None:
    exposures, events = tables
    shares = {"control": 0.5, "treatment": 0.25, "bigger": 0.25}
    result = analyze(
        exposures=exposures,
        events=events,
        experiment="exp1",
        options=AnalysisOptions(("conversion",)),
        shares=shares,
    )
    observed = np.array([result.counts[v] for v in ("control", "treatment", "bigger")])
    expected = observed.sum() * np.array([0.5, 0.25, 0.25])
    assert result.srm_p_value == pytest.approx(sps.chisquare(observed, expected).pvalue, abs=TOL)
    assert result.srm_flagged and any("sample ratio" in w for w in result.warnings)


def test_json_contract_and_nulls(tables: Any) -> None:
    exposures, events = tables
    document = analyze(
        exposures=exposures, events=events, experiment="exp1", options=AnalysisOptions(("conversion",))
    ).to_json()
    assert set(document) == {"experiment", "srm_p_value", "results"}
    keys = {"metric", "variant", "n", "mean", "diff_abs", "diff_rel", "ci_low", "ci_high", "p_value"}
    assert all(set(row) == keys for row in document["results"])
    control = next(r for r in document["results"] if r["variant"] == "control")
    assert control["diff_abs"] is None and control["p_value"] is None and isinstance(control["n"], int)


def test_effect_over_time_ends_at_the_full_read(tables: Any) -> None:
    exposures, events = tables
    orders = AnalysisOptions(("orders",))
    over_time = effect_over_time(exposures=exposures, events=events, experiment="exp1", options=orders)
    full = analyze(exposures=exposures, events=events, experiment="exp1", options=orders)
    last = over_time[over_time["day"] == over_time["day"].max()].set_index("variant")
    for row in full.rows:
        if row.diff_abs is not None:
            assert last.loc[row.variant, "diff_abs"] == pytest.approx(row.diff_abs, abs=TOL)
    assert over_time.groupby("variant")["n"].apply(lambda s: s.is_monotonic_increasing).all()
    # A middle day equals a plain read of the data cut at the end of that day.
    day = over_time["day"].sort_values().unique()[6]
    cutoff = pd.Timestamp(day) + pd.Timedelta(days=1)
    cut = analyze(
        exposures=exposures[exposures["ts"] < cutoff],
        events=events[events["ts"] < cutoff],
        experiment="exp1",
        options=AnalysisOptions(
            ("orders",), planned_n=int(exposures.loc[exposures["experiment"] == "exp1", "unit_id"].nunique())
        ),
    )
    middle = over_time[over_time["day"] == day].set_index("variant")
    for row in cut.rows:
        if row.diff_abs is not None:
            assert middle.loc[row.variant, "n"] == row.n
            assert middle.loc[row.variant, "diff_abs"] == pytest.approx(row.diff_abs, abs=TOL)
            assert middle.loc[row.variant, "cs_low"] == pytest.approx(row.cs_low, abs=TOL)
    assert (over_time["cs_low"] <= over_time["ci_low"] + 1e-12).all()


def test_bad_input_is_reported(tables: Any, tmp_path: Any) -> None:
    exposures, events = tables
    with pytest.raises(DataError, match="no exposures"):
        analyze(exposures=exposures, events=events, experiment="missing")
    with pytest.raises(DataError, match="control"):
        analyze(
            exposures=exposures, events=events, experiment="exp1", options=AnalysisOptions(control="baseline")
        )
    with pytest.raises(DataError, match="unknown metric"):
        parse_metric("revenue_per_click")
    with pytest.raises(DataError, match="no events table"):
        read_table(tmp_path, "events")
    pd.DataFrame({"user_id": ["1"], "event_type": ["view"]}).to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(DataError, match="lacks column"):
        read_table(tmp_path, "events")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"metrics": ("revenue_per_click",)}, "unknown metric"),
        ({"guardrails": ("ratio:revenue_per_order/orders",)}, "two non-ratio metrics"),
        ({"correction": "bonferroni"}, "unknown correction"),
        ({"alpha": 1.5}, "alpha"),
        ({"window_days": 0}, "window"),
        ({"pre_days": -1}, "CUPED period"),
        ({"planned_n": 0}, "planned units"),
    ],
)
def test_options_are_refused_when_built(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        AnalysisOptions(**fields)


def test_options_are_frozen_and_keep_tuples() -> None:
    options = AnalysisOptions(metrics=["orders"], guardrails=["any:refund"])  # type: ignore[arg-type]
    assert options.metrics == ("orders",) and options.guardrails == ("any:refund",)
    assert AnalysisOptions().primary == ("conversion", "revenue", "orders")
    with pytest.raises(AttributeError):
        options.alpha = 0.1  # type: ignore[misc]
