"""SQL engines for the experiment store and exposure log (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

PREFIX_PATTERN = re.compile(r"^[a-z0-9_]{0,40}$")


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite files use WAL with ``synchronous=FULL`` so a commit is on disk.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///data/experiments.sqlite`` or
            ``postgresql+psycopg://user@host:5432/db``.

    Returns:
        The engine.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def check_prefix(prefix: str) -> str:
    """Validate a table-name prefix (lower-case letters, digits, ``_``).

    Args:
        prefix: The prefix.

    Returns:
        The same prefix.
    """
    if not PREFIX_PATTERN.match(prefix):
        raise ValueError(f"table prefix {prefix!r} must be lower-case letters, digits or '_' (at most 40)")
    return prefix


def upsert(engine: Engine, table: Any) -> sqlite.Insert | postgresql.Insert:
    """An ``INSERT`` that supports ``on_conflict_do_update`` for the engine's dialect.

    Args:
        engine: SQLite or PostgreSQL engine.
        table: The table.

    Returns:
        The dialect's insert construct.
    """
    name = engine.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"the experiment store supports SQLite and PostgreSQL, not {name}")
