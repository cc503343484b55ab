"""Prometheus metrics, in a registry of the app's own (several apps may run in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aimi.usage.records import UsageRecord

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5)


class _Gauges(Collector):
    """Values read at scrape time from the running server."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, dict[str, str], float]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, doc, labels, value in self._read():
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, doc, labels=sorted(labels))
            family.add_metric([labels[k] for k in sorted(labels)], value)
        return families.values()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "aimi_requests", "Requests by route, deployment and status", ["route", "deployment", "status"], registry=r
        )
        self.tokens = Counter(
            "aimi_tokens", "Tokens by deployment and direction (prompt, completion)", ["deployment", "kind"], registry=r
        )
        self.ttft = Histogram(
            "aimi_time_to_first_token_seconds", "Time to first token", ["deployment"], buckets=_LATENCY, registry=r
        )
        self.inter_token = Histogram(
            "aimi_inter_token_latency_seconds", "Time between tokens", ["deployment"], buckets=_TOKEN_GAP, registry=r
        )
        self.duration = Histogram(
            "aimi_request_duration_seconds",
            "End-to-end request time",
            ["route", "deployment"],
            buckets=_LATENCY,
            registry=r,
        )
        self.rate_limited = Counter(
            "aimi_rate_limit_rejections", "Requests refused by a quota", ["scope", "reason"], registry=r
        )
        self.unauthorized = Counter(
            "aimi_unauthorized_requests", "Requests refused for want of a valid key (never in the ledger)", registry=r
        )
        self.quota_errors = Counter(
            "aimi_quota_backend_errors",
            "Failed or timed-out calls to the shared quota backend",
            ["backend"],
            registry=r,
        )
        self.engine_restarts = Counter(
            "aimi_engine_restarts", "Restarts of a deployment's dead or stalled engine", ["deployment"], registry=r
        )

    def gauges(self, read: Callable[[], Iterable[tuple[str, str, dict[str, str], float]]]) -> None:
        """Register gauges read at scrape time: ``read`` yields (name, help, labels, value)."""
        self.registry.register(_Gauges(read))

    def observe(self, record: UsageRecord, seconds: float, ttft: float | None, gaps: Sequence[float]) -> None:
        """Count a finished request: its record, how long it took, its time to first token and the
        gaps between its tokens (seconds)."""
        deployment = record.deployment or ""
        self.requests.labels(record.route, deployment, str(record.status)).inc()
        self.duration.labels(record.route, deployment).observe(seconds)
        if record.prompt_tokens:
            self.tokens.labels(deployment, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels(deployment, "completion").inc(record.completion_tokens)
        if ttft is not None:
            self.ttft.labels(deployment).observe(ttft)
        if gaps:
            histogram: Any = self.inter_token.labels(deployment)
            for gap in gaps:
                histogram.observe(gap)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
