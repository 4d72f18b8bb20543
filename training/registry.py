"""MLflow tracking and the model registry: one experiment per model kind, champion/challenger promotion.

The embedded default keeps everything in the data folder: ``sqlite:///DATA/mlflow.db`` for runs and the
registry, ``DATA/mlartifacts/`` for artifacts. A tracking server is used by passing its URI instead (the
CLI reads ``MLFLOW_TRACKING_URI``). A new version becomes ``champion`` only when it beats the current
champion scored on the same holdout; otherwise it becomes ``challenger``, and the decision and both
scores are written on the version as tags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

CHAMPION = "champion"
CHALLENGER = "challenger"


def default_tracking_uri(data_dir: str | Path) -> str:
    """The embedded store of a data folder: a SQLite file beside the data."""
    return f"sqlite:///{(Path(data_dir).resolve() / 'mlflow.db')}"


def missing_store(tracking_uri: str) -> Path | None:
    """The file of an embedded SQLite store that does not exist yet (opening it would create it), else
    None: a command that only reads models checks this first, so a refusal leaves no ``mlflow.db``."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = Path(tracking_uri.removeprefix(prefix))
    return None if path.exists() else path


def connect(tracking_uri: str) -> None:
    """Point MLflow's tracking and registry at ``tracking_uri``: the one place its global URI is set.

    MLflow also writes the URI into this process's environment (``MLFLOW_TRACKING_URI``), where the next
    settings read in the same process (a second command run in process, a test) would take it for the
    user's choice; the environment is put back as it was.
    """
    import os

    import mlflow

    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def use_experiment(tracking_uri: str, name: str, artifact_root: str | Path | None = None) -> str:
    """Point MLflow at ``tracking_uri`` and the experiment ``name`` (created if missing).

    Args:
        tracking_uri: Where runs and the registry live.
        name: Experiment name, one per model kind (``churn``, ``propensity``, ``recommender``).
        artifact_root: Folder for artifacts of a new experiment (default: MLflow's own choice, which for a
            tracking server is the server's artifact store).

    Returns:
        The experiment id.
    """
    import mlflow

    connect(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        location = Path(artifact_root).resolve().as_uri() if artifact_root is not None else None
        experiment_id = client.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


@dataclass(frozen=True)
class Decision:
    """What promotion decided for a new model version."""

    name: str
    version: str
    alias: str
    reason: str
    score: float
    champion_score: float | None


T = TypeVar("T")


def _quietly(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` without the lines MLflow prints outside its loggers ("Successfully registered
    model ...", "Created version ..."): they would land in a command's summary."""
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    was = MLFLOW_LOGGING_STREAM.enabled
    MLFLOW_LOGGING_STREAM.enabled = False
    try:
        return call(*args)
    finally:
        MLFLOW_LOGGING_STREAM.enabled = was


def promote(
    *,
    tracking_uri: str,
    name: str,
    model_uri: str,
    score: float,
    metric: str,
    score_champion: Callable[[str], float] | None = None,
    higher_is_better: bool = True,
) -> Decision:
    """Register ``model_uri`` as a new version of ``name`` and decide its alias.

    Args:
        tracking_uri: The registry.
        name: Registered model name (``churn``, ``recommender``, ...).
        model_uri: The logged model (``runs:/...`` or ``models:/m-...``).
        score: The new model's metric on the holdout.
        metric: The metric's name, for the reason and the tags.
        score_champion: Scores a model URI on the same holdout; called with the current champion's URI.
            Without it, the champion's recorded score is used.
        higher_is_better: Direction of the metric.

    Returns:
        The decision: ``champion`` when there was none or the new version beats it, else ``challenger``.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    connect(tracking_uri)
    version = _quietly(mlflow.register_model, model_uri, name).version
    champion = None
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None:
        alias, champion_score = CHAMPION, None
        reason = f"first {name} model: version {version} becomes champion ({metric} {score:.4f})"
    else:
        if score_champion is not None:
            champion_score = float(score_champion(f"models:/{name}@{CHAMPION}"))
        else:
            champion_score = float(champion.tags.get(f"holdout_{metric}", "nan"))
        better = score > champion_score if higher_is_better else score < champion_score
        alias = CHAMPION if better else CHALLENGER
        verb = "beats" if better else "does not beat"
        reason = (
            f"version {version} {verb} champion version {champion.version} on the same holdout: "
            f"{metric} {score:.4f} vs {champion_score:.4f}"
        )
        if better:
            reason += "; champion moves to the new version"
        else:
            reason += "; it becomes challenger"
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, f"holdout_{metric}", f"{score:.6f}")
    client.set_model_version_tag(name, version, "promotion", reason)
    return Decision(
        name=name,
        version=str(version),
        alias=alias,
        reason=reason,
        score=score,
        champion_score=champion_score,
    )
