"""Run the receiver under uvicorn, after checking its configuration and database once.

Configuration errors end the process before it listens, with a message naming the variable.
A database that is unreachable at start only warns: the receiver answers 503 (and /healthz
says so) until it is back, which is what a sender's retry schedule expects. A database that
answers but is not migrated to the newest revision is an error: events would be refused.
"""

from __future__ import annotations

import logging

from integration_platform.settings import ConfigError

APP_FACTORY = "integration_platform.webhooks.app:create_app_from_env"

log = logging.getLogger("integration_platform.webhooks")


def check_configuration() -> str:
    """Sources and database as the workers will see them; returns a one-line summary."""
    from integration_platform.state import migrate
    from integration_platform.state.engine import database_url, mask_password
    from integration_platform.webhooks.sources import WebhookSources

    sources = WebhookSources.from_env()
    url = database_url()
    try:
        revision = migrate.current(url)
    except ConfigError as exc:
        log.warning("%s; starting anyway, events are answered 503 until it is reachable", exc)
    else:
        if revision != migrate.head():
            raise ConfigError(
                f"the state database {mask_password(url)} is at revision {revision or 'base'}, "
                f"the receiver needs {migrate.head()}: run `integration-platform db upgrade`"
            )
    schemes = ", ".join(f"{name} ({source.scheme})" for name, source in sources.items())
    return f"webhook sources: {schemes}; state database: {mask_password(url)}"


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    access_log: bool = True,
    log_level: str = "info",
) -> None:
    """Listen until stopped; ``workers`` > 1 starts that many processes on one socket."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(message)s")
    print(check_configuration(), flush=True)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=log_level,
        # Behind a load balancer the client address comes from X-Forwarded-For.
        proxy_headers=True,
    )
