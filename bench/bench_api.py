"""Benchmark: the HTTP API under load, and the memory of one worker on a 100k-user, 5k-item world.

World: a simulated world (default 100,000 users, 5,000 items, 180 days) after ``userops pipeline`` and
``userops train recommender`` (ALS) as of its last day. One ``userops serve`` process (one worker) and one
load-generator process (``bench/_load.py``: 16 keep-alive connections) share this machine. Each endpoint
is driven for the same time, cycling over many users; ``/healthz`` on the same server in the same run is
the ceiling every endpoint is compared with.

Targets, as ratios to the bare endpoint: churn-risk, recommendations and next-best-offer at ≥ 50% of its
throughput with p99 ≤ 3× its p99; assignment (with the durable exposure write) at ≥ 40%; zero errors.

    python bench/bench_api.py [--users 100000] [--world DIR] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import httpx2 as httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
from _common import record  # noqa: E402 - after the path it is found on

START = date(2025, 1, 1)
CONNECTIONS = 16
TARGETS = {
    "churn_risk": {"throughput_ratio": 0.5, "p99_ratio": 3.0},
    "recommendations": {"throughput_ratio": 0.5, "p99_ratio": 3.0},
    "next_best_offer": {"throughput_ratio": 0.5, "p99_ratio": 3.0},
    "assignment": {"throughput_ratio": 0.4},
}


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def build_world(folder: Path, users: int, items: int, days: int) -> date:
    """Simulate, run the pipeline and train the recommender as of the world's last day (skipped when
    ``folder`` already holds a trained world); returns the as-of date."""
    from serving.settings import Settings
    from simulator.simulate import WorldConfig, simulate
    from training.recommend import RecommenderTuning, train_and_register
    from userops.pipeline import run_pipeline

    as_of = START + timedelta(days=days)
    if (folder / "mlflow.db").exists() and (folder / "winback").exists():
        _say(f"reusing the trained world in {folder}")
        return as_of
    started = time.perf_counter()
    simulate(WorldConfig(n_users=users, days=days, n_items=items, seed=3), folder)
    _say(f"simulated {users:,} users in {time.perf_counter() - started:.0f} s")
    uri = Settings(tracking_uri=None).tracking_uri_for(folder)
    run_pipeline(folder, as_of, tracking_uri=uri, horizon=30, progress=_say)
    train_and_register(
        data_dir=folder,
        as_of=as_of,
        horizon=14,
        tracking_uri=uri,
        kind="als",
        tuning=RecommenderTuning(grid={"als": [{"factors": 64, "iterations": 10}]}),
    )
    _say(f"world trained in {time.perf_counter() - started:.0f} s")
    return as_of


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _memory_mib(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mib": fields["VmRSS"], "peak_rss_mib": fields["VmHWM"]}


def _load(url: str, key: str, paths: list[str], seconds: float) -> dict[str, object]:
    command = [sys.executable, str(ROOT / "bench" / "_load.py"), "--url", url, "--key", key]
    command += ["--seconds", str(seconds), "--connections", str(CONNECTIONS)]
    done = subprocess.run(command, input="\n".join(paths), check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def measure(folder: Path, seconds: float) -> dict[str, object]:
    """Serve ``folder`` and drive each endpoint; returns the figures."""
    from experiments.definitions import Experiment
    from experiments.store import ExperimentStore
    from serving.auth import KeyStore
    from serving.settings import Settings

    settings = Settings(tracking_uri=None)
    store = ExperimentStore(settings.experiments_url_for(folder))
    if store.find("bench_banner") is None:
        store.create(Experiment(key="bench_banner", variants=("control", "treatment"), weights=(50, 50)))
        store.start("bench_banner")
    key = KeyStore(settings.experiments_url_for(folder)).create("admin")[1]
    scored = pd.read_csv(sorted((folder / "scores").glob("churn_as_of=*.csv"))[-1], usecols=["user_id"])
    users = scored["user_id"].astype(str).sample(n=min(5000, len(scored)), random_state=1).tolist()
    items = pd.read_parquet(folder / "items.parquet", columns=["item_id"])["item_id"].astype(str).tolist()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "MLFLOW_"))}
    command = [sys.executable, "-m", "userops.cli", "serve", "--data", str(folder), "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - started > 900:
                raise SystemExit("the server did not get ready")
            time.sleep(0.5)
        ready_seconds = time.perf_counter() - started
        memory_at_ready = _memory_mib(server.pid)
        _say(f"server ready in {ready_seconds:.0f} s, {memory_at_ready['rss_mib']:.0f} MiB")
        paths = {
            "bare_healthz": ["/healthz"],
            "churn_risk": [f"/v1/users/{u}/churn-risk" for u in users],
            "recommendations": [f"/v1/users/{u}/recommendations?k=10" for u in users],
            "similar_items": [f"/v1/items/{i}/similar?k=10" for i in items[:2000]],
            "assignment": [
                f"/v1/experiments/bench_banner/assignment?unit_id=bench{i}" for i in range(50_000)
            ],
        }
        schema = httpx.get(f"{url}/openapi.json").json()
        if "/v1/users/{user_id}/next-best-offer" in schema["paths"]:
            paths["next_best_offer"] = [f"/v1/users/{u}/next-best-offer" for u in users]
        results: dict[str, dict[str, object]] = {}
        for name, cycle in paths.items():
            results[name] = _load(url, key, cycle, seconds)
            _say(f"{name}: {results[name]}")
        memory_after = _memory_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)

    bare = results["bare_healthz"]
    checks = {}
    for name, figures in results.items():
        throughput = float(figures["requests_per_second"]) / float(bare["requests_per_second"])  # type: ignore[arg-type]
        p99 = float(figures["p99_ms"]) / float(bare["p99_ms"])  # type: ignore[arg-type]
        figures["throughput_ratio"], figures["p99_ratio"] = round(throughput, 3), round(p99, 2)
        if name in TARGETS:
            target = TARGETS[name]
            met = throughput >= target["throughput_ratio"] and figures["errors"] == 0
            met = met and p99 <= target.get("p99_ratio", float("inf"))
            checks[name] = "met" if met else "missed"
    return {
        "endpoints": results,
        "targets": TARGETS,
        "target_check": checks,
        "server": {
            "workers": 1,
            "ready_seconds": round(ready_seconds, 1),
            "memory_at_ready": memory_at_ready,
            "memory_after_load": memory_after,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--world", help="keep the trained world here and reuse it on later runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.world) if args.world else Path(tmp) / "world"
        build_world(folder, args.users, args.items, args.days)
        figures = measure(folder, args.seconds)
    record(
        "api",
        {
            "world": {"users": args.users, "items": args.items, "days": args.days},
            "load": f"one server process (1 worker), one client process, {CONNECTIONS} connections, "
            f"{args.seconds:.0f} s per endpoint after 1 s of warm-up",
            **figures,
        },
    )


if __name__ == "__main__":
    main()
