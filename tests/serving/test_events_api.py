"""``POST /v1/events``: rows checked as ingest checks them, good ones stored durably before the 202, read by
the next feature run, and reflected at once in the user's recommendations."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contract import INCOMING, INCOMING_SCHEMA, incoming_paths
from features.job import build_features, run_job, snapshot_path
from serving.auth import Role
from serving.events import add_to_recommender, record_events
from simulator.simulate import WorldConfig, simulate
from tests.serving.conftest import Served
from training.recommend import RecommenderTuning, train_and_register
from training.recommenders.service import Recommender
from training.registry import default_tracking_uri

AS_OF = date(2025, 3, 20)  # day 78 of 90
GOOD = {"user_id": "u000001", "ts": "2025-03-10T10:00:00Z", "event_type": "view", "item_id": "i0001"}


@pytest.fixture(scope="module")
def api(make_api: Callable[[Path], Served], tmp_path_factory: pytest.TempPathFactory) -> Served:
    """An app over a world of its own (the tests write events into it) with a small ALS champion."""
    folder = tmp_path_factory.mktemp("events")
    simulate(WorldConfig(n_users=300, days=90, seed=1), folder)
    train_and_register(
        data_dir=folder,
        as_of=AS_OF,
        horizon=10,
        tracking_uri=default_tracking_uri(folder),
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 3}]}),
    )
    return make_api(folder)


def _post(api: Served, events: list[dict[str, object]], role: Role = "app") -> dict[str, object]:
    answer = api.client.post("/v1/events", json={"events": events}, headers=api.headers(role))
    assert answer.status_code == 202, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_a_mixed_batch_keeps_the_good_rows_and_names_each_bad_one(api: Served) -> None:
    before = set(incoming_paths(api.folder))
    events: list[dict[str, object]] = [
        {**GOOD, "user_id": "mixed-1"},
        {**GOOD, "user_id": None},
        {**GOOD, "user_id": "mixed-2", "ts": "2025-03-10T10:00:00+02:00", "amount": 3.0},
        {**GOOD, "user_id": "u" * 129},
        {**GOOD, "user_id": "bad\x07id"},
        {**GOOD, "ts": "last tuesday"},
        {**GOOD, "ts": "2999-01-01T00:00:00Z"},
        {**GOOD, "event_type": "click"},
        {**GOOD, "event_type": "purchase", "amount": -2.0},
        {**GOOD, "user_id": "mixed-3", "event_type": "refund", "amount": -2.0},
        {**GOOD, "user_id": "mixed-4", "event_type": "purchase", "amount": 12.5, "session_id": "s-1"},
    ]
    body = _post(api, events)
    assert body == {
        "accepted": 4,
        "rejected": [
            {"row": 1, "reason": "missing user_id"},
            {"row": 3, "reason": "user_id over 128 characters"},
            {"row": 4, "reason": "user_id has control characters"},
            {"row": 5, "reason": "unparsable ts"},
            {"row": 6, "reason": "ts in the future"},
            {"row": 7, "reason": "unknown event type"},
            {"row": 8, "reason": "negative amount on purchase"},
        ],
    }
    [path] = set(incoming_paths(api.folder)) - before
    stored = pq.read_table(path)
    assert stored.schema.equals(INCOMING_SCHEMA, check_metadata=True)
    frame = stored.to_pandas()
    assert frame["user_id"].tolist() == ["mixed-1", "mixed-2", "mixed-3", "mixed-4"]
    assert frame["ts"].iloc[1] == pd.Timestamp("2025-03-10 08:00:00")  # stored as naive UTC
    assert frame["amount"].iloc[3] == 12.5


def test_a_non_finite_amount_is_refused_by_row(api: Served) -> None:
    # JSON has no NaN or Infinity, but Python's decoder (and so the API) reads them
    content = (
        '{"events": [{"user_id": "nf", "ts": "2025-03-10", "event_type": "view", "amount": NaN},'
        ' {"user_id": "nf", "ts": "2025-03-10", "event_type": "view", "amount": Infinity}]}'
    )
    answer = api.client.post(
        "/v1/events", content=content, headers={**api.headers("app"), "Content-Type": "application/json"}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": 0,
        "rejected": [{"row": 0, "reason": "non-finite amount"}, {"row": 1, "reason": "non-finite amount"}],
    }


def test_the_file_is_on_disk_and_fsynced_before_the_answer(
    api: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    _post(api, [{**GOOD, "user_id": "first"}])  # the folder exists: a new one would fsync its parent too
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("serving.events.os.fsync", spy)
    before = set(incoming_paths(api.folder))
    body = _post(api, [{**GOOD, "user_id": "durable"}])
    assert body == {"accepted": 1, "rejected": []}
    [path] = set(incoming_paths(api.folder)) - before
    assert pd.read_parquet(path)["user_id"].tolist() == ["durable"]
    assert path.name.startswith("events-") and path.name.endswith(".parquet")
    # the file under its temporary name, then the folder after the rename
    assert [Path(p).name for p in synced] == [f".{path.name}.tmp", INCOMING]
    assert not list((api.folder / INCOMING).glob(".*.tmp"))


def test_an_all_bad_batch_writes_no_file(api: Served) -> None:
    before = incoming_paths(api.folder)
    body = _post(api, [{**GOOD, "event_type": "click"}])
    assert body == {"accepted": 0, "rejected": [{"row": 0, "reason": "unknown event type"}]}
    assert incoming_paths(api.folder) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": [GOOD] * 1001}, "events"),
        ({"events": []}, "events"),
        ({}, "events"),
        ({"events": [{**GOOD, "colour": "red"}]}, "colour"),
        ({"events": [{**GOOD, "amount": "a lot"}]}, "amount"),
    ],
)
def test_a_malformed_request_is_a_422_naming_the_field(
    api: Served, payload: dict[str, object], field: str
) -> None:
    before = incoming_paths(api.folder)
    answer = api.client.post("/v1/events", json=payload, headers=api.headers("app"))
    assert answer.status_code == 422, answer.text
    assert any(field in map(str, error["loc"]) for error in answer.json()["detail"])
    assert incoming_paths(api.folder) == before


def test_keys_and_roles_and_the_body_limit(api: Served) -> None:
    payload = {"events": [GOOD]}
    assert api.client.post("/v1/events", json=payload).status_code == 401
    assert (
        api.client.post("/v1/events", json=payload, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    forbidden = api.client.post("/v1/events", json=payload, headers=api.headers("operator"))
    assert forbidden.status_code == 403 and "operator" in forbidden.json()["detail"]
    assert api.client.post("/v1/events", json=payload, headers=api.headers("analyst")).status_code == 403
    big = b'{"events": [], "pad": "' + b"x" * 1_000_001 + b'"}'
    answer = api.client.post(
        "/v1/events", content=big, headers={**api.headers("app"), "Content-Type": "application/json"}
    )
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known while reading
        yield b'{"events": [], "pad": "'
        for _ in range(11):
            yield b"x" * 100_000
        yield b'"}'

    answer = api.client.post(
        "/v1/events", content=chunks(), headers={**api.headers("app"), "Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and "1,000,000 bytes" in answer.json()["detail"]


def test_the_schema_documents_the_endpoint_with_examples(api: Served) -> None:
    schema = api.client.get("/openapi.json").json()
    post = schema["paths"]["/v1/events"]["post"]
    assert "202" in post["responses"]
    parts = schema["components"]["schemas"]
    assert parts["EventBatch"]["examples"][0]["events"][1]["event_type"] == "purchase"
    assert parts["EventsAccepted"]["examples"][0]["rejected"][0]["row"] == 2
    assert parts["Event"]["properties"]["ts"]["examples"] == ["2025-03-19T12:30:00Z"]


def _recommended(api: Served, user: str) -> list[str]:
    answer = api.client.get(
        f"/v1/users/{user}/recommendations?k=10&exclude_purchased=true", headers=api.headers("app")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["source"] == "model"
    return [item["item_id"] for item in answer.json()["items"]]


def test_a_purchase_leaves_the_users_recommendations_at_once(api: Served) -> None:
    user = "u000002"
    first = _recommended(api, user)
    top = first[0]
    body = _post(
        api, [{"user_id": user, "ts": "2025-03-25T09:00:00Z", "event_type": "purchase", "item_id": top}]
    )
    assert body == {"accepted": 1, "rejected": []}
    after = _recommended(api, user)
    assert top not in after and after != first


def test_a_new_users_first_events_give_them_model_recommendations(api: Served) -> None:
    user = "brand-new-user"
    answer = api.client.get(f"/v1/users/{user}/recommendations", headers=api.headers("app")).json()
    assert answer["source"] == "fallback"
    popular = [item["item_id"] for item in answer["items"]]
    _post(api, [{**GOOD, "user_id": user, "item_id": popular[0], "event_type": "purchase", "amount": 5.0}])
    assert popular[0] not in _recommended(api, user)


def _live(api: Served, user: str) -> tuple[dict[int, float], set[int]] | None:
    recommender = api.client.app.state.models.get().recommender  # type: ignore[attr-defined]
    live: tuple[dict[int, float], set[int]] | None = recommender._live.get(user)
    return live


def test_events_stored_by_one_worker_reach_another_at_once(
    api: Served, make_api: Callable[[Path], Served]
) -> None:
    """Two workers over one folder: a purchase posted to one leaves the user's list on the other at its
    next request, and both end with the same live history (the file is applied once on each)."""
    other = make_api(api.folder)
    user = "u000005"
    first = _recommended(other, user)
    body = _post(
        api,
        [
            {"user_id": user, "ts": "2025-03-26T09:00:00Z", "event_type": "view", "item_id": first[1]},
            {"user_id": user, "ts": "2025-03-26T09:05:00Z", "event_type": "purchase", "item_id": first[0]},
        ],
    )
    assert body == {"accepted": 2, "rejected": []}
    after = _recommended(other, user)
    assert first[0] not in after and after != first
    _recommended(other, user)  # a further look applies nothing twice
    assert _live(other, user) == _live(api, user) is not None


def test_a_worker_loaded_later_serves_what_was_stored_since_training(
    api: Served, make_api: Callable[[Path], Served]
) -> None:
    """Events stored before a worker loads its models: those from the models' training date on are in its
    live histories; an older one (its training data already had the day) is not added again."""
    _post(
        api,
        [
            {"user_id": "later-1", "ts": "2025-03-27T10:00:00Z", "event_type": "view", "item_id": "i0002"},
            {"user_id": "earlier-1", "ts": "2025-03-01T10:00:00Z", "event_type": "view", "item_id": "i0002"},
        ],
    )
    fresh = make_api(api.folder)
    assert _live(fresh, "later-1") is not None
    assert _live(fresh, "earlier-1") is None
    assert _live(api, "earlier-1") is not None  # the worker that stored it serves it at once


def test_a_posted_event_changes_the_next_feature_snapshot(api: Served, tmp_path: Path) -> None:
    """Features as of D are kept; an event for D - 1 day is posted; the daily run as of D + 1 equals a
    fresh full build and sees the event."""
    day = pd.Timestamp("2025-03-15")
    out = tmp_path / "features"
    run_job(api.folder, [day], out, write_online=False)
    snap = pd.read_parquet(snapshot_path(out, day)).set_index("user_id")
    user = str(snap["days_since_last_event"].idxmax())
    assert snap.loc[user, "days_since_last_event"] > 2
    late = (day - pd.Timedelta(days=1) + pd.Timedelta(hours=10)).isoformat() + "Z"
    _post(api, [{"user_id": user, "ts": late, "event_type": "view"}])
    nxt = day + pd.Timedelta(days=1)
    run_job(api.folder, [nxt], out, write_online=False)
    got = pd.read_parquet(snapshot_path(out, nxt))
    pd.testing.assert_frame_equal(got, build_features(api.folder, nxt))
    assert got.set_index("user_id").loc[user, "days_since_last_event"] == 2


def test_events_are_stored_when_no_recommender_is_loaded(
    make_api: Callable[[Path], Served], tmp_path: Path
) -> None:
    simulate(WorldConfig(n_users=50, days=30, seed=2), tmp_path)
    api = make_api(tmp_path)
    assert api.client.get("/readyz").status_code == 503
    assert _post(api, [GOOD]) == {"accepted": 1, "rejected": []}
    assert len(incoming_paths(tmp_path)) == 1


def _add_together(recommender: Recommender, batch: pd.DataFrame, start: threading.Barrier) -> None:
    start.wait()
    add_to_recommender(recommender, batch)


def test_concurrent_updates_of_one_user_lose_nothing(api: Served) -> None:
    """Many threads add events for the same (known) user at once: every event ends in the live history,
    and no thread fails. Threads switch as often as the interpreter allows, so a race would show."""
    recommender = api.client.app.state.models.get().recommender  # type: ignore[attr-defined]
    every = recommender.item_ids.tolist()
    items = every[:40]
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for user in recommender.user_ids[10:40].tolist():
            batches = [
                pd.DataFrame(
                    {
                        "user_id": [user] * 5,
                        "ts": pd.Timestamp("2025-03-01") + pd.to_timedelta(range(5), unit="min"),
                        "event_type": ["view"] * 5,
                        "item_id": items[i * 5 : i * 5 + 5],
                    }
                )
                for i in range(8)
            ]
            start = threading.Barrier(len(batches))

            with ThreadPoolExecutor(len(batches)) as pool:
                list(pool.map(_add_together, [recommender] * len(batches), batches, [start] * len(batches)))
            unseen = recommender.recommend(user, len(every), exclude_seen=True, exclude_unavailable=False)
            assert set(items) <= set(every) - set(unseen.item_ids), user
    finally:
        sys.setswitchinterval(before)


def test_the_service_is_callable_without_http(tmp_path: Path) -> None:
    recorded = record_events(data=tmp_path, events=[GOOD, {**GOOD, "ts": None}])
    assert recorded.accepted == 1 and [(r.row, r.reason) for r in recorded.rejected] == [(1, "missing ts")]
    assert recorded.path is not None and recorded.path.parent == tmp_path / INCOMING
