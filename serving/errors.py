"""Errors of the service itself, and how every named error of the packages becomes an HTTP answer.

A caller's mistake is a 4xx with a one-line ``detail``; a store that does not answer is a 503; anything
else is a bug: a 500 whose body says only that, while the traceback goes to the log.
"""

from __future__ import annotations

from experiments.errors import DatabaseError, ExperimentsError, StoreError, UnknownExperimentError
from features.errors import FeaturesError
from features.errors import StoreError as FeatureStoreError
from training.errors import ModelNotFoundError, TrainingError


class ServingError(Exception):
    """Base of the errors the service raises on purpose; ``status`` is the HTTP status it answers with."""

    status = 400


class NotFoundError(ServingError):
    """The user, item or experiment asked for is not known."""

    status = 404


class NotReadyError(ServingError):
    """What the endpoint needs has not been built yet (no champion, no scored list): train or score first."""

    status = 503


NAMED_ERRORS: tuple[type[Exception], ...] = (ServingError, FeaturesError, TrainingError, ExperimentsError)
"""The bases whose errors are answers (4xx, or 503 when something is missing), never crashes."""


def status_of(error: Exception) -> int | None:
    """The HTTP status for a named error of ours, ``None`` for anything else (a bug)."""
    if isinstance(error, ServingError):
        return error.status
    if isinstance(error, ModelNotFoundError | FeatureStoreError | DatabaseError):
        return 503
    if isinstance(error, UnknownExperimentError):
        return 404
    if isinstance(error, StoreError):
        return 409  # the experiment exists but its state refuses the request (not running, ...)
    if isinstance(error, ExperimentsError | FeaturesError | TrainingError):
        return 422
    return None
