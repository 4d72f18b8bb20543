"""Benchmark: the feature job on a simulated world of 10M+ events, against a straightforward pandas version.

Figures, each measured in a fresh interpreter (work time excludes start-up and imports; peak memory is
the child's own high-water mark), each the median of ``--repeats`` runs:

* full rebuild: ``run_job(..., full=True)`` as of the day before the last: every event before it
  aggregated, the daily table (and the running totals and last-seen tables) kept;
* incremental: the next day's snapshot, after one more day of events, which the job adds to the kept
  tables (the daily run: each morning's snapshot after the day before is complete);
* incremental, day on the fly: the day after that, past the data's end, whose events are aggregated on
  the fly and not kept (the job cannot know that day is complete);
* pandas: the same features, the obvious way (a groupby per window), as of the same day;
* online copy: writing the snapshot to the embedded SQLite store, and to Redis when a server answers;
* a re-run of the next day, every table already kept: what a day costs with no events of its own (the
  snapshot of every user, and the fixed cost of a run);
* engine floor: three statements that any full rebuild of these features has to run, written by hand
  in DuckDB SQL on the same events, each materialized: the per-user, day and session grouping with its
  sums, the distinct (user, day, item) rows of the last 90 days, and each user's window sums from the
  first (no gap sums, no distinct counts). Their sum bounds the full rebuild from below, before codes,
  the snapshot's joins and ranks, and any writing.

Targets on 2 cores: full rebuild >= 5M events/s and >= 3x pandas; incremental < 1/5 of the full rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record, run_child

BENCH_DIR = str(Path(__file__).resolve().parent)
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {bench!r})
{imports}
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra}}))
"""


def _child(body: str, imports: str = "") -> dict:
    """Run ``body`` in a fresh interpreter after ``imports`` (not timed); ``body`` sets ``extra`` (a dict).

    Returns its figures and wall time (which includes start-up and imports).
    """
    wall, _, out = run_child(_CHILD.format(bench=BENCH_DIR, imports=imports, body=body))
    figures = json.loads(out.strip().splitlines()[-1])
    figures["wall_seconds"] = wall
    return figures


FLOOR_SQL = {
    "per_user_day_session": """
        SELECT user_id, CAST(epoch(ts) // 86400 AS INT) AS day, session_id,
               count(*) FILTER (WHERE event_type <> 'refund') AS events,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
               count(*) FILTER (WHERE event_type = 'refund') AS refunds,
               CAST(round(sum(amount) FILTER (WHERE event_type = 'purchase') * 10000) AS BIGINT) AS spend_e4
        FROM read_parquet({events!r}) WHERE ts < TIMESTAMP {as_of!r} GROUP BY ALL""",
    "item_rows_90d": """
        SELECT DISTINCT user_id, CAST(epoch(ts) // 86400 AS INT) AS day, item_id
        FROM read_parquet({events!r})
        WHERE ts >= TIMESTAMP {start!r} AND ts < TIMESTAMP {as_of!r} AND event_type <> 'refund'
          AND item_id IS NOT NULL""",
    "per_user_totals": """
        SELECT user_id, {sums},
               max(day) FILTER (WHERE events > 0) AS last_active_day,
               max(day) FILTER (WHERE purchases > 0) AS last_purchase_day
        FROM per_user_day_session GROUP BY user_id""",
}
"""Three statements any full rebuild of these features runs, written by hand (see the module docstring)."""


def engine_floor(events: str, as_of: pd.Timestamp) -> dict[str, float]:
    """Seconds each :data:`FLOOR_SQL` statement takes in DuckDB, its result materialized in memory."""
    import time

    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    start, day = as_of - pd.Timedelta(days=90), (as_of - pd.Timestamp("1970-01-01")).days
    sums = ", ".join(
        f"sum({m}) FILTER (WHERE day >= {day - w}) AS {m}_{w}d"
        for m in ("events", "purchases", "refunds", "spend_e4")
        for w in (7, 30, 60, 90, 180)
    )
    sums += f", count(*) FILTER (WHERE events > 0 AND day >= {day - 30}) AS active_days_30d"
    out = {}
    for name, sql in FLOOR_SQL.items():
        query = sql.format(events=events, as_of=str(as_of), start=str(start), sums=sums)
        began = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE {name} AS {query}")
        out[name] = round(time.perf_counter() - began, 2)
    return out


