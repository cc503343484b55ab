"""Quota cost: what does admission against the quotas cost, in process and on Redis?

1. Admission: ``Quotas.reserve`` + ``Quotas.settle`` (src/aimi/quota/gate.py) for one
   deployment scope and one key scope, back to back in this process, with the in-process
   ``MemoryQuotas`` and with ``RedisQuotas`` on the machine's Redis (a unique key prefix, deleted
   afterwards). Limits are high enough never to refuse. Microseconds per admission (wall time of
   the run / admissions), p50/p99 of single admissions, and the Redis/in-process ratio.
2. Throughput: ``aimi serve --engine fake`` processes (no model, ~0 ms of engine time) with quotas
   off (requests and tokens per minute 0), in-process quotas and Redis quotas, both with limits
   that never refuse. A closed-loop httpx client sends non-streamed chat requests at a fixed
   concurrency. Requests/s, latency p50/p99 and server CPU per request, and ratios against quotas
   off. Every configuration also writes one usage record per request to SQLite in its AIMI_HOME
   (batched by the ledger's writer thread): that cost is in all three.

All three servers stay up during part 2 (the two idle ones get no requests); each round runs the
configurations in a rotated order so drift hits all alike. Every figure is the median over the
repetitions / rounds. As in bench_serving.py, a run first waits for other processes to go quiet,
and is redone if they used much CPU while it ran.

    .venv/bin/python benchmarks/bench_quota.py                 # full run (~2-2.5 min on 2 cores)
    .venv/bin/python benchmarks/bench_quota.py --quick         # smoke run (~40 s)
    .venv/bin/python benchmarks/bench_quota.py --json results.json
    .venv/bin/python benchmarks/bench_quota.py --only burst  # part 3 (~20 s)

3. Burst (only with ``--only burst``): a deployment limit of 60 requests a minute on Redis, with
   the server's default quota settings. 300 and 3,000 admissions at once in this process, through
   the gate ``build_quotas`` builds (opened as at start-up); then 300 and 3,000 chat requests at
   once spread over three ``aimi serve --engine fake`` sharing the Redis, each on its own
   connection. How many were admitted, refused (429) and unavailable (503, the quota backend
   counted as unreachable), the failed calls to Redis, and latency p50/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from bench_serving import (
    API_KEY,
    CHAT_PATH,
    HEALTH_TIMEOUT_S,
    CpuMeter,
    Target,
    _ms,
    add_run_options,
    chat_body,
    fmt,
    free_port,
    median_of,
    new_parser,
    package_versions,
    parsed,
    percentile,
    process_cpu_s,
    progress,
    ratio,
    run_metadata,
    stop,
    wait_for_quiet,
    wait_healthy,
)

MEMORY, REDIS = "in-process", "redis"
OFF = "off"
CONFIGS = [OFF, MEMORY, REDIS]  # part 2; OFF is the baseline
HIGH_RPM = 1_000_000_000  # never reached: nothing is refused
HIGH_TPM = 1_000_000_000_000
PROMPT_TOKENS, COMPLETION_TOKENS = 4, 12  # what the fake engine reports for chat_body's prompt

FULL: dict[str, Any] = {
    "repetitions": 5,
    "admissions": 2000,
    "rounds": 5,
    "requests": 500,
    "concurrency": 8,
    "max_tokens": 16,
}
QUICK: dict[str, Any] = {
    "repetitions": 2,
    "admissions": 500,
    "rounds": 1,
    "requests": 200,
    "concurrency": 8,
    "max_tokens": 16,
}


# --------------------------------------------------------------------------- Redis


def redis_pid(url: str) -> int | None:
    """The Redis server's pid, if it runs on this machine in our pid namespace (for its CPU)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    try:
        return pid if Path(f"/proc/{pid}/comm").read_text().startswith("redis") else None
    except OSError:
        return None


