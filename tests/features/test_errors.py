"""A failure that is the user's to fix raises a named :class:`FeaturesError` with one line naming the file,
the column or the date; the command line prints that line and exits with 1, without a traceback."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import load_table, read_raw, write_table
from features.daily import locked
from features.errors import ContractError, DataError, FeaturesError, JobBusyError, StoreError
from features.ingest import ingest, parse_mapping
from features.job import build_features, run_job
from features.labels import backtest_dates, churn_labels, training_set
from features.store import RedisStore, SQLiteStore
from tests.features.test_definitions import AS_OF, random_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The tables of a small good data folder, to copy and break one thing at a time."""
    return random_world(tmp_path_factory.mktemp("good"), 2, n_users=15)


def _folder(path: Path, tables: dict[str, pd.DataFrame], **replaced: pd.DataFrame | None) -> Path:
    """A data folder of ``tables`` as Parquet, with some replaced (or left out when None)."""
    for name, frame in {**tables, **replaced}.items():
        if frame is not None:
            write_table(frame, path / f"{name}.parquet")
    return path


def _raises(kind: type[FeaturesError], match: str, run: Callable[[], object]) -> str:
    """``run()`` raises ``kind``, a FeaturesError, with one line that matches ``match``."""
    with pytest.raises(kind, match=match) as caught:
        run()
    assert isinstance(caught.value, FeaturesError)
    text = str(caught.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------------- files that cannot be read
def test_a_truncated_parquet_file_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path, world)
    path = data / "events.parquet"
    path.write_bytes(path.read_bytes()[:300])
    for run in (
        lambda: build_features(data, AS_OF),
        lambda: load_table(data, "events"),
        lambda: read_raw(path),
        lambda: run_job(data, [AS_OF], write_online=False),
    ):
        text = _raises(ContractError, "cannot be read as Parquet", run)
        assert str(path) in text
    assert not (data / "features").exists()  # refused before anything is made


def test_a_parquet_file_named_csv_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path, world, events=None)
    write_table(world["events"], tmp_path / "events.tmp.parquet")
    (tmp_path / "events.tmp.parquet").rename(data / "events.csv")
    for run in (lambda: build_features(data, AS_OF), lambda: load_table(data, "events")):
        _raises(ContractError, r"events\.csv: cannot be read as CSV: it is a Parquet file", run)


def test_a_csv_file_named_parquet_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path, world)
    world["events"].to_csv(data / "events.parquet", index=False)
    for run in (lambda: build_features(data, AS_OF), lambda: load_table(data, "events")):
        _raises(ContractError, r"events\.parquet: cannot be read as Parquet", run)


def test_an_empty_csv_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text("")
    _raises(ContractError, r"events\.csv: cannot be read as CSV", lambda: read_raw(tmp_path / "events.csv"))
    _raises(ContractError, "unknown file kind", lambda: read_raw(_touch(tmp_path / "events.xlsx")))


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


# --------------------------------------------------------------------------- tables that break the contract
@pytest.mark.parametrize(("table", "column"), [("events", "event_type"), ("users", "signup_ts")])
def test_a_missing_column_names_the_file_and_the_column(
    tmp_path: Path, world: dict[str, pd.DataFrame], table: str, column: str
) -> None:
    data = _folder(tmp_path, world, **{table: world[table].drop(columns=column)})
    text = _raises(ContractError, f"missing required column.*{column}", lambda: build_features(data, AS_OF))
    assert f"{table}.parquet" in text
    text = _raises(ContractError, f"missing required column.*{column}", lambda: load_table(data, table))
    assert f"{table}.parquet" in text


def test_a_time_column_that_holds_text_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path, world, events=None)
    events = world["events"].astype({"ts": str})
    events.loc[3, "ts"] = "last tuesday"
    events.to_csv(data / "events.csv", index=False)
    _raises(ContractError, r"events\.csv: column ts is read as string", lambda: build_features(data, AS_OF))
    _raises(ContractError, "1 row.*unparsable ts", lambda: load_table(data, "events"))


@pytest.mark.parametrize(
    ("table", "column", "value", "what"),
    [("events", "amount", "twelve", "numbers"), ("users", "signup_ts", "someday", "times")],
)
def test_a_value_that_does_not_cast_is_named(
    tmp_path: Path, world: dict[str, pd.DataFrame], table: str, column: str, value: str, what: str
) -> None:
    data = _folder(tmp_path, world, **{table: None})
    frame = world[table].astype({column: object})
    frame.loc[2, column] = value
    frame.to_csv(data / f"{table}.csv", index=False)
    text = _raises(
        ContractError,
        f"column {column} holds 1 value.* not {what} .one is '{value}'",
        lambda: build_features(data, AS_OF),
    )
    assert f"{table}.csv" in text
    # an empty column is no error: it was typed as text for want of values (a users file with no
    # rows too; an events file with none cannot be read, see above)
    frame[column] = None
    frame.to_csv(data / f"{table}.csv", index=False)
    build_features(data, AS_OF)
    if table == "users":
        frame.iloc[:0].to_csv(data / f"{table}.csv", index=False)
        assert build_features(data, AS_OF).empty


def test_a_folder_without_events_is_named(tmp_path: Path) -> None:
    _raises(ContractError, "no events.parquet or events.csv", lambda: build_features(tmp_path, AS_OF))


def test_an_unknown_output_kind_is_named(tmp_path: Path) -> None:
    _raises(
        ContractError,
        "unknown output kind",
        lambda: write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx"),
    )


