"""Incoming events (``DATA/incoming/``): checked by the contract's rules, read with the events table by the
feature job (kept aggregate and late-data fingerprint included) and by training."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.contract import (
    INCOMING,
    INCOMING_SCHEMA,
    incoming_paths,
    load_table,
    validate_events,
    write_arrow,
    write_table,
)
from features.job import build_features, run_job, snapshot_path
from features.sources import events_stamp, file_stamp, open_sources
from tests.features.test_definitions import AS_OF, random_world

NOW = pd.Timestamp("2025-06-01")


def _rows(*rows: dict[str, object]) -> pd.DataFrame:
    """Rows as an app sends them: Python objects, a field left out is None."""
    cols = INCOMING_SCHEMA.names
    return pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in cols})


def _incoming(folder: Path, frame: pd.DataFrame) -> Path:
    """Write checked events as one incoming file, as the API does."""
    good, quarantine = validate_events(frame, now=NOW)
    assert quarantine.empty, quarantine
    table = pa.Table.from_pandas(good[INCOMING_SCHEMA.names], schema=INCOMING_SCHEMA, preserve_index=False)
    name = f"events-{pd.Timestamp.now():%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex}.parquet"
    return write_arrow(table, folder / INCOMING / name)


GOOD = {"user_id": "u1", "ts": "2025-03-01T10:00:00Z", "event_type": "view", "item_id": "i1"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_id": None}, "missing user_id"),
        ({"user_id": "  "}, "missing user_id"),
        ({"user_id": "u" * 129}, "user_id over 128 characters"),
        ({"item_id": "i" * 129}, "item_id over 128 characters"),
        ({"user_id": "u\x01x"}, "user_id has control characters"),
        ({"session_id": "s\n"}, "session_id has control characters"),
        ({"ts": "the third of March"}, "unparsable ts"),
        ({"ts": None}, "missing ts"),
        ({"ts": "2025-06-01T00:00:01Z"}, "ts in the future"),
        ({"event_type": "click"}, "unknown event type"),
        ({"event_type": "purchase", "amount": -1.0}, "negative amount on purchase"),
        ({"event_type": "purchase", "amount": math.inf}, "non-finite amount"),
        ({"amount": -math.inf}, "non-finite amount"),
        ({"event_type": "purchase", "amount": math.nan}, "non-finite amount"),
        ({"amount": "ten"}, "unparsable amount"),
    ],
)
def test_each_bad_row_gets_its_reason_and_its_position(change: dict[str, object], reason: str) -> None:
    frame = _rows(GOOD, {**GOOD, "user_id": "u2", **change}, {**GOOD, "user_id": "u3"})
    good, quarantine = validate_events(frame, now=NOW)
    assert quarantine[["reason", "source_row"]].to_dict("records") == [{"reason": reason, "source_row": 1}]
    assert good["user_id"].tolist() == ["u1", "u3"]


def test_the_edges_pass_and_a_refund_may_be_negative() -> None:
    frame = _rows(
        {**GOOD, "user_id": "u" * 128, "item_id": "i" * 128},
        {**GOOD, "ts": "2025-06-01T00:00:00Z"},  # exactly now
        {**GOOD, "event_type": "refund", "amount": -5.0},
        {**GOOD, "ts": "2025-03-01T12:00:00+02:00", "event_type": "purchase", "amount": 0.0},
    )
    good, quarantine = validate_events(frame, now=NOW)
    assert quarantine.empty
    assert good["ts"].iloc[3] == pd.Timestamp("2025-03-01 10:00:00")  # naive UTC


def test_a_row_keeps_the_contracts_reason_first_and_a_copy_of_a_bad_row_its_reason() -> None:
    long_id = "u" * 200
    frame = _rows(
        {**GOOD, "user_id": long_id, "ts": "never"},  # unparsable ts comes before the id rule
        {**GOOD, "user_id": long_id},
        {**GOOD, "user_id": long_id},  # a copy of a bad row: bad for the same reason, not a duplicate
        GOOD,
        GOOD,
    )
    good, quarantine = validate_events(frame, now=NOW)
    assert quarantine[["reason", "source_row"]].to_dict("records") == [
        {"reason": "unparsable ts", "source_row": 0},
        {"reason": "user_id over 128 characters", "source_row": 1},
        {"reason": "user_id over 128 characters", "source_row": 2},
        {"reason": "duplicate row", "source_row": 4},
    ]
    assert len(good) == 1


def test_nan_in_a_float_column_is_a_missing_amount_not_a_bad_one() -> None:
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2"], "ts": ["2025-03-01", "2025-03-02"], "event_type": ["view", "view"]}
    )
    frame["amount"] = [np.nan, np.inf]
    _, quarantine = validate_events(frame, now=NOW)
    assert quarantine[["reason", "source_row"]].to_dict("records") == [
        {"reason": "non-finite amount", "source_row": 1}
    ]


def test_a_folder_without_incoming_files_reads_as_before(tmp_path: Path) -> None:
    random_world(tmp_path, 1)
    plain = load_table(tmp_path, "events", required=True)
    (tmp_path / INCOMING).mkdir()
    (tmp_path / INCOMING / ".events-x.parquet.tmp").write_bytes(b"half a file")  # being written
    src = open_sources(tmp_path)
    assert src.incoming_paths == () and incoming_paths(tmp_path) == []
    assert events_stamp(src) == file_stamp(src.events_path)
    events = load_table(tmp_path, "events", required=True)
    assert plain is not None and events is not None
    pd.testing.assert_frame_equal(events, plain)


def test_incoming_files_are_part_of_the_events_for_features_and_training(tmp_path: Path) -> None:
    random_world(tmp_path, 2)
    before = open_sources(tmp_path).events.count().execute()
    plain = load_table(tmp_path, "events", required=True)
    assert plain is not None
    path = _incoming(
        tmp_path, _rows({**GOOD, "user_id": "u005"}, {**GOOD, "user_id": "u006", "item_id": None})
    )
    src = open_sources(tmp_path)
    assert src.incoming_paths == (path,)
    assert src.events.count().execute() == before + 2
    assert events_stamp(src) != file_stamp(src.events_path)
    events = load_table(tmp_path, "events", required=True)
    assert events is not None and len(events) == len(plain) + 2
    assert events.dtypes.to_dict() == plain.dtypes.to_dict()
    pd.testing.assert_frame_equal(events.head(len(plain)), plain)
    assert events.tail(2)["user_id"].tolist() == ["u005", "u006"]


def test_an_events_csv_with_number_ids_reads_with_incoming_string_ids(tmp_path: Path) -> None:
    pd.DataFrame(
        {"user_id": [1, 2], "ts": ["2025-02-01 10:00:00", "2025-02-02 10:00:00"], "event_type": "view"}
    ).to_csv(tmp_path / "events.csv", index=False)
    _incoming(tmp_path, _rows({**GOOD, "user_id": "u9"}))
    snap = build_features(tmp_path, "2025-03-05")
    assert sorted(snap["user_id"]) == ["1", "2", "u9"]
    assert snap.set_index("user_id").loc["u9", "days_since_last_event"] == 4
    events = load_table(tmp_path, "events", required=True)
    assert events is not None and events["user_id"].astype(str).tolist() == ["1", "2", "u9"]


def test_an_incoming_event_changes_the_next_snapshot(tmp_path: Path) -> None:
    random_world(tmp_path, 3)
    snap = build_features(tmp_path, AS_OF).set_index("user_id")
    user = snap["days_since_last_event"].idxmax()
    assert snap.loc[user, "days_since_last_event"] > 3
    ts = (AS_OF - pd.Timedelta(days=2)).isoformat()
    _incoming(tmp_path, _rows({**GOOD, "user_id": user, "ts": ts}))
    after = build_features(tmp_path, AS_OF).set_index("user_id")
    assert after.loc[user, "days_since_last_event"] == 2
    assert after.drop(index=user).equals(snap.drop(index=user))


def test_a_daily_run_after_a_late_incoming_event_equals_a_full_build(tmp_path: Path) -> None:
    """Features as of D are kept; an event for D - 1 arrives as an incoming file; features as of D + 1
    from the kept aggregate equal a fresh full build (the fingerprint saw the kept days change)."""
    random_world(tmp_path, 4)
    day = AS_OF - pd.Timedelta(days=20)
    out = tmp_path / "features"
    reasons: list[str] = []
    run_job(tmp_path, [day], out, write_online=False, on_rebuild=reasons.append)
    snap = pd.read_parquet(snapshot_path(out, day)).set_index("user_id")
    user = snap["days_since_last_event"].idxmax()
    late = (day - pd.Timedelta(days=1) + pd.Timedelta(hours=9)).isoformat()
    _incoming(tmp_path, _rows({**GOOD, "user_id": user, "ts": late, "event_type": "purchase", "amount": 7.5}))
    nxt = day + pd.Timedelta(days=1)
    run_job(tmp_path, [nxt], out, write_online=False, on_rebuild=reasons.append)
    assert len(reasons) == 2 and "changed since they were aggregated" in reasons[1]
    got = pd.read_parquet(snapshot_path(out, nxt))
    pd.testing.assert_frame_equal(got, build_features(tmp_path, nxt))
    assert got.set_index("user_id").loc[user, "days_since_last_event"] == 2
    # a later incoming event for a day not kept yet only extends the aggregate
    _incoming(tmp_path, _rows({**GOOD, "user_id": user, "ts": nxt.isoformat()}))
    third = nxt + pd.Timedelta(days=1)
    run_job(tmp_path, [third], out, write_online=False, on_rebuild=reasons.append)
    assert len(reasons) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, third)), build_features(tmp_path, third))


def test_events_rewritten_with_incoming_files_still_read_as_one_table(tmp_path: Path) -> None:
    """An events table without the optional columns: incoming rows keep to its columns."""
    write_table(
        pd.DataFrame(
            {
                "user_id": ["u1"],
                "ts": pd.to_datetime(["2025-02-01"]).astype("datetime64[us]"),
                "event_type": "view",
            }
        ),
        tmp_path / "events.parquet",
        contract="events",
    )
    _incoming(tmp_path, _rows({**GOOD, "user_id": "u2", "event_type": "purchase", "amount": 3.0}))
    assert open_sources(tmp_path).events.columns == ("user_id", "ts", "event_type")
    events = load_table(tmp_path, "events", required=True)
    assert events is not None and list(events.columns) == ["user_id", "ts", "event_type"]
    assert build_features(tmp_path, "2025-03-05")["user_id"].tolist() == ["u1", "u2"]