def redis_reachable(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def delete_keys(url: str, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (ours only: the pattern holds a unique id)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


# --------------------------------------------------------------------------- part 1: admission


@dataclass
class AdmissionRun:
    backend: str
    repetition: int
    admissions: int
    refused: int
    backend_errors: int
    wall_s: float
    us_per_admission: float
    p50_us: float | None
    p99_us: float | None
    process_cpu_us_per_admission: float  # this process (client + quota code), precise
    redis_cpu_us_per_admission: float | None  # the Redis server, from 10 ms ticks: approximate
    other_cpu_pct: float | None
    attempt: int = 1
    waited_s: float = 0.0


def admission_scopes() -> list[Any]:
    from aimi.quota.api import QuotaLimits, Scope

    limits = QuotaLimits(requests_per_minute=HIGH_RPM, tokens_per_minute=HIGH_TPM)
    return [Scope("deployment:bench-quota", limits), Scope("key:bench-quota", limits)]


def make_quotas(backend: str, args: argparse.Namespace) -> Any:
    """A Quotas gate as the server builds it (default timeout and policy) over one backend."""
    from aimi.quota.gate import OnError, Quotas
    from aimi.quota.memory import MemoryQuotas
    from aimi.settings import Settings

    timeout = Settings.model_fields["quota_timeout"].default
    if backend == MEMORY:
        return Quotas(MemoryQuotas(), on_error=OnError.CLOSED, timeout=timeout)
    from aimi.quota.redis import RedisQuotas

    return Quotas(
        RedisQuotas.from_url(args.redis_url, timeout, prefix=args.redis_prefix),
        on_error=OnError.CLOSED,
        timeout=timeout,
    )


async def admission_loop(backend: str, args: argparse.Namespace, repetition: int, own: Sequence[int]) -> AdmissionRun:
    """Warm-up (opens the Redis connection, loads the scripts), then ``--admissions`` reserve +
    settle pairs back to back, each timed."""
    quotas = make_quotas(backend, args)
    scopes = admission_scopes()
    reserved = PROMPT_TOKENS + args.max_tokens
    used = PROMPT_TOKENS + COMPLETION_TOKENS
    run_id = uuid.uuid4().hex[:8]
    try:
        for i in range(100):
            _, reservation = await quotas.reserve(scopes, reserved, f"warm-{run_id}-{i}")
            await quotas.settle(reservation, used)
        errors_before = quotas.errors
        times: list[float] = []
        refused = 0
        redis_before = None if not own else process_cpu_s(own[0])
        meter = CpuMeter(os.getpid(), own)
        cpu_before = time.process_time()
        start = time.perf_counter()
        for i in range(args.admissions):
            t0 = time.perf_counter()
            decision, reservation = await quotas.reserve(scopes, reserved, f"{run_id}-{i}")
            await quotas.settle(reservation, used)
            times.append(time.perf_counter() - t0)
            refused += not decision.admitted
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        other = meter.read()[1]
        redis_after = None if not own else process_cpu_s(own[0])
    finally:
        await quotas.close()
    n = args.admissions
    redis_cpu = None if redis_before is None or redis_after is None else (redis_after - redis_before) * 1e6 / n
    return AdmissionRun(
        backend=backend,
        repetition=repetition,
        admissions=n,
        refused=refused,
        backend_errors=quotas.errors - errors_before,
        wall_s=wall,
        us_per_admission=wall * 1e6 / n,
        p50_us=_us(percentile(times, 50)),
        p99_us=_us(percentile(times, 99)),
        process_cpu_us_per_admission=cpu * 1e6 / n,
        redis_cpu_us_per_admission=redis_cpu,
        other_cpu_pct=other,
    )


def _us(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e6


def run_admission_part(args: argparse.Namespace) -> dict[str, list[AdmissionRun]]:
    names = [MEMORY, REDIS] if args.redis else [MEMORY]
    runs: dict[str, list[AdmissionRun]] = {name: [] for name in names}
    try:
        for repetition in range(args.repetitions):
            for name in names if repetition % 2 == 0 else names[::-1]:  # ABBA
                own = [args.redis_pid] if args.redis_pid and name == REDIS else []
                progress(f"[1] repetition {repetition + 1}/{args.repetitions}: {name}")
                run: AdmissionRun | None = None
                for attempt in range(1, args.retries + 2):
                    patient = time.perf_counter() < args.patient_until
                    waited = wait_for_quiet(own, args.quiet_wait if patient else 0, args.max_other_cpu, 1.0)
                    run = asyncio.run(admission_loop(name, args, repetition, own))
                    run.attempt, run.waited_s = attempt, waited
                    notes = f"  {run.refused} refused" if run.refused else ""
                    notes += f"  {run.backend_errors} backend errors" if run.backend_errors else ""
                    progress(
                        f"    {name:10} {run.us_per_admission:8.1f} us/admission  p50 {fmt(run.p50_us):>7} us  "
                        f"p99 {fmt(run.p99_us):>7} us  CPU {run.process_cpu_us_per_admission:.1f} us  "
                        f"others {fmt(run.other_cpu_pct, 0)}%{notes}"
                    )
                    if not _redo(args, run.other_cpu_pct, attempt):
                        break
                assert run is not None
                runs[name].append(run)
    finally:
        if args.redis:
            deleted = delete_keys(args.redis_url, f"{args.redis_prefix}:*")
            progress(f"[1] deleted {deleted} Redis keys under {args.redis_prefix}:")
    return runs


def _redo(args: argparse.Namespace, other_cpu_pct: float | None, attempt: int) -> bool:
    """Whether a run must be redone because other processes were busy while it ran."""
    if other_cpu_pct is None or other_cpu_pct <= args.max_other_cpu or attempt > args.retries:
        return False
    if time.perf_counter() >= args.patient_until:
        progress(f"      other processes used {other_cpu_pct:.0f}% of the CPU; past --budget: kept")
        return False
    progress(f"      other processes used {other_cpu_pct:.0f}% of the CPU: again")
    return True


# --------------------------------------------------------------------------- part 2: throughput


@dataclass
class LoadRun:
    config: str
    round: int
    requests: int
    errors: int
    with_ratelimit_headers: int  # answers carrying x-ratelimit-* (quotas applied)
    wall_s: float
    requests_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    server_cpu_ms_per_request: float | None
    redis_cpu_ms_per_request: float | None  # the Redis server, from 10 ms ticks
    other_cpu_pct: float | None
    first_error: str | None
    attempt: int = 1
    waited_s: float = 0.0


def server_env(config: str, home: Path, args: argparse.Namespace) -> dict[str, str]:
    """The server's environment: ours without AIMI_* settings, then the configuration's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMI_")}
    env.update(
        {
            "AIMI_HOME": str(home),
            "AIMI_API_KEY": API_KEY,
            "AIMI_DEPLOYMENT_NAME": args.deployment_name,
            "AIMI_QUOTA_BACKEND": "redis" if config == REDIS else "memory",
            "AIMI_REDIS_URL": args.redis_url,
            "AIMI_QUOTA_REQUESTS_PER_MINUTE": "0" if config == OFF else str(HIGH_RPM),
            "AIMI_QUOTA_TOKENS_PER_MINUTE": "0" if config == OFF else str(HIGH_TPM),
            "AIMI_QUOTA_MAX_CONCURRENT": "0",
        }
    )
    return env


@contextlib.contextmanager
def serve_config(config: str, args: argparse.Namespace, work: Path) -> Iterator[Target]:
    """``aimi serve --engine fake`` for one configuration; yields it once healthy, checked to
    use the expected quota backend; always terminated."""
    home = work / f"home-{config}"
    port = free_port()
    command = [
        args.aimi,
        "serve",
        "--model",
        str(args.stand_in),
        "--engine",
        "fake",
        "--port",
        str(port),
        "--slots",
        "64",
    ]
    log_path = work / f"aimi-{config}.log"
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=server_env(config, home, args)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        wait_healthy(url, process, log_path, HEALTH_TIMEOUT_S)
        health = httpx.get(f"{url}/health", headers={"api-key": API_KEY}, timeout=5).json()
        backend = health.get("quota", {}).get("backend")
        expected = "redis" if config == REDIS else "memory"
        if backend != expected:
            raise RuntimeError(f"{config}: the server's quota backend is {backend!r}, not {expected!r}: {health}")
        progress(f"  aimi ({config}) ready on :{port} in {time.perf_counter() - started:.1f}s")
        yield Target(config, url, process.pid)
    finally:
        stop(process)


def usage_records(work: Path, config: str) -> int | None:
    """Rows in a stopped server's usage ledger (SQLite in its AIMI_HOME)."""
    path = work / f"home-{config}" / "usage.db"
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])


async def send(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[bool, float, bool, str | None]:
    """One non-streamed chat request: (ok, latency, had x-ratelimit headers, error)."""
    start = time.perf_counter()
    try:
        response = await client.post(CHAT_PATH, json=body)
        latency = time.perf_counter() - start
        if response.status_code != 200:
            return False, latency, False, f"HTTP {response.status_code}: {response.text[:300]}"
        int(response.json()["usage"]["completion_tokens"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return False, time.perf_counter() - start, False, repr(exc)
    return True, latency, "x-ratelimit-remaining-requests" in response.headers, None


async def load_run(target: Target, args: argparse.Namespace, round_: int, bystanders: Sequence[int]) -> LoadRun:
    """A fresh client; an untimed warm-up of two requests per worker (opens the connections);
    then ``--requests`` requests by ``--concurrency`` workers back to back."""
    body = chat_body(args.max_tokens, stream=False)
    concurrency = args.concurrency
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=target.url, headers=headers, limits=limits, timeout=60.0) as client:
        await asyncio.gather(*(send(client, body) for _ in range(2 * concurrency)))
        remaining = args.requests
        samples: list[tuple[bool, float, bool, str | None]] = []

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                samples.append(await send(client, body))

        redis_before = process_cpu_s(args.redis_pid) if args.redis_pid else None
        meter = CpuMeter(target.pid, [os.getpid(), *bystanders])
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        server_cpu, other = meter.read()
        redis_after = process_cpu_s(args.redis_pid) if args.redis_pid else None
    ok = [s for s in samples if s[0]]
    latencies = [s[1] for s in ok]
    n = len(samples)
    redis_cpu = None
    if target.name == REDIS and redis_before is not None and redis_after is not None:
        redis_cpu = (redis_after - redis_before) * 1000 / n
    return LoadRun(
        config=target.name,
        round=round_,
        requests=n,
        errors=n - len(ok),
        with_ratelimit_headers=sum(1 for s in ok if s[2]),
        wall_s=wall,
        requests_per_s=len(ok) / wall,
        latency_p50_ms=_ms(percentile(latencies, 50)),
        latency_p99_ms=_ms(percentile(latencies, 99)),
        server_cpu_ms_per_request=None if server_cpu is None else server_cpu * 1000 / n,
        redis_cpu_ms_per_request=redis_cpu,
        other_cpu_pct=other,
        first_error=next((s[3] for s in samples if s[3]), None),
    )


def run_throughput_part(args: argparse.Namespace, work: Path) -> tuple[dict[str, list[LoadRun]], dict[str, Any]]:
    names = CONFIGS if args.redis else [OFF, MEMORY]
    runs: dict[str, list[LoadRun]] = {name: [] for name in names}
    records: dict[str, Any] = {}
    sent = dict.fromkeys(names, 0)  # every request sent, warm-ups and redone runs included
    try:
        with contextlib.ExitStack() as stack:
            targets = {name: stack.enter_context(serve_config(name, args, work)) for name in names}
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                progress(f"[2] round {round_ + 1}/{args.rounds}: {', '.join(order)}")
                for name in order:
                    idle = [t.pid for t in targets.values() if t.name != name]
                    own = [*idle, *([args.redis_pid] if args.redis_pid and name == REDIS else [])]
                    run: LoadRun | None = None
                    for attempt in range(1, args.retries + 2):
                        patient = time.perf_counter() < args.patient_until
                        waited = wait_for_quiet(
                            [targets[name].pid, *own], args.quiet_wait if patient else 0, args.max_other_cpu, 1.0
                        )
                        run = asyncio.run(load_run(targets[name], args, round_, own))
                        run.attempt, run.waited_s = attempt, waited
                        sent[name] += 2 * args.concurrency + run.requests
                        notes = f"  {run.errors} errors, first: {run.first_error}" if run.errors else ""
                        progress(
                            f"    {name:10} {run.requests_per_s:7.1f} req/s  p50 {fmt(run.latency_p50_ms, 2):>6} ms  "
                            f"p99 {fmt(run.latency_p99_ms, 2):>6} ms  "
                            f"CPU/req {fmt(run.server_cpu_ms_per_request, 2)} ms  "
                            f"rate-limit headers {run.with_ratelimit_headers}/{run.requests}  "
                            f"others {fmt(run.other_cpu_pct, 0)}%{notes}"
                        )
                        if not _redo(args, run.other_cpu_pct, attempt):
                            break
                    assert run is not None
                    runs[name].append(run)
        for name in names:  # the servers have stopped: their ledgers are flushed
            records[name] = {"usage_records": usage_records(work, name), "requests_sent": sent[name]}
    finally:
        if args.redis:
            deleted = delete_keys(args.redis_url, f"aimi:{{quota}}:deployment:{args.deployment_name}:*")
            progress(f"[2] deleted {deleted} Redis keys of deployment {args.deployment_name}")
    return runs, records


# --------------------------------------------------------------------------- part 3: burst


@dataclass
class BurstRun:
    where: str  # "admission": Quotas.reserve in this process; "servers": requests to 3 aimi serve
    concurrent: int
    admitted: int
    refused: int  # 429
    unavailable: int  # 503: the quota backend counted as unreachable
    other: int  # any other outcome (a transport error, another status)
    backend_errors: int  # failed calls to Redis (each opens the breaker for 2 s)
    wall_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    first_error: str | None


def _burst_settings(args: argparse.Namespace, **more: Any) -> Any:
    from aimi.settings import Settings

    # The server's defaults for everything else (the quota timeout among them).
    return Settings(quota_backend="redis", redis_url=args.redis_url, **more)


async def admission_burst(args: argparse.Namespace, concurrent: int) -> BurstRun:
    """``concurrent`` admissions at once in this process, through the gate the server builds
    (``build_quotas`` with the default settings), opened as at start-up; a fresh deployment scope
    of ``--burst-limit`` requests a minute, settled as each request would be."""
    from aimi.server.observability import build_quotas

    from aimi.quota.api import QuotaLimits, Scope
    from aimi.quota.gate import Unavailable

    quotas = build_quotas(_burst_settings(args))
    warm = getattr(quotas, "warm", None)
    if warm is not None:  # what the server's start-up does
        await warm()
    name = f"deployment:{args.deployment_name}-admission-{concurrent}"
    scopes = [Scope(name, QuotaLimits(requests_per_minute=args.burst_limit))]
    outcomes: list[tuple[str, float]] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            decision, reservation = await quotas.reserve(scopes, 1, f"{name}-{i}")
        except Unavailable:
            outcomes.append(("unavailable", time.perf_counter() - t0))
            return
        outcomes.append(("admitted" if decision.admitted else "refused", time.perf_counter() - t0))
        if decision.admitted:
            await quotas.settle(reservation, 1)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(concurrent)))
        wall = time.perf_counter() - start
    finally:
        await quotas.close()
        delete_keys(args.redis_url, f"aimi:{{quota}}:{name}:*")
    return _burst_run("admission", concurrent, outcomes, quotas.errors, wall, None)


def _burst_run(
    where: str, concurrent: int, outcomes: list[tuple[str, float]], errors: int, wall: float, first: str | None
) -> BurstRun:
    times = [seconds for _, seconds in outcomes]
    count = {kind: sum(1 for k, _ in outcomes if k == kind) for kind in ("admitted", "refused", "unavailable")}
    return BurstRun(
        where=where,
        concurrent=concurrent,
        admitted=count["admitted"],
        refused=count["refused"],
        unavailable=count["unavailable"],
        other=len(outcomes) - sum(count.values()),
        backend_errors=errors,
        wall_s=wall,
        p50_ms=_ms(percentile(times, 50)),
        p99_ms=_ms(percentile(times, 99)),
        max_ms=_ms(max(times, default=None)),
        first_error=first,
    )


@contextlib.contextmanager
def burst_servers(args: argparse.Namespace, work: Path) -> Iterator[list[Target]]:
    """Three ``aimi serve --engine fake`` sharing the Redis, with the server's default quota
    settings but ``--burst-limit`` requests a minute for their one deployment."""
    with contextlib.ExitStack() as stack:
        targets = []
        for i in range(3):
            config = f"burst-{i}"
            home = work / f"home-{config}"
            port = free_port()
            command = [args.aimi, "serve", "--model", str(args.stand_in), "--engine", "fake", "--port", str(port)]
            command += ["--slots", "64"]
            env = server_env(REDIS, home, args)
            env.update(
                {
                    "AIMI_QUOTA_REQUESTS_PER_MINUTE": str(args.burst_limit),
                    "AIMI_QUOTA_TOKENS_PER_MINUTE": "0",
                    "AIMI_MAX_QUEUE": "100000",  # the slots' queue takes the burst: only the quota refuses
                }
            )
            log_path = work / f"aimi-{config}.log"
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            stack.callback(stop, process)
            targets.append((Target(config, f"http://127.0.0.1:{port}", process.pid), process, log_path))
        for target, process, log_path in targets:
            wait_healthy(target.url, process, log_path, HEALTH_TIMEOUT_S)
        progress(f"  3 aimi (redis, {args.burst_limit} requests/min) ready: {', '.join(t.url for t, _, _ in targets)}")
        yield [t for t, _, _ in targets]


def quota_errors(url: str) -> float:
    """The server's failed calls to its quota backend (``aimi_quota_backend_errors_total``)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", headers={"api-key": API_KEY}, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "aimi_quota_backend_errors_total"
    )


async def post(url: str, body: bytes) -> int:
    """One chat request on its own connection with bare asyncio streams (its status): thousands
    at once cost this process a fraction of what httpx requests do, so they reach the servers at
    once rather than at the pace of the client."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"POST {CHAT_PATH} HTTP/1.1\r\nhost: {parts.netloc}\r\nauthorization: Bearer {API_KEY}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next((int(v) for k, _, v in (h.partition(":") for h in head[1:]) if k.lower() == "content-length"), 0)
        await reader.readexactly(length)
        return int(head[0].split()[1])
    finally:
        writer.close()


async def server_burst(targets: Sequence[Target], args: argparse.Namespace, concurrent: int) -> BurstRun:
    """``concurrent`` chat requests at once, round-robin over the servers, each on its own
    connection; a fresh window (the deployment's keys deleted first)."""
    delete_keys(args.redis_url, f"aimi:{{quota}}:deployment:{args.deployment_name}:*")
    errors_before = sum(quota_errors(t.url) for t in targets)
    body = json.dumps(chat_body(args.max_tokens, stream=False)).encode()
    outcomes: list[tuple[str, float]] = []
    first: str | None = None

    async def one(i: int) -> None:
        nonlocal first
        t0 = time.perf_counter()
        try:
            status = await post(targets[i % len(targets)].url, body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcomes.append(("error", time.perf_counter() - t0))
            first = first or repr(exc)
            return
        kind = {200: "admitted", 429: "refused", 503: "unavailable"}.get(status, "other")
        outcomes.append((kind, time.perf_counter() - t0))
        if kind == "other":
            first = first or f"HTTP {status}"

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(concurrent)))
    wall = time.perf_counter() - start
    errors = sum(quota_errors(t.url) for t in targets) - errors_before
    return _burst_run("servers", concurrent, outcomes, int(errors), wall, first)


