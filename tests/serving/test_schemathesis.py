"""The API against its own OpenAPI schema: requests generated from the schema (schemathesis, on hypothesis)
never get a 5xx, and every answer fits the schema the endpoint documents.

The app serves a copy of the trained world with an offers model (so every endpoint has models, a
win-back list and an experiment behind it) and is called in process, with an admin key (every role's
endpoints are reached).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from experiments.definitions import Experiment
from experiments.store import ExperimentStore
from serving.app import create_app
from serving.auth import KeyStore
from serving.settings import Settings

pytestmark = pytest.mark.slow

KEY: dict[str, str] = {}


class _Deferred:
    """An ASGI app whose target is made by a fixture: the schema is read at collection, the folder later."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


APP = _Deferred()
# the schema does not depend on the folder, and making the app reads nothing
schema = schemathesis.openapi.from_dict(create_app(Settings(tracking_uri=None), Path("unread")).openapi())
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def _served(offers_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("schemathesis") / "data"
    shutil.copytree(offers_folder, folder)
    app_settings = Settings(tracking_uri=None)
    url = app_settings.experiments_url_for(folder)
    store = ExperimentStore(url)
    store.create(Experiment(key="promo", variants=("control", "treatment"), weights=(50, 50)))
    store.start("promo")  # the key in the schema's examples
    KEY["admin"] = KeyStore(url).create("admin")[1]
    APP.target = create_app(app_settings, folder)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_server_error_and_every_answer_fits_its_schema(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY['admin']}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=300,  # a reload loads every model again: slow on a busy machine, and not what is tested
    )
