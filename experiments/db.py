"""SQL engines for the experiment store and exposure log (SQLite by default, PostgreSQL by URL).

This is the boundary with the database: a URL that cannot be read, a driver that is not installed, a
server that does not answer or any other :class:`sqlalchemy.exc.SQLAlchemyError` leaves it as a
:class:`~experiments.errors.StoreError` that names the database by its URL, without the password.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from experiments.errors import DatabaseError, StoreError

PREFIX_PATTERN = re.compile(r"^[a-z0-9_]{0,40}$")
BACKENDS = ("sqlite", "postgresql")

P = ParamSpec("P")
R = TypeVar("R")


class HasEngine(Protocol):
    """Anything that talks to the database through an ``engine`` attribute."""

    engine: Engine


S = TypeVar("S", bound=HasEngine)


def shown_url(url: str | URL) -> str:
    """The URL as it may be printed: the password masked; a URL that cannot be read is not repeated."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unreadable URL)"


@contextmanager
def database_errors(url: str | URL) -> Iterator[None]:
    """Turn any SQLAlchemy error inside the block into a one-line :class:`StoreError` naming ``url``.

    Raises:
        StoreError: The database refused or could not be reached.
    """
    try:
        yield
    except SQLAlchemyError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatabaseError(f"database {shown_url(url)}: {first}") from error


def guarded(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Decorate a method of a class with an ``engine``: see :func:`database_errors`."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with database_errors(self.engine.url):
            return method(self, *args, **kwargs)

    return wrapper


CONNECT_TIMEOUT = 10
"""Seconds a PostgreSQL connection may take before it fails (a ``connect_timeout`` in the URL wins)."""


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite files use WAL with ``synchronous=FULL`` so a commit is on disk.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///data/experiments.sqlite`` or
            ``postgresql+psycopg://user@host:5432/db``.

    Returns:
        The engine (nothing is connected yet).

    Raises:
        StoreError: The URL cannot be read, names another database, or its driver is not installed.
    """
    with database_errors(url):
        backend = make_url(url).get_backend_name()
        if backend not in BACKENDS:
            raise StoreError(
                f"the experiment store is SQLite or PostgreSQL, not {backend} ({shown_url(url)})"
            )
        try:
            if backend == "sqlite":
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
                return engine
            # a server that does not answer fails the command in seconds instead of hanging it
            wait = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT}
            return create_engine(url, pool_pre_ping=True, connect_args=wait)
        except ImportError as error:
            raise StoreError(f"database {shown_url(url)}: driver not installed ({error})") from error


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

    Raises:
        StoreError: The engine is neither SQLite nor PostgreSQL.
    """
    name = engine.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise StoreError(f"the experiment store is SQLite or PostgreSQL, not {name}")
