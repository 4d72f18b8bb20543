"""``GET /v1/users/{user_id}/churn-risk`` answers what ``userops pipeline`` scored, user by user.

The shared trained world (``tests/serving/conftest.py``: pipeline, churn champion, online features,
batch scores) is the known answer: every scored user's answer is compared with the files the command
line wrote. Tests that change a store work on a copy of that world.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.store import default_store
from training.registry import default_tracking_uri

if TYPE_CHECKING:
    from conftest import Served  # tests/serving/conftest.py (the test folders are not packages)

pytestmark = pytest.mark.slow  # the shared trained world runs the pipeline once per session

LEFT = "u_left_long_ago"
NEVER = "u_never_active"


def _as_of(folder: Path) -> str:
    (path,) = sorted((folder / "scores").glob("churn_as_of=*.csv"))[-1:]
    return path.stem.split("=")[1]


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"user_id": str}, keep_default_na=False)


def _copy(trained_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("risk") / "world"
    shutil.copytree(trained_folder, folder)
    return folder


def _serve(make_api: Callable[[Path], Served], folder: Path) -> Served:
    """An app over ``folder`` and its own MLflow store: ``mlflow.set_tracking_uri`` exports
    ``MLFLOW_TRACKING_URI``, which ``Settings()`` reads, so whichever world trained last would be served."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", default_tracking_uri(folder))
        return make_api(folder)


def _with_extra_users(
    folder: Path, rows: dict[str, dict[str, float | str]], as_of: str | None = None
) -> None:
    """Rewrite the folder's online features with extra users (their values, the rest copied from the
    first row); ``as_of`` moves the whole snapshot to that date."""
    snapshot = pd.read_parquet(folder / "features" / f"as_of={_as_of(folder)}.parquet")
    extra = []
    for user, values in rows.items():
        row = snapshot.iloc[[0]].copy()
        row["user_id"] = user
        for name, value in values.items():
            row[name] = value
        extra.append(row)
    frame = pd.concat([snapshot, *extra], ignore_index=True)
    if as_of is not None:
        frame["as_of"] = pd.Timestamp(as_of).as_unit(frame["as_of"].dt.unit)
    default_store(folder).write(frame)


@pytest.fixture(scope="module")
def trained(trained_folder: Path, make_api: Callable[[Path], Served]) -> Served:
    """The app over the shared trained world."""
    return _serve(make_api, trained_folder)


@pytest.fixture(scope="module")
def outsiders_api(
    trained_folder: Path, tmp_path_factory: pytest.TempPathFactory, make_api: Callable[[Path], Served]
) -> Served:
    """The trained world with two users in the online features outside the scored population: one last
    seen 400 days ago, one never active."""
    folder = _copy(trained_folder, tmp_path_factory)
    _with_extra_users(
        folder,
        {
            LEFT: {"days_since_last_event": 400.0, "lifecycle_stage": "churned", "rfm_segment": "lost"},
            NEVER: {"days_since_last_event": np.nan, "lifecycle_stage": "new", "rfm_segment": "new"},
        },
    )
    return _serve(make_api, folder)


def test_every_scored_user_gets_the_batch_score(trained: Served) -> None:
    folder = trained.folder
    as_of = _as_of(folder)
    scores = _read(folder / "scores" / f"churn_as_of={as_of}.csv")
    listing = _read(folder / "winback" / f"winback_as_of={as_of}.csv")
    values = dict(zip(listing["user_id"], listing["value_at_stake"], strict=True))
    assert len(scores) > 50
    champion = mlflow.MlflowClient(default_tracking_uri(folder)).get_model_version_by_alias(
        "churn", "champion"
    )
    for row in scores.itertuples():
        answer = trained.client.get(f"/v1/users/{row.user_id}/churn-risk", headers=trained.headers("app"))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user_id"] == row.user_id
        assert body["churn_risk"] == pytest.approx(row.churn_risk, abs=1e-9, rel=0)
        # value at stake over the horizon the champion was trained for (the pipeline's, not a default)
        assert body["value_at_stake"] == pytest.approx(values[str(row.user_id)], abs=1e-9, rel=0)
        assert (body["lifecycle_stage"], body["rfm_segment"]) == (row.lifecycle_stage, row.rfm_segment)
        assert " | ".join(body["reasons"]) == row.reasons and 1 <= len(body["reasons"]) <= 3
        assert body["model"] == {"name": "churn", "version": str(champion.version), "alias": "champion"}
        assert body["features_as_of"] == as_of


def test_a_user_outside_the_population_gets_their_stage_and_no_score(outsiders_api: Served) -> None:
    as_of = _as_of(outsiders_api.folder)
    answers = {
        user: outsiders_api.client.get(f"/v1/users/{user}/churn-risk", headers=outsiders_api.headers("app"))
        for user in (LEFT, NEVER)
    }
    assert {a.status_code for a in answers.values()} == {200}
    left, never = answers[LEFT].json(), answers[NEVER].json()
    assert left["churn_risk"] is None and left["value_at_stake"] is None
    assert (left["lifecycle_stage"], left["rfm_segment"]) == ("churned", "lost")
    assert left["reasons"] == [
        f"no activity in the 365 days before {as_of}: outside the churn model's population"
    ]
    assert left["features_as_of"] == as_of and left["model"]["name"] == "churn"
    assert never["churn_risk"] is None and never["lifecycle_stage"] == "new"
    assert never["reasons"] == ["no activity yet: outside the churn model's population"]


