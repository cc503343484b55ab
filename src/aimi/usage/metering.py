"""Closing a request's account: settle its quota reservation, write its usage record, count it in
the metrics. Called exactly once per request, on every path."""

from __future__ import annotations

import time

from aimi.quota.guard import Quotas
from aimi.usage.ledger import Ledger
from aimi.usage.meter import Meter, outcome_of
from aimi.usage.metrics import Metrics
from aimi.usage.records import UsageRecord


class Metering:
    def __init__(self, quotas: Quotas, ledger: Ledger | None, metrics: Metrics) -> None:
        self.quotas = quotas
        self.ledger = ledger
        self.metrics = metrics

    async def finish(self, meter: Meter, status: int) -> UsageRecord:
        seconds = time.monotonic() - meter.started
        if meter.reservation is not None:
            await self.quotas.settle(meter.reservation, meter.prompt_tokens + meter.completion_tokens)
        outcome = meter.outcome = meter.outcome or outcome_of(status)
        record = UsageRecord(
            id=meter.id,
            time=meter.wall,
            key=meter.key,
            deployment=meter.deployment,
            model=meter.model,
            surface=meter.surface,
            route=meter.route,
            status=status,
            outcome=outcome.value,
            prompt_tokens=meter.prompt_tokens,
            completion_tokens=meter.completion_tokens,
            latency_ms=round(seconds * 1000, 3),
            ttft_ms=None if meter.ttft_ms is None else round(meter.ttft_ms, 3),
            cost=meter.prices.cost(meter.prompt_tokens, meter.completion_tokens) if meter.prices else None,
        )
        if self.ledger is not None:
            self.ledger.record(record)
        self.metrics.observe(meter, status, seconds)
        return record
