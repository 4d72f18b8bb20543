"""What routes need, as ``Annotated[..., Depends(...)]`` aliases: tests swap the functions here.

Everything is made once per worker in :func:`serving.app.create_app` and kept on ``app.state``; these
functions only hand it out (and check the caller's key and role). They are coroutines: none waits on
anything for long (a key is looked up in the store at most once a second), and a plain function would
cost each request one trip through the thread pool per dependency.

Each dependency a route declares costs every request a resolution (about as much as the look-up
endpoints' own work), so the hot routes keep to few and flat ones: the role check reads the key store
from the request itself, and what only some requests need (the exposure log of a recommender rollout) is
taken with the plain ``*_of(request)`` functions instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from experiments.exposures import ExposureSink
from experiments.service import RunningDesigns
from experiments.store import ExperimentStore
from serving.auth import KeyStore, Principal, Role
from serving.models import Loaded, ModelHolder
from serving.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key made with `userops keys create`.")


async def get_settings(request: Request) -> Settings:
    """The worker's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_data_dir(request: Request) -> Path:
    """The data folder this worker serves."""
    folder: Path = request.app.state.data
    return folder


async def get_holder(request: Request) -> ModelHolder:
    """The worker's model holder (for reload)."""
    holder: ModelHolder = request.app.state.models
    return holder


async def get_models(request: Request) -> Loaded:
    """The models and stores to answer this request with (one consistent set for the whole request)."""
    holder: ModelHolder = request.app.state.models
    return holder.get()


async def get_experiment_store(request: Request) -> ExperimentStore:
    """The experiment store (definitions and lifecycle)."""
    store: ExperimentStore = request.app.state.experiments
    return store


def designs_of(request: Request) -> RunningDesigns:
    """Running experiments' designs, re-read from the store at most once a second."""
    designs: RunningDesigns = request.app.state.designs
    return designs


def exposures_of(request: Request) -> ExposureSink:
    """The durable exposure log."""
    log: ExposureSink = request.app.state.exposures
    return log


async def get_exposure_log(request: Request) -> ExposureSink:
    """The durable exposure log."""
    return exposures_of(request)


def caller_of(keys: KeyStore, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """Who is calling, from ``Authorization: Bearer KEY``.

    Raises:
        HTTPException: 401 without a key, or with one that is unknown or revoked.
    """
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            401, "an API key is required: Authorization: Bearer KEY", {"WWW-Authenticate": "Bearer"}
        )
    principal = keys.verify(credentials.credentials)
    if principal is None:
        raise HTTPException(401, "the API key is unknown or revoked", {"WWW-Authenticate": "Bearer"})
    return principal


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets through callers with one of ``roles`` (``admin`` always).

    Raises:
        HTTPException: 401 without a valid key (:func:`caller_of`); 403 for any other role.
    """

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        caller = caller_of(request.app.state.keys, credentials)
        if caller.role != "admin" and caller.role not in roles:
            wanted = " or ".join(("admin", *roles))
            raise HTTPException(
                403, f"this endpoint needs the role {wanted}; the key's role is {caller.role}"
            )
        return caller

    return check


def models_for(*roles: Role) -> Callable[..., Awaitable[Loaded]]:
    """A dependency that checks the caller as :func:`allow` does and hands out the models to answer with:
    one dependency where the hot routes would otherwise resolve two."""

    check = allow(*roles)

    async def models(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Loaded:
        await check(request, credentials)
        holder: ModelHolder = request.app.state.models
        return holder.get()

    return models


SettingsDep = Annotated[Settings, Depends(get_settings)]
DataDirDep = Annotated[Path, Depends(get_data_dir)]
ModelsDep = Annotated[Loaded, Depends(get_models)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
ExperimentStoreDep = Annotated[ExperimentStore, Depends(get_experiment_store)]
ExposureLogDep = Annotated[ExposureSink, Depends(get_exposure_log)]
AppCaller = Annotated[Principal, Depends(allow("app"))]
OperatorCaller = Annotated[Principal, Depends(allow("operator"))]
AnalystCaller = Annotated[Principal, Depends(allow("analyst"))]
AdminCaller = Annotated[Principal, Depends(allow())]
AppModels = Annotated[Loaded, Depends(models_for("app"))]
"""The models, for a caller with the ``app`` role (401/403 otherwise)."""
