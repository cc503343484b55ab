"""The app factory: ``create_app`` builds the server's runtime and hangs it on the app, with the
route table, the middleware and the error handlers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route

from aimi.auth.keys import ApiKey
from aimi.deployments.build import DeploymentSpec
from aimi.deployments.registry import Endpoint
from aimi.pipeline.steps import ClientGone
from aimi.protocol.errors import ApiError
from aimi.runtime import Served
from aimi.server import control, openapi
from aimi.server.admin import gauges, metrics_route, usage_route
from aimi.server.errors import api_error, client_gone, http_error, unexpected
from aimi.server.health import health
from aimi.server.middleware.auth import AuthMiddleware
from aimi.server.middleware.body_limit import BodyLimitMiddleware
from aimi.server.middleware.context import ContextMiddleware
from aimi.server.middleware.request_id import RequestIdMiddleware
from aimi.server.openapi import AZURE_OPENAI_PREFIX, AZURE_PREFIXES, DEPLOYMENT_PREFIX, OPENAI_PREFIXES
from aimi.server.startup import build_runtime, lifespan
from aimi.server.tracing import TracingMiddleware
from aimi.settings import Settings
from aimi.surfaces import handlers
from aimi.surfaces.handlers import AZURE, AZURE_OPENAI, OPENAI


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/admin/usage", usage_route, methods=["GET"]),
        *control.routes(),
    ]
    for prefix in (*AZURE_PREFIXES, DEPLOYMENT_PREFIX):
        table += [
            Route(f"{prefix}/info", partial(handlers.info, surface=AZURE), methods=["GET"]),
            Route(f"{prefix}/chat/completions", partial(handlers.chat_completions, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/completions", partial(handlers.completions, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/embeddings", partial(handlers.text_embeddings, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/images/embeddings", handlers.image_embeddings, methods=["POST"]),
        ]
    for prefix in OPENAI_PREFIXES:
        table += [
            Route(f"{prefix}/chat/completions", partial(handlers.chat_completions, surface=OPENAI), methods=["POST"]),
            Route(f"{prefix}/completions", partial(handlers.completions, surface=OPENAI), methods=["POST"]),
            Route(f"{prefix}/embeddings", partial(handlers.text_embeddings, surface=OPENAI), methods=["POST"]),
        ]
    prefix = AZURE_OPENAI_PREFIX
    table += [
        Route(f"{prefix}/info", partial(handlers.info, surface=AZURE_OPENAI), methods=["GET"]),
        Route(f"{prefix}/chat/completions", partial(handlers.chat_completions, surface=AZURE_OPENAI), methods=["POST"]),
        Route(f"{prefix}/completions", partial(handlers.completions, surface=AZURE_OPENAI), methods=["POST"]),
        Route(f"{prefix}/embeddings", partial(handlers.text_embeddings, surface=AZURE_OPENAI), methods=["POST"]),
    ]
    table += [
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/openai/v1/models", handlers.models, methods=["GET"]),
        Route("/swagger.json", openapi.document, methods=["GET"]),
        Route("/openapi.json", openapi.document, methods=["GET"]),
    ]
    return table


def create_app(
    settings: Settings,
    specs: list[DeploymentSpec],
    keys: Sequence[str | ApiKey] | None = None,
    endpoints: Sequence[Endpoint] = (),
    reloader: Callable[[], Served] | None = None,
) -> Starlette:
    """The ASGI app serving ``specs`` (and ``endpoints`` over them) with ``settings``; ``keys``
    None means no auth. ``reloader`` gives what to serve after a SIGHUP (see
    :func:`aimi.server.startup.reload`)."""
    runtime = build_runtime(settings, specs, keys, endpoints, reloader)
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AuthMiddleware, keys=runtime.keys),
            *([Middleware(TracingMiddleware, provider=runtime.tracing)] if runtime.tracing is not None else []),
            Middleware(ContextMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout=settings.body_timeout),
        ],
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            ClientGone: client_gone,
            # The client went away while sending its body: an abort, not a server error.
            ClientDisconnect: client_gone,
            Exception: unexpected,
        },
        lifespan=lifespan,
    )
    # A redirect would hand POST clients a 307 instead of an answer: unknown paths are 404s.
    app.router.redirect_slashes = False
    app.state.runtime = runtime
    runtime.metrics.gauges(lambda: gauges(runtime))
    return app
