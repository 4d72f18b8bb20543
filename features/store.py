"""The online copy of the latest feature snapshot, which serving reads one user at a time.

Two stores behind one small interface: :class:`SQLiteStore` (embedded default, one file under the data
folder, replaced atomically) and :class:`RedisStore` (production: one hash per snapshot, switched to in
one command, one JSON document per user: :func:`json_documents`). Both give back the snapshot's own
column types.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import pandas_dtype

from features.errors import StoreError


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {str(c): str(t) for c, t in frame.dtypes.items()}


def _restore(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Give a frame read back from a store the snapshot's column order and types."""
    frame = frame.reindex(columns=list(dtypes))
    for col, kind in dtypes.items():
        if kind.startswith("datetime64"):
            frame[col] = pd.to_datetime(frame[col]).astype(pandas_dtype(kind))
        elif kind == "bool":
            frame[col] = frame[col].astype(bool)
        elif kind in ("str", "object", "string"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None).astype(pandas_dtype(kind))
        else:
            frame[col] = frame[col].astype(pandas_dtype(kind))
    return frame


def _json_values(column: pa.Array) -> pa.Array:
    """Each value of ``column`` as JSON text (null for a missing value or NaN).

    Numbers go through Arrow's shortest round-trip formatting, so a float reads back as the same float;
    text and timestamps (ISO 8601, as ``Timestamp.isoformat``) are written once per distinct value.
    """
    kind = column.type
    if pa.types.is_floating(kind):
        text = pc.cast(column, pa.string())
        # a whole number gets its ".0" back, so it reads as a float again (-0.0 included)
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
        text = pc.if_else(pc.is_nan(column), pa.scalar(None, pa.string()), text)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(column, pa.string())
    else:
        coded = pc.dictionary_encode(column)
        values = coded.dictionary.to_pylist()
        if pa.types.is_timestamp(kind):
            values = [pd.Timestamp(v).isoformat() for v in values]
        quoted = pa.array([json.dumps(v) for v in values], pa.string())
        text = quoted.take(coded.indices)
    return pc.fill_null(text, "null")


