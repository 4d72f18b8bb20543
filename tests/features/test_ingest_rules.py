"""Strict ingest: one timestamp rule per column, the contract's event types and values, nothing replaced
by less than nothing, and files already in the contract's names taken as they are."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from features.contract import MAX_ID_CHARS
from features.daily import locked
from features.errors import ContractError, JobBusyError
from features.ingest import ingest, parse_event_types

NOW = pd.Timestamp("2026-01-01")


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _folder_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_file_in_contract_names_ingests_with_no_options_and_counts_its_quarantine(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "events.csv",
        "user_id,ts,event_type,item_id,amount\n"
        "u1,2025-03-01 10:00:00,view,i1,\n"
        "u1,2025-03-02T11:30:00Z,purchase,i1,12.5\n"
        "u2,2025-03-03,add_to_cart,i2,\n"
        ",2025-03-03,view,i2,\n",
    )
    report = ingest(src, tmp_path / "out", now=NOW)
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["ts"].tolist() == [
        pd.Timestamp("2025-03-01 10:00"),
        pd.Timestamp("2025-03-02 11:30"),
        pd.Timestamp("2025-03-03"),
    ]
    assert report.quarantined["events"] == {"missing user_id": 1}
    assert report.rows_read["events"] == report.rows_written["events"] + 1


def test_map_names_only_the_columns_that_differ(tmp_path: Path) -> None:
    src = _csv(tmp_path / "e.csv", "customer,ts,event_type\nu1,2025-03-01,view\nu2,2025-03-02,view\n")
    ingest(src, tmp_path / "out", mapping={"user_id": "customer"}, now=NOW)
    assert pd.read_parquet(tmp_path / "out" / "events.parquet")["user_id"].tolist() == ["u1", "u2"]


def test_one_timestamp_rule_per_column_never_a_guess_per_row(tmp_path: Path) -> None:
    # the old reader took 01/02 as 2 January and 13/02 as 13 February in one file
    src = _csv(
        tmp_path / "e.csv",
        "user_id,ts,event_type\nu1,01/02/2025 10:00,view\nu2,13/02/2025 10:00,view\nu3,2025-02-01,view\n",
    )
    with pytest.raises(ContractError, match=r"column ts: 2 of 3 values.*either way round.*--ts-format"):
        ingest(src, tmp_path / "out", now=NOW)
    assert not (tmp_path / "out").exists()
    report = ingest(src, tmp_path / "out", ts_format="%d/%m/%Y %H:%M", now=NOW)
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    expected = [datetime.strptime(v, "%d/%m/%Y %H:%M") for v in ("01/02/2025 10:00", "13/02/2025 10:00")]
    assert events["ts"].tolist() == [pd.Timestamp(t) for t in expected]
    # the ISO row does not match the pattern given for every row: quarantined, not read another way
    assert report.quarantined["events"] == {"unparsable ts": 1}


def test_a_stray_value_that_breaks_the_rule_is_quarantined_with_the_rest_kept(tmp_path: Path) -> None:
    rows = "".join(f"u{i},2025-03-{i + 1:02d} 08:00,view\n" for i in range(5))
    src = _csv(tmp_path / "e.csv", "user_id,ts,event_type\n" + rows + "u9,03/04/2025,view\n")
    report = ingest(src, tmp_path / "out", now=NOW)
    assert report.quarantined["events"] == {"unparsable ts": 1}
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine" / "events.parquet")
    assert quarantine["ts"].tolist() == ["03/04/2025"]  # the value as the file had it
    assert quarantine["source_row"].tolist() == [5]


def test_offsets_are_honoured_and_naive_times_read_in_the_time_zone(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "e.csv",
        "user_id,ts,event_type\nu1,2025-07-01 10:00,view\nu2,2025-07-01T10:00:00+05:00,view\n",
    )
    ingest(src, tmp_path / "out", tz="Europe/Berlin", now=NOW)
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["ts"].tolist() == [pd.Timestamp("2025-07-01 08:00"), pd.Timestamp("2025-07-01 05:00")]


def test_unknown_event_types_are_quarantined_unless_mapped(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "e.csv",
        "user_id,ts,event_type\nu1,2025-03-01,click\nu2,2025-03-01,PURCHASE\nu3,2025-03-01,view\n",
    )
    report = ingest(src, tmp_path / "a", now=NOW)
    assert report.quarantined["events"] == {"unknown event type": 2}
    report = ingest(
        src, tmp_path / "b", event_types=parse_event_types("click=view,PURCHASE=purchase"), now=NOW
    )
    assert report.quarantined["events"] == {}
    events = pd.read_parquet(tmp_path / "b" / "events.parquet")
    assert events["event_type"].tolist() == ["view", "purchase", "view"]
    with pytest.raises(ContractError, match="--event-types: 'buy' is not an event type"):
        parse_event_types("PURCHASE=buy")
    with pytest.raises(ContractError, match="--event-type: 'click' is not an event type"):
        ingest(src, tmp_path / "c", event_type="click")


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("inf", "non-finite amount"),
        ("-Infinity", "non-finite amount"),
        ("NaN", "non-finite amount"),
        ("1e308", "amount too large (10^12 or more)"),
        ("-1e12", "amount too large (10^12 or more)"),
        ("1e400", "non-finite amount"),
        ("ten", "unparsable amount"),
    ],
)
def test_an_amount_is_a_finite_number_below_ten_to_the_twelve(
    tmp_path: Path, amount: str, reason: str
) -> None:
    src = _csv(
        tmp_path / "e.csv",
        f"user_id,ts,event_type,amount\nu1,2025-03-01,purchase,{amount}\nu2,2025-03-01,view,\n"
        "u3,2025-03-01,purchase,999999999999\n",
    )
    report = ingest(src, tmp_path / "out", now=NOW)
    assert report.quarantined["events"] == {reason: 1}
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["amount"].isna().tolist() == [True, False]  # an empty amount stays empty
    assert events["amount"].iloc[1] == 999_999_999_999


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        ("u" * (MAX_ID_CHARS + 1), "user_id over 128 characters"),
        ("u\x07x", "user_id has control characters"),
        ("   ", "missing user_id"),
    ],
)
def test_ids_follow_the_same_rule_as_the_api(tmp_path: Path, user_id: str, reason: str) -> None:
    frame = pd.DataFrame(
        {"user_id": [user_id, "u" * MAX_ID_CHARS], "ts": ["2025-03-01", "2025-03-01"], "event_type": "view"}
    )
    frame.to_parquet(tmp_path / "e.parquet")
    report = ingest(tmp_path / "e.parquet", tmp_path / "out", now=NOW)
    assert report.quarantined["events"] == {reason: 1}
    assert report.rows_written["events"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "user_id,ts,event_type\n",
        "user_id,ts,event_type\nu1,never,view\nu2,2025-03-01,click\n",
    ],
    ids=["header only", "every row bad"],
)
def test_a_file_with_no_valid_rows_is_refused_and_the_output_kept(tmp_path: Path, text: str) -> None:
    good = _csv(tmp_path / "good.csv", "user_id,ts,event_type\nu1,2025-03-01,view\n")
    ingest(good, tmp_path / "out", now=NOW)
    before = _folder_hash(tmp_path / "out")
    bad = _csv(tmp_path / "bad.csv", text)
    with pytest.raises(ContractError, match=r"no valid rows in .*bad\.csv.*the previous output is kept"):
        ingest(bad, tmp_path / "out", now=NOW)
    assert _folder_hash(tmp_path / "out") == before


def test_ingest_takes_the_feature_jobs_lock(tmp_path: Path) -> None:
    good = _csv(tmp_path / "good.csv", "user_id,ts,event_type\nu1,2025-03-01,view\n")
    with locked(tmp_path / "out"), pytest.raises(JobBusyError, match="writing this folder"):
        ingest(good, tmp_path / "out", now=NOW)
    assert not (tmp_path / "out" / "events.parquet").exists()


def test_a_bad_ts_format_is_refused_naming_the_option(tmp_path: Path) -> None:
    good = _csv(tmp_path / "good.csv", "user_id,ts,event_type\nu1,2025-03-01,view\n")
    with pytest.raises(ContractError, match="--ts-format: 'dd/mm/yyyy' has no %-directive"):
        ingest(good, tmp_path / "out", ts_format="dd/mm/yyyy")


def test_the_feature_job_waits_for_an_ingest_into_its_data_folder(tmp_path: Path) -> None:
    from features.job import run_job

    good = _csv(tmp_path / "good.csv", "user_id,ts,event_type\nu1,2025-03-01,view\nu2,2025-03-02,view\n")
    ingest(good, tmp_path / "data", now=NOW)
    with locked(tmp_path / "data"), pytest.raises(JobBusyError, match="feature job or ingest"):
        run_job(tmp_path / "data", ["2025-03-03"], tmp_path / "features", write_online=False)
    assert not (tmp_path / "features").exists()
    assert run_job(tmp_path / "data", ["2025-03-03"], tmp_path / "features", write_online=False)[0].exists()
