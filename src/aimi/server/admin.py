"""The operator's routes: ``/metrics`` (Prometheus) and ``/admin/usage`` (the ledger's totals)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import Response

from aimi.engines.api import EngineState
from aimi.protocol.errors import invalid_request, service_unavailable
from aimi.runtime import Runtime, runtime_of
from aimi.surfaces.json_response import JSONResponse
from aimi.usage import report

log = logging.getLogger(__name__)


def gauges(runtime: Runtime) -> Iterable[tuple[str, str, dict[str, str], float]]:
    """Values read at scrape time: slots, queues and engine health per deployment; the quota
    backend and the ledger."""
    for d in runtime.deployments:
        slots = d.facts.n_slots if d.facts else 0
        labels = {"deployment": d.name}
        yield "aimi_busy_slots", "Slots generating now", labels, float(min(d.in_flight, slots))
        yield "aimi_queue_depth", "Requests waiting for a slot", labels, float(max(0, d.in_flight - slots))
        yield "aimi_engine_up", "1 when the engine is ready", labels, float(d.engine.health() is EngineState.READY)
    quotas = runtime.quotas
    yield (
        "aimi_quota_backend_up",
        "1 when the quota backend answers",
        {"backend": quotas.backend.name},
        float(quotas.up),
    )
    ledger = runtime.ledger
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
    metrics = runtime_of(request.app).metrics
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


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
    runtime = runtime_of(request.app)
    await asyncio.to_thread(runtime.ledger.flush, 2.0)
    try:
        await asyncio.to_thread(runtime.store.ensure)
        rows = await asyncio.to_thread(report.totals, runtime.store.engine, by, since, until)
    except sqlalchemy.exc.OperationalError as exc:
        log.warning("usage report failed: %s", getattr(exc, "orig", None) or exc.__class__.__name__)
        raise service_unavailable("the usage ledger's database is unreachable; retry shortly", 5) from None
    if fmt == "csv":
        return Response(report.render(rows, by, "csv"), media_type="text/csv")
    return JSONResponse({"object": "list", "by": by, "data": rows})


def deployment_status(runtime: Runtime) -> list[dict[str, object]]:
    """What the console's Deployments page shows: each deployment's model, engine, state (with
    the reason when it failed), slots busy, queue and quota."""
    rows: list[dict[str, object]] = []
    for d in runtime.deployments:
        slots = d.facts.n_slots if d.facts else 0
        state = d.state()
        rows.append(
            {
                "name": d.name,
                "model": d.display_name,
                "engine": getattr(d.spec, "engine", None) or type(d.engine).__name__,
                "state": state,
                "reason": d.failure if state in ("failed", "restarting") else None,
                "slots": slots,
                "busy": min(d.in_flight, slots),
                "queued": max(0, d.in_flight - slots),
                "max_queue": d.limits.max_queue,
                "context_length": d.facts.context_length if d.facts else None,
                "quota": None if d.quota.unlimited else d.quota.model_dump(exclude_none=True),
            }
        )
    return rows


async def status_route(request: Request) -> Response:
    """``GET /admin/status``: the deployments as :func:`deployment_status` describes them."""
    return JSONResponse({"object": "list", "data": deployment_status(runtime_of(request.app))})
