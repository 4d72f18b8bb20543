"""API keys with roles, kept only as hashes in the SQL store.

A key is 32 random bytes (256 bits) in URL-safe text, shown once when it is made. The store keeps its
SHA-256 and a short prefix to tell keys apart; a presented key is hashed and compared in constant time.
A worker remembers a key it has verified for :data:`REMEMBER_SECONDS`, so a revoked key is refused
everywhere within that time (at once by a worker that had not seen it).
Roles: ``app`` (per-user endpoints, assignment, events), ``operator`` (win-back lists), ``analyst``
(experiment results) and ``admin`` (everything, reload).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast, get_args

from sqlalchemy import Column, DateTime, MetaData, String, Table, select, update

from experiments.db import database_errors, make_engine
from serving.errors import ServingError

Role = Literal["app", "operator", "analyst", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PREFIX = "uok_"
REMEMBER_SECONDS = 1.0
"""How long a worker trusts a key it has verified before asking the store again."""


class KeyStoreError(ServingError):
    """A key command was given something it cannot use (an unknown role, an unknown key name)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role."""

    name: str
    role: Role


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """API keys in the SQL store (the experiment store's database by default)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._verified: dict[str, tuple[Principal, float]] = {}
        meta = MetaData()
        self.keys = Table(
            "userops_api_keys",
            meta,
            Column("digest", String(64), primary_key=True),
            Column("name", String(128), nullable=False, unique=True),
            Column("role", String(16), nullable=False),
            Column("shown", String(16), nullable=False),
            Column("created_at", DateTime, nullable=False),
            Column("revoked_at", DateTime),
        )
        with database_errors(self.engine.url):
            meta.create_all(self.engine)

    def create(self, role: str, name: str | None = None) -> tuple[Principal, str]:
        """Make a key for ``role``; returns who it is and the key itself (never stored, shown once)."""
        if role not in ROLES:
            raise KeyStoreError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        key = PREFIX + secrets.token_urlsafe(32)
        name = name or f"{role}-{key[len(PREFIX) : len(PREFIX) + 6]}"
        now = datetime.now(UTC).replace(tzinfo=None)
        with database_errors(self.engine.url), self.engine.begin() as conn:
            if conn.execute(select(self.keys.c.name).where(self.keys.c.name == name)).first():
                raise KeyStoreError(f"a key named {name!r} exists already")
            conn.execute(
                self.keys.insert().values(
                    digest=_digest(key), name=name, role=role, shown=key[:10], created_at=now
                )
            )
        return Principal(name=name, role=role), key

    def verify(self, key: str) -> Principal | None:
        """Who holds ``key``, or ``None`` for an unknown or revoked key (a known key is remembered for
        :data:`REMEMBER_SECONDS`: one look-up a second per key, not one per request)."""
        digest = _digest(key)
        remembered = self._verified.get(digest)
        now = time.monotonic()
        if remembered is not None and now - remembered[1] < REMEMBER_SECONDS:
            return remembered[0]
        principal = self._look_up(digest)
        if principal is None:
            self._verified.pop(digest, None)
        else:
            self._verified[digest] = (principal, now)
        return principal

    def _look_up(self, digest: str) -> Principal | None:
        with database_errors(self.engine.url), self.engine.connect() as conn:
            row = conn.execute(
                select(self.keys.c.digest, self.keys.c.name, self.keys.c.role).where(
                    self.keys.c.digest == digest, self.keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None or not hmac.compare_digest(row.digest, digest):
            return None
        return Principal(name=row.name, role=cast(Role, row.role))

    def list(self) -> list[dict[str, object]]:
        """Every key: name, role, its first characters, when made, when revoked."""
        columns = (self.keys.c.name, self.keys.c.role, self.keys.c.shown, self.keys.c.created_at)
        with database_errors(self.engine.url), self.engine.connect() as conn:
            rows = conn.execute(select(*columns, self.keys.c.revoked_at).order_by(self.keys.c.name))
            return [dict(row._mapping) for row in rows]

    def revoke(self, name: str) -> None:
        """Revoke the key called ``name``; running servers refuse it within :data:`REMEMBER_SECONDS`."""
        now = datetime.now(UTC).replace(tzinfo=None)
        with database_errors(self.engine.url), self.engine.begin() as conn:
            done = conn.execute(update(self.keys).where(self.keys.c.name == name).values(revoked_at=now))
            if done.rowcount == 0:
                raise KeyStoreError(f"no key named {name!r}")
        self._verified.clear()
