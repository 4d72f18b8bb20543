"""Fixtures for the experiments tests: a simulated data folder and isolated SQL stores.

Test files here are named ``test_experiments_*.py`` so their basenames never collide with other
packages' tests (the test folders are not Python packages).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

START = pd.Timestamp("2024-03-01")


@dataclass
class Folder:
    """A simulated data folder and the frames written to it."""

    path: Path
    exposures: pd.DataFrame
    events: pd.DataFrame


def simulate_folder(
    path: Path,
    *,
    seed: int = 7,
    units: int = 2000,
    variants: tuple[str, ...] = ("control", "treatment", "bigger"),
    lifts: tuple[float, ...] = (1.0, 1.25, 1.1),
    probabilities: tuple[float, ...] | None = None,
    exposure_days: int = 14,
    data_days: int = 35,
) -> Folder:
    """Write ``exposures.csv`` and ``events.parquet`` for one experiment ``exp1`` into ``path``.

    Units have a latent purchase rate that drives both pre- and post-exposure purchases (so CUPED has a
    covariate); each variant multiplies the post-exposure rate by its lift. Ids have leading zeros to
    catch any reader that turns them into numbers. The data also holds repeat exposures, a few units
    exposed to two variants, events of never-exposed users, purchases exactly at first exposure, and
    refunds.

    Args:
        path: Folder to write into.
        seed: Random seed.
        units: Number of exposed units.
        variants: Variant names (first is control).
        lifts: Purchase-rate multiplier per variant.
        probabilities: Assignment probabilities (equal when None).
        exposure_days: Days over which first exposures spread.
        data_days: Days of data after the start.

    Returns:
        The folder.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:05d}" for i in range(units)])
    arm = rng.choice(len(variants), size=units, p=probabilities)
    first = START + pd.to_timedelta(rng.uniform(0, exposure_days * 86400, units).round(), unit="s")
    exposures = [
        pd.DataFrame({"experiment": "exp1", "variant": np.array(variants)[arm], "unit_id": ids, "ts": first})
    ]
    again = rng.random(units) < 0.3
    later = first[again] + pd.to_timedelta(rng.uniform(0, 5 * 86400, again.sum()).round(), unit="s")
    exposures.append(
        pd.DataFrame(
            {
                "experiment": "exp1",
                "variant": np.array(variants)[arm[again]],
                "unit_id": ids[again],
                "ts": later,
            }
        )
    )
    mixed = rng.choice(units, size=5, replace=False)
    other = np.array(variants)[(arm[mixed] + 1) % len(variants)]
    exposures.append(
        pd.DataFrame(
            {
                "experiment": "exp1",
                "variant": other,
                "unit_id": ids[mixed],
                "ts": first[mixed] + pd.Timedelta(hours=3),
            }
        )
    )
    exposures.append(
        pd.DataFrame({"experiment": "other", "variant": "control", "unit_id": ids[:50], "ts": first[:50]})
    )
    exposure_frame = pd.concat(exposures, ignore_index=True).sample(frac=1.0, random_state=seed)

    rate = rng.gamma(0.6, 0.06, units)
    rows = []
    pre_start = START - pd.Timedelta(days=20)
    end = START + pd.Timedelta(days=data_days)
    for i in range(units):
        before = (first[i] - pre_start).total_seconds()
        after = (end - first[i]).total_seconds()
        n_pre = rng.poisson(rate[i] * before / 86400)
        n_post = rng.poisson(rate[i] * lifts[arm[i]] * after / 86400)
        stamps = np.concatenate([rng.uniform(0, before, n_pre), before + rng.uniform(0, after, n_post)])
        for s in stamps:
            ts = pre_start + pd.Timedelta(seconds=round(float(s)))
            amount = float(np.round(rng.lognormal(3, 0.8), 2))
            rows.append((ids[i], ts, "purchase", amount))
            if rng.random() < 0.1:
                rows.append((ids[i], ts + pd.Timedelta(days=2), "refund", -amount))
        for s in rng.uniform(0, before + after, rng.poisson(8 * rate[i] * 55 + 1)):
            rows.append((ids[i], pre_start + pd.Timedelta(seconds=round(float(s))), "view", np.nan))
        if rng.random() < 0.2:
            rows.append(
                (ids[i], first[i] + pd.Timedelta(days=float(rng.uniform(0, 9))), "add_to_cart", np.nan)
            )
    for i in rng.choice(units, size=20, replace=False):
        rows.append((ids[i], first[i], "purchase", 10.0))  # exactly at first exposure: inside the window
        rows.append(
            (ids[i], first[i] + pd.Timedelta(days=7), "purchase", 20.0)
        )  # exactly at day 7: outside a 7-day window
    for j in range(200):
        rows.append((f"9{j:05d}", START + pd.Timedelta(days=3), "purchase", 99.0))  # never exposed
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount"])
    events["session_id"] = "s"
    path.mkdir(parents=True, exist_ok=True)
    exposure_frame.to_csv(path / "exposures.csv", index=False)
    events.to_parquet(path / "events.parquet", index=False)
    return Folder(path=path, exposures=exposure_frame, events=events)


@pytest.fixture(scope="session")
def sim_folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    """One simulated experiment folder shared by the read-only tests."""
    return simulate_folder(tmp_path_factory.mktemp("sim"))


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Folder]:
    """Factory for custom simulated folders."""
    return lambda **kwargs: simulate_folder(tmp_path / uuid.uuid4().hex[:8], **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(url, table_prefix)`` for a fresh store on SQLite (file) and on the PostgreSQL server.

    On PostgreSQL each test gets its own table prefix; tests drop their tables afterwards.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}", ""
    else:
        url = request.getfixturevalue("postgres_url")
        yield url, f"t{uuid.uuid4().hex[:12]}_"
