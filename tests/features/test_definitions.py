"""Every feature checked against a brute-force pure-Python computation on small random data sets."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import write_table
from features.job import FEATURES, build_features

START = pd.Timestamp("2025-01-01")
AS_OF = pd.Timestamp("2025-05-01")
OFFER_IDS = ["coupon", "points"]


def random_world(path: Path, seed: int, n_users: int = 40) -> dict[str, pd.DataFrame]:
    """A small random data folder with every contract table and awkward cases (nulls, refunds, ties)."""
    rng = np.random.default_rng(seed)
    users = pd.DataFrame(
        {
            "user_id": [f"u{j:03d}" for j in range(n_users)],
            "signup_ts": (START + pd.to_timedelta(rng.integers(0, 150 * 24, n_users), unit="h")).astype(
                "datetime64[us]"
            ),
            "channel": rng.choice(["organic", "paid", "email"], n_users),
        }
    )
    rows = []
    for uid, signup in zip(users["user_id"], users["signup_ts"], strict=True):
        n = int(rng.integers(0, 50))
        span_h = max(1, int((START + pd.Timedelta(days=170) - signup) / pd.Timedelta(hours=1)))
        for _ in range(n):
            ts = signup + pd.Timedelta(minutes=int(rng.integers(0, span_h * 60)))
            kind = rng.choice(["view", "add_to_cart", "purchase", "refund"], p=[0.55, 0.15, 0.22, 0.08])
            amount = (
                float(np.round(rng.uniform(1, 50), 2))
                if kind == "purchase"
                else (-float(np.round(rng.uniform(1, 20), 2)) if kind == "refund" else np.nan)
            )
            item = None if rng.random() < 0.1 else f"i{int(rng.integers(0, 15)):02d}"
            session = None if rng.random() < 0.1 else f"s{uid}-{int(rng.integers(0, 3))}"
            rows.append((uid, ts, kind, item, amount, session))
    # an event exactly at midnight before as-of, and one exactly at as-of
    rows.append(("u001", AS_OF - pd.Timedelta(microseconds=1), "purchase", "i01", 9.99, "sX"))
    rows.append(("u001", AS_OF, "purchase", "i02", 5.0, "sY"))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "item_id", "amount", "session_id"])
    events["ts"] = events["ts"].astype("datetime64[us]")
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:02d}" for j in range(14)],  # i14 has no items row
            "category": [f"c{j % 5}" if j != 3 else None for j in range(14)],
        }
    )
    offers = pd.DataFrame({"offer_id": OFFER_IDS, "cost": [2.0, 1.0]})
    n_x = 30
    exposures = pd.DataFrame(
        {
            "experiment": "camp",
            "variant": rng.choice(["control", *OFFER_IDS], n_x),
            "unit_id": rng.choice(users["user_id"], n_x),
            "ts": (START + pd.to_timedelta(rng.integers(60 * 24, 140 * 24, n_x), unit="h")).astype(
                "datetime64[us]"
            ),
        }
    )
    tables = {"events": events, "users": users, "items": items, "offers": offers, "exposures": exposures}
    for name, frame in tables.items():
        write_table(frame, path / f"{name}.parquet")
    return tables


def _day(ts: pd.Timestamp) -> int:
    return (ts.normalize() - pd.Timestamp("1970-01-01")).days


def _trend(a: float, b: float) -> float | None:
    return (a - b) / (a + b) if a + b != 0 else None


def _score(values: dict[str, float], better: bool) -> dict[str, int]:
    """1 + floor(5 * (users strictly worse) / n); ``better``: larger value is better."""
    n = len(values)
    out = {}
    for u, v in values.items():
        worse = sum(1 for w in values.values() if (w < v if better else w > v))
        out[u] = 1 + math.floor(5 * worse / n)
    return out


def brute_force(t: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    """The features of the spec, computed one user at a time with loops."""
    a_day = _day(as_of)
    items = t["items"]
    category = {i: c for i, c in zip(items["item_id"], items["category"], strict=True) if pd.notna(c)}
    out: dict[str, dict] = {}
    by_user: dict[str, list] = {}
    for e in t["events"].itertuples():
        by_user.setdefault(e.user_id, []).append(e)
    for user in t["users"].itertuples():
        if user.signup_ts >= as_of:
            continue
        ev = [e for e in by_user.get(user.user_id, []) if e.ts < as_of]
        age = {id(e): a_day - _day(e.ts) for e in ev}
        act = [e for e in ev if e.event_type != "refund"]
        buys = [e for e in ev if e.event_type == "purchase"]
        f: dict[str, object] = {}
        for n in (7, 30, 90, 180):
            f[f"events_{n}d"] = sum(1 for e in act if age[id(e)] <= n)
            f[f"orders_{n}d"] = len(
                {(_day(e.ts), e.session_id) for e in buys if age[id(e)] <= n and pd.notna(e.session_id)}
            )
            f[f"spend_{n}d"] = sum(e.amount for e in buys if age[id(e)] <= n)
        f["days_since_last_event"] = min((age[id(e)] for e in act), default=None)
        f["days_since_last_purchase"] = min((age[id(e)] for e in buys), default=None)
        f["active_days_30d"] = len({_day(e.ts) for e in act if age[id(e)] <= 30})
        f["active_days_90d"] = len({_day(e.ts) for e in act if age[id(e)] <= 90})
        f["orders_total"] = len({(_day(e.ts), e.session_id) for e in buys if pd.notna(e.session_id)})
        f["spend_total"] = sum(e.amount for e in buys)
        sessions = len(
            {(_day(e.ts), e.session_id) for e in act if age[id(e)] <= 90 and pd.notna(e.session_id)}
        )
        f["sessions_per_active_day_90d"] = sessions / f["active_days_90d"] if f["active_days_90d"] else None
        f["avg_order_value"] = f["spend_total"] / f["orders_total"] if f["orders_total"] else None
        refunds = sum(1 for e in ev if e.event_type == "refund")
        f["refund_ratio"] = refunds / len(buys) if buys else None
        days = sorted({_day(e.ts) for e in buys})
        gaps = [b - a for a, b in itertools.pairwise(days)]
        f["purchase_gap_mean_days"] = statistics.mean(gaps) if gaps else None
        f["purchase_gap_std_days"] = statistics.stdev(gaps) if len(gaps) >= 2 else None
        f["purchase_overdue_ratio"] = (
            f["days_since_last_purchase"] / f["purchase_gap_mean_days"]
            if f["purchase_gap_mean_days"]
            else None
        )
        prior_events = sum(1 for e in act if 30 < age[id(e)] <= 60)
        prior_spend = sum(e.amount for e in buys if 30 < age[id(e)] <= 60)
        f["activity_trend_30d"] = _trend(f["events_30d"], prior_events)
        f["spend_trend_30d"] = _trend(f["spend_30d"], prior_spend)
        f["tenure_days"] = a_day - _day(user.signup_ts)
        recent = [e for e in act if age[id(e)] <= 90 and pd.notna(e.item_id)]
        f["distinct_items_90d"] = len({e.item_id for e in recent})
        f["distinct_categories_90d"] = len({category[e.item_id] for e in recent if e.item_id in category})
        x = t["exposures"]
        mine = x[(x["unit_id"] == user.user_id) & x["variant"].isin(OFFER_IDS) & (x["ts"] < as_of)]
        answered = [any(_day(ts) <= d < _day(ts) + 14 for d in days) for ts in mine["ts"]]
        f["offers_exposed"] = len(answered)
        f["offer_response_rate"] = statistics.mean(answered) if answered else None
        f["_refunds"] = refunds
        f["channel"] = user.channel
        out[user.user_id] = f
    _segments(out)
    frame = pd.DataFrame.from_dict(out, orient="index").rename_axis("user_id").reset_index()
    return frame.sort_values("user_id", ignore_index=True)


def _segments(out: dict[str, dict]) -> None:
    r = _score(
        {
            u: f["days_since_last_purchase"] if f["days_since_last_purchase"] is not None else 1e9
            for u, f in out.items()
        },
        better=False,
    )
    fr = _score({u: f["orders_180d"] for u, f in out.items()}, better=True)
    m = _score({u: round(f["spend_180d"], 2) for u, f in out.items()}, better=True)
    for u, f in out.items():
        f["rfm_r"], f["rfm_f"], f["rfm_m"] = r[u], fr[u], m[u]
        rr, ff, mm = r[u], fr[u], m[u]
        if rr >= 4 and ff >= 4 and mm >= 4:
            seg = "champions"
        elif rr >= 3 and ff >= 4:
            seg = "loyal"
        elif rr <= 2 and ff >= 4:
            seg = "cant_lose"
        elif rr >= 4 and ff >= 2:
            seg = "potential_loyalists"
        elif rr >= 4:
            seg = "recent"
        elif rr == 3:
            seg = "needs_attention"
        elif ff >= 2:
            seg = "at_risk"
        elif rr == 2:
            seg = "hibernating"
        else:
            seg = "lost"
        f["rfm_segment"] = seg
        since = f["days_since_last_event"]
        if f["tenure_days"] <= 30:
            stage = "new"
        elif since is None or since > 90:
            stage = "churned"
        elif since > 45:
            stage = "dormant"
        elif (f["purchase_overdue_ratio"] or 0) > 2 or (f["activity_trend_30d"] or 0) <= -0.5:
            stage = "at_risk"
        elif rr >= 4 and ff >= 4 and mm >= 4:
            stage = "core"
        else:
            stage = "active"
        f["lifecycle_stage"] = stage
        f["tag_one_time_buyer"] = f["orders_total"] == 1
        f["tag_big_spender"] = mm == 5
        f["tag_frequent_refunder"] = f["_refunds"] >= 2 and (f["refund_ratio"] or 0) >= 0.2
        f["tag_offer_responder"] = (f["offer_response_rate"] or 0) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_feature_matches_brute_force(tmp_path: Path, seed: int) -> None:
    tables = random_world(tmp_path, seed)
    got = build_features(tmp_path, AS_OF)
    want = brute_force(tables, AS_OF)
    assert list(got["user_id"]) == list(want["user_id"])
    assert (got["as_of"] == AS_OF).all()
    assert list(got.columns) == ["user_id", "as_of", *FEATURES, "channel"]
    for col in [*FEATURES, "channel"]:
        g, w = got[col], want[col]
        if g.dtype.kind in "fi":
            w = pd.to_numeric(w.astype(object).where(w.notna(), np.nan), errors="coerce").astype(float)
            assert (g.isna() == w.isna()).all(), f"{col}: nulls differ"
            np.testing.assert_allclose(g.astype(float)[g.notna()], w[w.notna()], rtol=1e-9, err_msg=col)
        else:
            assert list(g) == list(w), col


def test_every_stage_and_segment_occurs_somewhere(tmp_path: Path) -> None:
    """The random worlds are rich enough that the brute-force comparison exercises every rule."""
    seen_stages: set[str] = set()
    for seed in range(3):
        world = tmp_path / str(seed)
        tables = random_world(world, seed, n_users=80)
        seen_stages |= set(brute_force(tables, AS_OF)["lifecycle_stage"])
    assert seen_stages == {"new", "active", "core", "at_risk", "dormant", "churned"}


def test_without_optional_columns_and_tables(tmp_path: Path) -> None:
    """Events only, no session/amount/item: orders are purchase-days, spend and distinct counts are null."""
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(
                ["2025-01-02 10:00", "2025-01-02 11:00", "2025-01-05 09:00", "2025-01-06 00:00"]
            ),
            "event_type": ["purchase", "purchase", "purchase", "view"],
        }
    )
    events["ts"] = events["ts"].astype("datetime64[us]")
    write_table(events, tmp_path / "events.parquet")
    got = build_features(tmp_path, "2025-01-07").set_index("user_id")
    assert list(got.index) == ["a", "b"]
    assert got.loc["a", "orders_total"] == 2 and got.loc["b", "orders_total"] == 0
    assert got.loc["a", "tenure_days"] == 5  # signed up with the first event
    assert got.loc["a", "purchase_gap_mean_days"] == 3.0
    for col in ("spend_30d", "avg_order_value", "distinct_items_90d", "offers_exposed"):
        assert got[col].isna().all(), col
