"""The Redis quota backend for real: replicas sharing one limit exactly, and what aimi does when
Redis dies or stops answering (policy ``closed``: 503 at once; ``local``: counted in-process).

Each chat request here is ``"hi"`` (4 prompt tokens on the fake engine) with ``max_tokens`` 10,
which the fake answer fills: every request reserves, and uses, exactly 14 tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KEY, InProcessServer, LiveServer, aimi_process, free_port, in_process, wait_until

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
RESERVATION = 14
HEADERS = {"api-key": KEY}
UNAVAILABLE = {
    "error": {
        "code": "ServiceUnavailable",
        "message": "the redis quota backend is unreachable; retry shortly",
        "type": "server_error",
        "param": None,
    }
}


def scrape(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=HEADERS, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def quota_health(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/health", headers=HEADERS, timeout=10).json()
    assert body["status"] == "ok", body
    quota: dict[str, Any] = body["quota"]
    return quota


_TLS = ssl.create_default_context()


async def _burst(urls: list[str], count: int) -> list[tuple[str, httpx.Response]]:
    """``count`` chat requests at once, spread round-robin over ``urls`` (and both surfaces)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(headers=HEADERS, timeout=60, verify=_TLS, limits=httpx.Limits(max_connections=10))
            )
            for _ in range(math.ceil(count / 10))
        ]
        targets = [
            f"{urls[i % len(urls)]}{'/v1/chat/completions' if i % 2 else '/chat/completions'}" for i in range(count)
        ]
        responses = await asyncio.gather(
            *(clients[i % len(clients)].post(target, json=CHAT) for i, target in enumerate(targets))
        )
        return [(target, response) for target, response in zip(targets, responses, strict=True)]


@dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


async def _post(url: str, path: str, body: bytes) -> RawResponse:
    """One POST on its own connection, with nothing but asyncio streams: thousands at once cost
    this process a fraction of what as many httpx requests do, so the burst reaches the servers
    at once rather than at the pace of the client."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\napi-key: {KEY}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        return RawResponse(int(head[0].split()[1]), headers, content)
    finally:
        writer.close()


async def _raw_burst(urls: list[str], count: int) -> list[RawResponse]:
    """``count`` chat requests at once, round-robin over ``urls`` and both surfaces."""
    body = json.dumps(CHAT).encode()
    paths = ["/v1/chat/completions" if i % 2 else "/chat/completions" for i in range(count)]
    return await asyncio.gather(*(_post(urls[i % len(urls)], path, body) for i, path in enumerate(paths)))


# -- replicas sharing the machine's Redis -----------------------------------------------------


def _start_together(
    stack: contextlib.ExitStack, servers: list[contextlib.AbstractContextManager[LiveServer]]
) -> list[LiveServer]:
    """Enter every server's context at once (each waits for its own health), exiting them with ``stack``."""
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(server.__enter__) for server in servers]
    started: list[LiveServer] = []
    for server, future in zip(servers, futures, strict=True):
        if future.exception() is None:
            stack.push(server.__exit__)
            started.append(future.result())
    errors = [error for error in (future.exception() for future in futures) if error is not None]
    if errors:
        raise errors[0]
    return started


def test_three_replicas_sharing_redis_admit_exactly_the_shared_limit(redis_url: str, tmp_path: Path) -> None:
    import redis

    limit = 53 * RESERVATION
    name = f"quota-test-{uuid.uuid4().hex[:12]}"
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    args = ["--model", str(model), "--engine", "fake", "--name", name, "--slots", "8"]
    env = {
        "AIMI_API_KEY": KEY,
        "AIMI_QUOTA_BACKEND": "redis",
        "AIMI_REDIS_URL": redis_url,
        "AIMI_QUOTA_TOKENS_PER_MINUTE": str(limit),
        "AIMI_QUOTA_TIMEOUT": "5",  # hundreds of admissions at once: no fallback in this test
        "AIMI_MAX_QUEUE": "1000",
    }
    keys = [f"aimi:{{quota}}:deployment:{name}:{part}" for part in ("requests", "tokens", "leases")]
    client = redis.Redis.from_url(redis_url)
    try:
        with contextlib.ExitStack() as stack:
            servers = _start_together(
                stack, [aimi_process(tmp_path / f"home-{i}", args, env, timeout=60) for i in range(3)]
            )
            urls = [server.url for server in servers]
            # One request on each replica, one after another: each sees the others' charges.
            for i, url in enumerate(urls, start=1):
                response = httpx.post(f"{url}/chat/completions", json=CHAT, headers=HEADERS, timeout=30)
                assert response.status_code == 200
                assert response.headers["x-ratelimit-remaining-tokens"] == str(limit - i * RESERVATION)
                assert response.headers["x-ratelimit-remaining-requests"] == str(1000 - i)
            # Then 300 at once over the three: 50 reservations are left.
            results = asyncio.run(_burst(urls, 300))
            answered = [r for _, r in results if r.status_code == 200]
            refused = [r for _, r in results if r.status_code != 200]
            assert 3 * RESERVATION + sum(r.json()["usage"]["total_tokens"] for r in answered) <= limit
            assert len(answered) == (limit - 3 * RESERVATION) // RESERVATION == 50
            assert {r.status_code for r in refused} == {429}
            assert {r.json()["error"]["message"].split(";")[0] for r in refused} == {
                f"rate limit of deployment '{name}' reached (tokens per minute)"
            }
            # One window shared by all: the remainders seen across the replicas are all distinct.
            remaining = sorted(int(r.headers["x-ratelimit-remaining-tokens"]) for r in answered)
            assert remaining == [limit - RESERVATION * k for k in range(53, 3, -1)]
            # What Redis holds is exactly what was admitted.
            assert sum(int(v) for v in client.hgetall(keys[1]).values()) == limit
            assert sum(int(v) for v in client.hgetall(keys[0]).values()) == 53
            wait_until(
                lambda: sum(scrape(url, "aimi_requests_total") for url in urls) == 303, 10, "every request closed"
            )
            assert sum(scrape(url, "aimi_rate_limit_rejections_total", reason="tokens") for url in urls) == 250
            assert all(quota_health(url) == {"backend": "redis", "state": "ok", "on_error": "closed"} for url in urls)
    finally:
        client.delete(*keys)
        client.close()


