"""The same feature definitions on Spark (local mode) give DuckDB's snapshot, column by column."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ibis
import pandas as pd
import pytest

from features.job import build_features
from features.labels import churn_labels
from simulator.simulate import WorldConfig, simulate

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("userops-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "false")
        # tiny data: compiling generated code per stage costs far more than it saves
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.codegen.factoryMode", "NO_CODEGEN")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_snapshot_equals_duckdb_column_by_column(tmp_path: Path, spark: object) -> None:
    # a simulated world: NaN amounts on views, refunds, sessions, categories, an offer campaign on day 55
    simulate(WorldConfig(n_users=120, days=100, seed=3), tmp_path)
    as_of = "2025-03-30"
    duck = build_features(tmp_path, as_of)
    con = ibis.pyspark.connect(spark)
    on_spark = build_features(tmp_path, as_of, con=con)
    assert list(on_spark.columns) == list(duck.columns)
    assert len(duck) > 50 and duck["offers_exposed"].sum() > 0 and duck["spend_90d"].sum() > 0
    for col in duck.columns:
        exact = duck[col].dtype.kind != "f"
        pd.testing.assert_series_equal(on_spark[col], duck[col], check_exact=exact, rtol=1e-12, obj=col)
    labels = churn_labels(tmp_path, as_of, 10, 30)
    pd.testing.assert_frame_equal(churn_labels(tmp_path, as_of, 10, 30, con=con), labels)
    assert 0 < labels["churned"].sum() < len(labels)


def test_the_feature_job_runs_on_spark_and_its_next_day_equals_duckdb(tmp_path: Path, spark: object) -> None:
    """``run_job`` itself on Spark: a full build, then a next day rolled on from the kept tables (totals,
    last-seen tables, codes, all written by Spark), equal to DuckDB's snapshot from scratch."""
    from features.job import run_job, snapshot_path

    data = tmp_path / "world"
    simulate(WorldConfig(n_users=120, days=100, seed=3), data)
    con = ibis.pyspark.connect(spark)
    out = tmp_path / "spark_features"
    run_job(data, ["2025-03-29"], out, con=con, write_online=False, full=True)
    run_job(data, ["2025-03-30"], out, con=con, write_online=False)
    got = pd.read_parquet(snapshot_path(out, pd.Timestamp("2025-03-30")))
    duck = build_features(data, "2025-03-30")
    assert list(got.columns) == list(duck.columns) and len(got) == len(duck) > 50
    for col in duck.columns:
        exact = duck[col].dtype.kind != "f"
        pd.testing.assert_series_equal(got[col], duck[col], check_exact=exact, rtol=1e-12, obj=col)
