"""Benchmark: serving recommendations (targets: one user's top-10 under 1 ms median, in-process).

World: a simulated world of 100,000 users over 365 days (3,000 items), ALS with 64 factors fitted on
events before the last 30 days. Measured in one process:

* one user's top-10 through ``Recommender.recommend`` (filters on: bought and unavailable items excluded)
  for known users, for a user just updated with new events (factors recomputed), and for an unknown user;
* top-10 for all 100,000 users through ``Recommender.recommend_batch``, beside ``implicit``'s own batch
  ``recommend`` on the same factors and matrix (``filter_already_liked_items=True``) as the floor.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import record


def _median_ms(fn, calls: list) -> float:
    times = []
    for arg in calls:
        started = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _say(what: str, since: float) -> None:
    print(f"[{time.perf_counter() - since:7.1f} s] {what}", file=sys.stderr, flush=True)


def main(users: int = 100_000, days: int = 365) -> None:
    warnings.filterwarnings("ignore")
    from implicit.cpu.als import AlternatingLeastSquares

    from simulator.simulate import WorldConfig, simulate
    from training.interactions import InteractionWeights, build_interactions
    from training.recommend import World, build_recommender
    from training.recommenders import ALSRecommender

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = WorldConfig(n_users=users, days=days, seed=1)
        simulate(cfg, tmp)
        _say("simulated", t0)
        as_of = date.fromisoformat(cfg.start) + timedelta(days=days - 30)
        # the simulator writes contract-valid tables: read them directly (load_table re-validates 10M rows)
        world = World(
            pd.read_parquet(f"{tmp}/events.parquet"),
            pd.read_parquet(f"{tmp}/users.parquet"),
            pd.read_parquet(f"{tmp}/items.parquet"),
        )
        weights = InteractionWeights()
        inter = build_interactions(world.events, weights=weights, end=as_of)
        _say("interactions built", t0)
        started = time.perf_counter()
        model = ALSRecommender(factors=64, regularization=1.0, iterations=15, num_threads=0).fit(inter.matrix)
        fit_seconds = time.perf_counter() - started
        _say("ALS fitted", t0)
        rec = build_recommender(model, inter, world, as_of, weights, {"family": "als", "as_of": str(as_of)})
    _say("recommender built", t0)
    rng = np.random.default_rng(0)
    known = [str(u) for u in rng.choice(rec.user_ids, 2000, replace=False)]
    for u in known[:50]:  # warm-up
        rec.recommend(u, 10)
    single = _median_ms(lambda u: rec.recommend(u, 10), known)
    single_filters = _median_ms(lambda u: rec.recommend(u, 10, exclude_categories=["c00", "c01"]), known)
    items = rec.item_ids[:50]
    updated = known[:500]
    for j, u in enumerate(updated):
        rec.add_events(u, [{"item_id": items[j % 50], "event_type": "purchase"}])
    after_update = _median_ms(lambda u: rec.recommend(u, 10), updated)
    unknown = _median_ms(lambda u: rec.recommend(u, 10), [f"new{j}" for j in range(2000)])

    _say("single-user timings done", t0)
    all_users = rec.user_ids
    started = time.perf_counter()
    rec.recommend_batch(all_users, 10, exclude_seen=True)
    batch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    frame = rec.recommend_frame(all_users, 10, exclude_seen=True)
    frame_seconds = time.perf_counter() - started
    floor = AlternatingLeastSquares(factors=64, num_threads=0)
    floor.user_factors, floor.item_factors = model.user_factors_, model.item_factors_
    rows = np.arange(len(all_users))
    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, single-threaded BLAS
        started = time.perf_counter()
        floor.recommend(rows, inter.matrix[rows], N=10, filter_already_liked_items=True)
        implicit_seconds = time.perf_counter() - started
    record(
        "recommend",
        {
            "world": {
                "users": users,
                "days": days,
                "items": len(rec.item_ids),
                "train_users": len(all_users),
                "matrix_nnz": int(inter.matrix.nnz),
                "model": "ALS, 64 factors",
            },
            "als_fit_seconds": round(fit_seconds, 1),
            "single_user_top10_median_ms": {
                "known": round(single, 3),
                "known_with_category_filter": round(single_filters, 3),
                "after_realtime_update": round(after_update, 3),
                "unknown_fallback": round(unknown, 3),
            },
            "batch_top10": {
                "users": len(all_users),
                "seconds": round(batch_seconds, 2),
                "seconds_with_dataframe": round(frame_seconds, 2),
                "rows": len(frame),
                "implicit_recommend_floor_seconds": round(implicit_seconds, 2),
            },
            "targets": {"single_user_top10_median_ms": 1.0},
        },
    )


if __name__ == "__main__":
    main()
