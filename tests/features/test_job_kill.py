"""The feature job killed with SIGKILL at random moments: the next run succeeds and writes exactly what a
clean build writes, byte for byte (the kept daily state is replaced as a whole, never left half-new)."""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from features.job import run_job
from features.store import SQLiteStore

DATES = [f"2025-02-{day:02d}" for day in range(1, 14, 3)]
"""As-of dates of one run (several, so a kill can land between two of them)."""
FORK = multiprocessing.get_context("forkserver")
"""Children fork from a server process that imported this module once: they start at once (nothing to
import, so the kills land inside the job) and never inherit the test process's threads (a fork of a
process whose other threads hold locks can hang)."""
FORK.set_forkserver_preload([__name__])


def _world(path: Path) -> Path:
    from simulator.simulate import WorldConfig, simulate

    simulate(WorldConfig(n_users=150, days=45, seed=5), path)
    shutil.rmtree(path / "truth")
    return path


def _snapshots(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("as_of=*.parquet"))}


def _online(path: Path, user_ids: list[str]) -> pd.DataFrame:
    frame = SQLiteStore(path).get(user_ids)
    return frame.sort_values("user_id").reset_index(drop=True)


def _job(data: Path, dates: list[str], out: Path, online: Path) -> None:
    run_job(data, dates, out, online=SQLiteStore(online))
    os._exit(0)  # the parent's atexit handlers and pytest's are not the child's to run


def _timed_child(data: Path, dates: list[str], out: Path, online: Path) -> float:
    child = FORK.Process(target=_job, args=(data, dates, out, online))
    started = time.perf_counter()
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    return time.perf_counter() - started


@pytest.mark.slow
def test_a_killed_feature_job_leaves_a_folder_the_next_run_finishes_exactly(tmp_path: Path) -> None:
    data = _world(tmp_path / "data")
    clean_out, clean_online = tmp_path / "clean", tmp_path / "clean.sqlite"
    took = _timed_child(data, DATES, clean_out, clean_online)  # a fresh build of every date
    expected = _snapshots(clean_out)
    assert len(expected) == len(DATES)

    rng = random.Random(18)
    out, online = tmp_path / "out", tmp_path / "online.sqlite"
    killed_mid_run = 0
    trials: list[tuple[int, float, bool, int | None]] = []
    while killed_mid_run < 10 and len(trials) < 40:
        # a kill in a fresh build, in an extension of the kept state, between snapshots, in the online write
        if rng.random() < 0.5 and (out / "daily").exists():
            shutil.rmtree(out / "daily")
        dates = DATES[: rng.randint(2, len(DATES))]
        child = FORK.Process(target=_job, args=(data, dates, out, online))
        child.start()
        wait = rng.uniform(0.0, took * 0.7)
        time.sleep(wait)
        alive = child.is_alive()
        if alive:
            killed_mid_run += 1
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        trials.append((len(dates), round(wait, 2), alive, child.exitcode))
        if len(trials) % 5 == 0:  # now and then the next run straight after a kill
            run_job(data, DATES, out, online=SQLiteStore(online))
            assert _snapshots(out) == expected, trials
    assert killed_mid_run >= 10, trials
    run_job(data, DATES, out, online=SQLiteStore(online))
    assert _snapshots(out) == expected, trials
    users = pd.read_parquet(clean_out / f"as_of={DATES[-1]}.parquet")["user_id"].tolist()
    assert SQLiteStore(online).as_of() == pd.Timestamp(DATES[-1])
    pd.testing.assert_frame_equal(_online(online, users), _online(clean_online, users))
    assert not [p.name for p in (out / "daily").iterdir() if p.name.endswith(".tmp")]
