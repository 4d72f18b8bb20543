"""The one settings object of the service and the command line, read from the environment.

Every variable has the ``USEROPS_`` prefix, except that MLflow's own ``MLFLOW_TRACKING_URI`` is honoured
when ``USEROPS_TRACKING_URI`` is not set. The API builds one :class:`Settings` per worker; a command builds
one when it runs. Importing this module reads nothing: values are read when a :class:`Settings` is made.
The libraries (``features``, ``training``, ``experiments``) never read it: they are handed what they need.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.registry import default_tracking_uri


class SettingsError(Exception):
    """A setting the command or the service needs is missing or unusable."""


class Settings(BaseSettings):
    """Where the data, the models, the experiments and the online features live.

    Attributes:
        data: The data folder (``USEROPS_DATA``); commands take it from ``--data`` instead.
        tracking_uri: MLflow tracking and registry URI (``USEROPS_TRACKING_URI`` or ``MLFLOW_TRACKING_URI``);
            default ``sqlite:///DATA/mlflow.db``, the embedded store in the data folder.
        experiments_url: SQLAlchemy URL of the experiment store (``USEROPS_EXPERIMENTS_URL``); default
            ``sqlite:///DATA/experiments.sqlite``.
        redis_url: Online feature store in Redis (``USEROPS_REDIS_URL``); default the SQLite file
            ``DATA/online/features.sqlite``.
    """

    model_config = SettingsConfigDict(
        env_prefix="USEROPS_", extra="ignore", frozen=True, populate_by_name=True
    )

    data: Path | None = None
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("USEROPS_TRACKING_URI", "MLFLOW_TRACKING_URI")
    )
    experiments_url: str | None = None
    redis_url: str | None = None

    def data_dir(self, data: Path | None = None) -> Path:
        """The data folder: ``data`` when given (a command's ``--data``), else ``USEROPS_DATA``.

        Raises:
            SettingsError: Neither is set.
        """
        folder = data if data is not None else self.data
        if folder is None:
            raise SettingsError("no data folder: pass --data DIR or set USEROPS_DATA")
        return folder

    def tracking_uri_for(self, data: Path | None = None) -> str:
        """The MLflow URI: the configured one, else the embedded SQLite store of the data folder."""
        if self.tracking_uri:
            return self.tracking_uri
        return default_tracking_uri(self.data_dir(data))

    def experiments_url_for(self, data: Path | None = None) -> str:
        """The experiment store: the configured URL, else a SQLite file in the data folder."""
        if self.experiments_url:
            return self.experiments_url
        return f"sqlite:///{self.data_dir(data).resolve() / 'experiments.sqlite'}"
