"""The data contract: every kind of bad row lands in quarantine with its reason; good rows are typed."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import load_table, reason_counts, validate, write_table
from features.errors import ContractError

NOW = pd.Timestamp("2025-06-01")


def _events(**overrides: list) -> pd.DataFrame:
    base = {
        "user_id": ["a", "b", "c"],
        "ts": ["2025-01-01 10:00", "2025-01-02 11:00", "2025-01-03T12:00:00Z"],
        "event_type": ["view", "purchase", "refund"],
        "amount": [None, 12.5, -3.0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("user_id", None, "missing user_id"),
        ("user_id", "  ", "missing user_id"),
        ("ts", "not a time", "unparsable ts"),
        ("ts", None, "missing ts"),
        ("ts", "2030-01-01", "ts in the future"),
        ("event_type", "teleport", "unknown event type"),
        ("amount", -5.0, "negative amount on purchase"),
    ],
)
def test_each_bad_row_kind_is_quarantined_with_its_reason(column: str, value: object, reason: str) -> None:
    frame = _events()
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    good, quarantine = validate("events", frame, now=NOW)
    assert list(quarantine["reason"]) == [reason]
    assert list(quarantine["source_row"]) == [1]
    assert quarantine.loc[0, "user_id"] == frame.loc[1, "user_id"] or column == "user_id"
    assert list(good["user_id"]) == ["a", "c"]
    assert len(good) + len(quarantine) == len(frame)


def test_duplicates_keep_the_first_copy_and_quarantine_the_rest() -> None:
    frame = pd.concat([_events(), _events().iloc[[1, 1]]], ignore_index=True)
    good, quarantine = validate("events", frame, now=NOW)
    assert len(good) == 3
    assert reason_counts(quarantine) == {"duplicate row": 2}
    assert list(quarantine["source_row"]) == [3, 4]


def test_a_row_gets_the_first_reason_that_applies() -> None:
    frame = _events(user_id=[None, "b", "c"], ts=["garbage", "2025-01-02", "2025-01-03"])
    _, quarantine = validate("events", frame, now=NOW)
    assert list(quarantine["reason"]) == ["missing user_id"]


def test_good_rows_are_typed_and_timestamps_are_naive_utc() -> None:
    good, quarantine = validate("events", _events(), now=NOW)
    assert quarantine.empty
    assert str(good["ts"].dtype) == "datetime64[us]"
    assert good.loc[2, "ts"] == pd.Timestamp("2025-01-03 12:00")
    assert good["user_id"].dtype == "string"


def test_whole_number_float_ids_lose_their_decimal_point() -> None:
    good, _ = validate("events", _events(user_id=[17850.0, 12.0, 3.5]), now=NOW)
    assert list(good["user_id"]) == ["17850", "12", "3.5"]


def test_unknown_event_types_pass_when_no_vocabulary_is_given() -> None:
    good, quarantine = validate("events", _events(event_type=["x", "y", "z"]), now=NOW, event_types=None)
    assert quarantine.empty and len(good) == 3


def test_a_missing_required_column_is_a_clear_error() -> None:
    with pytest.raises(ContractError, match=r"missing required column.*event_type"):
        validate("events", _events().drop(columns="event_type"))


def test_load_table_refuses_a_folder_with_bad_rows_and_says_how_many(tmp_path) -> None:
    _events(user_id=["a", None, None]).to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(ContractError, match=r"2 row.*missing user_id.*first at row 1"):
        load_table(tmp_path, "events")
    assert load_table(tmp_path, "users") is None
    with pytest.raises(ContractError, match="no users"):
        load_table(tmp_path, "users", required=True)


def test_write_table_replaces_atomically_and_a_failed_write_keeps_the_old_file(tmp_path) -> None:
    path = write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.parquet")
    with pytest.raises(Exception):  # noqa: B017 - any failure of the writer must leave the old file
        write_table(pd.DataFrame({"a": [object()]}), path)
    assert pd.read_parquet(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["t.parquet"]


def test_checked_files_are_trusted_and_anything_else_is_checked_row_by_row(tmp_path) -> None:
    good, _ = validate("events", _events(), now=NOW)
    write_table(good, tmp_path / "events.parquet", contract="events")
    loaded = load_table(tmp_path, "events")
    assert loaded is not None
    pd.testing.assert_frame_equal(loaded, good)
    # the same rows rewritten by another tool lose the mark and are checked again
    bad = good.astype({"user_id": object})
    bad.loc[0, "user_id"] = None
    bad.to_parquet(tmp_path / "events.parquet", index=False)
    with pytest.raises(ContractError, match=r"1 row.*missing user_id"):
        load_table(tmp_path, "events")
