"""Shared fixtures: real servers on this machine, small simulated worlds.

A test that needs PostgreSQL or Redis asks for ``postgres_url`` / ``redis_url``. When the server is
not reachable the test is skipped on a developer's machine, and fails under ``CI=true``: CI must
never turn green by skipping what it could not reach.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_URL = os.environ.get("USEROPS_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("USEROPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need_server(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true, so a test that needs it fails instead of skipping")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the PostgreSQL server on this machine (database ``test``)."""
    _need_server("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis server on this machine (database 15, flushed by the tests that use it)."""
    _need_server("Redis", "127.0.0.1", 6379)
    return REDIS_URL