def test_bursts_over_three_replicas_admit_exactly_the_limit_and_never_fail_closed(
    redis_url: str, tmp_path: Path
) -> None:
    """300, then 3,000 requests at once (1,000 a replica) with the default quota settings: each
    replica's admissions wait for one of its pooled Redis connections instead of counting a busy
    moment as an unreachable Redis (which would answer 503 for two seconds)."""
    import redis

    limit = 60
    name = f"quota-test-{uuid.uuid4().hex[:12]}"
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    args = ["--model", str(model), "--engine", "fake", "--name", name, "--slots", "8"]
    env = {
        "AIMI_API_KEY": KEY,
        "AIMI_QUOTA_BACKEND": "redis",
        "AIMI_REDIS_URL": redis_url,
        "AIMI_QUOTA_REQUESTS_PER_MINUTE": str(limit),
        "AIMI_QUOTA_TOKENS_PER_MINUTE": "0",
        "AIMI_MAX_QUEUE": "1000",
    }
    keys = [f"aimi:{{quota}}:deployment:{name}:{part}" for part in ("requests", "tokens", "leases")]
    client = redis.Redis.from_url(redis_url)
    try:
        with contextlib.ExitStack() as stack:
            servers = _start_together(
                stack, [aimi_process(tmp_path / f"home-{i}", args, env, timeout=60) for i in range(3)]
            )
            urls = [server.url for server in servers]
            sent = 0
            for count in (300, 3000):
                client.delete(*keys)  # a fresh window for each burst
                results = asyncio.run(_raw_burst(urls, count))
                sent += count
                statuses = [r.status_code for r in results]
                assert (statuses.count(200), statuses.count(429), len(statuses)) == (limit, count - limit, count)
                for response in results:
                    if response.status_code == 429:
                        assert int(response.headers["retry-after"]) >= 1
                        assert response.json()["error"]["message"].startswith(
                            f"rate limit of deployment '{name}' reached (requests per minute)"
                        )
                assert sum(int(v) for v in client.hgetall(keys[0]).values()) == limit
            wait_until(
                lambda: sum(scrape(url, "aimi_requests_total") for url in urls) == sent, 30, "every request closed"
            )
            assert sum(scrape(url, "aimi_quota_backend_errors_total", backend="redis") for url in urls) == 0
            assert all(quota_health(url) == {"backend": "redis", "state": "ok", "on_error": "closed"} for url in urls)
    finally:
        client.delete(*keys)
        client.close()


# -- a private Redis that dies ----------------------------------------------------------------


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("needs redis-server on PATH")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, "redis-server exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16) == b"+PONG\r\n"
            except OSError:
                return False

        wait_until(answers, 10, "the private redis-server")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def redis_settings(url: str, on_error: str, **more: Any) -> dict[str, Any]:
    return {"quota_backend": "redis", "redis_url": url, "quota_on_error": on_error, **more}


