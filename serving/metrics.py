"""Request counts and latency histograms per route and status, in Prometheus' text format.

Kept in the worker's memory (one set per process); a scrape reads the worker that answers it.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds of the latency histogram, in seconds."""

_lock = threading.Lock()
_counts: dict[tuple[str, str, int], int] = defaultdict(int)
_hist: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
_sums: dict[tuple[str, str], float] = defaultdict(float)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    with _lock:
        _counts[(method, route, status)] += 1
        _hist[(method, route)][bisect.bisect_left(BUCKETS, seconds)] += 1
        _sums[(method, route)] += seconds


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(model_versions: dict[str, str | None]) -> str:
    """Everything observed so far, plus the served model versions, as Prometheus text."""
    lines = [
        "# HELP userops_requests_total Requests answered, by method, route and status.",
        "# TYPE userops_requests_total counter",
    ]
    with _lock:
        counts = dict(_counts)
        hist = {k: list(v) for k, v in _hist.items()}
        sums = dict(_sums)
    for (method, route, status), n in sorted(counts.items()):
        lines.append(
            f'userops_requests_total{{method="{method}",route="{_label(route)}",status="{status}"}} {n}'
        )
    lines += [
        "# HELP userops_request_seconds Time to answer, by method and route.",
        "# TYPE userops_request_seconds histogram",
    ]
    for (method, route), buckets in sorted(hist.items()):
        labels = f'method="{method}",route="{_label(route)}"'
        running = 0
        for bound, n in zip((*BUCKETS, float("inf")), buckets, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'userops_request_seconds_bucket{{{labels},le="{le}"}} {running}')
        lines.append(f"userops_request_seconds_sum{{{labels}}} {sums[(method, route)]:.6f}")
        lines.append(f"userops_request_seconds_count{{{labels}}} {running}")
    lines += [
        "# HELP userops_model_version Registered version of each served model (1 per model).",
        "# TYPE userops_model_version gauge",
    ]
    for name, version in sorted(model_versions.items()):
        lines.append(f'userops_model_version{{model="{name}",version="{_label(version or "none")}"}} 1')
    return "\n".join(lines) + "\n"
