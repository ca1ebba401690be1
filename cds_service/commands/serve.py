"""`cds-service serve`: run the CDS Hooks service under uvicorn.

Settings resolve CLI > ``CDS_*`` environment > ``--config`` TOML > defaults
(``cds_service.settings``). The knowledge is validated *before* the port is bound, so a
bad artifact stops the start with every problem listed; so does an unauthenticated
server on a non-loopback address without ``--allow-unauthenticated``. With
``--workers N`` the knowledge is compiled once and N worker processes are forked, each
with its own listening socket (``SO_REUSEPORT``, commands/_workers.py) so that keep-alive
clients are spread across them; where the platform lacks ``SO_REUSEPORT``, uvicorn's own
workers rebuild the app from ``CDS_*`` variables (``cds_service.api:app_from_env``).
"""

from __future__ import annotations

import os
from typing import Any

import click

from cds_service.commands import CONTEXT_SETTINGS
from cds_service.errors import KnowledgeError
from cds_service.settings import Settings, SettingsError, as_env, load_settings


def resolve(config: str | None, **cli: Any) -> Settings:
    try:
        return load_settings(cli, config_file=config)
    except SettingsError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--host", help="Address to bind [default: 127.0.0.1].")
@click.option("--port", type=int, help="Port to bind [default: 8080].")
@click.option(
    "--config", type=click.Path(dir_okay=False), help="TOML config file ([service], [security], [policy])."
)
@click.option("--workers", type=int, help="Worker processes, a listening socket each (SO_REUSEPORT) [default: 1].")
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    default=None,
    help="Serve without JWT checks on a non-loopback address.",
)
@click.option(
    "--knowledge",
    "knowledge",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Knowledge directory (repeatable) [default: bundled].",
)
def serve(
    host: str | None,
    port: int | None,
    config: str | None,
    workers: int | None,
    allow_unauthenticated: bool | None,
    knowledge: tuple[str, ...],
) -> None:
    """Serve the CDS Hooks endpoints (discovery, hooks, feedback, health, metrics)."""
    import uvicorn

    from cds_service.api import build_engine, create_app
    from cds_service.api.app import tune_gc
    from cds_service.api.edges import uvicorn_options
    from cds_service.api.logging import configure_logging
    from cds_service.api.security import check_startup
    from cds_service.commands._workers import reuseport_supported, run_workers

    settings = resolve(
        config,
        host=host,
        port=port,
        workers=workers,
        allow_unauthenticated=allow_unauthenticated,
        knowledge_dirs=tuple(knowledge) or None,
    )
    configure_logging(settings.log_level, settings.log_format)
    try:
        check_startup(settings, warn=False)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        # Load and compile the knowledge before binding: bad knowledge stops the start
        # with every problem listed (load_knowledge raises them all at once).
        engine = build_engine(settings)
    except (KnowledgeError, SettingsError) as exc:
        raise click.ClickException(f"refusing to start: {exc}\nRun `cds-service validate`.") from None
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        **uvicorn_options(settings),  # deadlines for idle and slow clients
    }
    if settings.ssl_certfile:
        common.update(ssl_certfile=str(settings.ssl_certfile), ssl_keyfile=str(settings.ssl_keyfile))
    if settings.workers > 1 and reuseport_supported():

        def make_app() -> Any:  # in each worker, after the fork: its own store, client, metrics
            app = create_app(settings, engine=engine)
            tune_gc()
            return app

        host, port = common.pop("host"), common.pop("port")
        try:
            status = run_workers(make_app, settings.workers, host, port, **common)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None
        if status:
            raise click.ClickException("a worker process could not stay up; see the log above")
        return
    if settings.workers > 1:
        os.environ.update(as_env(settings))
        uvicorn.run("cds_service.api:app_from_env", factory=True, workers=settings.workers, **common)
        return
    app = create_app(settings, engine=engine)
    tune_gc()
    uvicorn.run(app, **common)
