"""Randomized units from offer campaigns: point in time, outcomes by brute force, stacking, refusals."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import write_table
from simulator.simulate import WorldConfig, simulate
from training.errors import OfferDataError
from training.offers.catalogue import load_catalogue
from training.offers.data import build_campaign_data, campaign_units, outcomes, unit_features

AS_OF = date(2025, 8, 29)  # the campaign of a 240-day world is on day 132 (2025-05-13)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("offers_world")
    simulate(WorldConfig(n_users=1500, days=240, seed=5), out)
    return out


def _copy(world: Path, dest: Path, exposures: pd.DataFrame | None = None) -> Path:
    shutil.copytree(
        world, dest, ignore=shutil.ignore_patterns("truth", "features", "mlflow.db", "mlartifacts")
    )
    if exposures is not None:
        write_table(exposures, dest / "exposures.parquet", contract="exposures")
    return dest


def test_units_features_outcomes(world: Path) -> None:
    cat = load_catalogue(world)
    data, _ = build_campaign_data(world, cat, as_of=AS_OF, horizon=30)
    exposures = pd.read_parquet(world / "exposures.parquet")
    assert len(data.units) == exposures["unit_id"].nunique()
    assert data.units["user_id"].is_unique
    arms = data.units.groupby("variant")["arm"].first()
    assert arms["control"] == 0 and sorted(arms.drop("control")) == [1, 2, 3]
    # the outcome by brute force: any event but a refund in [exposure, exposure + 30 days)
    events = pd.read_parquet(world / "events.parquet")
    for row in data.units.sample(40, random_state=1).itertuples():
        mine = events[(events["user_id"] == row.user_id) & (events["event_type"] != "refund")]
        inside = (mine["ts"] >= row.exposure_ts) & (mine["ts"] < row.exposure_ts + pd.Timedelta(days=30))
        assert row.y == float(inside.any())


def test_features_are_point_in_time(world: Path, tmp_path: Path) -> None:
    """Dropping every event at or after the exposure day changes no unit's feature."""
    units, _, _ = campaign_units(
        pd.read_parquet(world / "exposures.parquet"), load_catalogue(world), as_of=AS_OF, horizon=30
    )
    cut = _copy(world, tmp_path / "cut")
    events = pd.read_parquet(world / "events.parquet")
    day = units["exposure_ts"].min().normalize()
    write_table(events[events["ts"] < day], cut / "events.parquet", contract="events")
    full, _ = unit_features(world, units)
    early, _ = unit_features(cut, units)
    pd.testing.assert_frame_equal(
        full.sort_values("user_id").reset_index(drop=True),
        early.sort_values("user_id").reset_index(drop=True),
    )


def test_revenue_and_purchase_outcomes_by_hand() -> None:
    units = pd.DataFrame({"user_id": ["a", "b"], "exposure_ts": pd.to_datetime(["2025-01-10", "2025-01-10"])})
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b", "b"],
            "ts": pd.to_datetime(["2025-01-09", "2025-01-11", "2025-01-12", "2025-01-20", "2025-02-20"]),
            "event_type": ["purchase", "purchase", "refund", "view", "purchase"],
            "amount": [100.0, 10.0, -4.0, np.nan, 50.0],
        }
    )
    assert outcomes(events, units, 30, "revenue").tolist() == [6.0, 0.0]
    assert outcomes(events, units, 30, "purchase").tolist() == [1.0, 0.0]
    assert outcomes(events, units, 30, "activity").tolist() == [1.0, 1.0]


def test_stacked_campaigns_count_a_unit_once(world: Path, tmp_path: Path) -> None:
    exposures = pd.read_parquet(world / "exposures.parquet")
    again = exposures.head(100).assign(
        experiment="second_wave", ts=exposures["ts"].head(100) + pd.Timedelta(days=3)
    )
    folder = _copy(world, tmp_path / "stacked", pd.concat([exposures, again], ignore_index=True))
    data, _ = build_campaign_data(folder, load_catalogue(folder), as_of=AS_OF, horizon=30)
    assert data.experiments == ["retention_campaign", "second_wave"]
    assert len(data.units) == exposures["unit_id"].nunique()
    assert (data.units["experiment"] == "retention_campaign").all()  # the first exposure counts
    assert data.excluded == {"repeat exposures of a unit (its first one counts)": 100}


def test_bad_campaigns_are_refused_or_counted(world: Path, tmp_path: Path) -> None:
    exposures = pd.read_parquet(world / "exposures.parquet")
    cat = load_catalogue(world)
    # an offer missing from the catalogue: refused when the campaign is named, counted otherwise
    odd = exposures.assign(variant=exposures["variant"].replace({"points_500": "mystery_box"}))
    with pytest.raises(
        OfferDataError, match=r"^campaign retention_campaign: offer\(s\) mystery_box not in the"
    ):
        campaign_units(odd, cat, as_of=AS_OF, horizon=30, experiments=["retention_campaign"])
    units, _, excluded = campaign_units(odd, cat, as_of=AS_OF, horizon=30)
    n_odd = int((odd["variant"] == "mystery_box").sum())
    assert excluded == {"exposures to offers missing from the catalogue (mystery_box)": n_odd}
    assert len(units) == len(exposures) - n_odd
    # one arm
    one = exposures.assign(variant="free_shipping")
    with pytest.raises(OfferDataError, match="no control arm"):
        campaign_units(one, cat, as_of=AS_OF, horizon=30, experiments=["retention_campaign"])
    with pytest.raises(OfferDataError, match="no offer campaign to learn from"):
        campaign_units(one, cat, as_of=AS_OF, horizon=30)
    # a window that does not close by the date names both dates
    with pytest.raises(OfferDataError) as caught:
        campaign_units(exposures, cat, as_of=date(2025, 6, 1), horizon=30, experiments=["retention_campaign"])
    assert str(caught.value).startswith(
        "campaign retention_campaign: the 30-day outcome window after its last exposure on 2025-05-13 ends "
        "2025-06-12, after the as-of date 2025-06-01"
    )
    assert "\n" not in str(caught.value)
    # a window past the data
    with pytest.raises(OfferDataError, match="past the last event in the data on 2025-05-20"):
        campaign_units(exposures, cat, as_of=AS_OF, horizon=30, last_event=pd.Timestamp("2025-05-20"))


def test_units_without_features_are_counted(world: Path, tmp_path: Path) -> None:
    exposures = pd.read_parquet(world / "exposures.parquet")
    strangers = exposures.head(25).assign(unit_id=[f"stranger{i}" for i in range(25)])
    folder = _copy(world, tmp_path / "strangers", pd.concat([exposures, strangers], ignore_index=True))
    data, _ = build_campaign_data(folder, load_catalogue(folder), as_of=AS_OF, horizon=30)
    assert data.excluded == {"units with no features (not a user before their exposure)": 25}
    assert not data.units["user_id"].str.startswith("stranger").any()


def test_no_offers_table_is_one_line(world: Path, tmp_path: Path) -> None:
    folder = _copy(world, tmp_path / "no_offers")
    (folder / "offers.parquet").unlink()
    with pytest.raises(OfferDataError, match=r"no offers.parquet or offers.csv \(the offer catalogue\)$"):
        load_catalogue(folder)
