"""The application's frame: keys and roles, health, metrics, limits, errors, reload, the keys commands."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serving.app import create_app
from serving.auth import REMEMBER_SECONDS, ROLES, KeyStore
from serving.settings import Settings
from simulator.simulate import WorldConfig, simulate
from training.recommend import RecommenderTuning, train_and_register
from training.registry import default_tracking_uri
from userops.cli import app as cli

AS_OF = date(2025, 3, 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated world with a recommender champion."""
    folder = tmp_path_factory.mktemp("served")
    simulate(WorldConfig(n_users=200, days=90, seed=3), folder)
    train_and_register(
        data_dir=folder,
        as_of=AS_OF,
        horizon=14,
        tracking_uri=default_tracking_uri(folder),
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 3}]}),
    )
    return folder


@pytest.fixture(scope="module")
def keys(folder: Path) -> dict[str, str]:
    store = KeyStore(Settings(tracking_uri=None).experiments_url_for(folder))
    return {role: store.create(role, f"test-{role}")[1] for role in ROLES}


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(tracking_uri=None), folder), raise_server_exceptions=False) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


ENDPOINTS = [
    ("GET", "/v1/users/u000001/recommendations", "app"),
    ("GET", "/v1/items/i00001/similar", "app"),
    ("POST", "/v1/admin/reload", "admin"),
]


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS)
def test_every_role_gets_what_its_role_allows_and_no_more(
    client: TestClient, keys: dict[str, str], method: str, path: str, needs: str
) -> None:
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers=_auth("uok_not-a-key")).status_code == 401
    for role, key in keys.items():
        answer = client.request(method, path, headers=_auth(key))
        allowed = role in (needs, "admin")
        assert answer.status_code == (200 if allowed else 403), (role, answer.text)
        if not allowed:
            assert role in answer.json()["detail"] and key not in answer.text


def test_a_key_is_stored_only_as_its_hash(folder: Path, keys: dict[str, str]) -> None:
    import sqlite3

    raw = (folder / "experiments.sqlite").read_bytes()
    for key in keys.values():
        assert key.encode() not in raw
    with sqlite3.connect(folder / "experiments.sqlite") as db:
        shown = [row[0] for row in db.execute("select shown from userops_api_keys")]
    assert all(len(s) == 10 for s in shown)


def test_health_readiness_and_metrics(client: TestClient, keys: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    # this world has a recommender but no churn model: not ready, and it says which is missing
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert [p for p in ready.json()["problems"] if "churn" in p] == ready.json()["problems"] != []
    client.get("/v1/users/u000001/recommendations", headers=_auth(keys["app"]))
    text = client.get("/metrics").text
    route = re.escape('method="GET",route="/v1/users/{user_id}/recommendations",status="200"')
    count = re.search(rf"userops_requests_total\{{{route}\}} (\d+)", text)
    assert count is not None and int(count.group(1)) >= 1
    buckets = [
        int(n)
        for n in re.findall(
            r'userops_request_seconds_bucket\{method="GET",route="/healthz",le="[^"]+"\} (\d+)', text
        )
    ]
    assert buckets == sorted(buckets) and buckets[-1] >= 1  # cumulative, as Prometheus reads them
    assert 'userops_model_version{model="recommender",version="1"} 1' in text
    assert 'userops_model_version{model="churn",version="none"} 1' in text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/users/u000001/recommendations?k=0", "k"),
        ("/v1/users/u000001/recommendations?k=101", "k"),
        ("/v1/users/" + "u" * 129 + "/recommendations", "user_id"),
        ("/v1/users/bad%01id/recommendations", "user_id"),
        ("/v1/items/i00001/similar?k=many", "k"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_the_field(
    client: TestClient, keys: dict[str, str], path: str, field: str
) -> None:
    answer = client.get(path, headers=_auth(keys["app"]))
    assert answer.status_code == 422
    assert field in {str(part) for problem in answer.json()["detail"] for part in problem["loc"]}


def test_a_body_over_one_megabyte_is_refused(client: TestClient, keys: dict[str, str]) -> None:
    answer = client.post("/v1/admin/reload", headers=_auth(keys["admin"]), content=b"x" * 1_000_001)
    assert answer.status_code == 413
    assert "1,000,000 bytes" in answer.json()["detail"]


def test_a_bug_is_a_bare_500_without_a_traceback(
    folder: Path, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.models import ModelHolder

    app = create_app(Settings(tracking_uri=None), folder)

    def broken(self: ModelHolder) -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(ModelHolder, "get", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/v1/users/u000001/recommendations", headers=_auth(keys["app"]))
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error: the service failed; it is logged"}


def test_recommendations_are_the_models_own_list(
    client: TestClient, keys: dict[str, str], folder: Path
) -> None:
    from training.recommend import load_recommender
    from training.registry import connect

    connect(default_tracking_uri(folder))
    model = load_recommender("models:/recommender@champion")
    expected = model.recommend("u000001", 5)
    body = client.get("/v1/users/u000001/recommendations?k=5", headers=_auth(keys["app"])).json()
    assert [i["item_id"] for i in body["items"]] == expected.item_ids
    assert body["items"][0]["score"] == pytest.approx(expected.scores[0])
    assert body["model"] == {"name": "recommender", "version": "1", "alias": "champion"}
    unknown = client.get("/v1/users/nobody/recommendations?k=5", headers=_auth(keys["app"])).json()
    assert unknown["source"] == "fallback" and len(unknown["items"]) == 5


def test_reload_keeps_serving_and_says_what_it_loaded(client: TestClient, keys: dict[str, str]) -> None:
    answer = client.post("/v1/admin/reload", headers=_auth(keys["admin"]))
    body = answer.json()
    assert body["models"] == {"recommender": "1", "churn": None}
    assert body["ready"] is False and "churn" in body["problems"][0]
    assert client.get("/v1/items/i00001/similar?k=3", headers=_auth(keys["app"])).status_code == 200


def test_keys_commands_print_the_key_alone_and_revoke_it(folder: Path, client: TestClient) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--data", str(folder), "--role", "operator", "--name", "ops"]
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"uok_[A-Za-z0-9_-]{43}", key)
    listed = runner.invoke(cli, ["keys", "list", "--data", str(folder)])
    assert "ops\toperator" in listed.stdout and key not in listed.output
    assert runner.invoke(cli, ["keys", "revoke", "--data", str(folder), "ops"]).exit_code == 0
    assert client.post("/v1/admin/reload", headers=_auth(key)).status_code == 401
    bad = runner.invoke(cli, ["keys", "create", "--data", str(folder), "--role", "boss"])
    assert bad.exit_code == 1 and "unknown role 'boss'" in bad.output


def test_a_revoked_key_is_refused_within_a_second_by_a_worker_that_had_verified_it(
    tmp_path: Path,
) -> None:
    url = Settings(tracking_uri=None).experiments_url_for(tmp_path)
    worker, elsewhere = KeyStore(url), KeyStore(url)  # a serving worker, and the `keys revoke` command
    principal, key = worker.create("app", name="phone")
    assert worker.verify(key) == principal
    elsewhere.revoke("phone")
    assert elsewhere.verify(key) is None  # a store that had not remembered it refuses it at once
    time.sleep(REMEMBER_SECONDS + 0.1)
    assert worker.verify(key) is None
    assert worker.verify("uok_" + "x" * 43) is None
