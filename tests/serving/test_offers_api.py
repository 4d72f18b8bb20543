"""``GET /v1/users/{user_id}/next-best-offer`` against ``userops offers choose`` on the same folder and date.

The world's randomized offer campaign starts on day 66; an offers model is trained on it with a 14-day
outcome window as of day 90, in a copy of the trained world (``offers_folder``). The API chooses at load
for the churn scores' population from the online features; the command chooses from the feature
snapshot. Same features, values, past exposures and date: the same offer and expected value for every
user.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from typer.testing import CliRunner

from experiments.exposures import ExposureLog
from serving.settings import Settings
from training.offers.explore import EXPLORE_EXPERIMENT
from userops.cli import app as cli

if TYPE_CHECKING:
    from conftest import Served  # tests/serving/conftest.py (the test folders are not packages)

from conftest import TRAINED_AS_OF

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def offers_api(make_api: Callable[[Path], Served], offers_folder: Path) -> Served:
    return make_api(offers_folder)


def test_the_api_chooses_what_the_command_chooses(offers_api: Served, tmp_path: Path) -> None:
    out = tmp_path / "offers.csv"
    done = CliRunner().invoke(
        cli,
        [
            "offers", "choose", "--data", str(offers_api.folder), "--as-of", str(TRAINED_AS_OF),
            "--users", "all", "--explore", "0", "--out", str(out),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    batch = pd.read_csv(out, dtype={"user_id": str, "offer_id": str}, keep_default_na=False).set_index(
        "user_id"
    )

    answered = 0
    for user in batch.index[:80]:
        response = offers_api.client.get(
            f"/v1/users/{user}/next-best-offer", headers=offers_api.headers("app")
        )
        if response.status_code == 404:  # outside the churn population: not active in the look-back
            assert "look-back" in response.json()["detail"]
            continue
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["offer_id"] or "") == batch.loc[user, "offer_id"]
        assert body["expected_value"] == pytest.approx(batch.loc[user, "expected_value"], abs=0.006)
        assert body["reason"] == batch.loc[user, "reason"]
        assert body["model"]["name"] == "offers" and body["model"]["version"]
        assert body["features_as_of"] == str(TRAINED_AS_OF)
        answered += 1
    assert answered >= 20


def test_next_best_offer_needs_an_offers_model_and_a_known_user(
    offers_api: Served, trained_api: Served
) -> None:
    missing = offers_api.client.get("/v1/users/nobody/next-best-offer", headers=offers_api.headers("app"))
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    no_model = trained_api.client.get("/v1/users/nobody/next-best-offer", headers=trained_api.headers("app"))
    assert no_model.status_code == 503
    assert (
        no_model.json()["detail"] == "no offers model is registered: run `userops train offers`, then reload"
    )
    operator = offers_api.client.get(
        "/v1/users/nobody/next-best-offer", headers=offers_api.headers("operator")
    )
    assert operator.status_code == 403


def test_the_exploration_share_is_randomized_as_in_batch(
    make_api: Callable[[Path], Served], offers_folder: Path, tmp_path: Path
) -> None:
    """``offers choose --explore`` starts the exploration experiment; the API then answers each user it
    enrols as the batch table does (the same variant, offer, reason and a value of 0), logs their
    exposure, and answers the others with the model's choice."""
    folder = tmp_path / "data"
    shutil.copytree(offers_folder, folder)
    out = tmp_path / "offers.csv"
    done = CliRunner().invoke(
        cli,
        [
            "offers", "choose", "--data", str(folder), "--as-of", str(TRAINED_AS_OF),
            "--users", "all", "--explore", "0.3", "--out", str(out),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    batch = pd.read_csv(out, dtype={"user_id": str, "offer_id": str}, keep_default_na=False).set_index(
        "user_id"
    )
    api = make_api(folder)
    url = Settings(tracking_uri=None).experiments_url_for(folder)
    counts = ExposureLog(url).read(experiment=EXPLORE_EXPERIMENT).set_index("unit_id")["exposures"]
    before = set(counts.index)  # the batch logged its enrolled users once each
    explored, chosen = [], 0
    for user in batch.index[:150]:
        response = api.client.get(f"/v1/users/{user}/next-best-offer", headers=api.headers("app"))
        if response.status_code == 404:
            continue
        body = response.json()
        assert (body["offer_id"] or "", body["reason"]) == tuple(batch.loc[user, ["offer_id", "reason"]])
        if body["reason"].startswith("exploration: randomized by experiment"):
            assert body["expected_value"] == 0.0 and user in before
            explored.append(user)
        else:
            assert user not in before
            chosen += 1
    assert len(explored) >= 5 and chosen >= 5
    after = ExposureLog(url).read(experiment=EXPLORE_EXPERIMENT).set_index("unit_id")["exposures"]
    assert set(after.index) == before  # nobody new: the API enrols whom the batch enrolled
    again = after.sub(counts).loc[lambda d: d > 0]
    assert sorted(again.index) == sorted(explored) and set(again) == {1}  # one exposure per answer
