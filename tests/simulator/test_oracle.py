"""The recommender's oracle hook: the simulator reads ``truth/``, training only uses what it is handed."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from simulator.oracle import offer_policy_values, recommender_reference
from simulator.simulate import WorldConfig, simulate
from training.recommend import RecommenderTuning, train_and_register
from training.registry import default_tracking_uri

AS_OF = date(2025, 4, 1)
TUNING = RecommenderTuning(grid={"itemknn": [{"neighbors": 20}]})  # item-item: the same figures every run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oracleworld")
    simulate(WorldConfig(n_users=600, days=120, seed=4), out)
    return out


def test_the_reference_is_the_truth_in_order(world: Path) -> None:
    reference = recommender_reference(world)
    assert reference is not None
    affinity = pd.read_parquet(world / "truth" / "affinity.parquet")
    assert set(reference.preferences) == set(affinity["user_id"].astype(str))
    for user, rows in list(affinity.groupby("user_id"))[:25]:
        by_rank = rows.sort_values("rank")["item_id"].astype(str).tolist()
        assert list(reference.preferences[str(user)]) == by_rank
    items = pd.read_parquet(world / "truth" / "items.parquet")
    popularity = dict(zip(items["item_id"].astype(str), items["popularity"], strict=True))
    ranked = [popularity[i] for i in reference.popularity]
    assert sorted(reference.popularity) == sorted(popularity) and ranked == sorted(ranked, reverse=True)


def test_a_folder_without_truth_has_no_reference(world: Path, tmp_path: Path) -> None:
    shutil.copy(world / "events.parquet", tmp_path / "events.parquet")
    assert recommender_reference(tmp_path) is None


def _logged_metrics(uri: str, run_id: str) -> dict[str, float]:
    return dict(mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics)


@pytest.mark.slow
def test_oracle_rows_come_only_with_a_reference_and_change_no_model_figure(
    world: Path, tmp_path: Path
) -> None:
    runs = {}
    for name, reference in (("without", None), ("with", recommender_reference(world))):
        (tmp_path / name).mkdir()
        uri = default_tracking_uri(tmp_path / name)
        outcome = train_and_register(
            data_dir=world,
            as_of=AS_OF,
            horizon=30,
            tracking_uri=uri,
            kind="recommender",
            tuning=TUNING,
            reference=reference,
        )
        runs[name] = (outcome, _logged_metrics(uri, outcome.run_id))
    plain, plain_logged = runs["without"]
    truthful, truthful_logged = runs["with"]

    assert "oracle" not in plain.metrics.index
    assert not {"oracle_fraction", "true_recall_at_10"} & set(plain.metrics.columns)
    assert not [m for m in plain_logged if "oracle" in m or "true_recall" in m]

    assert truthful.metrics.loc["oracle", "oracle_fraction"] == 1.0
    assert truthful.metrics.loc["oracle", "true_recall_at_10"] == 1.0
    assert "test_oracle_ndcg_at_10" in truthful_logged
    assert "test_itemknn_oracle_fraction" in truthful_logged
    # the truth adds rows and columns; every figure about the models themselves is the same
    same_cells = truthful.metrics.loc[plain.metrics.index, plain.metrics.columns]
    pd.testing.assert_frame_equal(plain.metrics, same_cells)
    assert {k: v for k, v in truthful_logged.items() if k in plain_logged} == plain_logged
    assert plain.facts == truthful.facts


def test_offer_policy_values_by_hand(tmp_path: Path) -> None:
    (tmp_path / "truth").mkdir()
    pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "c"],
            "offer_id": ["x", "y"] * 3,
            "tau": 0.0,
            "true_uplift": [0.10, 0.02, -0.05, 0.30, 0.0, 0.01],
        }
    ).to_parquet(tmp_path / "truth" / "uplift.parquet")
    units = pd.DataFrame({"user_id": ["a", "b", "c"], "value": [50.0, 20.0, 100.0], "choice": [1, 1, 0]})
    got = offer_policy_values(tmp_path, units, ["x", "y"], [2.0, 1.0])
    # gains x: 3, -3, -2; y: 0, 5, 0 (after costs 2 and 1)
    assert got["model policy"] == pytest.approx(3 - 3)
    assert got["oracle"] == pytest.approx(3 + 5 + 0)
    assert got["no offer"] == 0.0
    assert got["everyone gets x"] == pytest.approx(3 - 3 - 2)
    assert got["everyone gets y"] == pytest.approx(0 + 5 + 0)
    with pytest.raises(ValueError, match="no true uplift"):
        offer_policy_values(tmp_path, units.assign(user_id=["a", "b", "z"]), ["x", "y"], [2.0, 1.0])
