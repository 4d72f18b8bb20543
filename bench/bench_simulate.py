"""Benchmark: simulating 100,000 users over 365 days (target: under 2 minutes and 4 GB on 2 cores)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record, run_child


def main(users: int = 100_000, days: int = 365) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "from simulator.simulate import WorldConfig, simulate\n"
            f"counts = simulate(WorldConfig(n_users={users}, days={days}, seed=1), {tmp!r})\n"
            "print(counts['events'])\n"
        )
        seconds, peak_mib, out = run_child(code)
    events = int(out.strip().splitlines()[-1])
    record(
        "simulate",
        {
            "users": users,
            "days": days,
            "events": events,
            "seconds": round(seconds, 1),
            "peak_memory_mib": round(peak_mib),
            "targets": {"seconds": 120, "peak_memory_mib": 4096},
        },
    )


if __name__ == "__main__":
    main()
