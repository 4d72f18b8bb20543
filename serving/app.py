"""The HTTP API: ``create_app(settings)`` builds one worker's application.

Routers are thin (``serving/routes/``); what they need comes from :mod:`serving.deps`. Every named error
of our packages becomes a 4xx (or a 503 when a store or model is missing) with a one-line ``detail``;
anything else is a bug: a 500 that says only that, with the traceback in the log, never in the body.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from serving import metrics
from serving.errors import NAMED_ERRORS, status_of
from serving.settings import Settings

log = logging.getLogger("userops.serving")


def _printable(value: object) -> object:
    """``value`` with every NaN or infinite float turned into its text, so that it can be written as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


MAX_BODY = 1_000_000
"""Request bodies above this many bytes are refused with 413."""
TOO_LARGE = f"the request body is over {MAX_BODY:,} bytes"


class BodyLimit:
    """Refuse a body over ``MAX_BODY`` bytes with 413 however it comes: with a ``Content-Length`` that says
    so (before anything is read), or in chunks that add up to more (as soon as they do)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:  # an HTTP error raised while the body is read becomes the 413
                    raise HTTPException(status_code=413, detail=TOO_LARGE)
            return message

        await self.app(scope, counted, send)


def create_app(settings: Settings, data: Path | None = None) -> FastAPI:
    """One worker's application over the data folder ``data`` (default ``settings.data``).

    Nothing is read until the application starts (its lifespan): then the stores are opened and the
    champion models loaded.
    """
    from serving.routes import ROUTERS

    folder = settings.data_dir(data)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        from experiments.exposures import ExposureLog, GroupCommit
        from experiments.service import RunningDesigns
        from experiments.store import ExperimentStore
        from serving.auth import KeyStore
        from serving.models import ModelHolder

        # a worker answers many requests at once: numeric libraries' own threads would only contend
        threadpool_limits(limits=1)
        url = settings.experiments_url_for(folder)
        app.state.settings = settings
        app.state.data = folder
        app.state.experiments = ExperimentStore(url)
        # assignments read designs from memory; a stopped or edited experiment reaches them within 1 s
        app.state.designs = RunningDesigns(app.state.experiments, seconds=1.0)
        # concurrent assignments share commits; each answer still waits for its own exposures' commit
        app.state.exposures = GroupCommit(ExposureLog(url))
        app.state.keys = KeyStore(url)
        app.state.models = ModelHolder(settings, folder, app.state.experiments)
        try:
            yield
        finally:
            app.state.exposures.close()

    app = FastAPI(
        title="userops",
        version="0.1.0",
        summary="Churn risk, recommendations, next-best offers, experiment assignments and win-back lists.",
        lifespan=lifespan,
    )

    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def measure_and_guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            response: Response = JSONResponse({"detail": TOO_LARGE}, status_code=413)
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.observe(request.method, path, response.status_code, time.perf_counter() - started)
        return response

    async def named_error(request: Request, error: Exception) -> JSONResponse:
        status = status_of(error) or 500
        return JSONResponse({"detail": str(error).strip().splitlines()[0]}, status_code=status)

    # handled here, a named error is an answer, not a crash: no traceback in the log
    for base in NAMED_ERRORS:
        app.add_exception_handler(base, named_error)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI echoes the bad input; a body such as {"x": NaN} must not make that answer unwritable
        return JSONResponse({"detail": _printable(jsonable_encoder(error.errors()))}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("bug while answering %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: the service failed; it is logged"}, status_code=500)

    @app.get("/healthz", tags=["health"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Models and stores are loaded.")
    def readyz(request: Request) -> JSONResponse:
        loaded = request.app.state.models.get()
        body = {"ready": loaded.ready, "problems": list(loaded.problems)}
        return JSONResponse(body, status_code=200 if loaded.ready else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus text: requests, latency, model versions.")
    def prometheus(request: Request) -> PlainTextResponse:
        loaded = request.app.state.models.get()
        infos = (loaded.recommender_info, loaded.churn_info, loaded.offers_info)
        versions = {info.name: info.version for info in infos}
        return PlainTextResponse(metrics.render(versions), media_type="text/plain; version=0.0.4")

    for router in ROUTERS:
        app.include_router(router)
    return app


def app_from_environment() -> FastAPI:
    """The application for a worker started by uvicorn: settings read from ``USEROPS_*`` in its process."""
    return create_app(Settings())
