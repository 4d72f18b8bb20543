"""Experiment assignments and results over HTTP, checked against the library and the CLI.

Assignments must be :func:`experiments.assignment.assign`'s answer for the same unit and attributes, with
the exposure committed before the answer; results must be the ``userops experiments analyze --json``
document for the same folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from typer.testing import CliRunner

from experiments.assignment import assign
from experiments.definitions import Experiment, coverage_buckets, parse_targeting, parse_variants
from experiments.exposures import ExposureLog
from experiments.service import assign_units
from experiments.store import ExperimentStore
from serving.auth import ROLES
from simulator.world import CAMPAIGN
from userops.cli import app as cli

if TYPE_CHECKING:
    from conftest import Served  # tests/serving/conftest.py (the test folders are not packages)

# Keys of this module's experiments: the world is shared with other modules, so they are ours alone.
PROMO = "api_promo"  # running, targeted at country FR or DE, 90% coverage
TENURE = "api_tenure"  # running, targeted at tenure_days >= 30 (a numeric rule)
DRAFT = "api_draft"
STOPPED = "api_stopped"
CHECKOUT = "api_checkout"  # running 70/30 with its own metrics, analysed in a folder of its own


def _define(
    store: ExperimentStore,
    key: str,
    *,
    variants: str = "control=50,treatment=50",
    target: tuple[str, ...] = (),
    coverage: float = 1.0,
    metrics: tuple[str, ...] = (),
) -> Experiment:
    names, weights = parse_variants(variants)
    return store.create(
        Experiment(
            key=key,
            variants=names,
            weights=weights,
            coverage_buckets=coverage_buckets(coverage),
            targeting=parse_targeting(list(target)),
            metrics=metrics,
        )
    )


@pytest.fixture(scope="module")
def api(world_api: Served) -> Served:
    """The world's app, with this module's experiments in its store."""
    store = ExperimentStore(world_api.store_url)
    _define(store, PROMO, target=("country=FR,DE",), coverage=0.9)
    store.start(PROMO)
    _define(store, TENURE, target=("tenure_days>=30",))
    store.start(TENURE)
    _define(store, DRAFT)
    _define(store, STOPPED)
    store.start(STOPPED)
    store.stop(STOPPED)
    return world_api


def _logged(api: Served, experiment: str) -> pd.DataFrame:
    """The exposure log as a fresh connection reads it: only what was committed."""
    return ExposureLog(api.store_url).read(experiment=experiment).set_index("unit_id")


def _expected(api: Served, key: str, unit_id: str, attributes: dict[str, object]) -> tuple[str | None, str]:
    store = ExperimentStore(api.store_url)
    answer = assign(
        design=store.get(key).design(), unit_id=unit_id, attributes=attributes, holdout=store.holdout()
    )
    return answer.variant, answer.reason


UNITS = [(f"u{i:06d}", "FR" if i % 3 == 0 else "DE" if i % 3 == 1 else "US") for i in range(1, 41)]


def test_an_assignment_is_the_librarys_and_its_exposure_is_committed_first(api: Served) -> None:
    reasons = set()
    for unit_id, country in UNITS:
        answer = api.client.get(
            f"/v1/experiments/{PROMO}/assignment",
            params={"unit_id": unit_id, "country": country},
            headers=api.headers("app"),
        )
        assert answer.status_code == 200, answer.text
        variant, reason = _expected(api, PROMO, unit_id, {"country": country})
        assert answer.json() == {
            "experiment": PROMO,
            "unit_id": unit_id,
            "variant": variant,
            "reason": reason,
        }
        reasons.add(reason)
        logged = _logged(api, PROMO)  # read right after the answer, on a connection of its own
        if variant is None:
            assert unit_id not in logged.index
        else:
            assert logged.loc[unit_id, "variant"] == variant
    assert {"assigned", "not_targeted"} <= reasons  # both paths were exercised


def test_an_assignment_is_stable_and_counts_every_exposure(api: Served) -> None:
    unit_id = next(u for u, c in UNITS if _expected(api, PROMO, u, {"country": c})[0] is not None)
    country = dict(UNITS)[unit_id]
    before = int(_logged(api, PROMO).loc[unit_id, "exposures"]) if unit_id in _logged(api, PROMO).index else 0
    url = f"/v1/experiments/{PROMO}/assignment?unit_id={unit_id}&country={country}"
    answers = [api.client.get(url, headers=api.headers("app")).json() for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    assert int(_logged(api, PROMO).loc[unit_id, "exposures"]) == before + 3


def test_a_batch_is_the_librarys_answer_unit_by_unit_and_logged_before_the_answer(api: Served) -> None:
    units = [
        {"unit_id": f"b{i:05d}", "attributes": {"country": country}} for i, (_, country) in enumerate(UNITS)
    ]
    units.append({"unit_id": "b-no-attributes"})
    answer = api.client.post(
        f"/v1/experiments/{PROMO}/assignments", json={"units": units}, headers=api.headers("app")
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["experiment"] == PROMO
    assert [a["unit_id"] for a in body["assignments"]] == [u["unit_id"] for u in units]
    logged = _logged(api, PROMO)
    for unit, got in zip(units, body["assignments"], strict=True):
        variant, reason = _expected(api, PROMO, str(unit["unit_id"]), dict(unit.get("attributes", {})))
        assert (got["variant"], got["reason"]) == (variant, reason)
        assert (unit["unit_id"] in logged.index) == (variant is not None)
        if variant is not None:
            assert logged.loc[unit["unit_id"], "variant"] == variant
    assert body["assignments"][-1] == {
        "unit_id": "b-no-attributes",
        "variant": None,
        "reason": "not_targeted",
    }


@pytest.mark.parametrize("tenure", [0, 29, 30, 31.5, 400])
def test_a_numeric_rule_reads_query_text_and_json_numbers_alike(api: Served, tenure: float) -> None:
    single = api.client.get(
        f"/v1/experiments/{TENURE}/assignment",
        params={"unit_id": "u000007", "tenure_days": str(tenure)},
        headers=api.headers("app"),
    ).json()
    batch = api.client.post(
        f"/v1/experiments/{TENURE}/assignments",
        json={"units": [{"unit_id": "u000007", "attributes": {"tenure_days": tenure}}]},
        headers=api.headers("app"),
    ).json()["assignments"][0]
    variant, reason = _expected(api, TENURE, "u000007", {"tenure_days": tenure})
    assert (single["variant"], single["reason"]) == (batch["variant"], batch["reason"]) == (variant, reason)
    assert (reason == "assigned") == (tenure >= 30)


def test_the_most_units_a_batch_takes_are_all_answered(api: Served) -> None:
    units = [{"unit_id": f"m{i:05d}", "attributes": {"country": "FR"}} for i in range(1000)]
    answer = api.client.post(
        f"/v1/experiments/{PROMO}/assignments", json={"units": units}, headers=api.headers("app")
    )
    assert answer.status_code == 200
    got = pd.DataFrame(answer.json()["assignments"])
    store = ExperimentStore(api.store_url)
    expected = assign_units(
        store=store,
        experiment=PROMO,
        unit_ids=got["unit_id"].tolist(),
        attributes=pd.DataFrame({"country": ["FR"] * 1000}),
    )
    assert got["variant"].fillna("").tolist() == expected["variant"].tolist()
    enrolled = set(got.loc[got["variant"].notna(), "unit_id"])
    assert enrolled <= set(_logged(api, PROMO).index)
    assert 0 < len(enrolled) < 1000  # 90% coverage: some are left out


ENDPOINTS = [
    ("GET", f"/v1/experiments/{PROMO}/assignment?unit_id=u000001", None, "app"),
    ("POST", f"/v1/experiments/{PROMO}/assignments", {"units": [{"unit_id": "u000001"}]}, "app"),
    ("GET", f"/v1/experiments/{CAMPAIGN}/results", None, "analyst"),
]


@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS)
def test_only_the_endpoints_role_and_admin_get_in(
    api: Served, method: str, path: str, body: object, needs: str
) -> None:
    assert api.client.request(method, path, json=body).status_code == 401
    assert (
        api.client.request(method, path, json=body, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    for role in ROLES:
        answer = api.client.request(method, path, json=body, headers=api.headers(role))
        allowed = role in (needs, "admin")
        assert answer.status_code == (200 if allowed else 403), (role, answer.text)


def _problem_fields(answer: object) -> set[str]:
    detail = answer.json()["detail"]  # type: ignore[attr-defined]
    return {str(part) for problem in detail for part in problem["loc"]}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("unit_id=bad%01id", "unit_id"),
        ("unit_id=bad%0Aid", "unit_id"),
        ("unit_id=" + "u" * 129, "unit_id"),
        ("unit_id=", "unit_id"),
        ("", "unit_id"),
        ("unit_id=u1&country=FR&country=DE", "country"),
        ("unit_id=u1&1country=FR", "1country"),
        ("unit_id=u1&country=F%00R", "country"),
        ("unit_id=u1&country=" + "x" * 257, "country"),
    ],
)
def test_a_bad_assignment_query_is_a_422_naming_the_field(api: Served, query: str, field: str) -> None:
    answer = api.client.get(f"/v1/experiments/{PROMO}/assignment?{query}", headers=api.headers("app"))
    assert answer.status_code == 422, answer.text
    assert field in _problem_fields(answer)


def test_a_unit_id_of_128_characters_is_fine(api: Served) -> None:
    answer = api.client.get(
        f"/v1/experiments/{PROMO}/assignment?unit_id={'u' * 128}&country=FR", headers=api.headers("app")
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"units": [{"unit_id": "u" * 129}]}, "unit_id"),
        ({"units": [{"unit_id": "bad\u0001id"}]}, "unit_id"),
        ({"units": [{"unit_id": ""}]}, "unit_id"),
        ({"units": [{"unit_id": "u1"}] * 1001}, "units"),
        ({"units": []}, "units"),
        ({}, "units"),
        ({"units": [{"unit_id": "u1", "colour": "red"}]}, "colour"),
        ({"units": [{"unit_id": "u1", "attributes": {"bad name": "x"}}]}, "attributes"),
        ({"units": [{"unit_id": "u1", "attributes": {"country": ["FR"]}}]}, "attributes"),
        ({"units": [{"unit_id": 7}]}, "unit_id"),
        ({"units": "u1"}, "units"),
    ],
)
def test_a_bad_batch_is_a_422_naming_the_field(api: Served, body: object, field: str) -> None:
    answer = api.client.post(f"/v1/experiments/{PROMO}/assignments", json=body, headers=api.headers("app"))
    assert answer.status_code == 422, answer.text
    assert field in _problem_fields(answer)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'{"units": [{"unit_id": "u1", "attributes": {"x": NaN}}]}',
        b'{"units": [{"unit_id": NaN}]}',
        b'{"units": [{"unit_id": "u1", "attributes": {"x": -Infinity}}]}',
        b"",
        b"\xff\xfe",
    ],
)
def test_a_body_that_is_not_the_model_is_a_422(api: Served, content: bytes) -> None:
    answer = api.client.post(
        f"/v1/experiments/{PROMO}/assignments",
        content=content,
        headers={**api.headers("app"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/experiments/nobody/assignment?unit_id=u1",
        f"/v1/experiments/{'k' * 65}/assignment?unit_id=u1",
        "/v1/experiments/%F0%9F%99%82/assignment?unit_id=%F0%9F%99%82&x=%F0%9F%99%82",
        "/v1/experiments/a%20b/results?metric=%01",
        "/v1/experiments/x/results?metric=ratio:revenue_per_order/orders",
        "/v1/experiments/x/results?metric=" + "retention:9" * 20,
    ],
)
def test_odd_input_is_never_a_500(api: Served, path: str) -> None:
    answer = api.client.get(path, headers=api.headers("admin"))
    assert 400 <= answer.status_code < 500, answer.text


def test_an_unknown_experiment_is_a_404_that_names_it(api: Served) -> None:
    answers = [
        api.client.get("/v1/experiments/nobody/assignment?unit_id=u1", headers=api.headers("app")),
        api.client.post(
            "/v1/experiments/nobody/assignments",
            json={"units": [{"unit_id": "u1"}]},
            headers=api.headers("app"),
        ),
        api.client.get("/v1/experiments/nobody/results", headers=api.headers("analyst")),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert "'nobody'" in answer.json()["detail"]


@pytest.mark.parametrize(("key", "status"), [(DRAFT, "draft"), (STOPPED, "stopped")])
def test_a_draft_or_stopped_experiment_assigns_nobody_409(api: Served, key: str, status: str) -> None:
    single = api.client.get(f"/v1/experiments/{key}/assignment?unit_id=u1", headers=api.headers("app"))
    batch = api.client.post(
        f"/v1/experiments/{key}/assignments", json={"units": [{"unit_id": "u1"}]}, headers=api.headers("app")
    )
    for answer in (single, batch):
        assert answer.status_code == 409
        assert status in answer.json()["detail"]
    assert _logged(api, key).empty


def test_results_of_a_draft_that_never_ran_are_a_409(api: Served) -> None:
    answer = api.client.get(f"/v1/experiments/{DRAFT}/results", headers=api.headers("analyst"))
    assert answer.status_code == 409 and "draft" in answer.json()["detail"]


def _cli_json(folder: Path, key: str, metrics: list[str]) -> object:
    args = ["experiments", "analyze", "--data", str(folder), "--experiment", key, "--json"]
    for metric in metrics:
        args += ["--metric", metric]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("metrics", [[], ["conversion"], ["revenue", "orders", "retention:7"]])
def test_results_are_the_clis_json_document(api: Served, metrics: list[str]) -> None:
    # the simulator's campaign is only in the folder's exposures table, not in the store
    answer = api.client.get(
        f"/v1/experiments/{CAMPAIGN}/results", params={"metric": metrics}, headers=api.headers("analyst")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == _cli_json(api.folder, CAMPAIGN, metrics)
    assert {row["metric"] for row in answer.json()["results"]} == set(
        metrics or ["conversion", "revenue", "orders"]
    )


def test_an_unknown_metric_is_a_422_that_names_it(api: Served) -> None:
    answer = api.client.get(
        f"/v1/experiments/{CAMPAIGN}/results?metric=conversion&metric=bogus", headers=api.headers("analyst")
    )
    assert answer.status_code == 422 and "'bogus'" in answer.json()["detail"]


@pytest.fixture(scope="module")
def checkout(
    make_api: Callable[[Path], Served], world_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Served:
    """A copy of the world where a store experiment ran 70/30 with its own metrics; exposures exported."""
    folder = tmp_path_factory.mktemp("checkout")
    for table in ("events", "users", "items", "offers"):
        shutil.copy(world_folder / f"{table}.parquet", folder / f"{table}.parquet")
    served = make_api(folder)
    store = ExperimentStore(served.store_url)
    _define(store, CHECKOUT, variants="control=70,treatment=30", metrics=("conversion", "revenue"))
    store.start(CHECKOUT)
    users = pd.read_parquet(folder / "users.parquet")["user_id"].astype(str).tolist()
    log = ExposureLog(served.store_url)
    assign_units(store=store, experiment=CHECKOUT, unit_ids=users, log=log, now=datetime(2025, 2, 1))
    log.export(folder / "exposures.parquet", experiment=CHECKOUT)
    return served


def test_results_of_a_store_experiment_follow_its_shares_and_metrics(checkout: Served) -> None:
    answer = checkout.client.get(f"/v1/experiments/{CHECKOUT}/results", headers=checkout.headers("analyst"))
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document == _cli_json(checkout.folder, CHECKOUT, [])
    assert {row["metric"] for row in document["results"]} == {"conversion", "revenue"}
    # a 70/30 split read against equal shares would fail the sample-ratio check outright
    assert document["srm_p_value"] > 1e-3


def test_the_schema_documents_every_endpoint_with_examples(api: Served) -> None:
    schema = api.client.get("/openapi.json").json()
    single = schema["paths"]["/v1/experiments/{key}/assignment"]["get"]
    assert "attributes" in {p["name"] for p in single["parameters"]}
    batch = schema["paths"]["/v1/experiments/{key}/assignments"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "AssignmentsRequest"
    )
    models = schema["components"]["schemas"]
    assert models["AssignmentsRequest"]["examples"]
    for name in ("Assignment", "Assignments", "ExperimentResults", "ResultRow", "Unit"):
        fields = models[name]["properties"]
        assert any("examples" in field for field in fields.values()), name
    for path in ("assignment", "assignments", "results"):
        operation = next(iter(schema["paths"][f"/v1/experiments/{{key}}/{path}"].values()))
        assert {"200", "404", "409", "422"} <= set(operation["responses"]), path
