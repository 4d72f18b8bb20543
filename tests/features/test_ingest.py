"""Ingest of a user's own data, and of the real Online Retail data set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import ContractError
from features.ingest import ingest, parse_mapping

RETAIL = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "online_retail" / "online_retail.parquet"
)


@pytest.fixture(scope="module")
def retail(tmp_path_factory) -> Path:
    if not RETAIL.exists():
        pytest.fail(f"the real data set is missing at {RETAIL}")
    out = tmp_path_factory.mktemp("retail")
    ingest(RETAIL, out, preset="online-retail")
    return out


def test_online_retail_yields_every_customer_and_quarantines_exactly_the_guest_lines(retail: Path) -> None:
    users = pd.read_parquet(retail / "users.parquet")
    quarantine = pd.read_parquet(retail / "quarantine" / "events.parquet")
    events = pd.read_parquet(retail / "events.parquet")
    assert users["user_id"].nunique() == len(users) == 4372
    assert (quarantine["reason"] == "missing user_id").sum() == 135_080
    assert quarantine.loc[quarantine["reason"] == "missing user_id", "CustomerID"].isna().all()
    assert len(events) + len(quarantine) == 541_909
    assert set(events["event_type"]) == {"purchase", "refund"}
    assert (events.loc[events["event_type"] == "refund", "amount"] <= 0).all()
    assert users["signup_ts"].tolist() == events.groupby("user_id")["ts"].min().loc[users["user_id"]].tolist()


def test_online_retail_totals_match_the_published_checks(retail: Path) -> None:
    events = pd.read_parquet(retail / "events.parquet")
    quarantine = pd.read_parquet(retail / "quarantine" / "events.parquet")
    q_qty = pd.to_numeric(quarantine["Quantity"])
    q_price = pd.to_numeric(quarantine["UnitPrice"])
    assert events["quantity"].sum() + q_qty.sum() == 5_176_450
    assert events["amount"].sum() + (q_qty * q_price).sum() == pytest.approx(9_747_747.93, abs=0.01)
    items = pd.read_parquet(retail / "items.parquet")
    assert len(items) == 4070 and items["item_id"].is_unique


def test_online_retail_times_are_converted_from_uk_local_time_to_utc(retail: Path) -> None:
    raw = pd.read_parquet(RETAIL).dropna(subset=["CustomerID"])
    events = pd.read_parquet(retail / "events.parquet")
    summer = raw[raw["InvoiceDate"].dt.month == 7].iloc[0]
    winter = raw[raw["InvoiceDate"].dt.month == 1].iloc[0]
    for line, shift in ((summer, pd.Timedelta(hours=1)), (winter, pd.Timedelta(0))):
        match = events[
            (events["session_id"] == str(line["InvoiceNo"])) & (events["item_id"] == line["StockCode"])
        ]
        assert (match["ts"] == line["InvoiceDate"] - shift).all() and len(match) >= 1


def test_mapping_with_a_time_zone_and_quarantine(tmp_path: Path) -> None:
    source = pd.DataFrame(
        {
            "who": ["1", "2", None, "3"],
            "when": ["2025-07-01 10:00", "2025-01-01 10:00", "2025-01-01 10:00", "yesterday-ish"],
            "what": ["purchase", "view", "view", "view"],
            "paid": ["10", None, None, None],
        }
    )
    source.to_csv(tmp_path / "in.csv", index=False)
    report = ingest(
        tmp_path / "in.csv",
        tmp_path / "out",
        tz="Europe/Berlin",
        mapping=parse_mapping("user_id=who,ts=when,event_type=what,amount=paid"),
    )
    events = pd.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["ts"].tolist() == [pd.Timestamp("2025-07-01 08:00"), pd.Timestamp("2025-01-01 09:00")]
    assert report.quarantined["events"] == {"missing user_id": 1, "unparsable ts": 1}
    assert len(pd.read_parquet(tmp_path / "out" / "users.parquet")) == 2


def test_mapping_errors_name_what_is_wrong(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ContractError, match="not of the form"):
        parse_mapping("user_id")
    with pytest.raises(ContractError, match=r"names column.*nope.*that the file does not have"):
        ingest(tmp_path / "in.csv", tmp_path / "out", mapping={"user_id": "nope"})
    with pytest.raises(ContractError, match="unknown preset"):
        ingest(tmp_path / "in.csv", tmp_path / "out", preset="shopify")
    assert not (tmp_path / "out").exists()  # nothing is written when the input cannot be read


def test_users_and_items_files_are_mapped_localized_and_checked(tmp_path: Path) -> None:
    pd.DataFrame({"who": ["1"], "when": ["2025-07-01 10:00"], "what": ["view"]}).to_csv(
        tmp_path / "e.csv", index=False
    )
    pd.DataFrame(
        {"who": ["1", None], "joined": ["2025-07-01 09:00", "2025-07-01 09:00"], "plan": ["pro", "free"]}
    ).to_csv(tmp_path / "u.csv", index=False)
    pd.DataFrame({"sku": ["a", "a"], "price": ["2.5", "2.5"]}).to_csv(tmp_path / "i.csv", index=False)
    report = ingest(
        tmp_path / "e.csv",
        tmp_path / "out",
        users_path=tmp_path / "u.csv",
        items_path=tmp_path / "i.csv",
        tz="Europe/Berlin",
        mapping=parse_mapping("user_id=who,ts=when,event_type=what,signup_ts=joined,item_id=sku"),
    )
    users = pd.read_parquet(tmp_path / "out" / "users.parquet")
    assert users["signup_ts"].tolist() == [pd.Timestamp("2025-07-01 07:00")] and users["plan"].tolist() == [
        "pro"
    ]
    assert report.rows_read == {"events": 1, "users": 2, "items": 2}
    assert report.quarantined["users"] == {"missing user_id": 1}
    assert report.quarantined["items"] == {"duplicate row": 1}
