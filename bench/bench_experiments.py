"""Benchmark: assignments per second in-process, and durable exposure-log writes per second (SQLite file).

Run: ``.venv/bin/python bench/bench_experiments.py`` (``make bench`` runs every ``bench/bench_*.py``).
Writes ``bench/results/experiments.json``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record

from experiments.assignment import Design, Holdout, assign, assign_many
from experiments.exposures import Exposure, ExposureLog


def best_rate(work: Callable[[], int], repeats: int = 3) -> float:
    """Items per second of the fastest of ``repeats`` runs."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        items = work()
        best = max(best, items / (time.perf_counter() - started))
    return best


def main(batch_units: int = 1_000_000, single_calls: int = 100_000) -> None:
    design = Design(salt="bench", variants=("control", "b", "c"), weights=(50, 25, 25), layer="home",
                    layer_slice=(0, 8000), coverage_buckets=9000)  # fmt: skip
    holdout = Holdout(salt="global", buckets=500)
    ids = [f"user-{i}" for i in range(batch_units)]

    def batch() -> int:
        assign_many(design=design, unit_ids=ids, holdout=holdout)
        return len(ids)

    def single() -> int:
        for unit in ids[:single_calls]:
            assign(design=design, unit_id=unit, holdout=holdout)
        return single_calls

    batch_rate, single_rate = best_rate(batch), best_rate(single)

    start = datetime(2024, 1, 1)
    with tempfile.TemporaryDirectory() as tmp:
        log = ExposureLog(f"sqlite:///{Path(tmp) / 'log.sqlite'}")
        counter = iter(range(10**9))

        def exposures(n: int) -> list[Exposure]:
            return [
                Exposure("bench", "control", f"u{next(counter) % 300_000}", start + timedelta(seconds=i))
                for i in range(n)
            ]

        def batched(size: int, batches: int) -> Callable[[], int]:
            prepared = [exposures(size) for _ in range(batches)]

            def work() -> int:
                for chunk in prepared:
                    log.log(chunk)
                return size * batches

            return work

        write_rates = {
            size: best_rate(batched(size, batches)) for size, batches in ((1000, 50), (100, 50), (1, 200))
        }
        rows = len(log.read())

    record(
        "experiments",
        {
            "assignments_per_second_batch": round(batch_rate),
            "assignments_per_second_single_call": round(single_rate),
            "assignment_batch_units": batch_units,
            "assignment_design": "3 variants, layer slice 80%, coverage 90%, global holdout 5%",
            "exposure_log_writes_per_second": {
                f"batch_{size}": round(rate) for size, rate in write_rates.items()
            },
            "exposure_log": "SQLite file, WAL, synchronous=FULL; one committed upsert transaction per batch",
            "exposure_log_rows_after": rows,
        },
    )


if __name__ == "__main__":
    main()
