"""Quotas, the usage ledger and the metrics, built from settings; the /metrics and /admin/usage
routes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response

from aimi.deployments.registry import Deployments
from aimi.engines.api import EngineState
from aimi.protocol.errors import invalid_request, service_unavailable
from aimi.quota.api import QuotaBackend
from aimi.quota.guard import OnError, Quotas
from aimi.quota.memory import MemoryQuotas
from aimi.settings import Settings
from aimi.surfaces.responses import JSONResponse
from aimi.usage import report, store
from aimi.usage.ledger import Ledger
from aimi.usage.metering import Metering
from aimi.usage.metrics import Metrics
from aimi.usage.records import UsageRecord

log = logging.getLogger(__name__)


def ledger_url(settings: Settings) -> str:
    return settings.database_url or f"sqlite:///{settings.home / 'usage.db'}"


class _Store:
    """The ledger's writer: migrates the schema on the first write it can make, then inserts."""

    def __init__(self, url: str) -> None:
        self.engine = store.connect(url)
        self._migrated = False

    def ensure(self) -> None:
        if not self._migrated:
            store.migrate(self.engine)
            self._migrated = True

    def write(self, records: Sequence[UsageRecord]) -> None:
        self.ensure()
        store.insert(self.engine, records)


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


def build_metering(settings: Settings) -> tuple[Metering, _Store]:
    settings.home.mkdir(parents=True, exist_ok=True)
    if settings.database_url is None:
        # The default ledger is the owner's alone, like the key file beside it (SQLite gives its
        # -wal and -shm files the same mode).
        os.close(os.open(settings.home / "usage.db", os.O_WRONLY | os.O_CREAT, 0o600))
    writer = _Store(ledger_url(settings))
    ledger = Ledger(writer.write, capacity=settings.usage_buffer)
    quotas, metrics = build_quotas(settings), Metrics()
    failures = metrics.quota_errors.labels(quotas.backend.name)
    quotas.on_failure = failures.inc
    return Metering(quotas, ledger, metrics), writer


def gauges(state: object) -> Iterable[tuple[str, str, dict[str, str], float]]:
    """Values read at scrape time: slots, queues and engine health per deployment; the quota
    backend and the ledger."""
    deployments: Deployments = state.deployments  # type: ignore[attr-defined]
    metering: Metering = state.metering  # type: ignore[attr-defined]
    for d in deployments:
        slots = d.facts.n_slots if d.facts else 0
        labels = {"deployment": d.name}
        yield "aimi_busy_slots", "Slots generating now", labels, float(min(d.in_flight, slots))
        yield "aimi_queue_depth", "Requests waiting for a slot", labels, float(max(0, d.in_flight - slots))
        yield "aimi_engine_up", "1 when the engine is ready", labels, float(d.engine.health() is EngineState.READY)
    quotas = metering.quotas
    yield (
        "aimi_quota_backend_up",
        "1 when the quota backend answers",
        {"backend": quotas.backend.name},
        float(quotas.up),
    )
    if metering.ledger is not None:
        ledger = metering.ledger
        yield "aimi_usage_records_pending", "Usage records not yet written", {}, float(ledger.pending)
        yield (
            "aimi_usage_records_dropped",
            "Usage records lost (buffer full or database down at exit)",
            {},
            float(ledger.dropped),
        )
        yield "aimi_usage_records_written", "Usage records written", {}, float(ledger.written)
        yield "aimi_usage_ledger_up", "1 when the last write to the ledger succeeded", {}, float(ledger.healthy)


async def metrics_route(request: Request) -> Response:
    metering: Metering = request.app.state.metering
    return Response(metering.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise invalid_request(f"{name} must be an ISO 8601 date or time, not {value!r}", name) from None


async def usage_route(request: Request) -> Response:
    """``GET /admin/usage?by=key,deployment,day&since=...&until=...&format=json|csv``."""
    query = request.query_params
    by = list(dict.fromkeys(part for part in query.get("by", "key,deployment,day").split(",") if part))
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise invalid_request("format must be json or csv", "format")
    unknown = [g for g in by if g not in report.GROUPS]
    if unknown:
        raise invalid_request(f"cannot group by {', '.join(unknown)}; choose from {', '.join(report.GROUPS)}", "by")
    since, until = _time(query.get("since"), "since"), _time(query.get("until"), "until")
    writer: _Store = request.app.state.ledger_store
    metering: Metering = request.app.state.metering
    if metering.ledger is not None:
        await asyncio.to_thread(metering.ledger.flush, 2.0)
    try:
        await asyncio.to_thread(writer.ensure)
        rows = await asyncio.to_thread(report.totals, writer.engine, by, since, until)
    except sqlalchemy.exc.OperationalError as exc:
        log.warning("usage report failed: %s", getattr(exc, "orig", None) or exc.__class__.__name__)
        raise service_unavailable("the usage ledger's database is unreachable; retry shortly", 5) from None
    if fmt == "csv":
        return Response(report.render(rows, by, "csv"), media_type="text/csv")
    return JSONResponse({"object": "list", "by": by, "data": rows})
