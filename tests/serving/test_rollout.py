"""A model rollout as an experiment: variants that are registry aliases route each user to one model.

A running experiment whose variants are aliases of the registered ``recommender`` (``champion``,
``challenger``) makes the recommendations endpoint assign each user with the ordinary assignment, log the
exposure, and answer from that alias's model; ``experiments analyze`` then reads it against ``champion``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from experiments.assignment import assign_many
from experiments.definitions import Experiment
from experiments.exposures import ExposureLog
from experiments.service import analyze_folder
from experiments.store import ExperimentStore
from serving.settings import Settings

if TYPE_CHECKING:
    from conftest import Served  # tests/serving/conftest.py (the test folders are not packages)

pytestmark = pytest.mark.slow

ROLLOUT = "ranker_rollout"


def _register_challenger(folder: Path) -> dict[str, str]:
    """Register the champion's model again as a new version with the ``challenger`` alias."""
    import mlflow

    uri = Settings(tracking_uri=None).tracking_uri_for(folder)
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("recommender", "champion")
    made = client.create_model_version("recommender", champion.source, run_id=champion.run_id)
    client.set_registered_model_alias("recommender", "challenger", made.version)
    return {"champion": str(champion.version), "challenger": str(made.version)}


@pytest.fixture(scope="module")
def rollout(
    make_api: Callable[[Path], Served], trained_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Served, dict[str, str]]:
    """A copy of the trained world with a challenger and a running 50/50 rollout, served."""
    folder = tmp_path_factory.mktemp("rollout") / "data"
    shutil.copytree(trained_folder, folder)
    versions = _register_challenger(folder)
    store = ExperimentStore(Settings(tracking_uri=None).experiments_url_for(folder))
    store.create(Experiment(key=ROLLOUT, variants=("champion", "challenger"), weights=(50, 50)))
    store.start(ROLLOUT)
    return make_api(folder), versions


def test_each_user_is_answered_by_the_model_of_their_assigned_variant(
    rollout: tuple[Served, dict[str, str]],
) -> None:
    served, versions = rollout
    users = sorted(pd.read_parquet(served.folder / "users.parquet")["user_id"].astype(str))[:60]
    store = ExperimentStore(served.store_url)
    expected, _, _ = assign_many(design=store.get(ROLLOUT).design(), unit_ids=users, holdout=store.holdout())
    seen: dict[str, str] = {}
    for user, variant in zip(users, expected, strict=True):
        response = served.client.get(f"/v1/users/{user}/recommendations?k=5", headers=served.headers("app"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["experiment"] == variant
        assert body["experiment_key"] == ROLLOUT
        assert body["model"]["alias"] == variant
        assert body["model"]["version"] == versions[str(variant)]
        seen[user] = str(variant)
    assert set(seen.values()) == {"champion", "challenger"}

    logged = ExposureLog(served.store_url).read(experiment=ROLLOUT)
    assert dict(zip(logged["unit_id"], logged["variant"], strict=True)) == seen


def test_the_rollout_is_read_like_any_experiment_against_the_champion(
    rollout: tuple[Served, dict[str, str]],
) -> None:
    served, _ = rollout
    users = sorted(pd.read_parquet(served.folder / "users.parquet")["user_id"].astype(str))
    for user in users:
        served.client.get(f"/v1/users/{user}/recommendations?k=5", headers=served.headers("app"))
    # the exposures as if they had been served at the start of the world, so its events follow them
    exposures = ExposureLog(served.store_url).read(experiment=ROLLOUT)
    exposures["ts"] = pd.Timestamp("2025-01-01")
    exposures[["experiment", "unit_id", "variant", "ts"]].to_parquet(served.folder / "exposures.parquet")

    store = ExperimentStore(served.store_url)
    read = analyze_folder(data_dir=served.folder, experiment=ROLLOUT, store=store)
    rows = read.analysis.to_json()["results"]
    counts = exposures["variant"].value_counts()
    by_variant = {row["variant"]: row for row in rows if row["metric"] == "conversion"}
    assert set(by_variant) == {"champion", "challenger"}
    assert by_variant["champion"]["diff_abs"] is None  # the baseline
    assert by_variant["challenger"]["diff_abs"] is not None
    for variant, row in by_variant.items():
        assert row["n"] == counts[variant]


def test_a_stopped_rollout_leaves_every_user_on_the_champion(rollout: tuple[Served, dict[str, str]]) -> None:
    served, versions = rollout
    ExperimentStore(served.store_url).stop(ROLLOUT)  # the module's last test: the rollout ends here
    time.sleep(1.1)  # a server reads a running experiment's design at most once a second
    users = sorted(pd.read_parquet(served.folder / "users.parquet")["user_id"].astype(str))[:20]
    for user in users:
        response = served.client.get(f"/v1/users/{user}/recommendations?k=3", headers=served.headers("app"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["experiment"] is None
        assert body["model"]["version"] == versions["champion"]
