"""``GET /v1/winback`` against the list file the pipeline wrote, filtered here with plain pandas."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from serving.auth import ROLES

if TYPE_CHECKING:
    from conftest import Served  # tests/serving/conftest.py (the test folders are not packages)

TEXT = {"user_id": str, "lifecycle_stage": str, "rfm_segment": str, "reasons": str, "offer_id": str}


def _written(folder: Path) -> tuple[str, pd.DataFrame]:
    """The newest list in the folder, read with pandas alone: ``(as_of, rows)``."""
    (path,) = sorted((folder / "winback").glob("winback_as_of=*.csv"))[-1:]
    return path.stem.split("=")[1], pd.read_csv(path, dtype=TEXT, keep_default_na=False)


def _by_hand(rows: pd.DataFrame, top: int | None, segment: str | None, min_value: float) -> pd.DataFrame:
    """What an operator's filter keeps, written out directly."""
    if segment is not None:
        rows = rows[(rows["rfm_segment"] == segment) | (rows["lifecycle_stage"] == segment)]
    rows = rows[rows["value_at_stake"] >= min_value]
    rows = rows.sort_values(["expected_value_saved", "user_id"], ascending=[False, True])
    return (rows if top is None else rows.head(top)).reset_index(drop=True)


def _as_json(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "user_id": r["user_id"],
            "churn_risk": r["churn_risk"],
            "value_at_stake": r["value_at_stake"],
            "expected_value_saved": r["expected_value_saved"],
            "lifecycle_stage": r["lifecycle_stage"],
            "rfm_segment": r["rfm_segment"],
            "reasons": r["reasons"].split(" | "),
            "offer_id": r["offer_id"] or None,
            "expected_value": r["expected_value"],
        }
        for r in rows.to_dict("records")
    ]


