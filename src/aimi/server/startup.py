"""Building a server's :class:`~aimi.runtime.Runtime` from its settings, and its life: models
loaded in the background at start, reloads on SIGHUP, idle models unloaded, everything closed
at shutdown."""

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

from aimi.auth.keys import ApiKey, KeyRing, KeyVerifier
from aimi.auth.tokens import TokenVerifier
from aimi.control.plane import ControlPlane
from aimi.deployments.build import DeploymentSpec
from aimi.deployments.registry import Deployment, Deployments, Endpoint
from aimi.deployments.sources import resolve
from aimi.deployments.supervisor import RestartPolicy, Supervision, supervise
from aimi.engines import build_engine
from aimi.engines.api import Engine, EngineDead
from aimi.protocol.errors import ApiError
from aimi.quota.api import QuotaBackend
from aimi.quota.gate import OnError, Quotas
from aimi.quota.memory import MemoryQuotas
from aimi.runtime import Runtime, Served, runtime_of
from aimi.safety.filter import ContentFilter
from aimi.safety.registry import Classifiers
from aimi.server.tracing import tracer_provider
from aimi.settings import Settings
from aimi.usage.ledger import Ledger
from aimi.usage.metrics import Metrics
from aimi.usage.store import LedgerStore

log = logging.getLogger(__name__)
_LEDGER_START_WAIT = 2.0


def build_quotas(settings: Settings) -> Quotas:
    backend: QuotaBackend = MemoryQuotas()
    if settings.quota_backend == "redis":
        from aimi.quota.redis import RedisQuotas

        # A lease outlives the longest request, so a crashed replica's slots come back after it.
        backend = RedisQuotas.from_url(
            settings.redis_url,
            settings.quota_timeout,
            lease_seconds=settings.request_timeout + 60,
            connect_timeout=settings.quota_connect_timeout,
            pool_size=settings.quota_pool_size,
            wait=settings.request_timeout,
        )
    return Quotas(backend, on_error=OnError(settings.quota_on_error), timeout=settings.quota_timeout)


def restart_policy(settings: Settings) -> RestartPolicy:
    """When the supervisor restarts a dead engine, and when the watchdog declares one stalled."""
    return RestartPolicy(
        backoff=settings.engine_restart_backoff,
        max_backoff=settings.engine_max_backoff,
        max_restarts=settings.engine_max_restarts,
        window=settings.engine_restart_window,
        stall_timeout=settings.engine_stall_timeout,
    )


def build_deployment(spec: DeploymentSpec, classifiers: Classifiers, policy: RestartPolicy | None = None) -> Deployment:
    """A deployment with its engine (not started), its content filter and its restart policy."""
    engine = build_engine(spec.engine, spec.engine_config)
    safety = None
    if spec.safety is not None:
        safety = ContentFilter(spec.safety, classifiers.get(spec.safety.classifier, spec.safety.classifier_options))
    profile = spec.profile
    if not engine.capabilities.chat and profile.model_type == "chat-completions":
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
        defaults=spec.defaults,
        idle_unload_seconds=spec.idle_unload_seconds,
        factory=partial(build_engine, spec.engine, spec.engine_config),
        spec=spec,
        supervision=Supervision(policy),
    )


def build_runtime(
    settings: Settings,
    specs: list[DeploymentSpec],
    keys: Sequence[str | ApiKey] | None,
    endpoints: Sequence[Endpoint],
    reloader: Callable[[], Served] | None,
) -> Runtime:
    """Everything a server is made of; nothing started yet (see :func:`lifespan`)."""

    async def engine_of(name: str) -> Engine:
        """A deployment's engine, loaded, for a guard classifier."""
        current = runtime.deployments
        try:
            deployment = current.resolve(name)
        except ApiError as exc:
            raise LookupError(exc.message) from None
        await current.ensure_loaded(deployment, settings.max_loaded_models)
        return deployment.ready().engine

    def model_path(ref: str) -> Path:
        return resolve(ref, settings.cache_dir, status=lambda line: log.info("%s", line)).path

    classifiers = Classifiers(engine_of, model_path)
    policy = restart_policy(settings)
    deployments = Deployments([build_deployment(spec, classifiers, policy) for spec in specs], endpoints)
    store = LedgerStore.open(settings.home, settings.database_url)
    quotas, metrics = build_quotas(settings), Metrics()
    quotas.on_failure = metrics.quota_errors.labels(quotas.backend.name).inc
    keyring = KeyRing(KeyVerifier(keys) if keys is not None else None)
    runtime = Runtime(
        settings=settings,
        deployments=deployments,
        keys=keyring,
        tokens=TokenVerifier.from_settings(settings),
        classifiers=classifiers,
        quotas=quotas,
        ledger=Ledger(store.write, capacity=settings.usage_buffer),
        store=store,
        metrics=metrics,
        reloader=reloader,
        control=ControlPlane(settings, store, keyring, specs) if keyring.verifier is not None else None,
        tracing=tracer_provider(settings.otlp_endpoint) if settings.otlp_endpoint else None,
    )
    return runtime