def run_burst_part(args: argparse.Namespace, work: Path) -> list[BurstRun]:
    runs: list[BurstRun] = []

    def show(run: BurstRun) -> None:
        progress(
            f"    {run.where:9} {run.concurrent:5} at once: {run.admitted} admitted, {run.refused} refused (429), "
            f"{run.unavailable} unavailable (503), {run.other} other; {run.backend_errors} backend errors; "
            f"p50 {fmt(run.p50_ms)} ms  p99 {fmt(run.p99_ms)} ms  max {fmt(run.max_ms)} ms  "
            f"({run.wall_s:.2f} s)" + (f"; first error: {run.first_error}" if run.first_error else "")
        )

    try:
        for concurrent in args.bursts:
            progress(f"[3] {concurrent} admissions at once in this process")
            runs.append(asyncio.run(admission_burst(args, concurrent)))
            show(runs[-1])
        with burst_servers(args, work) as targets:
            for concurrent in args.bursts:
                progress(f"[3] {concurrent} requests at once over 3 servers")
                runs.append(asyncio.run(server_burst(targets, args, concurrent)))
                show(runs[-1])
    finally:
        delete_keys(args.redis_url, f"aimi:{{quota}}:deployment:{args.deployment_name}*")
    return runs


def burst_report(args: argparse.Namespace, runs: Sequence[BurstRun]) -> str:
    headers = ["burst", "at once", "admitted", "429", "503", "backend errors", "p50 ms", "p99 ms", "max ms"]
    rows = [
        [
            "in process" if r.where == "admission" else "3 servers",
            str(r.concurrent),
            str(r.admitted),
            str(r.refused),
            str(r.unavailable),
            str(r.backend_errors),
            fmt(r.p50_ms),
            fmt(r.p99_ms),
            fmt(r.max_ms),
        ]
        for r in runs
    ]
    return "\n".join(
        [
            f"**3. Burst**: a deployment limit of {args.burst_limit} requests a minute on Redis, the server's "
            "default quota settings; in process: `Quotas.reserve` from `build_quotas`, all at once (latency of the "
            "admission); 3 servers: `aimi serve --engine fake` sharing the Redis, chat requests all at once "
            "round-robin (latency of the whole request)",
            "",
            markdown(headers, rows),
        ]
    )


