"""/metrics: who may read it, and the exact values it exposes after known traffic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aimi.auth.keys import ApiKey
from aimi.deployments.build import from_settings
from aimi.quota.api import QuotaLimits
from aimi.runtime import runtime_of
from aimi.settings import Settings
from tests.api.helpers import CHAT, COMPLETION, abort, assert_error, open_request
from tests.conftest import FAKE_MODEL, KEY, InProcessServer, in_process, wait_until

INFERENCE_ONLY = "inference-only-key-0123456789ab"
METRICS_ONLY = "metrics-only-key-0123456789abcd"
SETTLE = 5.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: InProcessServer, key: str = METRICS_ONLY) -> Samples:
    """Every sample of the exposition, by name and labels."""
    with httpx.Client(base_url=server.url, headers={"api-key": key}, timeout=30) as http:
        response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names_of(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def _keys() -> list[ApiKey]:
    return [
        ApiKey.from_secret(KEY, "key-1"),
        ApiKey.from_secret(INFERENCE_ONLY, "inference", scopes=frozenset({"inference"})),
        ApiKey.from_secret(METRICS_ONLY, "scraper", scopes=frozenset({"metrics"})),
    ]


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    """Two chat deployments: "chat", and "tight" with 20 tokens per minute."""
    settings = Settings(engine="fake", home="/nonexistent")
    [base] = from_settings(settings, FAKE_MODEL)
    specs = [replace(base, name="chat"), replace(base, name="tight", quota=QuotaLimits(tokens_per_minute=20))]
    with in_process(specs=specs, keys=_keys()) as running:
        yield running


def test_metrics_need_a_key_with_the_metrics_scope(server: InProcessServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert_error(anonymous.get("/metrics"), 401, "Unauthorized")
    with httpx.Client(base_url=server.url, headers={"api-key": INFERENCE_ONLY}, timeout=30) as inference:
        response = inference.get("/metrics")
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "Forbidden",
            "message": "key 'inference' lacks the 'metrics' scope",
            "type": "permission_error",
            "param": None,
        }
    }
    # The metrics key reads /metrics and nothing else.
    assert value(scrape(server), "aimi_engine_up", deployment="chat") == 1.0
    with httpx.Client(base_url=server.url, headers={"api-key": METRICS_ONLY}, timeout=30) as scraper:
        assert_error(scraper.post("/chat/completions", json={**CHAT, "model": "chat"}), 403, "Forbidden")
        assert_error(scraper.get("/admin/usage"), 403, "Forbidden")
    assert value(scrape(server, KEY), "aimi_engine_up", deployment="chat") == 1.0  # every scope: may read it


def _usage_of_stream(response: httpx.Response) -> dict[str, int]:
    payloads = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    [usage] = [p["usage"] for p in payloads if p.get("usage")]
    return dict(usage)


def test_counters_and_histograms_count_exactly_what_was_served(server: InProcessServer) -> None:
    usages: dict[tuple[str, str], list[dict[str, int]]] = {}  # (deployment, route) -> usage each

    def keep(deployment: str, route: str, usage: dict[str, Any]) -> None:
        usages.setdefault((deployment, route), []).append(usage)

    with server.client() as http:
        for path in ("/chat/completions", "/v1/chat/completions"):
            response = http.post(path, json={**CHAT, "model": "chat"})
            assert response.status_code == 200, response.text
            keep("chat", "chat", response.json()["usage"])
        for path, extra in (("/chat/completions", {}), ("/v1/chat/completions", {"include_usage": True})):
            body = {**CHAT, "model": "chat", "stream": True, **({"stream_options": extra} if extra else {})}
            with http.stream("POST", path, json=body) as streamed:
                assert streamed.status_code == 200
                keep("chat", "chat", _usage_of_stream(streamed))
        response = http.post("/v1/completions", json={**COMPLETION, "model": "chat", "max_tokens": 5})
        assert response.status_code == 200, response.text
        keep("chat", "completions", response.json()["usage"])
        # tight: 4 + 5 tokens pass; 4 + 15 more would pass its 20 per minute.
        response = http.post("/chat/completions", json={**CHAT, "model": "tight", "max_tokens": 5})
        assert response.status_code == 200, response.text
        keep("tight", "chat", response.json()["usage"])
        assert_error(http.post("/chat/completions", json={**CHAT, "model": "tight", "max_tokens": 15}), 429,
                     "TooManyRequests")  # fmt: skip

    def counted() -> bool:
        samples = scrape(server)
        return (
            sum(names_of(samples, "aimi_requests_total").values()) == 7
            and value(samples, "aimi_usage_records_written") == 7.0
        )

    wait_until(counted, SETTLE, "seven requests counted and recorded")
    samples = scrape(server)

    assert names_of(samples, "aimi_requests_total") == {
        frozenset({("deployment", "chat"), ("route", "chat"), ("status", "200")}): 4.0,
        frozenset({("deployment", "chat"), ("route", "completions"), ("status", "200")}): 1.0,
        frozenset({("deployment", "tight"), ("route", "chat"), ("status", "200")}): 1.0,
        frozenset({("deployment", "tight"), ("route", "chat"), ("status", "429")}): 1.0,
    }

    def summed(deployment: str, field: str) -> int:
        return sum(u[field] for (d, _), each in usages.items() if d == deployment for u in each)

    assert summed("chat", "completion_tokens") == 4 * 12 + 5
    assert names_of(samples, "aimi_tokens_total") == {
        frozenset({("deployment", "chat"), ("kind", "prompt")}): float(summed("chat", "prompt_tokens")),
        frozenset({("deployment", "chat"), ("kind", "completion")}): float(summed("chat", "completion_tokens")),
        frozenset({("deployment", "tight"), ("kind", "prompt")}): 4.0,
        frozenset({("deployment", "tight"), ("kind", "completion")}): 5.0,
    }

    # A first token for each generation; a gap between each two tokens (whole answers too).
    assert names_of(samples, "aimi_time_to_first_token_seconds_count") == {
        frozenset({("deployment", "chat")}): 5.0,
        frozenset({("deployment", "tight")}): 1.0,
    }
    gaps = {d: sum(u["completion_tokens"] - 1 for (dd, _), each in usages.items() if dd == d for u in each)
            for d in ("chat", "tight")}  # fmt: skip
    assert gaps == {"chat": 4 * 11 + 4, "tight": 4}
    assert names_of(samples, "aimi_inter_token_latency_seconds_count") == {
        frozenset({("deployment", "chat")}): float(gaps["chat"]),
        frozenset({("deployment", "tight")}): float(gaps["tight"]),
    }
    # Every request has a duration, refused ones included.
    assert names_of(samples, "aimi_request_duration_seconds_count") == {
        frozenset({("deployment", "chat"), ("route", "chat")}): 4.0,
        frozenset({("deployment", "chat"), ("route", "completions")}): 1.0,
        frozenset({("deployment", "tight"), ("route", "chat")}): 2.0,
    }
    for labels, count in names_of(samples, "aimi_request_duration_seconds_count").items():
        assert samples[("aimi_request_duration_seconds_bucket", labels | {("le", "+Inf")})] == count
        assert samples[("aimi_request_duration_seconds_sum", labels)] > 0
    assert names_of(samples, "aimi_rate_limit_rejections_total") == {
        frozenset({("scope", "deployment"), ("reason", "tokens")}): 1.0
    }
    assert names_of(samples, "aimi_quota_backend_errors_total") == {frozenset({("backend", "memory")}): 0.0}

    for deployment in ("chat", "tight"):
        assert value(samples, "aimi_busy_slots", deployment=deployment) == 0.0
        assert value(samples, "aimi_queue_depth", deployment=deployment) == 0.0
        assert value(samples, "aimi_engine_up", deployment=deployment) == 1.0
    assert value(samples, "aimi_quota_backend_up", backend="memory") == 1.0
    assert value(samples, "aimi_usage_records_written") == 7.0
    assert value(samples, "aimi_usage_records_pending") == 0.0
    assert value(samples, "aimi_usage_records_dropped") == 0.0
    assert value(samples, "aimi_usage_ledger_up") == 1.0


def test_nothing_is_counted_before_any_request(server: InProcessServer) -> None:
    samples = scrape(server)
    for name in ("aimi_requests_total", "aimi_tokens_total", "aimi_time_to_first_token_seconds_count",
                 "aimi_rate_limit_rejections_total"):  # fmt: skip
        assert names_of(samples, name) == {}, name
    assert value(samples, "aimi_usage_records_written") == 0.0
    # Scrapes are not inference requests: still nothing.
    assert names_of(scrape(server), "aimi_requests_total") == {}


@pytest.fixture
def gauged() -> Iterator[InProcessServer]:
    """A hanging deployment with one slot, and one whose engine failed to load."""
    settings = Settings(engine="fake", home="/nonexistent", slots=1)
    [base] = from_settings(settings, FAKE_MODEL)

    def options(**values: Any) -> Any:
        return replace(base.engine_config, options=values)

    specs = [
        replace(base, name="hang", engine_config=options(hang=True)),
        replace(base, name="broken", engine_config=options(fail_load=True)),
    ]
    with in_process(specs=specs, keys=_keys(), wait_ready=False) as running:
        hang = next(d for d in runtime_of(running.app).deployments if d.name == "hang")
        wait_until(lambda: hang.loaded, SETTLE, "the hanging deployment to load")
        yield running


def test_gauges_show_busy_slots_the_queue_and_engine_health(gauged: InProcessServer) -> None:
    hang = next(d for d in runtime_of(gauged.app).deployments if d.name == "hang")

    def gauges() -> tuple[float | None, ...]:
        samples = scrape(gauged)
        return tuple(
            value(samples, name, deployment=d)
            for d in ("hang", "broken")
            for name in ("aimi_busy_slots", "aimi_queue_depth", "aimi_engine_up")
        )

    assert gauges() == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    socks = [open_request(gauged, "/chat/completions", {**CHAT, "model": "hang"}) for _ in range(3)]
    try:
        engine = gauged.fake("hang")
        wait_until(lambda: engine.active == 3, SETTLE, "three generations to start")
        assert gauges() == (1.0, 2.0, 1.0, 0.0, 0.0, 0.0)
    finally:
        for sock in socks:
            abort(sock)
    wait_until(lambda: hang.in_flight == 0 and gauged.fake("hang").active == 0, SETTLE, "the generations to stop")
    assert gauges() == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    wait_until(lambda: value(scrape(gauged), "aimi_usage_records_written") == 3.0, SETTLE, "three records")
    samples = scrape(gauged)
    # The clients left before any token: three 499s, no first token, no tokens.
    assert names_of(samples, "aimi_requests_total") == {
        frozenset({("deployment", "hang"), ("route", "chat"), ("status", "499")}): 3.0
    }
    assert names_of(samples, "aimi_time_to_first_token_seconds_count") == {}
    assert names_of(samples, "aimi_tokens_total") == {frozenset({("deployment", "hang"), ("kind", "prompt")}): 12.0}