def _filters(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Filter sets that keep something: nothing, a top, a lifecycle stage, an RFM segment with a floor."""
    stage = rows["lifecycle_stage"].value_counts().index[0]
    segment = rows["rfm_segment"].value_counts().index[0]
    floor = float(rows["value_at_stake"].median())
    return [
        {},
        {"top": 7},
        {"segment": stage},
        {"segment": segment, "min_value": floor},
        {"segment": stage, "min_value": floor, "top": 3},
    ]


@pytest.mark.slow
def test_the_json_list_is_the_written_file_filtered(trained_api: Served) -> None:
    as_of, rows = _written(trained_api.folder)
    assert len(rows) > 50 and rows["reasons"].str.len().gt(0).all()
    for params in _filters(rows):
        answer = trained_api.client.get("/v1/winback", params=params, headers=trained_api.headers("operator"))
        assert answer.status_code == 200, answer.text
        expected = _by_hand(rows, params.get("top"), params.get("segment"), params.get("min_value", 0.0))
        assert len(expected) > 0, params
        assert answer.json() == {"as_of": as_of, "users": _as_json(expected)}, params


@pytest.mark.slow
def test_the_csv_list_is_the_written_file_filtered(trained_api: Served) -> None:
    _, rows = _written(trained_api.folder)
    for params in _filters(rows):
        answer = trained_api.client.get(
            "/v1/winback", params={**params, "format": "csv"}, headers=trained_api.headers("operator")
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/csv")
        served = pd.read_csv(io.StringIO(answer.text), dtype=TEXT, keep_default_na=False)
        expected = _by_hand(rows, params.get("top"), params.get("segment"), params.get("min_value", 0.0))
        pd.testing.assert_frame_equal(served, expected, check_exact=True)


@pytest.mark.slow
def test_only_operators_and_admins_read_the_list(trained_api: Served) -> None:
    assert trained_api.client.get("/v1/winback").status_code == 401
    assert trained_api.client.get("/v1/winback", headers={"Authorization": "Bearer nope"}).status_code == 401
    for role in ROLES:
        answer = trained_api.client.get("/v1/winback?top=1", headers=trained_api.headers(role))
        assert answer.status_code == (200 if role in ("operator", "admin") else 403), (role, answer.text)


@pytest.mark.slow
def test_an_unknown_segment_is_a_422_that_names_it(trained_api: Served) -> None:
    answer = trained_api.client.get("/v1/winback?segment=whales", headers=trained_api.headers("operator"))
    assert answer.status_code == 422
    assert "'whales'" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("top=0", "top"),
        ("top=many", "top"),
        ("min_value=-1", "min_value"),
        ("min_value=nan", "min_value"),
        ("min_value=inf", "min_value"),
        ("format=xlsx", "format"),
        ("segment=at%01risk", "segment"),
        ("segment=" + "s" * 65, "segment"),
    ],
)
def test_a_bad_parameter_is_a_422_naming_it(world_api: Served, query: str, field: str) -> None:
    answer = world_api.client.get(f"/v1/winback?{query}", headers=world_api.headers("operator"))
    assert answer.status_code == 422, answer.text
    assert field in {str(part) for problem in answer.json()["detail"] for part in problem["loc"]}


def test_no_list_yet_is_a_503_that_says_to_run_the_pipeline(world_api: Served) -> None:
    for output in ("json", "csv"):
        answer = world_api.client.get(f"/v1/winback?format={output}", headers=world_api.headers("operator"))
        assert answer.status_code == 503
        assert "userops pipeline" in answer.json()["detail"]


@pytest.fixture(scope="module")
def lists(make_api: Callable[[Path], Served], tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A folder holding only hand-made win-back lists of three dates (and a file that is not one)."""
    folder = tmp_path_factory.mktemp("lists")
    (folder / "winback").mkdir()
    row = {
        "user_id": "007",
        "churn_risk": 0.5,
        "value_at_stake": 10.0,
        "expected_value_saved": 5.0,
        "lifecycle_stage": "at_risk",
        "rfm_segment": "cant_lose",
        "reasons": "no visit for 40 days",
        "offer_id": "",
    }
    for day, user in (("2025-03-01", "old"), ("2025-03-15", "007"), ("2025-02-28", "older")):
        pd.DataFrame([{**row, "user_id": user}]).to_csv(
            folder / "winback" / f"winback_as_of={day}.csv", index=False
        )
    (folder / "winback" / "winback_as_of=latest.csv").write_text("not a list\n")
    return make_api(folder)


def test_the_newest_list_is_served_with_ids_as_text(lists: Served) -> None:
    body = lists.client.get("/v1/winback", headers=lists.headers("operator")).json()
    assert body["as_of"] == "2025-03-15"
    assert [u["user_id"] for u in body["users"]] == ["007"]  # never the number 7
    assert body["users"][0]["offer_id"] is None and body["users"][0]["reasons"] == ["no visit for 40 days"]
    assert body["users"][0]["expected_value"] == 0.0  # a list written before offers had none


def test_a_newer_list_is_served_from_the_next_request_on(lists: Served) -> None:
    newer = lists.folder / "winback" / "winback_as_of=2025-04-01.csv"
    shutil.copy(lists.folder / "winback" / "winback_as_of=2025-03-01.csv", newer)
    try:
        body = lists.client.get("/v1/winback", headers=lists.headers("operator")).json()
        assert (body["as_of"], body["users"][0]["user_id"]) == ("2025-04-01", "old")
    finally:
        newer.unlink()


def test_the_schema_documents_json_and_csv_with_examples(world_api: Served) -> None:
    schema = world_api.client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/winback"]["get"]
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith("WinbackList")
    assert "example" in content["text/csv"]
    assert {"422", "503"} <= set(operation["responses"])
    assert {"top", "segment", "min_value", "format"} <= {p["name"] for p in operation["parameters"]}
    user = schema["components"]["schemas"]["WinbackUser"]["properties"]
    assert all("examples" in field for field in user.values())
