"""The exposure log on SQLite and PostgreSQL: first exposure kept, repeats counted, durable on return."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.errors import StoreError
from experiments.exposures import Exposure, ExposureLog, GroupCommit, LogReceipt
from experiments.metrics import first_exposures, read_table

T0 = datetime(2024, 5, 1, 12, 0, 0)


@pytest.fixture
def log(sql_target: tuple[str, str]) -> Iterator[ExposureLog]:
    url, prefix = sql_target
    opened = ExposureLog(url, table_prefix=prefix)
    yield opened
    opened.drop_table()
    opened.engine.dispose()


def test_first_exposure_is_kept_and_repeats_are_counted(log: ExposureLog) -> None:
    receipt = log.log(
        [
            Exposure("exp1", "control", "u1", T0 + timedelta(hours=1)),
            Exposure("exp1", "control", "u1", T0),  # same unit twice in one batch
            Exposure("exp1", "treatment", "u2", T0),
            Exposure("exp2", "control", "u1", T0),
        ]
    )
    assert (receipt.exposures, receipt.units) == (4, 3)
    log.log([Exposure("exp1", "control", "u1", T0 + timedelta(days=1))])
    log.log([Exposure("exp1", "treatment", "u2", T0 - timedelta(hours=2))])  # late-arriving, earlier
    frame = log.read()
    assert len(frame) == 3  # one row per (experiment, unit)
    u1 = frame[(frame.experiment == "exp1") & (frame.unit_id == "u1")].iloc[0]
    assert (u1.ts, u1.last_ts, u1.exposures) == (T0, T0 + timedelta(days=1), 3)
    u2 = frame[(frame.experiment == "exp1") & (frame.unit_id == "u2")].iloc[0]
    assert (u2.ts, u2.last_ts, u2.exposures) == (T0 - timedelta(hours=2), T0, 2)
    assert log.log([]).units == 0


def test_log_agrees_with_a_brute_force_replay(log: ExposureLog) -> None:
    rng = np.random.default_rng(11)
    stream = [
        Exposure(
            experiment=f"e{rng.integers(2)}",
            variant=f"v{rng.integers(2)}",
            unit_id=f"u{rng.integers(300)}",
            ts=T0 + timedelta(seconds=int(rng.integers(10**6))),
        )
        for _ in range(3000)
    ]
    for start in range(0, len(stream), 250):  # several batches
        log.log(stream[start : start + 250])
    expected: dict[tuple[str, str], list] = {}
    for item in stream:  # brute force: earliest wins, ties keep the earliest arrival
        key = (item.experiment, item.unit_id)
        row = expected.setdefault(key, [item.variant, item.ts, item.ts, 0])
        if item.ts < row[1]:
            row[0], row[1] = item.variant, item.ts
        row[2] = max(row[2], item.ts)
        row[3] += 1
    frame = log.read()
    got = {(r.experiment, r.unit_id): [r.variant, r.ts, r.last_ts, r.exposures] for r in frame.itertuples()}
    assert got == expected


def test_timezone_aware_timestamps_are_stored_as_naive_utc(log: ExposureLog) -> None:
    paris = timezone(timedelta(hours=2))
    log.log([Exposure("exp1", "control", "u1", datetime(2024, 5, 1, 14, 0, tzinfo=paris))])
    assert log.read().iloc[0].ts == datetime(2024, 5, 1, 12, 0)


def test_export_writes_the_contract_table_that_analysis_reads(log: ExposureLog, tmp_path: Path) -> None:
    log.log([Exposure("exp1", "control", "007", T0), Exposure("exp1", "treatment", "008", T0)])
    log.log(
        [Exposure("exp1", "control", "007", T0 + timedelta(hours=3)), Exposure("exp9", "control", "1", T0)]
    )
    assert log.export(tmp_path / "exposures.parquet", experiment="exp1") == 2
    frame = read_table(tmp_path, "exposures")
    assert list(frame.columns) == ["experiment", "variant", "unit_id", "ts"]
    assert sorted(frame["unit_id"]) == ["007", "008"]  # ids stay strings with their leading zeros
    units = first_exposures(frame, experiment="exp1")
    assert units.set_index("unit_id")["first_ts"].to_dict() == {
        "007": pd.Timestamp(T0),
        "008": pd.Timestamp(T0),
    }
    assert not list(tmp_path.glob(".*tmp"))


def test_a_batch_is_durable_once_log_returns(tmp_path: Path) -> None:
    """A writer process that dies right after ``log`` returns (no close, no flush) lost nothing."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    script = textwrap.dedent(
        f"""
        import os
        from datetime import datetime
        from experiments.exposures import Exposure, ExposureLog
        log = ExposureLog({url!r})
        log.log([Exposure("exp1", "control", f"u{{i}}", datetime(2024, 5, 1)) for i in range(500)])
        print("acknowledged", flush=True)
        os._exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "acknowledged", done.stderr
    reader = ExposureLog(url)
    assert len(reader.read()) == 500
    with reader.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL: commit waits for fsync


def test_group_commit_keeps_every_writers_exposures_in_fewer_transactions(log: ExposureLog) -> None:
    commits: list[int] = []
    plain_log = log.log

    def counted(exposures: Iterable[Exposure]) -> LogReceipt:
        items = list(exposures)
        commits.append(len(items))
        time.sleep(0.005)  # a commit that takes a while, as a flushed one does: writers pile up behind it
        return plain_log(items)

    log.log = counted  # type: ignore[method-assign]
    shared = GroupCommit(log)
    receipts: list[LogReceipt] = []

    def writer(w: int) -> None:
        for i in range(25):
            receipts.append(
                shared.log([Exposure("exp", f"v{w % 2}", f"u{w}-{i}", T0 + timedelta(seconds=i))])
            )

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()

    frame = log.read(experiment="exp")
    assert len(frame) == 12 * 25 == sum(commits) == sum(r.units for r in receipts)
    expected = {f"u{w}-{i}": f"v{w % 2}" for w in range(12) for i in range(25)}
    assert dict(zip(frame["unit_id"], frame["variant"], strict=True)) == expected
    assert len(commits) < 12 * 25 / 2  # writers shared commits
    with pytest.raises(StoreError, match="closed"):
        shared.log([Exposure("exp", "v0", "late", T0)])


def test_group_commit_gives_a_failed_commit_to_every_writer_in_it(log: ExposureLog) -> None:
    def failing(exposures: Iterable[Exposure]) -> LogReceipt:
        list(exposures)
        raise StoreError("database is gone")

    log.log = failing  # type: ignore[method-assign]
    shared = GroupCommit(log)
    errors: list[str] = []

    def writer(w: int) -> None:
        try:
            shared.log([Exposure("exp", "v", f"u{w}", T0)])
        except StoreError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    shared.close()
    assert errors == ["database is gone"] * 5
