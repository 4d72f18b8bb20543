"""The feature job: point in time, incremental equals full, identical reruns, atomic writes, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import write_table
from features.job import build_features, run_job, snapshot_path
from features.store import default_store
from tests.features.test_definitions import AS_OF, random_world


def _mutate_after(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    """Change, add and delete events (and exposures) at or after ``as_of``; nothing before it."""
    rng = np.random.default_rng(seed)
    ev = tables["events"].copy()
    late = ev.index[ev["ts"] >= as_of]
    assert len(late) > 10
    changed = rng.choice(late, len(late) // 3, replace=False)
    ev.loc[changed, "event_type"] = rng.choice(["view", "purchase", "refund"], len(changed))
    ev.loc[changed, "amount"] = rng.uniform(1, 500, len(changed))
    ev.loc[changed, "user_id"] = rng.choice(tables["users"]["user_id"], len(changed))
    ev.loc[changed, "item_id"] = "i13"
    deleted = rng.choice(sorted(set(late) - set(changed)), len(late) // 3, replace=False)
    ev = ev.drop(index=deleted)
    added = pd.DataFrame(
        {
            "user_id": rng.choice(tables["users"]["user_id"], 40),
            "ts": (as_of + pd.to_timedelta(rng.integers(0, 20 * 86400, 40), unit="s")).astype(
                "datetime64[us]"
            ),
            "event_type": rng.choice(["view", "add_to_cart", "purchase", "refund"], 40),
            "item_id": "i07",
            "amount": 99.0,
            "session_id": "s-new",
        }
    )
    added.loc[0, "ts"] = as_of  # exactly at the boundary
    ex = tables["exposures"]
    more_ex = pd.DataFrame(
        {
            "experiment": "camp",
            "variant": "coupon",
            "unit_id": tables["users"]["user_id"][:10],
            "ts": pd.Timestamp(as_of),
        }
    ).astype({"ts": "datetime64[us]"})
    return {
        **tables,
        "events": pd.concat([ev, added], ignore_index=True),
        "exposures": pd.concat([ex, more_ex], ignore_index=True),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_events_at_or_after_as_of_change_no_feature(tmp_path: Path, seed: int) -> None:
    tables = random_world(tmp_path / "a", seed)
    before = build_features(tmp_path / "a", AS_OF)
    for name, frame in _mutate_after(tables, AS_OF, seed).items():
        write_table(frame, tmp_path / "b" / f"{name}.parquet")
    after = build_features(tmp_path / "b", AS_OF)
    pd.testing.assert_frame_equal(before, after)
    # and the mutation is real: a later snapshot does see it
    later = AS_OF + pd.Timedelta(days=30)
    assert not build_features(tmp_path / "a", later).equals(build_features(tmp_path / "b", later))


def test_an_event_before_as_of_does_change_features(tmp_path: Path) -> None:
    tables = random_world(tmp_path / "a", 5)
    before = build_features(tmp_path / "a", AS_OF)
    ev = tables["events"]
    extra = pd.DataFrame(
        {
            "user_id": ["u002"],
            "ts": [AS_OF - pd.Timedelta(seconds=1)],
            "event_type": ["view"],
            "item_id": ["i00"],
            "amount": [np.nan],
            "session_id": ["z"],
        }
    )
    write_table(
        pd.concat([ev, extra.astype({"ts": "datetime64[us]"})], ignore_index=True),
        tmp_path / "a" / "events.parquet",
    )
    after = build_features(tmp_path / "a", AS_OF)
    row = after.set_index("user_id").loc["u002"]
    assert row["days_since_last_event"] == 1
    assert row["events_7d"] == before.set_index("user_id").loc["u002", "events_7d"] + 1


def test_incremental_days_equal_a_full_rebuild_and_reruns_are_identical(tmp_path: Path) -> None:
    random_world(tmp_path, 7)
    out = tmp_path / "features"
    days = [AS_OF + pd.Timedelta(days=k) for k in range(3)]
    for day in days:  # one day at a time: each run aggregates only the new day
        run_job(tmp_path, [day], out, write_online=False)
    state = (out / "daily" / "state.json").read_text()
    assert len(list((out / "daily").glob("activity-*.parquet"))) == 3, state
    for day in days:
        kept = pd.read_parquet(snapshot_path(out, day))
        pd.testing.assert_frame_equal(kept, build_features(tmp_path, day))
    pd.testing.assert_frame_equal(kept, build_features(tmp_path, days[-1], daily_dir=out / "daily"))
    first = snapshot_path(out, days[-1]).read_bytes()
    run_job(tmp_path, days, out, write_online=False)
    assert snapshot_path(out, days[-1]).read_bytes() == first
    run_job(tmp_path, days, out, write_online=False, full=True)
    assert snapshot_path(out, days[-1]).read_bytes() == first
    # a back-fill date older than the kept aggregate is served from it
    older = AS_OF - pd.Timedelta(days=40)
    run_job(tmp_path, [older], out, write_online=False)
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, older)), build_features(tmp_path, older))


def test_a_failed_run_leaves_the_previous_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    random_world(tmp_path, 8)
    out = tmp_path / "features"
    [path] = run_job(tmp_path, [AS_OF], out, write_online=False)
    good = path.read_bytes()

    def broken(table: object, where: Path, **kwargs: object) -> None:  # the disk fills up mid-write
        Path(where).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr("features.contract.pq.write_table", broken)
    with pytest.raises(OSError):
        run_job(tmp_path, [AS_OF], out, write_online=False, full=True)
    assert path.read_bytes() == good
    assert not list(out.glob(".*.tmp"))  # the half-written file is gone too


def test_online_copy_holds_the_latest_date(tmp_path: Path) -> None:
    random_world(tmp_path, 9)
    later = AS_OF + pd.Timedelta(days=1)
    run_job(tmp_path, [later, AS_OF], tmp_path / "f")
    store = default_store(tmp_path)
    assert store.as_of() == later
    snap = pd.read_parquet(snapshot_path(tmp_path / "f", later))
    got = store.get(list(snap["user_id"][:5]))
    pd.testing.assert_frame_equal(got, snap.head(5))
    run_job(tmp_path, [AS_OF], tmp_path / "f")  # a back-fill does not replace a newer online copy
    assert store.as_of() == later


def test_cli_writes_snapshots_and_reports(tmp_path: Path) -> None:
    from userops.cli import app

    random_world(tmp_path, 10)
    result = CliRunner().invoke(
        app,
        [
            "features",
            "--data",
            str(tmp_path),
            "--as-of",
            "2025-05-01",
            "--as-of",
            "2025-05-02",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert snapshot_path(tmp_path / "o", pd.Timestamp("2025-05-02")).exists()
    bad = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "nowhere"), "--as-of", "2025-05-01"])
    assert not (tmp_path / "nowhere").exists()
    assert bad.exit_code == 1
    assert "error" in bad.output and "Traceback" not in bad.output


def test_a_run_ahead_of_the_data_does_not_freeze_missing_days(tmp_path: Path) -> None:
    """Features as of a date past the data, then the missing days arrive: the next run sees them."""
    tables = random_world(tmp_path / "full", 16)
    cut = AS_OF - pd.Timedelta(days=5)
    ev = tables["events"]
    early = {**tables, "events": ev[ev["ts"] < cut]}
    for name, frame in early.items():
        write_table(frame, tmp_path / "data" / f"{name}.parquet")
    out = tmp_path / "features"
    run_job(tmp_path / "data", [AS_OF], out, write_online=False)  # five days with no data yet
    write_table(ev, tmp_path / "data" / "events.parquet")  # they arrive
    later = AS_OF + pd.Timedelta(days=1)
    run_job(tmp_path / "data", [later], out, write_online=False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(snapshot_path(out, later)), build_features(tmp_path / "full", later)
    )


@pytest.mark.parametrize("columns", ["all", "events only"])
def test_running_totals_rolled_on_day_by_day_equal_a_full_rebuild(
    tmp_path: Path, columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept running totals roll on by the rows that enter or leave a window; every snapshot equals
    a fresh one, over one-day and several-day steps, a step past the roll limit, and days past the
    data's end."""
    from features import incremental as inc

    rolled: list[int] = []
    roll = inc.roll_totals
    monkeypatch.setattr(
        inc, "roll_totals", lambda b, bd, d, day: rolled.append(day - bd) or roll(b, bd, d, day)
    )
    seen_rolled: list[int] = []
    roll_seen = inc.roll_last_seen
    monkeypatch.setattr(
        inc,
        "roll_last_seen",
        lambda s, sd, r, day, k: seen_rolled.append(day - sd) or roll_seen(s, sd, r, day, k),
    )
    tables = random_world(tmp_path, 23, n_users=60)
    if columns == "events only":  # no amounts (spend null), sessions or items
        write_table(tables["events"][["user_id", "ts", "event_type"]], tmp_path / "events.parquet")
    out = tmp_path / "features"
    first = AS_OF - pd.Timedelta(days=100)
    run_job(tmp_path, [first], out, write_online=False, full=True)
    daily = out / "daily"
    steps = [1, 1, 6, 1, 29, 1, 45, 1, 1, 31, 60]  # past the events' end (day 170) at the end
    day = first
    for step in steps:
        day = day + pd.Timedelta(days=step)
        run_job(tmp_path, [day], out, write_online=False)
        pd.testing.assert_frame_equal(
            pd.read_parquet(snapshot_path(out, day)), build_features(tmp_path, day), obj=f"{day.date()}"
        )
        state = json.loads((daily / "state.json").read_text())
        assert state["totals"] and (daily / state["totals"]).exists()
        assert len(list(daily.glob("totals-*.parquet"))) == 1
        assert len(list(daily.glob("seen-items-*.parquet"))) == (columns == "all")
    assert state["totals_as_of"] < str(day.date())  # a day past the data's end is not kept
    assert max(rolled) <= 30 and {1, 6, 29} <= set(rolled) and len(rolled) >= 7, rolled
    if columns == "all":  # items and categories, each step the totals rolled
        assert sorted(seen_rolled) == sorted(rolled * 2), seen_rolled
    # served from the kept daily table (and totals) without writing anything
    fresh = build_features(tmp_path, day)
    pd.testing.assert_frame_equal(build_features(tmp_path, day, daily_dir=daily), fresh)