@dataclass
class Load:
    """Requests one after another from a thread, each timed, until stopped."""

    server: InProcessServer
    results: list[tuple[float, float, httpx.Response]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with self.server.client() as http:
            while not self.stop.is_set():
                started = time.monotonic()
                response = http.post("/chat/completions", json=CHAT)
                self.results.append((started, time.monotonic() - started, response))

    def count(self, status: int, since: float = 0.0) -> int:
        return sum(1 for started, _, r in list(self.results) if r.status_code == status and started >= since)


def test_policy_closed_refuses_at_once_when_redis_dies_and_recovers_when_it_returns(
    private_redis: PrivateRedis,
) -> None:
    with in_process(redis_settings(private_redis.url, "closed")) as server:
        assert quota_health(server.url) == {"backend": "redis", "state": "ok", "on_error": "closed"}
        load = Load(server)
        thread = threading.Thread(target=load.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: load.count(200) >= 5, 10, "answers through Redis")
            private_redis.kill()
            killed = time.monotonic()
            wait_until(lambda: load.count(503, since=killed) >= 20, 10, "refusals after Redis died")
        finally:
            load.stop.set()
            thread.join(timeout=10)
        statuses = [r.status_code for _, _, r in load.results]
        assert set(statuses) == {200, 503}
        first_refusal = statuses.index(503)
        assert 200 not in statuses[first_refusal:]
        for _, seconds, response in load.results:
            assert seconds < 1.0, (seconds, response.status_code)
            if response.status_code == 503:
                assert response.json() == UNAVAILABLE
                assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("1", "1000")
                assert "x-ratelimit-limit-tokens" not in response.headers
        assert quota_health(server.url) == {"backend": "redis", "state": "unreachable", "on_error": "closed"}
        assert scrape(server.url, "aimi_quota_backend_up", backend="redis") == 0.0
        assert scrape(server.url, "aimi_quota_backend_errors_total", backend="redis") > 0
        # Redis back (empty: it kept nothing): answered again once the pause after a failure is over.
        private_redis.start()
        with server.client() as http:
            wait_until(lambda: http.post("/chat/completions", json=CHAT).status_code == 200, 10, "Redis to be used")
        assert quota_health(server.url) == {"backend": "redis", "state": "ok", "on_error": "closed"}
        assert scrape(server.url, "aimi_quota_backend_up", backend="redis") == 1.0


def test_policy_local_counts_in_process_under_the_same_limit_when_redis_dies(private_redis: PrivateRedis) -> None:
    limit = 5 * RESERVATION
    settings = redis_settings(private_redis.url, "local", quota_tokens_per_minute=limit)
    with in_process(settings) as server, server.client() as http:
        for left in (limit - RESERVATION, limit - 2 * RESERVATION):
            response = http.post("/chat/completions", json=CHAT)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-remaining-tokens"] == str(left)
        private_redis.kill()
        # This process alone now counts, from nothing, under the same 70 tokens a minute.
        seen: list[tuple[int, str]] = []
        for _ in range(6):
            started = time.monotonic()
            response = http.post("/v1/chat/completions", json=CHAT)
            assert time.monotonic() - started < 1.0
            seen.append((response.status_code, response.headers.get("x-ratelimit-remaining-tokens", "")))
        assert seen == [(200, "56"), (200, "42"), (200, "28"), (200, "14"), (200, "0"), (429, "0")]
        assert quota_health(server.url) == {"backend": "redis", "state": "unreachable", "on_error": "local"}
        assert scrape(server.url, "aimi_quota_backend_up", backend="redis") == 0.0
        assert scrape(server.url, "aimi_quota_backend_errors_total", backend="redis") > 0
        assert scrape(server.url, "aimi_rate_limit_rejections_total", reason="tokens") == 1


# -- a Redis that accepts connections and never answers ---------------------------------------


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A TCP listener that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


QUOTA_TIMEOUT = 0.3
MARGIN = 0.7


async def _timed(url: str, count: int) -> list[tuple[float, httpx.Response]]:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=30) as http:

        async def one() -> tuple[float, httpx.Response]:
            started = time.monotonic()
            response = await http.post("/chat/completions", json=CHAT)
            return time.monotonic() - started, response

        return await asyncio.gather(*(one() for _ in range(count)))


@pytest.mark.parametrize(("on_error", "status"), [("closed", 503), ("local", 200)])
def test_a_redis_that_never_answers_costs_each_request_at_most_the_timeout(on_error: str, status: int) -> None:
    with black_hole() as url:
        # A silent Redis accepts connections and never answers their handshake either: with the
        # connect timeout as short as the answer timeout, no wait may pass it.
        settings = redis_settings(url, on_error, quota_timeout=QUOTA_TIMEOUT, quota_connect_timeout=QUOTA_TIMEOUT)
        with in_process(settings) as server:
            # At once: each waits for the silent Redis, none longer than the timeout.
            timed = asyncio.run(_timed(server.url, 20))
            # Then one after another: the pause after the failure answers them without waiting.
            timed += asyncio.run(_timed(server.url, 1))
            for seconds, response in timed:
                assert response.status_code == status, response.text
                assert seconds < QUOTA_TIMEOUT + MARGIN, seconds
                if status == 503:
                    assert response.json() == UNAVAILABLE
                    assert response.headers["retry-after"] == "1"
            assert max(seconds for seconds, _ in timed[:20]) >= QUOTA_TIMEOUT * 0.9
            assert quota_health(server.url) == {"backend": "redis", "state": "unreachable", "on_error": on_error}
            assert scrape(server.url, "aimi_quota_backend_up", backend="redis") == 0.0
            assert scrape(server.url, "aimi_quota_backend_errors_total", backend="redis") >= 1
