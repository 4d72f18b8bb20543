"""Online stores: what is written comes back with its types, in the order asked, on SQLite and real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.job import build_features
from features.store import OnlineStore, RedisStore, SQLiteStore
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
    wanted = list(snapshot["user_id"].iloc[[7, 2, 30]]) + ["nobody"]
    got = store.get(wanted)
    expected = snapshot.set_index("user_id").loc[wanted[:3]].reset_index()
    pd.testing.assert_frame_equal(got, expected)
    assert snapshot.isna().any().any(), "the snapshot has nulls, so their round trip is tested"
    everything = store.get(list(snapshot["user_id"]))
    pd.testing.assert_frame_equal(everything, snapshot)
    # a new snapshot replaces the old values
    changed = snapshot.assign(events_7d=snapshot["events_7d"] + 1,
                              as_of=snapshot["as_of"] + pd.Timedelta(days=1))
    store.write(changed)
    assert store.get(wanted[:1])["events_7d"].iloc[0] == changed["events_7d"].iloc[7]
    assert store.as_of() == AS_OF + pd.Timedelta(days=1)


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

    # a write that fails part-way leaves the served snapshot whole; its half-written hash expires
    bad = fewer.astype({"rfm_segment": object}).copy()
    bad.iloc[20, bad.columns.get_loc("rfm_segment")] = {"not json"}
    with pytest.raises(TypeError):
        store.write(bad.assign(as_of=bad["as_of"] + pd.Timedelta(days=1)))
    assert store.as_of() == AS_OF + pd.Timedelta(days=2)
    pd.testing.assert_frame_equal(store.get(list(fewer["user_id"])), fewer.reset_index(drop=True))
    generation = json.loads(client.get("test:features:meta"))["generation"]
    partial = [k for k in client.scan_iter("test:features:snapshot:*")
               if client.ttl(k) > store.grace and not k.decode().endswith(generation)]
    assert len(partial) == 1 and 0 < client.hlen(partial[0]) < len(fewer)
    client.flushdb()