# --------------------------------------------------------------------------- reporting


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A markdown table: first column left-aligned, the others right-aligned, padded to line up."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _others(runs: Sequence[Any]) -> str:
    others = [r.other_cpu_pct for r in runs if r.other_cpu_pct is not None]
    return (
        f"{sum(r.attempt - 1 for r in runs)} runs redone for foreign CPU load; other processes used "
        f"{fmt(statistics.median(others) if others else None, 0)}% median / {fmt(max(others, default=None), 0)}% max"
    )


def admission_summary(runs: dict[str, list[AdmissionRun]]) -> dict[str, dict[str, Any]]:
    metrics = ["us_per_admission", "p50_us", "p99_us", "process_cpu_us_per_admission", "redis_cpu_us_per_admission"]
    summary = {name: {m: median_of(rs, m) for m in metrics} for name, rs in runs.items()}
    for row in summary.values():
        row["ratio_vs_in_process"] = ratio(row["us_per_admission"], summary[MEMORY]["us_per_admission"])
    return summary


def admission_report(args: argparse.Namespace, runs: dict[str, list[AdmissionRun]], summary: dict[str, Any]) -> str:
    headers = ["backend", "µs/admission", "vs in-process", "p50 µs", "p99 µs", "CPU µs/adm (bench)", "Redis CPU µs/adm"]
    rows = [
        [
            name,
            fmt(row["us_per_admission"]),
            fmt(row["ratio_vs_in_process"], 2),
            fmt(row["p50_us"]),
            fmt(row["p99_us"]),
            fmt(row["process_cpu_us_per_admission"]),
            fmt(row["redis_cpu_us_per_admission"], 0) if name == REDIS else "-",
        ]
        for name, row in summary.items()
    ]
    lines = [
        f"**1. Admission cost**: `Quotas.reserve` + `Quotas.settle`, 2 scopes (deployment + key), "
        f"{PROMPT_TOKENS + args.max_tokens} tokens reserved, settled to {PROMPT_TOKENS + COMPLETION_TOKENS}; "
        f"{args.admissions} admissions/run back to back, medians of {args.repetitions} runs",
        "",
        markdown(headers, rows),
        "",
    ]
    for name, rs in runs.items():
        spread = [r.us_per_admission for r in rs]
        lines.append(
            f"- {name}: {sum(r.admissions for r in rs)} admissions, {sum(r.refused for r in rs)} refused, "
            f"{sum(r.backend_errors for r in rs)} backend errors; µs/admission {min(spread):.1f}-{max(spread):.1f} "
            f"over runs; {_others(rs)}"
        )
    if args.redis:
        lines.append(
            f"- Redis {args.redis_url}: one EVALSHA round trip for reserve and one for settle; "
            "its CPU is from 10 ms ticks (approximate) and includes any other client's commands"
        )
    return "\n".join(lines)


