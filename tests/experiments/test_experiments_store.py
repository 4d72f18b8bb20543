"""The experiment store on SQLite and on the PostgreSQL server: lifecycle, guarded edits, change log."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import inspect

from experiments.assignment import assign_many
from experiments.db import make_engine
from experiments.definitions import Experiment, edits, parse_targeting, parse_variants
from experiments.errors import StoreError
from experiments.exposures import ExposureLog
from experiments.store import ExperimentStore


@pytest.fixture
def store(sql_target: tuple[str, str]) -> Iterator[ExperimentStore]:
    url, prefix = sql_target
    opened = ExperimentStore(url, table_prefix=prefix)
    yield opened
    opened.drop_tables()
    assert (
        not any(name.startswith(prefix) for name in inspect(opened.engine).get_table_names()) or prefix == ""
    )
    opened.engine.dispose()


def ab(key: str = "exp1", **fields: object) -> Experiment:
    return Experiment(key=key, variants=("control", "treatment"), weights=(50, 50), **fields)  # type: ignore[arg-type]


def test_create_read_list_round_trip(store: ExperimentStore) -> None:
    created = store.create(
        ab(
            metrics=("conversion",),
            guardrails=("any:refund",),
            description="new checkout",
            coverage_buckets=2500,
        )
    )
    assert created.status == "draft" and created.revision == 1 and created.created_at is not None
    read = store.get("exp1")
    assert read == created
    assert read.salt == "exp1" and read.coverage == 0.25 and read.guardrails == ("any:refund",)
    store.create(ab("exp0"))
    assert [e.key for e in store.list_experiments()] == ["exp0", "exp1"]
    assert store.find("missing") is None
    with pytest.raises(StoreError, match="already exists"):
        store.create(ab())
    with pytest.raises(StoreError, match="no experiment"):
        store.get("missing")


def test_lifecycle_only_moves_forward(store: ExperimentStore) -> None:
    store.create(ab())
    with pytest.raises(StoreError):
        store.stop("exp1")  # a draft cannot be stopped
    running = store.start("exp1")
    assert running.status == "running" and running.started_at is not None
    with pytest.raises(StoreError):
        store.start("exp1")
    stopped = store.stop("exp1")
    assert stopped.status == "stopped" and stopped.stopped_at is not None
    with pytest.raises(StoreError):
        store.start("exp1")
    assert [e.key for e in store.list_experiments(status="stopped")] == ["exp1"]


def test_running_weights_are_refused_unless_forced_and_every_change_is_recorded(
    store: ExperimentStore,
) -> None:
    store.create(ab())
    store.update("exp1", weights=(70, 30))  # a draft is edited freely
    store.start("exp1")
    with pytest.raises(StoreError, match="force"):
        store.update("exp1", weights=(50, 50))
    with pytest.raises(StoreError, match="force"):
        store.update("exp1", salt="other-salt")
    assert store.get("exp1").weights == (70, 30)
    store.update("exp1", coverage_buckets=5000)  # coverage may change while running
    forced = store.update("exp1", weights=(50, 50), force=True)
    assert forced.weights == (50, 50)
    store.stop("exp1")
    with pytest.raises(StoreError, match="stopped"):
        store.update("exp1", description="too late", force=True)

    log = store.history("exp1")
    assert [c.action for c in log] == ["create", "update", "start", "update", "update", "stop"]
    assert [c.forced for c in log] == [False, False, False, False, True, False]
    assert log[1].before["variants"][0]["weight"] == 50 and log[1].after["variants"][0]["weight"] == 70
    assert log[3].before == {"coverage": 1.0} and log[3].after == {"coverage": 0.5}
    assert log[4].after["variants"] == [
        {"name": "control", "weight": 50},
        {"name": "treatment", "weight": 50},
    ]
    assert store.get("exp1").revision == 6


def test_unchanged_update_records_nothing(store: ExperimentStore) -> None:
    store.create(ab())
    store.update("exp1", weights=[50, 50])
    assert [c.action for c in store.history("exp1")] == ["create"]
    with pytest.raises(StoreError, match="cannot edit"):
        store.update("exp1", status="running")


def test_layer_slices_never_overlap_and_stopping_frees_them(store: ExperimentStore) -> None:
    a = store.create(ab("a", layer="home"), layer_share=0.6)
    b = store.create(ab("b", layer="home"), layer_share=0.4)
    assert a.layer_slice == (0, 6000) and b.layer_slice == (6000, 10_000)
    with pytest.raises(StoreError, match="no free range"):
        store.create(ab("c", layer="home"), layer_share=0.1)
    with pytest.raises(StoreError, match="overlaps"):
        store.create(ab("d", layer="home", layer_slice=(5000, 7000)))
    other = store.create(ab("e", layer="search"), layer_share=1.0)
    assert other.layer_slice == (0, 10_000)
    store.start("a")
    store.stop("a")
    assert store.create(ab("c", layer="home"), layer_share=0.1).layer_slice == (0, 1000)
    ids = [f"u{i}" for i in range(50_000)]
    in_b = np.array([v is not None for v in assign_many(design=store.get("b").design(), unit_ids=ids)[0]])
    in_c = np.array([v is not None for v in assign_many(design=store.get("c").design(), unit_ids=ids)[0]])
    assert in_b.any() and in_c.any() and not np.any(in_b & in_c)


def test_concurrent_layer_allocations_do_not_overlap(store: ExperimentStore) -> None:
    errors: list[Exception] = []

    def create(i: int) -> None:
        try:
            store.create(ab(f"x{i}", layer="busy"), layer_share=0.1)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    slices = sorted(e.layer_slice for e in store.list_experiments() if e.layer == "busy")
    assert len(slices) == 8
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(slices))


def test_holdout_setting_is_stored_and_logged(store: ExperimentStore) -> None:
    assert store.holdout().buckets == 0
    store.set_holdout(fraction=0.05, salt="h2024")
    held = store.holdout()
    assert (held.salt, held.buckets) == ("h2024", 500)
    store.set_holdout(fraction=0.1, salt="h2024")
    assert store.holdout().buckets == 1000
    log = store.history("*")
    assert [c.after["buckets"] for c in log] == [500, 1000] and log[1].before["buckets"] == 500


def test_invalid_definitions_are_refused(store: ExperimentStore) -> None:
    with pytest.raises(StoreError, match="must be 1-64 characters"):
        ab("bad key!")
    store.create(ab())
    with pytest.raises(StoreError):
        store.update("exp1", weights=(1, 0))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: parse_variants("control=1,treatment=x"), "positive integer"),
        (lambda: parse_variants("control,bad:name"), "variant name"),
        (lambda: parse_targeting(["country~FR"]), "cannot read targeting rule"),
        (lambda: parse_targeting(["age>=old"]), "takes a number"),
        (lambda: edits(coverage=1.5), "coverage"),
        (lambda: Experiment(key="x", variants=("a", "b"), weights=(1, 0)), "positive integer weight"),
        (lambda: ab(status="paused"), "unknown status"),
    ],
)
def test_definition_text_is_refused_by_name(build: object, reason: str) -> None:
    with pytest.raises(StoreError, match=reason):
        build()  # type: ignore[operator]


def test_edits_hold_only_what_was_given() -> None:
    assert edits() == {}
    assert edits(variants="control=3,t=1", targeting=[]) == {
        "variants": ("control", "t"),
        "weights": (3, 1),
        "targeting": (),
    }


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere", "someone:***@127.0.0.1:1/nowhere"),
        ("sqlite:////nonexistent-folder/store.sqlite", "unable to open database file"),
        ("mysql://someone:s3cret@localhost/db", "SQLite or PostgreSQL, not mysql"),
        ("not a url", "database (unreadable URL)"),
    ],
)
def test_a_database_that_cannot_be_reached_is_one_named_line(url: str, reason: str) -> None:
    for opener in (ExperimentStore, ExposureLog):
        with pytest.raises(StoreError) as caught:
            opener(url)
        message = str(caught.value)
        assert reason in message and "s3cret" not in message and "\n" not in message, message


def test_a_database_lost_after_opening_is_a_store_error(tmp_path: object) -> None:
    opened = ExperimentStore(f"sqlite:///{tmp_path}/store.sqlite")  # type: ignore[str-bytes-safe]
    opened.drop_tables()  # as if someone else had dropped them
    with pytest.raises(StoreError, match="no such table"):
        opened.list_experiments()
    with pytest.raises(StoreError, match="unknown status"):
        opened.list_experiments(status="paused")


def test_postgres_connections_give_up_in_seconds(postgres_url: str) -> None:
    """A PostgreSQL server that never answers fails a command after ``CONNECT_TIMEOUT`` seconds, not
    never; a ``connect_timeout`` the URL names wins."""
    for url, seconds in ((postgres_url, "10"), (f"{postgres_url}?connect_timeout=3", "3")):
        engine = make_engine(url)
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == seconds
        engine.dispose()
