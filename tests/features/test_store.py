"""Online stores: what is written comes back with its types, in the order asked, on SQLite and real Redis."""

from __future__ import annotations

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
    assert client.exists(f"test:features:user:{snapshot['user_id'].iloc[0]}")
    client.flushdb()