def throughput_summary(runs: dict[str, list[LoadRun]]) -> dict[str, dict[str, Any]]:
    metrics = [
        "requests_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "server_cpu_ms_per_request",
        "redis_cpu_ms_per_request",
    ]
    summary = {name: {m: median_of(rs, m) for m in metrics} for name, rs in runs.items()}
    base = summary[OFF]
    for name, row in summary.items():
        # Each round ran every configuration back to back: the ratio within a round is less
        # exposed to load that drifts between rounds.
        paired = [
            r.requests_per_s / o.requests_per_s for r, o in zip(runs[name], runs[OFF], strict=True) if o.requests_per_s
        ]
        row["requests_per_s_paired_vs_off"] = statistics.median(paired) if paired else None
        row["requests_per_s_paired_vs_off_range"] = [min(paired), max(paired)] if paired else None
        for m in ("requests_per_s", "latency_p50_ms", "server_cpu_ms_per_request"):
            row[f"{m}_vs_off"] = ratio(row[m], base[m])
        p50, off = row["latency_p50_ms"], base["latency_p50_ms"]
        row["p50_minus_off_ms"] = None if p50 is None or off is None else p50 - off
    return summary


def throughput_report(
    args: argparse.Namespace, runs: dict[str, list[LoadRun]], summary: dict[str, Any], records: dict[str, Any]
) -> str:
    headers = [
        "quotas",
        "req/s",
        "vs off",
        "p50 ms",
        "vs off",
        "p50 - off ms",
        "p99 ms",
        "aimi CPU ms/req",
        "vs off",
        "Redis CPU ms/req",
    ]
    rows = [
        [
            name,
            fmt(row["requests_per_s"]),
            fmt(row["requests_per_s_vs_off"], 3),
            fmt(row["latency_p50_ms"], 2),
            fmt(row["latency_p50_ms_vs_off"], 3),
            fmt(row["p50_minus_off_ms"], 3),
            fmt(row["latency_p99_ms"], 2),
            fmt(row["server_cpu_ms_per_request"], 3),
            fmt(row["server_cpu_ms_per_request_vs_off"], 3),
            fmt(row["redis_cpu_ms_per_request"], 3) if name == REDIS else "-",
        ]
        for name, row in summary.items()
    ]
    lines = [
        f"**2. Fake-engine throughput**: `aimi serve --engine fake --slots 64`, non-streamed chat, "
        f"max_tokens {args.max_tokens} ({COMPLETION_TOKENS}-token answers), concurrency {args.concurrency}, "
        f"{args.requests} requests/run, medians of {args.rounds} rounds; quotas off = requests and tokens per "
        f"minute 0; on = {HIGH_RPM:.0e} requests / {HIGH_TPM:.0e} tokens per minute (never refusing)",
        "",
        markdown(headers, rows),
        "",
    ]
    for name, rs in runs.items():
        spread = [r.requests_per_s for r in rs]
        ledger = records.get(name, {})
        lines.append(
            f"- {name}: {sum(r.requests for r in rs)} requests, {sum(r.errors for r in rs)} errors, "
            f"{sum(r.with_ratelimit_headers for r in rs)} with x-ratelimit headers; its SQLite ledger holds "
            f"{ledger.get('usage_records')} usage records for the {ledger.get('requests_sent')} requests it got "
            f"(warm-ups and redone runs included); req/s {min(spread):.0f}-{max(spread):.0f} over rounds; "
            f"{_others(rs)}"
        )
        paired = summary[name]["requests_per_s_paired_vs_off_range"]
        if name != OFF and paired:
            lines.append(
                f"  req/s vs off within the same round: median {fmt(summary[name]['requests_per_s_paired_vs_off'], 3)}"
                f" ({paired[0]:.3f}-{paired[1]:.3f} over rounds)"
            )
        first = next((r.first_error for r in rs if r.first_error), None)
        if first:
            lines.append(f"  first error: {first}")
    lines.append(
        "- the httpx client runs on the same 2 cores as the server (and Redis); every configuration writes a "
        "usage record per request to SQLite (ledger thread, batched). In a closed loop of "
        f"{args.concurrency} clients, latency is about {args.concurrency} / (req/s), so p50 follows throughput; "
        "part 1 is the quota cost of one request in isolation"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = new_parser(__doc__, QUICK)
    parser.add_argument(
        "-r", "--repetitions", type=int, help=f"1: runs of each backend (default {FULL['repetitions']})"
    )
    parser.add_argument("-a", "--admissions", type=int, help=f"1: admissions per run (default {FULL['admissions']})")
    parser.add_argument("--rounds", type=int, help=f"2: runs of each configuration (default {FULL['rounds']})")
    parser.add_argument("-n", "--requests", type=int, help=f"2: timed requests per run (default {FULL['requests']})")
    parser.add_argument("-c", "--concurrency", type=int, help=f"2: concurrent clients (default {FULL['concurrency']})")
    parser.add_argument("--max-tokens", type=int, help=f"max_tokens of each request (default {FULL['max_tokens']})")
    parser.add_argument(
        "--only",
        choices=["admission", "throughput", "burst"],
        help="run only part 1, part 2, or part 3 (the burst, which runs only when asked)",
    )
    parser.add_argument(
        "--bursts",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[300, 3000],
        help="3: requests at once, comma-separated (default 300,3000)",
    )
    parser.add_argument(
        "--burst-limit", type=int, default=60, help="3: the deployment's requests per minute (default 60)"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("AIMI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis to measure (default: $AIMI_TEST_REDIS_URL or redis://127.0.0.1:6379/0); "
        "the Redis rows are left out when it does not answer",
    )
    parser.add_argument("--aimi", default=str(Path(sys.executable).with_name("aimi")), help="aimi executable")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="after this many seconds of the whole run, stop waiting for quiet and redoing runs (default 60); "
        "a busy machine then cannot stretch the run much past 3 min",
    )
    add_run_options(parser, quiet_wait=3.0, retries=1, log_help="server logs and AIMI_HOMEs")
    return parsed(parser, argv, QUICK, FULL)


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    return run_metadata(args, dict(package_versions("aimi", "redis", "httpx", "uvicorn")))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-quota-"))
    work.mkdir(parents=True, exist_ok=True)
    unique = uuid.uuid4().hex[:12]
    args.redis_prefix = f"aimi-bench-quota-{unique}"  # part 1's keys
    args.deployment_name = f"bench-quota-{unique}"  # part 2's keys: aimi:{quota}:deployment:<name>:*
    args.stand_in = work / "stand-in.gguf"  # the fake engine loads nothing; the path must exist
    args.stand_in.write_bytes(b"GGUF")
    args.redis = redis_reachable(args.redis_url)
    args.redis_pid = redis_pid(args.redis_url) if args.redis else None
    progress(
        f"server logs and homes in {work}; Redis {args.redis_url}: "
        + (f"up (pid {args.redis_pid or 'not visible'})" if args.redis else "NOT reachable, Redis rows left out")
    )
    started = time.perf_counter()
    args.patient_until = started + args.budget
    result: dict[str, Any] = {"meta": metadata(args)}
    reports = []
    if args.only in (None, "admission"):
        admission_runs = run_admission_part(args)
        summary = admission_summary(admission_runs)
        result["admission"] = {
            "medians": summary,
            "runs": {k: [asdict(r) for r in rs] for k, rs in admission_runs.items()},
        }
        reports.append(admission_report(args, admission_runs, summary))
    if args.only in (None, "throughput"):
        load_runs, records = run_throughput_part(args, work)
        summary = throughput_summary(load_runs)
        result["throughput"] = {
            "medians": summary,
            "usage_records": records,
            "runs": {k: [asdict(r) for r in rs] for k, rs in load_runs.items()},
        }
        reports.append(throughput_report(args, load_runs, summary, records))
    if args.only == "burst":
        if not args.redis:
            raise SystemExit(f"the burst needs Redis at {args.redis_url}")
        burst_runs = run_burst_part(args, work)
        result["burst"] = [asdict(r) for r in burst_runs]
        reports.append(burst_report(args, burst_runs))
    duration = time.perf_counter() - started
    result["meta"]["duration_s"] = duration
    print("\n" + "\n\n".join(reports) + f"\n\n(total {duration:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
