"""How a server listens: uvicorn's configuration from the settings, the same for ``aimi serve``
and for the servers the tests run in process."""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.applications import Starlette

from aimi.server.protocol import protocol
from aimi.settings import Settings


def uvicorn_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's config for ``app``: uvloop's event loop and llhttp's parser (uvicorn's standard
    extras), request heads within ``header_timeout``, at most ``max_connections`` at once, idle
    kept-alive connections closed after 5 s, https when a certificate is given."""
    values: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.max_connections,
        "http": protocol(settings.header_timeout),
        "loop": "auto",
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
        **overrides,
    }
    return uvicorn.Config(app, **values)