def test_a_daily_run_moves_its_kept_tables_on_with_the_kept_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run each morning on the events so far: the last day may still be filling up, so it is aggregated
    on the fly, and the totals and last-seen tables are kept as of the last kept day. Each run rolls them
    on by a day (never from the first build, which would soon be too old to roll) and each snapshot
    equals a fresh one."""
    from features import incremental as inc
    from features.daily import MAX_PARTS

    steps: list[int] = []
    roll = inc.roll_totals
    monkeypatch.setattr(
        inc, "roll_totals", lambda k, kd, d, day: steps.append(day - kd) or roll(k, kd, d, day)
    )
    tables = random_world(tmp_path / "full", 31, n_users=60)
    data, out, ev = tmp_path / "data", tmp_path / "features", tables["events"]
    for name, frame in tables.items():
        write_table(frame, data / f"{name}.parquet")
    first = AS_OF - pd.Timedelta(days=40)
    for i in range(36):  # past the roll limit of 30 days
        as_of = first + pd.Timedelta(days=i)
        write_table(ev[ev["ts"] < as_of], data / "events.parquet")  # the events so far
        run_job(data, [as_of], out, write_online=False, full=i == 0)
        if i % 7 == 0 or i == 35:
            pd.testing.assert_frame_equal(
                pd.read_parquet(snapshot_path(out, as_of)), build_features(data, as_of), obj=f"{as_of.date()}"
            )
        state = json.loads((out / "daily" / "state.json").read_text())
        assert state["totals_as_of"] == state["seen_as_of"] == state["until"], state
        assert state["until"] == str((as_of - pd.Timedelta(days=1)).date())  # the last day, on the fly
        # a part a day, merged past MAX_PARTS; the folder holds just what the state names
        named = {state["totals"], state["seen_items"], state["seen_categories"], "state.json"}
        for table in ("activity", "items", "users", "item_codes"):
            assert 1 <= len(state[table]) <= MAX_PARTS, (table, state[table])
            named |= set(state[table])
        assert {p.name for p in (out / "daily").iterdir() if not p.name.startswith(".")} == named
    assert steps and set(steps) == {1}, steps
    assert any("merged" in p for p in state["activity"] + state["items"])


def test_kept_last_seen_tables_follow_a_changed_items_file(tmp_path: Path) -> None:
    """Distinct categories come from kept last-seen tables: a new items file (categories moved) is not
    served from them."""
    import shutil

    data, old = tmp_path / "data", tmp_path / "old"
    tables = random_world(data, 5, n_users=60)
    out = data / "features"
    day = AS_OF - pd.Timedelta(days=60)
    run_job(data, [day], out, write_online=False, full=True)
    assert list((out / "daily").glob("seen-categories-*.parquet"))
    shutil.copytree(data, old)
    items = tables["items"].copy()
    items["category"] = ["c9" if j % 2 else f"c{j}" for j in range(len(items))]  # categories move
    write_table(items, data / "items.parquet")
    later = day + pd.Timedelta(days=1)
    run_job(data, [later], out, write_online=False)
    fresh = build_features(data, later)
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, later)), fresh)
    stale = build_features(old, later)  # what the old categories give
    assert (fresh["distinct_categories_90d"] != stale["distinct_categories_90d"]).any()


def test_new_users_and_exposures_files_are_seen_by_the_next_day(tmp_path: Path) -> None:
    """A daily run looks up only the new events' users while the users and exposures files are unchanged;
    a new user exposed to an offer in a changed file, with no events at all, is still counted."""
    tables = random_world(tmp_path, 6, n_users=50)
    out = tmp_path / "features"
    run_job(tmp_path, [AS_OF], out, write_online=False, full=True)
    later = AS_OF + pd.Timedelta(days=1)
    run_job(tmp_path, [later], out, write_online=False)  # files unchanged: the short path
    pd.testing.assert_frame_equal(pd.read_parquet(snapshot_path(out, later)), build_features(tmp_path, later))
    users = pd.concat(
        [
            tables["users"],
            pd.DataFrame(
                {
                    "user_id": ["u_new"],
                    "signup_ts": [AS_OF - pd.Timedelta(days=10)],
                    "channel": ["paid"],
                }
            ).astype({"signup_ts": "datetime64[us]"}),
        ],
        ignore_index=True,
    )
    exposures = pd.concat(
        [
            tables["exposures"],
            pd.DataFrame(
                {
                    "experiment": ["camp"],
                    "variant": ["coupon"],
                    "unit_id": ["u_new"],
                    "ts": [AS_OF - pd.Timedelta(days=3)],
                }
            ).astype({"ts": "datetime64[us]"}),
        ],
        ignore_index=True,
    )
    write_table(users, tmp_path / "users.parquet")
    write_table(exposures, tmp_path / "exposures.parquet")
    last = later + pd.Timedelta(days=1)
    run_job(tmp_path, [last], out, write_online=False)
    kept = pd.read_parquet(snapshot_path(out, last))
    pd.testing.assert_frame_equal(kept, build_features(tmp_path, last))
    assert kept.set_index("user_id").loc["u_new", "offers_exposed"] == 1


def test_a_second_job_on_the_same_folder_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    """Two jobs never write one output folder at once; the lock goes with the job that held it."""
    import subprocess
    import sys
    import time

    from features.daily import locked
    from features.errors import JobBusyError
    from userops.cli import app

    random_world(tmp_path, 4)
    out = tmp_path / "features"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom features.daily import locked\n"
                f"with locked({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(JobBusyError, match="another feature job or ingest is writing"):
            run_job(tmp_path, [AS_OF], out, write_online=False)
        assert not list(out.glob("as_of=*.parquet"))
        result = CliRunner().invoke(
            app,
            ["features", "--data", str(tmp_path), "--as-of", "2025-05-01", "--out", str(out), "--no-online"],
        )
        assert result.exit_code == 1 and "another feature job or ingest is writing" in result.output
        assert "Traceback" not in result.output
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with locked(out):  # the killed holder's lock went with it
        pass
    assert run_job(tmp_path, [AS_OF], out, write_online=False)[0].exists()


def test_a_late_event_for_a_kept_day_rebuilds_the_aggregate(tmp_path: Path) -> None:
    """An event that arrives after its day was aggregated is not lost: the next run sees the kept days'
    events changed, rebuilds, and says why."""
    tables = random_world(tmp_path, 8)
    out = tmp_path / "features"
    day = AS_OF - pd.Timedelta(days=20)
    reasons: list[str] = []
    run_job(tmp_path, [day], out, write_online=False, on_rebuild=reasons.append)
    assert reasons == ["nothing kept yet"]
    later = day + pd.Timedelta(days=1)
    run_job(tmp_path, [later], out, write_online=False, on_rebuild=reasons.append)
    assert reasons == ["nothing kept yet"]  # extended, not rebuilt
    ev = tables["events"]
    late = pd.DataFrame(
        {
            "user_id": ["u002"],
            "ts": [day - pd.Timedelta(days=3)],
            "event_type": ["purchase"],
            "item_id": ["i04"],
            "amount": [42.0],
            "session_id": ["s-late"],
        }
    )
    write_table(
        pd.concat([ev, late.astype({"ts": "datetime64[us]"})], ignore_index=True), tmp_path / "events.parquet"
    )
    nxt = later + pd.Timedelta(days=1)
    run_job(tmp_path, [nxt], out, write_online=False, on_rebuild=reasons.append)
    assert len(reasons) == 2 and "changed since they were aggregated" in reasons[1]
    got = pd.read_parquet(snapshot_path(out, nxt))
    pd.testing.assert_frame_equal(got, build_features(tmp_path, nxt))
    assert got.set_index("user_id").loc["u002", "orders_total"] >= 1
