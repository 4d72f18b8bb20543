"""What a worker serves from: the champion models and the stores, loaded together and swapped whole.

A reload builds a new :class:`Loaded` beside the one in use and then replaces the reference in one
assignment, so a request that started on the old models finishes on them. A reload asked of one worker
reaches the others through a marker file in the data folder: each worker compares its modification time
(at most once a second) and reloads when it moved.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from features.store import OnlineStore, RedisStore, default_store
from serving.settings import Settings
from training.errors import ModelNotFoundError

if TYPE_CHECKING:
    from training.recommenders.service import Recommender

log = logging.getLogger("userops.serving")

RELOAD_MARKER = ".reload"
"""File in the data folder whose modification time every worker watches."""


@dataclass(frozen=True)
class ModelInfo:
    """Which registered version a response came from."""

    name: str
    version: str | None
    alias: str = "champion"


@dataclass(frozen=True)
class Loaded:
    """One consistent set of what the endpoints read: models, their versions, the online store."""

    recommender: Recommender | None
    recommender_info: ModelInfo
    online: OnlineStore
    loaded_at: datetime
    problems: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        """Every model and store is loaded."""
        return not self.problems


def _registered_version(tracking_uri: str, name: str, alias: str) -> str | None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def load_all(settings: Settings, data: Path) -> Loaded:
    """Load the champions and open the stores; what is missing is listed in ``problems``, never raised."""
    from training.recommend import load_recommender
    from training.registry import connect

    uri = settings.tracking_uri_for(data)
    connect(uri)
    problems: list[str] = []
    recommender = None
    version = _registered_version(uri, "recommender", "champion")
    if version is None:
        problems.append("no recommender champion is registered: run `userops train recommender`")
    else:
        try:
            recommender = load_recommender("models:/recommender@champion")
        except ModelNotFoundError as error:
            problems.append(str(error))
    online: OnlineStore = (
        RedisStore.from_url(settings.redis_url) if settings.redis_url else default_store(data)
    )
    return Loaded(
        recommender=recommender,
        recommender_info=ModelInfo("recommender", version),
        online=online,
        loaded_at=datetime.now(UTC),
        problems=tuple(problems),
    )


class ModelHolder:
    """The worker's current :class:`Loaded`, replaced whole on reload."""

    def __init__(self, settings: Settings, data: Path) -> None:
        self.settings = settings
        self.data = data
        self.marker = data / RELOAD_MARKER
        self._lock = threading.Lock()
        self._seen = self._stamp()
        self._checked = time.monotonic()
        self.current = load_all(settings, data)

    def _stamp(self) -> float:
        try:
            return self.marker.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def reload(self) -> Loaded:
        """Load the current champions now, here, and tell the other workers to do the same."""
        self.marker.touch()
        with self._lock:
            self._seen = self._stamp()
            self.current = load_all(self.settings, self.data)
        log.info("reloaded: recommender version %s", self.current.recommender_info.version)
        return self.current

    def get(self) -> Loaded:
        """The models to answer with; reloads first when another worker asked for a reload."""
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            stamp = self._stamp()
            if stamp != self._seen:
                with self._lock:
                    if stamp != self._seen:
                        self._seen = stamp
                        self.current = load_all(self.settings, self.data)
        return self.current
