"""Population stability index against its formula, and the drift report's warnings by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.drift import build_reference, drift_report, population_stability_index, psi_against


def test_psi_matches_the_formula_on_known_bins() -> None:
    expected = np.repeat(np.arange(10.0), 100)  # ten equal bins at the deciles
    actual = np.repeat(np.arange(10.0), [50] * 5 + [150] * 5)
    e, a = np.full(10, 0.1), np.array([0.05] * 5 + [0.15] * 5)
    formula = float(np.sum((a - e) * np.log(a / e)))
    assert population_stability_index(expected, actual) == pytest.approx(formula)
    assert population_stability_index(expected, expected) == pytest.approx(0.0)


def test_categorical_psi_and_nulls() -> None:
    ref = build_reference(pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50}), [], ["c"])["c"]
    shifted = pd.Series(["a"] * 80 + ["b"] * 20)
    e, a = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    assert psi_against(ref, shifted) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    num = build_reference(pd.DataFrame({"x": np.arange(100.0)}), ["x"], [])["x"]
    half_null = pd.Series(np.r_[np.arange(50.0), [np.nan] * 50])
    assert psi_against(num, half_null) > 0.2  # a feature going missing is drift too


def test_report_names_the_features_past_the_line() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 5000),
            "moved": rng.normal(0, 1, 5000),
            "stage": rng.choice(["new", "core"], 5000),
        }
    )
    now = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 5000),
            "moved": rng.normal(1.0, 1, 5000),
            "stage": rng.choice(["new", "core"], 5000),
        }
    )
    report = drift_report(build_reference(train, ["stable", "moved"], ["stage"]), now)
    assert report.loc[report["drifted"], "feature"].tolist() == ["moved"]
    assert report["psi"].iloc[0] == report["psi"].max()


def test_model_reference_is_the_latest_training_snapshot() -> None:
    from training.drift import numeric_reference
    from training.risk_model import RiskModel

    rng = np.random.default_rng(1)

    def snapshot(day: str, shift: float, n: int = 1500) -> pd.DataFrame:
        x = rng.normal(shift, 1, n)
        return pd.DataFrame(
            {"as_of": pd.Timestamp(day), "x": x, "label": (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)}
        )

    train = pd.concat([snapshot("2024-01-01", 0.0), snapshot("2024-02-01", 2.0)], ignore_index=True)
    valid = snapshot("2024-03-01", 2.0)
    model = RiskModel(features=["x"], n_estimators=20).fit(train, train["label"], valid, valid["label"])
    latest = train.loc[train["as_of"] == train["as_of"].max(), "x"]
    assert model.drift_reference_["x"] == numeric_reference(latest)
    scored = snapshot("2024-04-01", 2.0)
    assert not drift_report(model.drift_reference_, scored)["drifted"].any()  # pooled: it would warn
    assert drift_report(build_reference(train, ["x"], []), scored)["drifted"].any()
