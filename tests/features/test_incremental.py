"""The incremental engine: running totals and last-seen tables rolled on from an earlier day equal the
same tables built from scratch, checked on random daily tables over many (earlier day, later day) pairs."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from features import incremental as inc

DAILY_COLUMNS = ("events", "purchases", "orders", "spend_e4", "refunds", "sessions")


def _random_daily(seed: int, n_users: int = 25, days: int = 400) -> pd.DataFrame:
    """One row per (user, active day) with small counts; some purchase days, some event-free days."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        for day in sorted(rng.choice(days, int(rng.integers(1, 60)), replace=False)):
            events = int(rng.integers(0, 5))
            purchases = int(rng.integers(0, 3)) if rng.random() < 0.3 else 0
            rows.append(
                (
                    user,
                    int(day),
                    events,
                    purchases,
                    min(purchases, 1),
                    purchases * int(rng.integers(1, 90_000)),
                    int(rng.random() < 0.1),
                    int(events > 0),
                )
            )
    frame = pd.DataFrame(rows, columns=["user_id", "day", *DAILY_COLUMNS])
    return frame.astype({"user_id": "int64", "day": "int32"})


def _sorted(table: ibis.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    return frame.sort_values(list(frame.columns[:2]), ignore_index=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_rolled_totals_equal_totals_built_from_scratch(seed: int) -> None:
    con = ibis.duckdb.connect()
    daily = con.create_table("daily", ibis.memtable(_random_daily(seed)))
    for kept_day, as_of_day in [
        (100, 100),
        (100, 101),
        (100, 107),
        (200, 231),
        (150, 340),
        (0, 90),
        (390, 420),
    ]:
        kept = inc.totals(daily, kept_day)
        rolled = inc.roll_totals(kept, kept_day, daily, as_of_day)
        pd.testing.assert_frame_equal(
            _sorted(rolled), _sorted(inc.totals(daily, as_of_day)), obj=f"{kept_day} -> {as_of_day}"
        )


@pytest.mark.parametrize("key", ["item_id", "category"])
def test_rolled_last_seen_tables_equal_tables_built_from_scratch(key: str) -> None:
    rng = np.random.default_rng(3)
    n = 3000
    rows = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "day": rng.integers(0, 300, n).astype("int32"),
            "item_id": rng.integers(0, 40, n),
            "category": np.where(rng.random(n) < 0.1, None, rng.integers(0, 6, n).astype(str)),
        }
    )
    con = ibis.duckdb.connect()
    table = con.create_table("rows", ibis.memtable(rows))
    for seen_day, as_of_day in [(120, 120), (120, 121), (120, 150), (100, 100 + inc.DISTINCT_WINDOW)]:
        seen = inc.last_seen(table, seen_day, key)
        rolled = inc.roll_last_seen(seen, seen_day, table, as_of_day, key)
        pd.testing.assert_frame_equal(
            _sorted(rolled), _sorted(inc.last_seen(table, as_of_day, key)), obj=f"{seen_day} -> {as_of_day}"
        )


def test_the_tables_roll_forward_only() -> None:
    t = ibis.table({"user_id": "int64", "day": "int32", **dict.fromkeys(DAILY_COLUMNS, "int64")})
    with pytest.raises(ValueError, match="forward only"):
        inc.roll_totals(inc.totals(t, 10), 10, t, 9)
    rows = ibis.table({"user_id": "int64", "day": "int32", "item_id": "int64"})
    with pytest.raises(ValueError, match="forward only"):
        inc.roll_last_seen(inc.last_seen(rows, 10, "item_id"), 10, rows, 9, "item_id")
    with pytest.raises(ValueError, match="forward only"):  # past the window: nothing kept is left
        inc.roll_last_seen(inc.last_seen(rows, 10, "item_id"), 10, rows, 11 + inc.DISTINCT_WINDOW, "item_id")
