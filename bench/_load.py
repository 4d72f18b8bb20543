"""A small HTTP/1.1 load generator: ``connections`` keep-alive connections, each sending GET requests one
after another (no pipelining) for ``seconds``; prints requests per second, latency percentiles and errors
as JSON.

It is plain asyncio over sockets, so that the client, one process, costs far less per request than the
server it measures: a Python HTTP library would spend about as much time per request as the endpoint.

    python bench/_load.py --url http://127.0.0.1:8000 --key KEY --seconds 10 --connections 16 < PATHS

(one request path per line on standard input, cycled over).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _one_connection(
    host: str, port: int, requests: list[bytes], offset: int, until: float, latencies: list[float]
) -> tuple[int, int]:
    """Send requests in turn until ``until``; returns (answers, errors). Latencies are appended (s)."""
    reader, writer = await asyncio.open_connection(host, port)
    answered = errors = 0
    i = offset
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            answered += 1
            errors += status >= 400
    finally:
        writer.close()
    return answered, errors


async def _run(url: str, key: str, paths: list[str], seconds: float, connections: int) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
        for p in paths
    ]
    warm: list[float] = []  # one second of warm-up, not counted
    await asyncio.gather(
        *(_one_connection(host, port, requests, c, time.perf_counter() + 1, warm) for c in range(connections))
    )
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    done = await asyncio.gather(
        *(_one_connection(host, port, requests, c * 997, until, latencies) for c in range(connections))
    )
    elapsed = time.perf_counter() - started
    answered = sum(a for a, _ in done)
    latencies.sort()

    def percentile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {
        "requests": answered,
        "errors": sum(e for _, e in done),
        "requests_per_second": round(answered / elapsed, 1),
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "connections": connections,
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    paths = [line.strip() for line in sys.stdin if line.strip()]
    result = asyncio.run(_run(args.url, args.key, paths, args.seconds, args.connections))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
