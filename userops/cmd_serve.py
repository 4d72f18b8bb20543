"""``userops serve`` (the HTTP API) and ``userops keys`` (its API keys)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from serving.settings import Settings
from userops.console import UsageError, console, step, summary
from userops.options import DataOpt

keys_app = typer.Typer(help="API keys for the HTTP API: create, list, revoke.", no_args_is_help=True)


def serve(
    data: DataOpt,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes.")] = 1,
) -> None:
    """Run the HTTP API over a data folder until stopped (Ctrl-C).

    Reads the data folder's champion models (USEROPS_TRACKING_URI / MLFLOW_TRACKING_URI or DATA/mlflow.db),
    its online features, experiment store and API keys (USEROPS_EXPERIMENTS_URL or
    DATA/experiments.sqlite). Every call needs `Authorization: Bearer KEY` (make one with `userops keys
    create`), except /healthz, /readyz and /metrics. The API's schema is at /docs.
    """
    import uvicorn

    with step("serve"):
        if not data.is_dir():
            raise UsageError(f"data folder {data} does not exist")
        os.environ["USEROPS_DATA"] = str(data.resolve())
        console.print(f"serving {data} on http://{host}:{port} ({workers} worker(s)); the schema is at /docs")
        uvicorn.run(
            "serving.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )


@keys_app.command("create")
def create(
    data: DataOpt,
    role: Annotated[str, typer.Option("--role", help="app, operator, analyst or admin.")],
    name: Annotated[str | None, typer.Option("--name", help="A name to tell the key by.")] = None,
) -> None:
    """Make an API key for a role; the key is printed alone on the last line and never again.

    Writes the key's hash to the SQL store (USEROPS_EXPERIMENTS_URL or DATA/experiments.sqlite).
    """
    from serving.auth import ROLES, KeyStore

    with step("keys create"):
        if not data.is_dir():
            raise UsageError(f"data folder {data} does not exist")
        if role not in ROLES:  # before the store is opened: a refused command creates no database
            raise UsageError(f"--role: unknown role {role!r}; roles: {', '.join(ROLES)}")
        principal, key = KeyStore(Settings().experiments_url_for(data)).create(role, name)
        console.print(f"key {principal.name!r} with role {principal.role}; keep it, it is not shown again:")
        typer.echo(key)


@keys_app.command("list")
def list_keys(data: DataOpt) -> None:
    """List the API keys: name, role, first characters, when made and revoked (never the keys)."""
    from serving.auth import KeyStore

    with step("keys list") as started:
        rows = KeyStore(Settings().experiments_url_for(data)).list()
        for row in rows:
            revoked = f", revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else ""
            made = f"made {row['created_at']:%Y-%m-%d %H:%M}"
            typer.echo(f"{row['name']}\t{row['role']}\t{row['shown']}…\t{made}{revoked}")
        summary("keys", {"keys": len(rows)}, started)


@keys_app.command("revoke")
def revoke(
    data: DataOpt, name: Annotated[str, typer.Argument(help="The key's name (see `userops keys list`).")]
) -> None:
    """Revoke a key by name: a running server refuses it within a second."""
    from serving.auth import KeyStore

    with step("keys revoke"):
        KeyStore(Settings().experiments_url_for(data)).revoke(name)
        console.print(f"key {name!r} revoked")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
