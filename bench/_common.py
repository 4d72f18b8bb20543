"""Shared by the benchmark scripts: run a piece of work in a child process, time it, record the result."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_child(code: str) -> tuple[float, float, str]:
    """Run Python ``code`` in a fresh interpreter; return wall seconds, its peak memory (MiB), its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib < before:  # pragma: no cover - ru_maxrss is a high-water mark over all children
        peak_kib = before
    return seconds, peak_kib / 1024, done.stdout


def record(name: str, figures: dict[str, object]) -> Path:
    """Write ``bench/results/<name>.json`` with the figures and the machine they were measured on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **figures,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
