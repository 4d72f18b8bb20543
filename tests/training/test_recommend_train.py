"""End to end: tune on a validation window, evaluate side by side, log, register, load, batch CLI."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.errors import ContractError
from simulator.oracle import recommender_reference
from simulator.simulate import WorldConfig, simulate
from training.errors import ModelNotFoundError
from training.recommend import (
    RecommenderTuning,
    load_or_fit,
    load_recommender,
    read_user_ids,
    train_and_register,
)
from training.registry import CHAMPION, connect, default_tracking_uri

AS_OF = date(2025, 5, 1)
GRID: dict[str, list[dict[str, Any]]] = {
    "als": [{"factors": 16, "iterations": 8, "alpha": a} for a in (1.0, 4.0)],
    "itemknn": [{"neighbors": 50}],
    "ease": [{"l2": 100.0}],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recworld")
    simulate(WorldConfig(n_users=1500, days=150, seed=21), out)
    return out


@pytest.mark.slow
def test_train_register_load_and_promote(world: Path) -> None:
    uri = default_tracking_uri(world)
    outcome = train_and_register(
        data_dir=world,
        as_of=AS_OF,
        horizon=30,
        tracking_uri=uri,
        kind="recommender",
        tuning=RecommenderTuning(grid=GRID),
        reference=recommender_reference(world),
    )
    assert outcome.kind == "recommender"
    assert outcome.alias == CHAMPION and "first recommender" in outcome.decision
    # every candidate and baseline side by side, and the oracle the reference makes possible
    models = {"als", "itemknn", "ease", "popularity", "popularity_segment"}
    assert set(outcome.metrics.index) == {*models, "oracle"}
    assert outcome.facts["test_users"] == outcome.metrics["users"].iloc[0] > 0
    assert outcome.facts["promotion_holdout"] == "test"
    client = mlflow.MlflowClient(tracking_uri=uri)
    parent = client.get_run(outcome.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    # each trial and baseline is a child run; ALS's best alpha sat at an edge, so its grid grew that way
    alphas = {float(c.data.params["alpha"]) for c in children if c.data.params.get("family") == "als"}
    assert {1.0, 4.0} < alphas
    assert len(children) == 2 + 1 + 1 + 2 + len(alphas - {1.0, 4.0})
    assert outcome.facts["validation"] == "each user's latest 20% of items"
    # the chosen model beats both baselines and item-item on the test window
    ndcg = {k: float(parent.data.metrics[f"test_{k}_ndcg_at_10"]) for k in ("popularity", "itemknn")}
    chosen = str(outcome.facts["chosen"])
    assert outcome.facts["holdout_ndcg_at_10"] == parent.data.metrics[f"test_{chosen}_ndcg_at_10"]
    assert parent.data.metrics[f"test_{chosen}_ndcg_at_10"] >= max(ndcg.values())
    assert parent.data.metrics[f"test_{chosen}_ndcg_at_10"] > 1.2 * ndcg["popularity"]
    # the registered model serves: no test-window leakage in its histories, fallback for strangers
    connect(uri)
    rec = load_recommender("models:/recommender@champion")
    assert rec.meta["as_of"] == str(AS_OF) and rec.meta["family"] == chosen
    assert rec.recommend("stranger", 10).source == "fallback"
    # a forced, weaker family is scored against the champion on the same holdout and does not replace it
    again = train_and_register(
        data_dir=world,
        as_of=AS_OF,
        horizon=30,
        tracking_uri=uri,
        kind="itemknn",
        tuning=RecommenderTuning(grid={"itemknn": [{"neighbors": 5}]}),
    )
    if chosen != "itemknn":
        assert again.alias == "challenger" and "does not beat" in again.decision


@pytest.mark.slow
def test_without_test_events_the_summary_says_so(world: Path, tmp_path: Path) -> None:
    events = pd.read_parquet(world / "events.parquet")
    folder = tmp_path / "cut"
    folder.mkdir()
    events[events["ts"] < pd.Timestamp(AS_OF)].to_parquet(folder / "events.parquet")
    outcome = train_and_register(
        data_dir=folder,
        as_of=AS_OF,
        horizon=30,
        tracking_uri=default_tracking_uri(folder),
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 5}]}),
        reference=recommender_reference(world),
    )
    assert outcome.facts["test_users"] == 0 and outcome.metrics.empty
    assert outcome.facts["promotion_holdout"] == "validation"
    assert outcome.facts["chosen"] == "als"
    assert outcome.facts["chosen_params"] == {"factors": 8, "iterations": 5}


@pytest.mark.slow
def test_cli_recommend_fits_on_the_fly_then_uses_the_champion(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from userops.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", default_tracking_uri(tmp_path))  # an empty registry
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": ["u000001", "u000002", "nobody"]}).to_csv(users, index=False)
    out = tmp_path / "recs.csv"
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "recommend",
            "--data",
            str(world),
            "--as-of",
            "2025-05-01",
            "--users",
            str(users),
            "-k",
            "5",
            "--out",
            str(out),
        ],
    )
    assert done.exit_code == 0, done.output
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert recs.groupby("user_id")["rank"].apply(list).tolist() == [[1, 2, 3, 4, 5]] * 3
    refused = runner.invoke(
        app,
        [
            "recommend",
            "--data",
            str(world),
            "--as-of",
            "2025-05-01",
            "--users",
            "all",
            "--no-fit",
            "--out",
            str(tmp_path / "x.parquet"),
        ],
    )
    assert refused.exit_code == 1
    # with a registered model (fitted as of an earlier date): histories come from the folder as of the date
    registry = default_tracking_uri(tmp_path / "registry")
    (tmp_path / "registry").mkdir()
    train_and_register(
        data_dir=world,
        as_of=AS_OF,
        horizon=30,
        tracking_uri=registry,
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 8, "iterations": 5}]}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry)
    later = tmp_path / "later.parquet"
    done = runner.invoke(
        app,
        ["recommend", "--data", str(world), "--as-of", "2025-05-20", "--users", "all", "--out", str(later)],
    )
    assert done.exit_code == 0, done.output
    assert "models:/recommender@champion" in done.output
    frame = pd.read_parquet(later)
    assert frame["user_id"].nunique() == 1500 and np.all(frame.groupby("user_id").size() == 10)
    bought = pd.read_parquet(world / "events.parquet")
    bought = bought[(bought["event_type"] == "purchase") & (bought["ts"] < pd.Timestamp("2025-05-20"))]
    pairs = bought[["user_id", "item_id"]].astype(str).drop_duplicates()
    clash = frame.merge(pairs, on=["user_id", "item_id"])
    assert clash.empty  # nothing already bought before the as-of date is recommended


def test_without_a_registered_model_and_no_fit_it_is_a_named_error(world: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no recommender at models:/recommender@champion"):
        load_or_fit(
            "models:/recommender@champion",
            tracking_uri=default_tracking_uri(tmp_path),
            data_dir=world,
            as_of=AS_OF,
            fit=False,
        )


def test_read_user_ids_keeps_file_order_once_each(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("user_id,x\n u2 ,1\nu1,2\n,3\nu2,4\n")
    assert read_user_ids(path) == ["u2", "u1"]
    (tmp_path / "bad.csv").write_text("id\nu1\n")
    with pytest.raises(ContractError, match="no user_id column"):
        read_user_ids(tmp_path / "bad.csv")


def test_choose_and_fit_on_an_export_with_and_without_timestamps(world: Path) -> None:
    from features.contract import load_table
    from training.recommend import choose_and_fit

    events = load_table(world, "events", required=True)
    assert events is not None
    grid: dict[str, list[dict[str, Any]]] = {
        "ease": [{"l2": 100.0}, {"l2": 400.0}],
        "itemknn": [{"neighbors": 20}],
    }
    dated = choose_and_fit(events, AS_OF, tuning=RecommenderTuning(grid=grid))
    assert dated.validation == "each user's latest 20% of items" and dated.family in {"ease", "itemknn"}
    assert dated.validation_ndcg[dated.family] == max(dated.validation_ndcg[f] for f in ("ease", "itemknn"))
    assert dated.inter.matrix.shape[0] == events.loc[events["ts"] < pd.Timestamp(AS_OF), "user_id"].nunique()
    # the same interactions stamped at one instant: a random share per user, and the words say so
    flat = events.loc[events["ts"] < pd.Timestamp(AS_OF)].assign(ts=pd.Timestamp("2025-01-01"))
    undated = choose_and_fit(flat, AS_OF, tuning=RecommenderTuning(grid=grid))
    assert undated.validation == (
        "a random 20% of each user's items, the closest families compared on 3 such folds "
        "(the data has no usable time order)"
    )