async def _retire(deployment: Deployment) -> None:
    """Close a deployment a reload removed or replaced, once its last request is done."""
    while deployment.in_flight:
        await asyncio.sleep(0.05)
    await deployment.engine.close()


async def _load(d: Deployment) -> None:
    try:
        await d.load()
        log.info("deployment %s ready", d.name)
    except EngineDead as exc:
        log.error("deployment %s failed to load: %s", d.name, exc)


async def reload(runtime: Runtime) -> None:
    """Re-read what the server serves (its ``reloader``) and apply it without dropping requests.

    Unchanged deployments are kept as they are; new and changed ones are built (and loaded);
    removed and replaced ones finish their requests and then close. A file that does not load
    leaves everything as it was.
    """
    assert runtime.reloader is not None
    try:
        specs, keys, endpoints = await asyncio.to_thread(runtime.reloader)
    except Exception as exc:
        log.error("reload failed, still serving the previous deployments: %s", exc)
        return
    await apply(runtime, runtime.control.served(specs) if runtime.control is not None else specs, keys, endpoints)


async def apply(
    runtime: Runtime, specs: list[DeploymentSpec], keys: list[str | ApiKey] | None, endpoints: list[Endpoint]
) -> None:
    """Serve ``specs`` (and ``keys``, unless None) from now on, as :func:`reload` describes."""
    current = {d.name: d for d in runtime.deployments}
    try:
        serving = [
            current[s.name]
            if s.name in current and current[s.name].spec == s
            else build_deployment(s, runtime.classifiers, restart_policy(runtime.settings))
            for s in specs
        ]
    except Exception as exc:
        log.error("reload failed, still serving the previous deployments: %s", exc)
        return
    kept = {id(d) for d in serving}
    runtime.deployments = Deployments(serving, endpoints)
    if keys is not None:
        runtime.keys.verifier = KeyVerifier(keys)
    for d in serving:
        if (d.name not in current or current[d.name] is not d) and not d.on_demand:
            runtime.spawn(_load(d))
    for d in current.values():
        if id(d) not in kept:
            runtime.spawn(_retire(d))
    log.info("reloaded: serving %s", ", ".join(d.name for d in serving))


async def _unload_idle(runtime: Runtime) -> None:
    # Looks at the current deployments each time, so a reload's on-demand ones are seen.
    while True:
        idle = [d.idle_unload_seconds for d in runtime.deployments if d.idle_unload_seconds is not None]
        await asyncio.sleep(min(5.0, max(0.05, min(idle) / 4)) if idle else 1.0)
        await runtime.deployments.unload_idle()


def _prepare_ledger(runtime: Runtime) -> None:
    """The ledger's table exists before the first request (a database down now is retried on the
    first write); then the writer starts."""
    try:
        runtime.store.ensure()
    except Exception as exc:  # SQLAlchemy's and the driver's errors alike: the writer retries
        log.warning("usage ledger not ready at start (%s); records are kept until it is", getattr(exc, "orig", exc))
    runtime.ledger.start()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """The server answers (/health: 503) while models load in the background."""
    runtime = runtime_of(app)
    # Bounded: a database that does not answer delays the start by at most this, and the writer
    # retries the migration with its first batch.
    preparing = asyncio.ensure_future(asyncio.to_thread(_prepare_ledger, runtime))
    await asyncio.wait({preparing}, timeout=_LEDGER_START_WAIT)
    await runtime.quotas.warm()  # a burst right after start-up finds Redis's connections open
    # On-demand deployments load with their first request; the others now, in the background.
    for d in runtime.deployments:
        if not d.on_demand:
            runtime.spawn(_load(d))
    if runtime.control is not None:
        # After the file's loads: the first refresh adds the runtime deployments (and the managed keys).
        runtime.control.attach(lambda specs: apply(runtime, specs, None, runtime.deployments.endpoints))
        runtime.spawn(runtime.control.run())
    runtime.spawn(_unload_idle(runtime))
    restarts = runtime.metrics.engine_restarts
    policy = restart_policy(runtime.settings)
    runtime.spawn(supervise(lambda: runtime.deployments, policy, lambda n: restarts.labels(n).inc(), runtime.spawn))
    runtime.background.add(runtime.classifiers.launch())
    if runtime.reloader is not None:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: runtime.spawn(reload(runtime)))
    try:
        yield
    finally:
        for task in list(runtime.background):
            task.cancel()
        for d in runtime.deployments:
            await d.engine.close()
        await asyncio.to_thread(runtime.ledger.stop)
        runtime.store.close()
        await runtime.quotas.close()
        await runtime.tokens.close()
        await runtime.classifiers.close()
        if runtime.tracing is not None:
            await asyncio.to_thread(runtime.tracing.shutdown)
