"""Propensity is skipped where its label is the complement of churn's (only purchases and refunds)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.labels import churn_labels, conversion_labels
from training.churn import propensity_duplicates_churn
from training.churn_run import SKIPPED, skipped_propensity, train_and_register
from training.registry import default_tracking_uri

AS_OF = date(2024, 5, 1)
START = pd.Timestamp("2024-01-01", tz="UTC")


def purchase_only_folder(root: Path, extra_types: tuple[str, ...] = ()) -> Path:
    """A small export of purchases and refunds (plus ``extra_types``) over 240 days."""
    rng = np.random.default_rng(0)
    n = 3000
    types = rng.choice(["purchase"] * 8 + ["refund", *extra_types], size=n)
    events = pd.DataFrame(
        {
            "user_id": [f"u{i:03d}" for i in rng.integers(0, 150, n)],
            "ts": (START + pd.to_timedelta(rng.uniform(0, 240, n), unit="D")).astype("datetime64[us, UTC]"),
            "event_type": types,
            "item_id": [f"i{i:02d}" for i in rng.integers(0, 30, n)],
            "amount": rng.uniform(1, 50, n).round(2),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    events.to_parquet(root / "events.parquet", index=False)
    return root


@pytest.mark.parametrize(
    ("types", "duplicate"),
    [
        (["purchase", "refund"], True),
        (["purchase"], True),
        (["purchase", None, float("nan")], True),
        (["view", "purchase", "refund"], False),
        (["add_to_cart", "purchase"], False),
        (["view"], False),  # activity without purchases: propensity asks something else
    ],
)
def test_duplicate_only_when_every_activity_is_a_purchase(types: list[object], duplicate: bool) -> None:
    assert propensity_duplicates_churn(types) is duplicate


def test_on_such_data_the_labels_are_exact_complements(tmp_path: Path) -> None:
    folder = purchase_only_folder(tmp_path / "retail")
    churn = churn_labels(folder, AS_OF, horizon=30, lookback=90).set_index("user_id")["churned"]
    buys = conversion_labels(folder, AS_OF, horizon=30, lookback=90).set_index("user_id")["converted"]
    assert len(churn) > 50 and 0 < churn.mean() < 1
    joined = pd.concat([churn, buys], axis=1, join="inner")
    assert len(joined) == len(churn) == len(buys)
    np.testing.assert_array_equal(joined["churned"].astype(int), 1 - joined["converted"].astype(int))


def test_skipped_in_training_with_a_plain_reason_and_nothing_registered(tmp_path: Path) -> None:
    folder = purchase_only_folder(tmp_path / "retail")
    uri = default_tracking_uri(folder)
    outcome = train_and_register(
        data_dir=folder, as_of=AS_OF, horizon=30, tracking_uri=uri, kind="propensity"
    )
    assert outcome.alias == SKIPPED and outcome.version == "" and outcome.metrics.empty
    assert outcome.decision == (
        "skipped: the only activity in this data is purchases (and refunds), so the purchase-propensity "
        "label is exactly the opposite of the churn label; the churn model already answers it"
    )
    assert outcome.facts == {"event_types": "purchase, refund"}
    registry = mlflow.MlflowClient(uri, registry_uri=uri)
    assert registry.search_registered_models() == []


def test_data_with_views_keeps_its_propensity_model(tmp_path: Path) -> None:
    folder = purchase_only_folder(tmp_path / "shop", extra_types=("view", "view"))
    assert skipped_propensity(folder, AS_OF) is None