def test_the_extra_users_leave_the_population_and_its_scores_unchanged(
    outsiders_api: Served, trained: Served
) -> None:
    ours = outsiders_api.client.app.state.models.get().churn  # type: ignore[attr-defined]
    theirs = trained.client.app.state.models.get().churn  # type: ignore[attr-defined]
    assert list(ours.users) == list(theirs.users)
    np.testing.assert_array_equal(ours.churn_risk, theirs.churn_risk)


def test_an_unknown_user_is_a_404_that_says_so(trained: Served) -> None:
    answer = trained.client.get("/v1/users/nobody/churn-risk", headers=trained.headers("app"))
    assert answer.status_code == 404
    assert answer.json() == {"detail": "unknown user 'nobody': not in the online features"}


def test_only_an_app_or_admin_key_may_ask(trained: Served) -> None:
    client, path = trained.client, "/v1/users/u000001/churn-risk"
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer uok_not-a-key"}).status_code == 401
    for role in ("operator", "analyst"):
        refused = client.get(path, headers=trained.headers(role))
        assert refused.status_code == 403 and role in refused.json()["detail"]
    assert client.get(path, headers=trained.headers("app")).status_code == 200
    assert client.get(path, headers=trained.headers("admin")).status_code == 200


@pytest.mark.parametrize("user_id", ["u" * 129, "bad%01id"])
def test_a_bad_id_is_a_422_naming_the_field(trained: Served, user_id: str) -> None:
    answer = trained.client.get(f"/v1/users/{user_id}/churn-risk", headers=trained.headers("app"))
    assert answer.status_code == 422
    assert "user_id" in {str(part) for problem in answer.json()["detail"] for part in problem["loc"]}


def test_a_reload_scores_again_and_answers_the_same(outsiders_api: Served) -> None:
    client, app = outsiders_api.client, outsiders_api.headers("app")
    scores = client.app.state.models.get().churn  # type: ignore[attr-defined]
    user = str(scores.users[0])
    before = client.get(f"/v1/users/{user}/churn-risk", headers=app).json()
    assert client.post("/v1/admin/reload", headers=outsiders_api.headers("admin")).status_code == 200
    assert client.app.state.models.get().churn is not scores  # type: ignore[attr-defined]
    assert client.get(f"/v1/users/{user}/churn-risk", headers=app).json() == before


def test_features_newer_than_the_scores_ask_for_a_reload(
    trained_folder: Path, tmp_path_factory: pytest.TempPathFactory, make_api: Callable[[Path], Served]
) -> None:
    folder = _copy(trained_folder, tmp_path_factory)
    served = _serve(make_api, folder)
    later = (pd.Timestamp(_as_of(folder)) + pd.Timedelta(days=7)).date().isoformat()
    _with_extra_users(folder, {"u_joined_this_week": {"days_since_last_event": 2.0}}, as_of=later)
    answer = served.client.get("/v1/users/u_joined_this_week/churn-risk", headers=served.headers("app"))
    assert answer.status_code == 503 and "reload" in answer.json()["detail"]


def test_without_a_churn_champion_churn_risk_is_503_and_recommendations_still_answer(
    trained_folder: Path, tmp_path_factory: pytest.TempPathFactory, make_api: Callable[[Path], Served]
) -> None:
    folder = _copy(trained_folder, tmp_path_factory)
    registry = mlflow.MlflowClient(default_tracking_uri(folder), registry_uri=default_tracking_uri(folder))
    registry.delete_registered_model_alias("churn", "champion")
    served = _serve(make_api, folder)
    ready = served.client.get("/readyz")
    risk = served.client.get("/v1/users/u000001/churn-risk", headers=served.headers("app"))
    items = served.client.get("/v1/users/u000001/recommendations?k=3", headers=served.headers("app"))
    assert ready.status_code == 503
    assert ready.json()["problems"] == [
        "no churn champion is registered: run `userops train churn` or `userops pipeline`"
    ]
    assert risk.status_code == 503 and risk.json()["detail"].startswith("no churn scores are loaded")
    assert items.status_code == 200 and len(items.json()["items"]) == 3


def test_the_schema_documents_the_answer_with_an_example(trained: Served) -> None:
    schema = trained.client.get("/openapi.json").json()
    answer = schema["components"]["schemas"]["ChurnRisk"]
    assert set(answer["required"]) >= {"user_id", "churn_risk", "lifecycle_stage", "reasons", "model"}
    assert answer["examples"][0]["churn_risk"] == 0.83
    assert set(answer["examples"][0]) == set(answer["properties"])  # the example is a whole answer
    assert "/v1/users/{user_id}/churn-risk" in schema["paths"]
