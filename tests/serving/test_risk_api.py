"""``GET /v1/users/{user_id}/churn-risk`` answers what ``userops pipeline`` scored, user by user.

One small world goes through the whole pipeline (with a 120-day look-back, so that some users of the
online features are outside the scored population); the API's answers are then compared with the batch
files the pipeline wrote, which are the known answer computed by the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.auth import KeyStore
from serving.settings import Settings
from simulator.simulate import WorldConfig, simulate
from training.registry import default_tracking_uri
from userops.pipeline import run_pipeline

AS_OF = date(2025, 8, 20)  # day 231 of 240
LOOKBACK = 120

pytestmark = pytest.mark.slow  # one pipeline run (about a minute and a half) for the whole module


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 300-user world after ``userops pipeline``: churn champion, online features, batch scores."""
    folder = tmp_path_factory.mktemp("risk")
    with pytest.MonkeyPatch.context() as env:
        for name in ("MLFLOW_TRACKING_URI", "USEROPS_TRACKING_URI", "USEROPS_REDIS_URL"):
            env.delenv(name, raising=False)
        simulate(WorldConfig(n_users=300, days=240, seed=7), folder)
        run_pipeline(folder, AS_OF, tracking_uri=default_tracking_uri(folder), lookback=LOOKBACK)
        yield folder


@pytest.fixture(scope="module")
def keys(folder: Path) -> dict[str, str]:
    store = KeyStore(Settings(tracking_uri=None).experiments_url_for(folder))
    return {role: store.create(role, f"risk-{role}")[1] for role in ("app", "operator", "admin")}


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[TestClient]:
    app = create_app(Settings(tracking_uri=None, redis_url=None), folder)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"user_id": str}, keep_default_na=False)


def test_every_scored_user_gets_the_batch_score(
    client: TestClient, keys: dict[str, str], folder: Path
) -> None:
    scores = _read(folder / "scores" / f"churn_as_of={AS_OF}.csv")
    listing = _read(folder / "winback" / f"winback_as_of={AS_OF}.csv")
    values = dict(zip(listing["user_id"], listing["value_at_stake"], strict=True))
    assert 50 < len(scores) < 300  # a population, and some users outside it
    champion = mlflow.MlflowClient(default_tracking_uri(folder)).get_model_version_by_alias(
        "churn", "champion"
    )
    for row in scores.itertuples():
        answer = client.get(f"/v1/users/{row.user_id}/churn-risk", headers=_auth(keys["app"]))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user_id"] == row.user_id
        assert body["churn_risk"] == pytest.approx(row.churn_risk, abs=1e-9, rel=0)
        assert body["value_at_stake"] == pytest.approx(values[str(row.user_id)], abs=1e-9)
        assert (body["lifecycle_stage"], body["rfm_segment"]) == (row.lifecycle_stage, row.rfm_segment)
        assert " | ".join(body["reasons"]) == row.reasons and 1 <= len(body["reasons"]) <= 3
        assert body["model"] == {"name": "churn", "version": str(champion.version), "alias": "champion"}
        assert body["features_as_of"] == AS_OF.isoformat()


def test_a_user_outside_the_population_gets_their_stage_and_no_score(
    client: TestClient, keys: dict[str, str], folder: Path
) -> None:
    snapshot = pd.read_parquet(folder / "features" / f"as_of={AS_OF}.parquet")
    scored = set(_read(folder / "scores" / f"churn_as_of={AS_OF}.csv")["user_id"])
    gone = snapshot.loc[snapshot["days_since_last_event"] > LOOKBACK].iloc[0]
    assert gone["user_id"] not in scored
    answer = client.get(f"/v1/users/{gone['user_id']}/churn-risk", headers=_auth(keys["app"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["churn_risk"] is None and body["value_at_stake"] is None
    assert (body["lifecycle_stage"], body["rfm_segment"]) == (gone["lifecycle_stage"], gone["rfm_segment"])
    assert body["reasons"] == [
        f"no activity in the {LOOKBACK} days before {AS_OF}: outside the churn model's population"
    ]
    assert body["features_as_of"] == AS_OF.isoformat()


def test_an_unknown_user_is_a_404_that_says_so(client: TestClient, keys: dict[str, str]) -> None:
    answer = client.get("/v1/users/nobody/churn-risk", headers=_auth(keys["app"]))
    assert answer.status_code == 404
    assert answer.json() == {"detail": "unknown user 'nobody': not in the online features"}


def test_only_an_app_or_admin_key_may_ask(client: TestClient, keys: dict[str, str]) -> None:
    path = "/v1/users/u000001/churn-risk"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=_auth("uok_not-a-key")).status_code == 401
    operator = client.get(path, headers=_auth(keys["operator"]))
    assert operator.status_code == 403 and "operator" in operator.json()["detail"]
    assert client.get(path, headers=_auth(keys["admin"])).status_code in (200, 404)


@pytest.mark.parametrize("user_id", ["u" * 129, "bad%01id"])
def test_a_bad_id_is_a_422_naming_the_field(client: TestClient, keys: dict[str, str], user_id: str) -> None:
    answer = client.get(f"/v1/users/{user_id}/churn-risk", headers=_auth(keys["app"]))
    assert answer.status_code == 422
    assert "user_id" in {str(part) for problem in answer.json()["detail"] for part in problem["loc"]}


def test_a_reload_scores_again_and_answers_the_same(client: TestClient, keys: dict[str, str]) -> None:
    scores = client.app.state.models.get().churn  # type: ignore[attr-defined]
    user = str(scores.users[0])
    before = client.get(f"/v1/users/{user}/churn-risk", headers=_auth(keys["app"])).json()
    assert client.post("/v1/admin/reload", headers=_auth(keys["admin"])).status_code == 200
    assert client.app.state.models.get().churn is not scores  # type: ignore[attr-defined]
    assert client.get(f"/v1/users/{user}/churn-risk", headers=_auth(keys["app"])).json() == before


def test_without_a_churn_champion_churn_risk_is_503_and_recommendations_still_answer(
    folder: Path, keys: dict[str, str], tmp_path: Path
) -> None:
    from training.recommend import RecommenderTuning, train_and_register

    only_recommender = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_and_register(
        data_dir=folder,
        as_of=AS_OF,
        horizon=14,
        tracking_uri=only_recommender,
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 3}]}),
    )
    app = create_app(Settings(tracking_uri=only_recommender, redis_url=None), folder)
    with TestClient(app, raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        risk = client.get("/v1/users/u000001/churn-risk", headers=_auth(keys["app"]))
        items = client.get("/v1/users/u000001/recommendations?k=3", headers=_auth(keys["app"]))
    assert ready.status_code == 503
    assert ready.json()["problems"] == [
        "no churn champion is registered: run `userops train churn` or `userops pipeline`"
    ]
    assert risk.status_code == 503 and risk.json()["detail"].startswith("no churn scores are loaded")
    assert items.status_code == 200 and len(items.json()["items"]) == 3


def test_the_schema_documents_the_answer_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    answer = schema["components"]["schemas"]["ChurnRisk"]
    assert set(answer["required"]) >= {"user_id", "churn_risk", "lifecycle_stage", "reasons", "model"}
    assert answer["examples"][0]["churn_risk"] == 0.83
    assert set(answer["examples"][0]) == set(answer["properties"])  # the example is a whole answer
    assert "/v1/users/{user_id}/churn-risk" in schema["paths"]
