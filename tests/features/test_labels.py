"""Labels: brute force, windows that never reach past their data, back-test dates, stacked training sets."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import write_table
from features.errors import DataError
from features.labels import backtest_dates, churn_labels, conversion_labels, training_set
from tests.features.test_definitions import AS_OF, random_world


def _brute_churn(events: pd.DataFrame, as_of: pd.Timestamp, horizon: int, lookback: int) -> dict[str, bool]:
    act = events[events["event_type"] != "refund"]
    before = act[(act["ts"] >= as_of - pd.Timedelta(days=lookback)) & (act["ts"] < as_of)]
    after = act[(act["ts"] >= as_of) & (act["ts"] < as_of + pd.Timedelta(days=horizon))]
    return {u: u not in set(after["user_id"]) for u in sorted(set(before["user_id"]))}


@pytest.mark.parametrize(("horizon", "lookback"), [(30, 90), (14, 30)])
def test_churn_labels_match_brute_force(tmp_path: Path, horizon: int, lookback: int) -> None:
    tables = random_world(tmp_path, 11, n_users=60)
    got = churn_labels(tmp_path, AS_OF, horizon, lookback)
    want = _brute_churn(tables["events"], AS_OF, horizon, lookback)
    assert dict(zip(got["user_id"], got["churned"], strict=True)) == want
    assert got["churned"].dtype == bool
    assert 0 < got["churned"].sum() < len(got)  # both classes present: the test can fail


def test_conversion_labels_match_brute_force(tmp_path: Path) -> None:
    tables = random_world(tmp_path, 12, n_users=60)
    got = conversion_labels(tmp_path, AS_OF, 21)
    ev, users = tables["events"], tables["users"]
    window = (ev["ts"] >= AS_OF) & (ev["ts"] < AS_OF + pd.Timedelta(days=21))
    buys = ev[(ev["event_type"] == "purchase") & window]
    pop = sorted(users.loc[users["signup_ts"] < AS_OF, "user_id"])
    assert list(got["user_id"]) == pop
    want = {u: u in set(buys["user_id"]) for u in pop}
    assert dict(zip(got["user_id"], got["converted"], strict=True)) == want


def test_no_label_window_reaches_past_its_data(tmp_path: Path) -> None:
    tables = random_world(tmp_path, 13)
    end = tables["events"]["ts"].max().normalize() + pd.Timedelta(days=1)
    churn_labels(tmp_path, end - pd.Timedelta(days=30), 30)  # ends exactly with the data: fine
    with pytest.raises(DataError, match="past the data"):
        churn_labels(tmp_path, end - pd.Timedelta(days=29), 30)
    with pytest.raises(DataError, match="past the data"):
        conversion_labels(tmp_path, AS_OF, 30, end=AS_OF + pd.Timedelta(days=10))


def test_labels_read_only_their_window(tmp_path: Path) -> None:
    """Events after as_of + horizon, or before the look-back, change no label."""
    tables = random_world(tmp_path / "a", 14, n_users=60)
    before = churn_labels(tmp_path / "a", AS_OF, 20, 30, end="2025-07-01")
    ev = tables["events"]
    rng = np.random.default_rng(0)
    outside = (ev["ts"] >= AS_OF + pd.Timedelta(days=20)) | (ev["ts"] < AS_OF - pd.Timedelta(days=30))
    moved = ev.copy()
    moved.loc[outside, "event_type"] = rng.choice(["view", "refund"], int(outside.sum()))
    moved = moved.drop(index=moved.index[outside][::3])
    for name, frame in {**tables, "events": moved}.items():
        write_table(frame, tmp_path / "b" / f"{name}.parquet")
    pd.testing.assert_frame_equal(before, churn_labels(tmp_path / "b", AS_OF, 20, 30, end="2025-07-01"))


def test_backtest_dates_end_by_the_target() -> None:
    dates = backtest_dates("2025-12-01", horizon=90, step=30, n=4)
    assert dates == sorted(dates) and len(dates) == 4
    assert all(d + pd.Timedelta(days=90) <= pd.Timestamp("2025-12-01") for d in dates)
    assert dates[-1] + pd.Timedelta(days=90) == pd.Timestamp("2025-12-01")
    assert all((b - a).days == 30 for a, b in itertools.pairwise(dates))


def test_training_set_stacks_dates_with_features_and_labels(tmp_path: Path) -> None:
    random_world(tmp_path, 15, n_users=60)
    frame = training_set(tmp_path, "2025-06-10", label="churn", horizon=30, step=20, n=2, lookback=60)
    assert sorted(frame["as_of"].unique()) == [pd.Timestamp("2025-04-21"), pd.Timestamp("2025-05-11")]
    for as_of, part in frame.groupby("as_of"):
        labels = churn_labels(tmp_path, as_of, 30, 60)
        assert sorted(part["user_id"]) == sorted(labels["user_id"])
        # the population of the churn label is exactly the users not "churned" as of that date
        assert not (part["lifecycle_stage"] == "churned").any()
