"""The kept daily aggregate's state file: typed days, old files still read, a damaged one is rebuilt."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from features.daily import STATE, VERSION, DailyState, DailyStore
from features.job import build_features, run_job, snapshot_path
from tests.features.test_definitions import AS_OF, random_world


def test_a_state_reads_back_as_it_was_written() -> None:
    state = DailyState(
        until=dt.date(2025, 5, 1),
        items_from=dt.date(2025, 1, 31),
        events="/data/events.parquet",
        codes_until=dt.date(2025, 5, 3),
        version=VERSION,
        activity=["activity-a.parquet"],
        totals_as_of=None,
        seen_as_of=dt.date(2025, 4, 30),
    )
    text = state.to_json()
    assert json.loads(text)["until"] == "2025-05-01" and json.loads(text)["totals_as_of"] is None
    assert DailyState.from_json(text) == state


def test_a_state_written_before_days_had_a_type_still_reads() -> None:
    """Before, a day was a string and "" meant none; such a file reads with None for ""."""
    old = {
        "until": "2025-05-01",
        "items_from": "2025-01-31",
        "events": "/data/events.parquet",
        "codes_until": "2025-05-01",
        "version": VERSION,
        "totals": "",
        "totals_as_of": "",
        "seen_as_of": "",
        "a_field_of_another_version": 1,
    }
    state = DailyState.from_json(json.dumps(old))
    assert state.until == dt.date(2025, 5, 1) and state.codes_until == dt.date(2025, 5, 1)
    assert state.totals_as_of is None and state.seen_as_of is None


def test_a_folder_kept_by_the_previous_version_is_extended_not_rebuilt(tmp_path: Path) -> None:
    random_world(tmp_path, 3)
    out = tmp_path / "features"
    run_job(tmp_path, [AS_OF], out, write_online=False)
    path = out / "daily" / STATE
    state = json.loads(path.read_text())
    # as the previous version wrote it: "" for a day not kept yet
    state["totals_as_of"], state["totals"] = "", ""
    path.write_text(json.dumps(state))
    reasons: list[str] = []
    later = AS_OF + pd.Timedelta(days=1)
    run_job(tmp_path, [later], out, write_online=False, on_rebuild=reasons.append)
    assert reasons == []
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, later)), build_features(tmp_path, later))


def test_a_damaged_state_file_is_rebuilt_and_said_so(tmp_path: Path) -> None:
    random_world(tmp_path, 4)
    out = tmp_path / "features"
    run_job(tmp_path, [AS_OF], out, write_online=False)
    path = out / "daily" / STATE
    path.write_text(path.read_text()[:40])  # cut short
    assert DailyStore(out / "daily").state() is None
    # a snapshot asked of the damaged folder is computed from the events
    pd.testing.assert_frame_equal(
        build_features(tmp_path, AS_OF, daily_dir=out / "daily"), build_features(tmp_path, AS_OF)
    )
    reasons: list[str] = []
    later = AS_OF + pd.Timedelta(days=1)
    run_job(tmp_path, [later], out, write_online=False, on_rebuild=reasons.append)
    assert reasons == ["nothing kept yet"]
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, later)), build_features(tmp_path, later))
    assert DailyState.from_json(path.read_text()).until is not None
