"""The offer campaign changes nothing before its day: the events and users up to the campaign day are
those of the world as it was before offers acted along country, device and acquisition channel.

The digests were taken from the simulator before that change (same seeds, same sizes); offers, price
sensitivity and the campaign's reach are read only from the campaign day on, so the random stream and
every event before it stay the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from simulator.simulate import WorldConfig, simulate

BEFORE_CAMPAIGN = {
    11: (6391, "928bcb419daf80ca563052749792a2c3594747b5c1f70948de6f4ff0bb6530da"),
    5: (6870, "7b1cdc844b9efc0639d64a41861856cebffe8721ab1fce9eb0503bda5a55c44c"),
}


def _before_campaign(folder: Path, cfg: WorldConfig) -> tuple[int, str]:
    cfg = cfg.resolved()
    cut = pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.campaign_day)
    events = pd.read_parquet(folder / "events.parquet")
    events = events[events["ts"] < cut].reset_index(drop=True)
    users = pd.read_parquet(folder / "users.parquet")
    users = users[users["signup_ts"] < cut].reset_index(drop=True)
    digest = hashlib.sha256()
    for frame in (events, users):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return len(events), digest.hexdigest()


@pytest.mark.parametrize("seed", sorted(BEFORE_CAMPAIGN))
def test_the_world_before_the_campaign_day_is_unchanged(seed: int, tmp_path: Path) -> None:
    cfg = WorldConfig(n_users=400, days=90, seed=seed)
    simulate(cfg, tmp_path)
    assert _before_campaign(tmp_path, cfg) == BEFORE_CAMPAIGN[seed]