def json_documents(snapshot: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The snapshot as one JSON object per row, built a column at a time (no Python loop over rows).

    Returns:
        The ``user_id`` of each row, and its document (``{"user_id": ..., "as_of": ..., ...}``).
    """
    table = pa.Table.from_pandas(snapshot, preserve_index=False)  # NaN and None become nulls
    pieces: list[pa.Array | str] = []
    for i, (name, col) in enumerate(zip(table.column_names, table.columns, strict=True)):
        pieces += [("{" if i == 0 else ",") + json.dumps(name) + ":", _json_values(col.combine_chunks())]
    docs = pc.binary_join_element_wise(*pieces, "}", "")  # the last argument is the separator
    return [str(u) for u in snapshot["user_id"].tolist()], docs.to_pylist()


def _from_documents(docs: list[str | bytes], dtypes: dict[str, str]) -> pd.DataFrame:
    return _restore(pd.DataFrame([json.loads(d) for d in docs], columns=list(dtypes)), dtypes)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_type(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_integer_dtype(col):
        return "INTEGER"
    if pd.api.types.is_float_dtype(col):
        return "REAL"
    return "TEXT"


def _values(col: pd.Series) -> list[Any]:
    """A column as plain Python values for SQLite, missing values (NaN, None, NA) as None."""
    missing = col.isna().to_numpy()
    values = col.to_numpy(dtype=object) if col.dtype == object else col.to_numpy()
    out = values.tolist()
    if missing.any():
        for i in missing.nonzero()[0].tolist():
            out[i] = None
    return out


class OnlineStore(ABC):
    """Latest features per user: ``write`` a whole snapshot, ``get`` a few users fast."""

    @abstractmethod
    def write(self, snapshot: pd.DataFrame) -> int:
        """Replace the stored snapshot with ``snapshot`` (one row per ``user_id``); return rows written."""

    @abstractmethod
    def get(self, user_ids: Sequence[str]) -> pd.DataFrame:
        """Stored rows of these users, in the order asked; unknown users are left out."""

    @abstractmethod
    def as_of(self) -> pd.Timestamp | None:
        """As-of date of the stored snapshot, or None when empty."""


class SQLiteStore(OnlineStore):
    """One SQLite file; a write builds a new file and renames it over the old one.

    Args:
        path: The database file (its folder is created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _readable(self) -> Iterator[None]:
        """Say in one line that the file is no online store (SQLite's error names no file)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: cannot be read as the online store ({exc}); remove it and run "
                "`userops features` again"
            ) from exc

    def write(self, snapshot: pd.DataFrame) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.unlink(missing_ok=True)
        frame = snapshot.copy()
        for col in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[col]):
                frame[col] = frame[col].dt.strftime("%Y-%m-%dT%H:%M:%S")
        as_of = str(snapshot["as_of"].max()) if "as_of" in snapshot and len(snapshot) else ""
        columns = [str(c) for c in frame.columns]
        with sqlite3.connect(tmp) as db:
            # a new file renamed into place when complete: no journal needed
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
            decl = ", ".join(f"{_quote(c)} {_sql_type(frame[c])}" for c in columns)
            db.execute(f"CREATE TABLE features ({decl})")
            db.executemany(
                f"INSERT INTO features VALUES ({', '.join('?' * len(columns))})",
                zip(*[_values(frame[c]) for c in columns], strict=True),
            )
            db.execute("CREATE UNIQUE INDEX features_user ON features(user_id)")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("dtypes", json.dumps(_dtypes(snapshot))), ("as_of", as_of)],
            )
        db.close()
        tmp.replace(self.path)
        return len(snapshot)

    def _meta(self, db: sqlite3.Connection) -> dict[str, str]:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())

    def get(self, user_ids: Sequence[str]) -> pd.DataFrame:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no online features yet; run `userops features`")
        ids = [str(u) for u in user_ids]
        with self._readable(), sqlite3.connect(self.path) as db:
            dtypes = json.loads(self._meta(db)["dtypes"])
            parts = [
                pd.read_sql(
                    f"SELECT * FROM features WHERE user_id IN ({','.join('?' * len(chunk))})",
                    db,
                    params=chunk,
                )
                for chunk in (ids[i : i + 900] for i in range(0, len(ids), 900))
            ]
        db.close()
        found = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(dtypes))
        order = {u: i for i, u in enumerate(ids)}
        found = found.assign(_o=found["user_id"].map(order)).sort_values("_o").drop(columns="_o")
        return _restore(found.reset_index(drop=True), dtypes)

    def as_of(self) -> pd.Timestamp | None:
        if not self.path.exists():
            return None
        with self._readable(), sqlite3.connect(self.path) as db:
            value = self._meta(db).get("as_of", "")
        db.close()
        return pd.Timestamp(value) if value else None


class RedisStore(OnlineStore):
    """Each snapshot is one Redis hash (user id -> JSON document) under ``<prefix>snapshot:<generation>``;
    ``<prefix>meta`` names the generation being served.

    A write fills a new hash, then switches ``meta`` to it in one command, so a reader sees the old
    snapshot or the new one, never a mix, and users missing from the new snapshot are gone from it. The
    old hash expires ``grace`` seconds later (a reader that read ``meta`` just before the switch still
    finds it); a write that fails part-way leaves ``meta`` as it was and its half-written hash expires.

    Args:
        client: A ``redis.Redis`` client.
        prefix: Key prefix (one per environment or model family).
        batch: Users per pipeline round trip.
        grace: Seconds the replaced snapshot stays readable.
    """

    def __init__(
        self, client: Any, prefix: str = "userops:features:", batch: int = 5_000, grace: int = 300
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.batch = batch
        self.grace = grace

    @classmethod
    def from_url(cls, url: str, prefix: str = "userops:features:") -> RedisStore:
        """A store on the Redis server at ``url`` (``redis://host:port/db``).

        Raises:
            StoreError: ``url`` is not a Redis URL.
        """
        import redis

        try:
            client = redis.Redis.from_url(url)
        except ValueError as exc:  # the URL is not repeated: it may hold a password
            raise StoreError(f"the online store's Redis URL: {exc}") from exc
        return cls(client, prefix)

    @contextmanager
    def _answered(self) -> Iterator[None]:
        """Say in one line that the server does not answer (a write cut short leaves the served
        snapshot as it was; see the class)."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreError(f"the Redis server does not answer (keys {self.prefix}*): {exc}") from exc

    def _snapshot_key(self, generation: str) -> str:
        return f"{self.prefix}snapshot:{generation}"

    def write(self, snapshot: pd.DataFrame) -> int:
        ids, docs = json_documents(snapshot)
        with self._answered():
            self._write(snapshot, ids, docs)
        return len(snapshot)

    def _write(self, snapshot: pd.DataFrame, ids: list[str], docs: list[str]) -> None:
        generation = uuid.uuid4().hex
        key = self._snapshot_key(generation)
        unfinished = max(3600, self.grace)  # a half-written snapshot goes by itself
        for lo in range(0, len(ids), self.batch):
            fields = dict(zip(ids[lo : lo + self.batch], docs[lo : lo + self.batch], strict=True))
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, unfinished)
            pipe.execute()
        as_of = str(snapshot["as_of"].max()) if "as_of" in snapshot and len(snapshot) else ""
        meta = json.dumps({"dtypes": _dtypes(snapshot), "as_of": as_of, "generation": generation})
        old = self._meta()
        pipe = self.client.pipeline(transaction=True)  # switch to the new snapshot, keep it
        if ids:
            pipe.persist(key)
        pipe.set(f"{self.prefix}meta", meta)
        pipe.execute()
        if old and old.get("generation"):
            self.client.expire(self._snapshot_key(old["generation"]), self.grace)

    def _meta(self) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}meta")
        return json.loads(raw) if raw else None

    def get(self, user_ids: Sequence[str]) -> pd.DataFrame:
        with self._answered():
            meta = self._meta()
            if meta is None or "generation" not in meta:
                raise FileNotFoundError(
                    f"redis {self.prefix}: no online features yet; run `userops features`"
                )
            ids = [str(u) for u in user_ids]
            docs = self.client.hmget(self._snapshot_key(meta["generation"]), ids) if ids else []
        return _from_documents([d for d in docs if d is not None], meta["dtypes"])

    def as_of(self) -> pd.Timestamp | None:
        with self._answered():
            meta = self._meta()
        return pd.Timestamp(meta["as_of"]) if meta and meta.get("as_of") else None


def default_store(data_dir: str | Path) -> SQLiteStore:
    """The embedded online store of a data folder: ``data_dir/online/features.sqlite``."""
    return SQLiteStore(Path(data_dir) / "online" / "features.sqlite")
