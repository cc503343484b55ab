"""Settling: after the response, run exactly once per request on every path (an answer, a refusal, an abort,
an error): settle the quota reservation to the true usage, write the usage record, count the
request in the metrics."""

from __future__ import annotations

import logging
import time

from aimi.pipeline.context import RequestContext
from aimi.usage.records import Outcome, UsageRecord, outcome_of

log = logging.getLogger(__name__)


def usage_record(context: RequestContext, status: int, seconds: float) -> UsageRecord:
    """The request's record, from its context."""
    deployment = context.deployment
    prices = deployment.prices if deployment is not None else None
    outcome = context.outcome or outcome_of(status)
    return UsageRecord(
        id=context.id,
        time=context.wall,
        key=context.key,
        deployment=deployment.name if deployment is not None else None,
        model=deployment.display_name if deployment is not None else None,
        surface=context.surface,
        route=context.kind.value,
        status=status,
        outcome=outcome.value,
        prompt_tokens=context.prompt_tokens,
        completion_tokens=context.completion_tokens,
        latency_ms=round(seconds * 1000, 3),
        ttft_ms=None if context.ttft_ms is None else round(context.ttft_ms, 3),
        cost=prices.cost(context.prompt_tokens, context.completion_tokens) if prices else None,
    )


async def _count_exactly(context: RequestContext) -> None:
    """A request charged a bound for its prompt, but whose engine never reported its own count
    (refused by content safety, failed, aborted): charged the engine's count instead."""
    deployment, work = context.deployment, context.work
    if deployment is None or work is None:
        return
    try:
        counted = await deployment.engine.count_tokens(work.request)
    except Exception:  # the bound stays: an engine gone since cannot count
        log.warning("could not count the prompt of request %s; its bound is charged", context.id, exc_info=True)
        return
    if counted is not None:
        context.prompt_tokens = counted
    context.prompt_bounded = False


async def settle(context: RequestContext, status: int) -> UsageRecord:
    """Close the request's account; ``status`` is the HTTP status it was answered with."""
    seconds = time.monotonic() - context.started
    runtime = context.runtime
    if context.generation is not None:
        await context.generation.close()  # a request that failed after its generation opened
    context.release_slot()  # or between taking its slot and generating
    if context.prompt_bounded and context.prompt_tokens:
        await _count_exactly(context)
    if context.reservation is not None:
        await runtime.quotas.settle(context.reservation, context.prompt_tokens + context.completion_tokens)
    record = usage_record(context, status, seconds)
    context.outcome = Outcome(record.outcome)
    runtime.ledger.record(record)
    ttft = None if context.first_token is None else context.first_token - context.started
    runtime.metrics.observe(record, seconds, ttft, context.gaps)
    return record
