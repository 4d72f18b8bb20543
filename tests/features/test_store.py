"""Online stores: what is written comes back with its types, in the order asked, on SQLite and real Redis."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from features.errors import StoreError
from features.job import build_features
from features.store import OnlineStore, RedisStore, SQLiteStore, json_documents
from tests.features.test_definitions import AS_OF, random_world


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("world")
    random_world(path, 21, n_users=50)
    return build_features(path, AS_OF)


def _check(store: OnlineStore, snapshot: pd.DataFrame) -> None:
    assert store.as_of() is None or store.as_of() != AS_OF
    assert store.write(snapshot) == len(snapshot)
    assert store.as_of() == AS_OF
    wanted = [*snapshot["user_id"].iloc[[7, 2, 30]], "nobody"]
    got = store.get(wanted)
    expected = snapshot.set_index("user_id").loc[wanted[:3]].reset_index()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert snapshot.isna().any().any(), "the snapshot has nulls, so their round trip is tested"
    everything = store.get(list(snapshot["user_id"]))
    pd.testing.assert_frame_equal(everything, snapshot, check_exact=True)
    # a new snapshot replaces the old values
    changed = snapshot.assign(
        events_7d=snapshot["events_7d"] + 1, as_of=snapshot["as_of"] + pd.Timedelta(days=1)
    )
    store.write(changed)
    assert store.get(wanted[:1])["events_7d"].iloc[0] == changed["events_7d"].iloc[7]
    assert store.as_of() == AS_OF + pd.Timedelta(days=1)


def test_json_documents_read_back_exactly_as_the_standard_library_writes_them() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ['u"1', "u\\2", "ü\n3", "u4", "u5", "u6"],
            "as_of": pd.to_datetime(
                ["2025-05-01 00:00:00", "2025-05-01 12:30:01.000250", None, *["2025-05-01 00:00:00"] * 3],
                format="ISO8601",
            ).astype("datetime64[us]"),
            "x": [0.1, 1 / 3, float("nan"), -0.0, 1e22, 5e-324],
            "n": [0, -7, 2**62, 3, 4, 5],
            "flag": [True, False, True, False, True, False],
            "label": ["a,b", None, "c}", "", "é", "\t"],
        }
    )
    ids, docs = json_documents(frame)
    assert ids == list(frame["user_id"])
    for doc, row in zip(docs, frame.to_dict("records"), strict=True):
        expected = {
            k: (
                None
                if isinstance(v, float) and math.isnan(v)
                else None
                if v is pd.NaT
                else v.isoformat()
                if isinstance(v, pd.Timestamp)
                else v
            )
            for k, v in row.items()
        }
        got = json.loads(doc)
        assert got == json.loads(json.dumps(expected)), (doc, expected)
        assert [repr(got["x"])] == [repr(expected["x"])]  # the very same float, sign of zero included


def test_sqlite_store_round_trip(tmp_path: Path, snapshot: pd.DataFrame) -> None:
    store = SQLiteStore(tmp_path / "online" / "features.sqlite")
    with pytest.raises(FileNotFoundError):
        store.get(["u001"])
    _check(store, snapshot)
    assert not list((tmp_path / "online").glob(".*tmp"))


@pytest.mark.server
def test_redis_store_round_trip(redis_url: str, snapshot: pd.DataFrame) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    store = RedisStore(client, prefix="test:features:", batch=7)  # several pipeline batches
    with pytest.raises(FileNotFoundError):
        store.get(["u001"])
    _check(store, snapshot)
    served = json.loads(client.get("test:features:meta"))["generation"]
    assert client.ttl(f"test:features:snapshot:{served}") == -1  # the served snapshot is kept
    old = [k for k in client.scan_iter("test:features:snapshot:*") if not k.decode().endswith(served)]
    assert len(old) == 1 and 0 < client.ttl(old[0]) <= store.grace  # the replaced one expires

    # users who left the population are gone with the old snapshot, at once
    fewer = snapshot.iloc[5:].assign(as_of=snapshot["as_of"] + pd.Timedelta(days=2))
    store.write(fewer)
    left, stayed = snapshot["user_id"].iloc[0], snapshot["user_id"].iloc[6]
    assert list(store.get([left, stayed])["user_id"]) == [stayed]

    # a value that is no JSON is refused before anything is written
    bad = fewer.astype({"rfm_segment": object}).copy()
    bad.iloc[20, bad.columns.get_loc("rfm_segment")] = {"not json"}
    before = set(client.scan_iter("test:features:snapshot:*"))
    with pytest.raises(TypeError):
        store.write(bad.assign(as_of=bad["as_of"] + pd.Timedelta(days=1)))
    assert store.as_of() == AS_OF + pd.Timedelta(days=2)
    assert set(client.scan_iter("test:features:snapshot:*")) == before

    # a write that fails part-way (the connection lost at its third batch) leaves the served snapshot
    # whole; its half-written hash expires
    failing = RedisStore(_LostAtThirdBatch(client), prefix="test:features:", batch=7)
    with pytest.raises(StoreError, match=r"does not answer .*: connection lost"):
        failing.write(fewer.assign(as_of=fewer["as_of"] + pd.Timedelta(days=1)))
    assert store.as_of() == AS_OF + pd.Timedelta(days=2)
    pd.testing.assert_frame_equal(store.get(list(fewer["user_id"])), fewer.reset_index(drop=True))
    generation = json.loads(client.get("test:features:meta"))["generation"]
    partial = [
        k
        for k in client.scan_iter("test:features:snapshot:*")
        if client.ttl(k) > store.grace and not k.decode().endswith(generation)
    ]
    assert len(partial) == 1 and client.hlen(partial[0]) == 14  # two batches of 7 made it
    client.flushdb()


class _LostAtThirdBatch:
    """A real Redis client whose third pipeline fails to execute, as when the connection drops."""

    def __init__(self, client: object) -> None:
        self.client, self.pipelines = client, 0

    def pipeline(self, *args: object, **kwargs: object) -> object:
        import redis

        pipe = self.client.pipeline(*args, **kwargs)  # type: ignore[attr-defined]
        self.pipelines += 1
        if self.pipelines == 3:

            def lost() -> None:
                raise redis.ConnectionError("connection lost")

            pipe.execute = lost
        return pipe

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)
