"""The app factory: ``create_app(settings)`` builds the whole world and hangs it on the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aimi.auth.keys import ApiKey, KeyRing, KeyVerifier
from aimi.deployments.build import DeploymentSpec
from aimi.deployments.registry import Deployment, Deployments, Endpoint
from aimi.deployments.sources import resolve
from aimi.engines import build_engine
from aimi.engines.api import Engine, EngineDead
from aimi.protocol.errors import ApiError
from aimi.safety.filter import ContentFilter
from aimi.safety.registry import Classifiers
from aimi.server import openapi
from aimi.server.middleware.access_log import AccessLogMiddleware
from aimi.server.middleware.auth import AuthMiddleware
from aimi.server.middleware.body_limit import BodyLimitMiddleware
from aimi.server.middleware.metering import MeteringMiddleware
from aimi.server.middleware.request_id import RequestIdMiddleware
from aimi.server.observability import build_metering, gauges, metrics_route, usage_route
from aimi.server.openapi import AZURE_PREFIXES, DEPLOYMENT_PREFIX
from aimi.server.responses import api_error, client_gone, http_error, unexpected
from aimi.server.tracing import TracingMiddleware, tracer_provider
from aimi.settings import Settings
from aimi.surfaces import handlers
from aimi.surfaces.handlers import AZURE, OPENAI
from aimi.surfaces.responses import JSONResponse
from aimi.surfaces.stream import ClientGone

log = logging.getLogger(__name__)


# in /models, the 2025 spec's host template in /api/models.


async def health(request: Request) -> Response:
    """200 when every deployment is ready (or unloaded until needed); 503 while one loads or when
    one failed.

    Anyone may ask; a caller with a valid key also sees each deployment it may use, by name.
    """
    deployments = list(request.app.state.deployments)
    states = {d.name: d.state() for d in deployments}
    overall = "ok" if all(s in ("ready", "unloaded") for s in states.values()) else "loading"
    if request.app.state.classifiers.loading:  # content safety's models: no request before them
        overall = "loading" if overall == "ok" else overall
    if "failed" in states.values():
        overall = "unhealthy"
    body: dict[str, object] = {"status": overall}
    principal = request.scope.get("state", {}).get("principal")
    if principal is not None:
        body["deployments"] = {name: s for name, s in states.items() if principal.may_use(name)}
        metering = request.app.state.metering
        body["quota"] = metering.quotas.health().as_dict()
        if metering.ledger is not None:
            ledger = metering.ledger
            body["usage_ledger"] = {
                "state": "ok" if ledger.healthy else "unreachable",
                "pending": ledger.pending,
                "dropped": ledger.dropped,
            }
    if overall == "ok":
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/admin/usage", usage_route, methods=["GET"]),
    ]
    for prefix in (*AZURE_PREFIXES, DEPLOYMENT_PREFIX):
        table += [
            Route(f"{prefix}/info", handlers.info, methods=["GET"]),
            Route(f"{prefix}/chat/completions", partial(handlers.chat_completions, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/completions", partial(handlers.completions, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/embeddings", partial(handlers.text_embeddings, surface=AZURE), methods=["POST"]),
            Route(f"{prefix}/images/embeddings", handlers.image_embeddings, methods=["POST"]),
        ]
    table += [
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/v1/chat/completions", partial(handlers.chat_completions, surface=OPENAI), methods=["POST"]),
        Route("/v1/completions", partial(handlers.completions, surface=OPENAI), methods=["POST"]),
        Route("/v1/embeddings", partial(handlers.text_embeddings, surface=OPENAI), methods=["POST"]),
        Route(
            f"{DEPLOYMENT_PREFIX}/v1/chat/completions",
            partial(handlers.chat_completions, surface=OPENAI),
            methods=["POST"],
        ),
        Route(f"{DEPLOYMENT_PREFIX}/v1/completions", partial(handlers.completions, surface=OPENAI), methods=["POST"]),
        Route(
            f"{DEPLOYMENT_PREFIX}/v1/embeddings", partial(handlers.text_embeddings, surface=OPENAI), methods=["POST"]
        ),
        Route("/swagger.json", openapi.document, methods=["GET"]),
        Route("/openapi.json", openapi.document, methods=["GET"]),
    ]
    return table


def _deployment(spec: DeploymentSpec, classifiers: Classifiers) -> Deployment:
    engine = build_engine(spec.engine, spec.engine_config)
    safety = None
    if spec.safety is not None:
        safety = ContentFilter(spec.safety, classifiers.get(spec.safety.classifier, spec.safety.classifier_options))
    profile = spec.profile
    if not engine.capabilities.chat and profile.model_type == "chat-completion":
        # A model given by path: what it is follows from the engine that serves it.
        if engine.capabilities.image_embeddings:
            profile = replace(profile, model_type="image_embeddings")
        else:
            profile = replace(profile, model_type="embeddings")
    return Deployment(
        quota=spec.quota,
        prices=spec.prices,
        safety=safety,
        name=spec.name,
        display_name=spec.display_name,
        profile=profile,
        engine=engine,
        limits=spec.limits,
        idle_unload_seconds=spec.idle_unload_seconds,
        factory=partial(build_engine, spec.engine, spec.engine_config),
        spec=spec,
    )


Served = tuple[list[DeploymentSpec], list[str | ApiKey] | None, list[Endpoint]]


async def _retire(deployment: Deployment) -> None:
    """Close a deployment a reload removed or replaced, once its last request is done."""
    while deployment.in_flight:
        await asyncio.sleep(0.05)
    await deployment.engine.close()


async def reload(app: Starlette) -> None:
    """Re-read what the app serves (its ``reloader``) and apply it without dropping requests.

    Unchanged deployments are kept as they are; new and changed ones are built (and loaded);
    removed and replaced ones finish their requests and then close. A file that does not load
    leaves everything as it was.
    """
    try:
        specs, keys, endpoints = await asyncio.to_thread(app.state.reloader)
    except Exception as exc:
        log.error("reload failed, still serving the previous deployments: %s", exc)
        return
    current = {d.name: d for d in app.state.deployments}
    classifiers = app.state.classifiers
    try:
        serving = [
            current[s.name] if s.name in current and current[s.name].spec == s else _deployment(s, classifiers)
            for s in specs
        ]
    except Exception as exc:
        log.error("reload failed, still serving the previous deployments: %s", exc)
        return
    kept = {id(d) for d in serving}
    app.state.deployments = Deployments(serving, endpoints)
    if keys is not None:
        app.state.keys.verifier = KeyVerifier(keys)
    for d in serving:
        if d.name not in current or current[d.name] is not d:
            if not d.on_demand:
                app.state.loading.append(asyncio.create_task(_load(d)))
    for d in current.values():
        if id(d) not in kept:
            app.state.loading.append(asyncio.create_task(_retire(d)))
    log.info("reloaded: serving %s", ", ".join(d.name for d in serving))


async def _load(d: Deployment) -> None:
    try:
        await d.load()
        log.info("deployment %s ready", d.name)
    except EngineDead as exc:
        log.error("deployment %s failed to load: %s", d.name, exc)


def create_app(
    settings: Settings,
    specs: list[DeploymentSpec],
    keys: Sequence[str | ApiKey] | None = None,
    endpoints: Sequence[Endpoint] = (),
    reloader: Callable[[], Served] | None = None,
) -> Starlette:
    """The ASGI app serving ``specs`` (and ``endpoints`` over them) with ``settings``; ``keys``
    None means no auth. ``reloader`` gives what to serve after a SIGHUP (see :func:`reload`)."""
    ring = KeyRing(KeyVerifier(keys) if keys is not None else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The server answers (/health: 503) while models load in the background.
        async def unload_idle() -> None:
            # Looks at the current deployments each time, so a reload's on-demand ones are seen.
            while True:
                idle = [d.idle_unload_seconds for d in app.state.deployments if d.idle_unload_seconds is not None]
                await asyncio.sleep(min(5.0, max(0.05, min(idle) / 4)) if idle else 1.0)
                await app.state.deployments.unload_idle()

        # On-demand deployments load with their first request; the others now, in the background.
        loading = [asyncio.create_task(_load(d)) for d in app.state.deployments if not d.on_demand]
        loading.append(asyncio.create_task(unload_idle()))
        loading.append(app.state.classifiers.launch())
        app.state.loading = loading
        if reloader is not None:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: loading.append(asyncio.create_task(reload(app)))
                )
        metering = app.state.metering
        if metering.ledger is not None:
            metering.ledger.start()
        await metering.quotas.warm()  # a burst right after start-up finds Redis's connections open
        try:
            yield
        finally:
            for task in [*loading, *app.state.shadow_tasks]:
                task.cancel()
            for d in app.state.deployments:
                await d.engine.close()
            if metering.ledger is not None:
                await asyncio.to_thread(metering.ledger.stop)
            app.state.ledger_store.engine.dispose()
            await metering.quotas.close()
            await app.state.classifiers.close()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    tracing = tracer_provider(settings.otlp_endpoint) if settings.otlp_endpoint else None
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AccessLogMiddleware),
            Middleware(AuthMiddleware, keys=ring),
            *([Middleware(TracingMiddleware, provider=tracing)] if tracing is not None else []),
            Middleware(MeteringMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            ClientGone: client_gone,
            Exception: unexpected,
        },
        lifespan=lifespan,
    )
    # A redirect would hand POST clients a 307 instead of an answer: unknown paths are 404s.
    app.router.redirect_slashes = False
    app.state.settings = settings

    async def engine_of(name: str) -> Engine:
        """A deployment's engine, loaded, for a guard classifier."""
        deployments: Deployments = app.state.deployments
        try:
            deployment = deployments.resolve(name)
        except ApiError as exc:
            raise LookupError(exc.message) from None
        await deployments.ensure_loaded(deployment, settings.max_loaded_models)
        return deployment.ready().engine

    def model_path(ref: str) -> Path:
        return resolve(ref, settings.cache_dir, status=lambda line: log.info("%s", line)).path

    app.state.classifiers = Classifiers(engine_of, model_path)
    app.state.deployments = Deployments([_deployment(spec, app.state.classifiers) for spec in specs], endpoints)
    app.state.keys = ring
    app.state.reloader = reloader
    app.state.loading = []
    app.state.shadow_tasks = set()
    app.state.metering, app.state.ledger_store = build_metering(settings)
    app.state.metering.metrics.gauges(lambda: gauges(app.state))
    return app
