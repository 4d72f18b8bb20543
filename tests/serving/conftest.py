"""Shared fixtures for the API tests: small simulated worlds, an app over each, and one key per role.

Worlds (session-scoped: built once per test process, shared by every module that asks):

- ``world_folder``: a simulated world (:data:`WORLD_USERS` users over :data:`WORLD_DAYS` days, with the
  simulator's randomized offer campaign in ``exposures.parquet``) and nothing trained. Cheap (under a
  second). Endpoints that need a model or a scored list answer 503 over it.
- ``offers_folder``: a copy of ``trained_folder`` with an offers champion as well (about 30 s more).
- ``trained_folder``: another world of the same size after :func:`userops.pipeline.run_pipeline` as of
  :data:`TRAINED_AS_OF` (feature snapshot and online copy, churn and propensity champions,
  ``scores/churn_as_of=…csv``, ``winback/winback_as_of=…csv``) and a recommender champion
  (:func:`training.recommend.train_and_register`, small ALS). About a minute: tests that use it are
  marked ``slow``.

Apps over them (:class:`Served`: the folder, a started ``TestClient``, one key per role):

- ``world_api`` / ``trained_api``: the app over ``world_folder`` / ``trained_folder``.
- ``make_api``: a factory, ``make_api(folder)``, for a test module that needs its own folder (e.g. a copy
  it writes into); its clients are closed at the end of the session.

The worlds are shared, so a test that writes (an experiment, a key, exposures) uses names of its own and
never changes what is already there. Every client is made with ``raise_server_exceptions=False``, so a bug
is seen as the 500 a caller would get. ``USEROPS_*`` and ``MLFLOW_TRACKING_URI`` are removed from the
environment for the whole session: the tests never touch a developer's real stores, and a ``Settings()``
made by a test (or by a CLI command it runs) points into the data folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.auth import ROLES, KeyStore, Role
from serving.settings import Settings

WORLD_USERS = 300
WORLD_DAYS = 120
TRAINED_AS_OF = date(2025, 4, 1)
"""Day 90 of the trained world (which starts on 2025-01-01): 30 days of events are left after it."""


@dataclass(frozen=True)
class Served:
    """An app over a data folder, started, with one API key per role.

    Attributes:
        folder: The data folder the app serves.
        client: The started test client (its lifespan has opened the stores and loaded the models).
        keys: Role → a valid key of that role.
    """

    folder: Path
    client: TestClient
    keys: dict[Role, str]

    def headers(self, role: Role) -> dict[str, str]:
        """``Authorization: Bearer KEY`` for a key of ``role``."""
        return {"Authorization": f"Bearer {self.keys[role]}"}

    @property
    def settings(self) -> Settings:
        """The settings the app was made with (read from the cleaned environment)."""
        return Settings()

    @property
    def store_url(self) -> str:
        """The SQL store of the folder: experiments, exposure log and keys."""
        return self.settings.experiments_url_for(self.folder)


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> Iterator[None]:
    """No ``USEROPS_*`` or ``MLFLOW_TRACKING_URI`` from the developer's shell reaches the tests."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("USEROPS_") or name == "MLFLOW_TRACKING_URI":
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def world_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated world with nothing trained (see the module docstring)."""
    from simulator.simulate import WorldConfig, simulate

    folder = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(n_users=WORLD_USERS, days=WORLD_DAYS, seed=11), folder)
    return folder


@pytest.fixture(scope="session")
def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated world after the pipeline and a recommender training (see the module docstring)."""
    from simulator.simulate import WorldConfig, simulate
    from training.recommend import RecommenderTuning, train_and_register
    from userops.pipeline import run_pipeline

    folder = tmp_path_factory.mktemp("trained")
    simulate(WorldConfig(n_users=WORLD_USERS, days=WORLD_DAYS, seed=5), folder)
    # mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI in this process: pin each folder to its own store
    uri = Settings(tracking_uri=None).tracking_uri_for(folder)
    run_pipeline(folder, TRAINED_AS_OF, tracking_uri=uri, horizon=30)
    train_and_register(
        data_dir=folder,
        as_of=TRAINED_AS_OF,
        horizon=14,
        tracking_uri=uri,
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 3}]}),
    )
    return folder


@pytest.fixture(scope="session")
def offers_folder(trained_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``trained_folder`` with an offers champion too, trained on the world's randomized
    campaign (day 66) with a 14-day outcome window as of :data:`TRAINED_AS_OF`."""
    import shutil

    from training.offers.run import OfferOptions, train_offers

    folder = tmp_path_factory.mktemp("offers") / "data"
    shutil.copytree(trained_folder, folder)
    uri = Settings(tracking_uri=None).tracking_uri_for(folder)
    train_offers(data_dir=folder, as_of=TRAINED_AS_OF, tracking_uri=uri, options=OfferOptions(horizon=14))
    return folder


@pytest.fixture(scope="session")
def make_api() -> Iterator[Callable[[Path], Served]]:
    """``make_api(folder)``: start an app over ``folder`` and make one key per role in its store."""
    from serving.app import create_app

    with ExitStack() as stack:

        def make(folder: Path) -> Served:
            settings = Settings(tracking_uri=None)  # the folder's own store, whatever MLflow set before
            keys = KeyStore(settings.experiments_url_for(folder))
            made = {role: keys.create(role)[1] for role in ROLES}
            client = stack.enter_context(
                TestClient(create_app(settings, folder), raise_server_exceptions=False)
            )
            return Served(folder=folder, client=client, keys=made)

        yield make


@pytest.fixture(scope="session")
def world_api(make_api: Callable[[Path], Served], world_folder: Path) -> Served:
    """The app over ``world_folder`` (no models, no scored list)."""
    return make_api(world_folder)


@pytest.fixture(scope="session")
def trained_api(make_api: Callable[[Path], Served], trained_folder: Path) -> Served:
    """The app over ``trained_folder`` (champions loaded, a win-back list as of :data:`TRAINED_AS_OF`)."""
    return make_api(trained_folder)