def test_an_output_folder_that_is_a_file_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path / "data", world)
    taken = _touch(tmp_path / "taken")
    _raises(ContractError, "taken: is a file; --out names", lambda: run_job(data, [AS_OF], taken))
    _raises(ContractError, "is a file", lambda: ingest(data / "events.parquet", taken))


# -------------------------------------------------------------------------------------------------- ingest
def test_ingest_names_what_does_not_fit(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"who": ["1"], "user_id": ["2"], "when": ["2025-01-01"], "what": ["view"]}).to_csv(
        source, index=False
    )
    out = tmp_path / "out"
    _raises(ContractError, "--map: 'user_id' is not of the form", lambda: parse_mapping("user_id"))
    _raises(ContractError, "unknown preset 'shopify'", lambda: ingest(source, out, preset="shopify"))
    _raises(ContractError, "unknown time zone 'Mars/Olympus'", lambda: ingest(source, out, tz="Mars/Olympus"))
    text = _raises(
        ContractError,
        "column.*user_id would appear twice",
        lambda: ingest(source, out, mapping={"user_id": "who", "ts": "when", "event_type": "what"}),
    )
    assert str(source) in text
    text = _raises(
        ContractError, "no column ts.*--map ts=COLUMN", lambda: ingest(source, out, event_type="view")
    )
    assert str(source) in text
    text = _raises(
        ContractError, "online-retail: the file lacks", lambda: ingest(source, out, preset="online-retail")
    )
    assert str(source) in text
    _raises(ContractError, "no such file", lambda: ingest(tmp_path / "nope.csv", out, event_type="view"))
    assert not out.exists()  # nothing is written when the input cannot be read


# -------------------------------------------------------------------------- requests the data cannot serve
def test_an_as_of_that_is_not_a_date_is_named(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path, world)
    _raises(DataError, "as-of 'soon' is not a date", lambda: build_features(data, "soon"))
    _raises(DataError, "not a date .UTC midnight", lambda: build_features(data, "2025-05-01 10:00"))
    _raises(DataError, "not a date", lambda: run_job(data, ["2025-02-30"], write_online=False))
    assert not (data / "features").exists()


def test_labels_name_the_window_the_data_cannot_serve(tmp_path: Path, world: dict[str, pd.DataFrame]) -> None:
    data = _folder(tmp_path / "data", world)
    end = world["events"]["ts"].max().normalize() + pd.Timedelta(days=1)
    _raises(DataError, "reaches past the data", lambda: churn_labels(data, end - pd.Timedelta(days=5), 30))
    _raises(DataError, "horizon must be at least 1 day", lambda: churn_labels(data, AS_OF, 0))
    _raises(DataError, "unknown label 'revenue'", lambda: training_set(data, AS_OF, label="revenue"))
    _raises(DataError, "step and n must be at least 1", lambda: backtest_dates(AS_OF, 30, step=0))
    empty = _folder(tmp_path / "empty", world, events=world["events"].iloc[:0])
    _raises(
        DataError, r"events\.parquet: the events table has no rows", lambda: churn_labels(empty, AS_OF, 30)
    )


# ---------------------------------------------------------------------------------------- lock and store
def test_a_held_lock_is_named(tmp_path: Path) -> None:
    def run_beside() -> None:
        with locked(tmp_path / "features"):
            pass

    with locked(tmp_path / "features"):  # a second open file's flock conflicts, even in one process
        text = _raises(JobBusyError, "another feature job or ingest is writing", run_beside)
    assert str(tmp_path / "features") in text
    run_beside()  # free again


def test_an_online_store_that_cannot_be_used_is_named(tmp_path: Path) -> None:
    _raises(
        StoreError, "Redis URL: Redis URL must specify", lambda: RedisStore.from_url("http://localhost:6379")
    )
    unreachable = RedisStore.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    _raises(StoreError, "does not answer", unreachable.as_of)
    _raises(StoreError, "does not answer", lambda: unreachable.get(["u1"]))
    path = _touch(tmp_path / "features.sqlite")
    path.write_bytes(b"not a database, just bytes" * 10)
    text = _raises(StoreError, "cannot be read as the online store", SQLiteStore(path).as_of)
    assert str(path) in text
    with sqlite3.connect(tmp_path / "other.sqlite") as db:  # a database, but not an online store
        db.execute("CREATE TABLE t (a)")
    db.close()
    _raises(
        StoreError,
        "cannot be read as the online store",
        lambda: SQLiteStore(tmp_path / "other.sqlite").get(["u"]),
    )


# ------------------------------------------------------------------------------------------------- the CLI
def test_the_cli_says_each_in_one_line_with_exit_code_1(
    tmp_path: Path, world: dict[str, pd.DataFrame]
) -> None:
    from userops.cli import app

    data = _folder(tmp_path / "data", world)
    path = data / "events.parquet"
    path.write_bytes(path.read_bytes()[:300])
    runner = CliRunner()
    for args, said in [
        (
            ["features", "--data", str(data), "--as-of", "2025-05-01", "--no-online"],
            "cannot be read as Parquet",
        ),
        (["ingest", "--events", str(path), "--out", str(tmp_path / "o"), "--preset", "x"], "unknown preset"),
        (
            ["ingest", "--events", str(path), "--out", str(tmp_path / "o"), "--map", "user_id"],
            "not of the form",
        ),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert said in result.output and "Traceback" not in result.output
        assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