def pandas_features(data: str | Path, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """The snapshot's behavioural features, written the obvious pandas way (the comparison, not product)."""
    data, as_of = Path(data), pd.Timestamp(as_of)
    ev = pd.read_parquet(
        data / "events.parquet", columns=["user_id", "ts", "event_type", "item_id", "amount", "session_id"]
    )
    ev = ev[ev["ts"] < as_of]
    users = pd.read_parquet(data / "users.parquet")
    users = users[users["signup_ts"] < as_of].set_index("user_id")
    a_day = (as_of - pd.Timestamp("1970-01-01")).days
    ev["day"] = (ev["ts"] - pd.Timestamp("1970-01-01")).dt.days
    ev["age"] = a_day - ev["day"]
    act = ev[ev["event_type"] != "refund"]
    buy = ev[ev["event_type"] == "purchase"]
    out = pd.DataFrame(index=users.index)
    for n in (7, 30, 90, 180):
        out[f"events_{n}d"] = act[act["age"] <= n].groupby("user_id").size()
        b = buy[buy["age"] <= n]
        out[f"orders_{n}d"] = b.drop_duplicates(["user_id", "day", "session_id"]).groupby("user_id").size()
        out[f"spend_{n}d"] = b.groupby("user_id")["amount"].sum()
    out["days_since_last_event"] = a_day - act.groupby("user_id")["day"].max()
    out["days_since_last_purchase"] = a_day - buy.groupby("user_id")["day"].max()
    days = act.drop_duplicates(["user_id", "day"])
    out["active_days_30d"] = days[days["age"] <= 30].groupby("user_id").size()
    out["active_days_90d"] = days[days["age"] <= 90].groupby("user_id").size()
    out["orders_total"] = buy.drop_duplicates(["user_id", "day", "session_id"]).groupby("user_id").size()
    out["spend_total"] = buy.groupby("user_id")["amount"].sum()
    a90 = act[act["age"] <= 90]
    sessions = a90.drop_duplicates(["user_id", "day", "session_id"]).groupby("user_id").size()
    counts = [c for c in out.columns if not c.startswith("days_since") and not c.startswith("spend")]
    out[counts] = out[counts].fillna(0)
    out[[c for c in out.columns if c.startswith("spend")]] = out.filter(like="spend").fillna(0.0)
    per_day = sessions.reindex(out.index) / out["active_days_90d"].replace(0, np.nan)
    out["sessions_per_active_day_90d"] = per_day
    out["avg_order_value"] = out["spend_total"] / out["orders_total"].replace(0, np.nan)
    refunds = ev[ev["event_type"] == "refund"].groupby("user_id").size().reindex(out.index).fillna(0)
    out["refund_ratio"] = refunds / buy.groupby("user_id").size().reindex(out.index)
    pdays = buy.drop_duplicates(["user_id", "day"]).sort_values(["user_id", "day"])
    gaps = pdays.groupby("user_id")["day"].diff()
    out["purchase_gap_mean_days"] = gaps.groupby(pdays["user_id"]).mean()
    out["purchase_gap_std_days"] = gaps.groupby(pdays["user_id"]).std()
    out["purchase_overdue_ratio"] = out["days_since_last_purchase"] / out["purchase_gap_mean_days"]
    prior_e = act[(act["age"] > 30) & (act["age"] <= 60)].groupby("user_id").size()
    prior_e = prior_e.reindex(out.index).fillna(0)
    prior_s = buy[(buy["age"] > 30) & (buy["age"] <= 60)].groupby("user_id")["amount"].sum()
    prior_s = prior_s.reindex(out.index).fillna(0.0)
    recent = out["events_30d"]
    out["activity_trend_30d"] = (recent - prior_e) / (recent + prior_e).replace(0, np.nan)
    out["spend_trend_30d"] = (out["spend_30d"] - prior_s) / (out["spend_30d"] + prior_s).replace(0, np.nan)
    out["tenure_days"] = a_day - (users["signup_ts"] - pd.Timestamp("1970-01-01")).dt.days
    items = pd.read_parquet(data / "items.parquet")
    touched = a90[a90["item_id"].notna()].merge(items[["item_id", "category"]], on="item_id", how="left")
    out["distinct_items_90d"] = touched.groupby("user_id")["item_id"].nunique()
    out["distinct_categories_90d"] = touched.groupby("user_id")["category"].nunique()
    out[["distinct_items_90d", "distinct_categories_90d"]] = out[
        ["distinct_items_90d", "distinct_categories_90d"]
    ].fillna(0)
    x = pd.read_parquet(data / "exposures.parquet")
    offers = pd.read_parquet(data / "offers.parquet")["offer_id"]
    x = x[x["variant"].isin(offers) & (x["ts"] < as_of)].reset_index(drop=True)
    x["xday"] = (x["ts"] - pd.Timestamp("1970-01-01")).dt.days
    x["n"] = np.arange(len(x))
    pair = x.merge(pdays[["user_id", "day"]], left_on="unit_id", right_on="user_id", how="left")
    pair["hit"] = (pair["day"] >= pair["xday"]) & (pair["day"] < pair["xday"] + 14)
    answered = pair.groupby("n")["hit"].any()
    x["answered"] = x["n"].map(answered).astype(float)
    out["offers_exposed"] = x.groupby("unit_id").size().reindex(out.index).fillna(0)
    out["offer_response_rate"] = x.groupby("unit_id")["answered"].mean()
    n = len(out)
    worse_r = out["days_since_last_purchase"].fillna(1e9).rank(method="min", ascending=False) - 1
    out["rfm_r"] = 1 + (5 * worse_r // n).astype(int)
    out["rfm_f"] = 1 + (5 * (out["orders_180d"].rank(method="min") - 1) // n).astype(int)
    out["rfm_m"] = 1 + (5 * (out["spend_180d"].round(2).rank(method="min") - 1) // n).astype(int)
    since = out["days_since_last_event"]
    out["lifecycle_stage"] = np.select(
        [
            out["tenure_days"] <= 30,
            since.isna() | (since > 90),
            since > 45,
            (out["purchase_overdue_ratio"].fillna(0) > 2) | (out["activity_trend_30d"].fillna(0) <= -0.5),
            (out["rfm_r"] >= 4) & (out["rfm_f"] >= 4) & (out["rfm_m"] >= 4),
        ],
        ["new", "churned", "dormant", "at_risk", "core"],
        "active",
    )
    return out.reset_index().sort_values("user_id", ignore_index=True)


def _redis_write(snapshot: Path) -> float | None:
    """Seconds to write the snapshot to the Redis online store (``USEROPS_REDIS_URL``, default the local
    server), under a prefix of its own that is deleted afterwards; None when no server answers."""
    import redis

    url = os.environ.get("USEROPS_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        return None
    prefix = "userops-bench:"
    try:
        done = _child(
            f"RedisStore.from_url({url!r}, prefix={prefix!r}).write(frame)\nextra = {{}}",
            f"import pandas as pd\nfrom features.store import RedisStore\n"
            f"frame = pd.read_parquet({str(snapshot)!r})",
        )
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    return round(done["seconds"], 2)


def _median(runs: list[dict], key: str = "seconds") -> float:
    return float(np.median([r[key] for r in runs]))


def _figures(runs: list[dict], full_seconds: float | None = None) -> dict[str, object]:
    """Median seconds (and wall time, peak memory) of repeated runs, every run's seconds, the ratio to
    the full rebuild's median."""
    out: dict[str, object] = {
        "seconds": round(_median(runs), 2),
        "runs": [round(r["seconds"], 2) for r in runs],
        "wall_seconds_with_start_up": round(_median(runs, "wall_seconds"), 2),
        "peak_memory_mib": round(max(r["peak_mib"] for r in runs)),
    }
    if full_seconds is not None:
        out["ratio_to_full"] = round(_median(runs) / full_seconds, 3)
    return out


def _restore(kept: Path, out: Path) -> None:
    """Put the feature folder back as it was (each repeat of a daily run starts from the same state)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(kept, out)


def main(users: int = 150_000, days: int = 365, world: str | None = None, repeats: int = 3) -> None:
    """Run the benchmark; ``world``: a folder to keep the simulated world in and reuse on later runs.

    Timings on a shared 2-core machine swing by a third from run to run, so every figure is the median
    of ``repeats`` runs, and the full rebuild and pandas alternate so both meet the same machine.
    """
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(world) if world else Path(tmp) / "world", Path(tmp) / "features"
        sim = {"seconds": float("nan")}
        if not (data / "events.parquet").exists():
            config = f"WorldConfig(n_users={users}, days={days}, seed=1)"
            sim = _child(
                f"extra = simulate({config}, {str(data)!r})",
                "from simulator.simulate import WorldConfig, simulate",
            )
        start = pd.Timestamp("2025-01-01")
        as_of, nxt, after = (start + pd.Timedelta(days=days + k) for k in (-2, -1, 0))
        ts = pd.read_parquet(data / "events.parquet", columns=["ts"])["ts"]
        n_full, n_day = int((ts < as_of).sum()), int(((ts >= as_of) & (ts < nxt)).sum())
        del ts
        job = "import ibis.backends.duckdb\nfrom features.job import run_job"  # imports are not timed

        def run(day: pd.Timestamp, full: bool = False) -> dict:
            return _child(
                f"run_job({str(data)!r}, [{str(day.date())!r}], {str(out)!r}, "
                f"write_online=False, full={full})\nextra = {{}}",
                job,
            )

        pandas_out = Path(tmp) / "pandas.parquet"
        full_runs, pandas_runs = [], []
        for _ in range(repeats):
            full_runs.append(run(as_of, full=True))
            pandas_runs.append(
                _child(
                    f"frame = pandas_features({str(data)!r}, {str(as_of.date())!r})\n"
                    f"extra = {{}}\nframe.to_parquet({str(pandas_out)!r})",
                    "from bench_features import pandas_features",
                )
            )
        built, next_kept = Path(tmp) / "built", Path(tmp) / "next_kept"
        shutil.copytree(out, built)
        incr_runs = []
        for _ in range(repeats):
            _restore(built, out)
            incr_runs.append(run(nxt))
        shutil.copytree(out, next_kept)
        again_runs = [run(nxt) for _ in range(repeats)]
        fly_runs = []
        for _ in range(repeats):
            _restore(next_kept, out)
            fly_runs.append(run(after))
        events = str(data / "events.parquet")
        floor_runs = [
            _child(
                f"extra = engine_floor({events!r}, pd.Timestamp({str(as_of)!r}))",
                "import pandas as pd\nfrom bench_features import engine_floor",
            )
            for _ in range(repeats)
        ]
        snap = out / f"as_of={as_of.date()}.parquet"
        online = _child(
            f"SQLiteStore({str(Path(tmp) / 'online.sqlite')!r}).write(frame)\nextra = {{}}",
            f"import pandas as pd\nfrom features.store import SQLiteStore\n"
            f"frame = pd.read_parquet({str(snap)!r})",
        )
        redis_online = _redis_write(snap)
        ours, theirs = pd.read_parquet(snap), pd.read_parquet(pandas_out)
        agree = _agreement(ours, theirs)
    full_s, pandas_s = _median(full_runs), _median(pandas_runs)
    floor = {k: round(_median(floor_runs, k), 2) for k in FLOOR_SQL}
    floor_s = sum(floor.values())
    record(
        "features",
        {
            "users": users,
            "days": days,
            "events_in_history": n_full,
            "events_next_day": n_day,
            "repeats": repeats,
            "simulate_seconds": round(sim["seconds"], 1) if sim["seconds"] == sim["seconds"] else None,
            "world_reused": world is not None and sim["seconds"] != sim["seconds"],
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "full_rebuild": {**_figures(full_runs), "events_per_second": round(n_full / full_s)},
            "incremental_next_day": _figures(incr_runs, full_s),
            "incremental_day_on_the_fly": _figures(fly_runs, full_s),
            "rerun_next_day_all_kept": _figures(again_runs, full_s),
            "engine_floor_full_rebuild": {
                **floor,
                "seconds": round(floor_s, 2),
                "events_per_second_at_most": round(n_full / floor_s),
            },
            "pandas": {**_figures(pandas_runs), "events_per_second": round(n_full / pandas_s)},
            "speedup_vs_pandas": round(pandas_s / full_s, 2),
            "speedup_vs_pandas_each_pair": [
                round(p["seconds"] / f["seconds"], 2) for f, p in zip(full_runs, pandas_runs, strict=True)
            ],
            "online_sqlite_write_seconds": round(online["seconds"], 2),  # not part of the full rebuild figure
            "online_redis_write_seconds": redis_online,
            "max_abs_difference_vs_pandas": agree,
            "targets": {"events_per_second": 5_000_000, "speedup_vs_pandas": 3.0, "incremental_ratio": 0.2},
        },
    )


def _agreement(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """Largest absolute difference per shared numeric column (the two implementations must agree)."""
    assert list(ours["user_id"]) == list(theirs["user_id"]), "different populations"
    diffs = {}
    for col in theirs.columns:
        if col in ("user_id",) or col not in ours:
            continue
        if col == "lifecycle_stage":
            diffs[col] = float((ours[col].to_numpy() != theirs[col].to_numpy()).sum())
            continue
        a, b = ours[col].astype(float).to_numpy(), theirs[col].astype(float).to_numpy()
        if not (np.isnan(a) == np.isnan(b)).all():
            diffs[col] = float("inf")
            continue
        ok = ~np.isnan(a)
        diffs[col] = float(np.max(np.abs(a[ok] - b[ok]), initial=0.0))
    return diffs


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", help="keep the simulated world here and reuse it on later runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each timing (the median is kept)")
    args = parser.parse_args()
    main(world=args.world, repeats=args.repeats)
