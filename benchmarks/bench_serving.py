"""Serving benchmark for aimi: what does aimi cost on top of the engine it serves?

A. Engine: aimi (llamacpp engine) vs llama.cpp's own HTTP server (started by xllamacpp in a
   separate process), same GGUF model, slots, context and threads, one server at a time.
   Closed-loop streaming chat requests at several concurrencies: aggregate output tokens/s and
   time to first token (TTFT).
B. Overhead: aimi on its fake engine (answers instantly, no model) vs a bare Starlette app under
   uvicorn answering the same bytes. Requests/s and end-to-end latency, streamed and not.

Servers run in subprocesses on free ports, are ready when GET /health answers 200, and are
always terminated. Every configuration runs ``--repetitions`` times (servers of part A restarted
each time, in ABBA order); medians are reported. The machine may be shared: each run first waits
for other processes to go quiet, and is repeated if they used much CPU while it ran.

    .venv/bin/python benchmarks/bench_serving.py                 # full run (~6-10 min on 2 cores)
    .venv/bin/python benchmarks/bench_serving.py --quick         # smoke run (~1 min)
    .venv/bin/python benchmarks/bench_serving.py --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
API_KEY = "bench-serving-key"
PROMPT = "Write a short story about a robot who learns to paint."
LLAMACPP, AIMI, BARE, AIMI_FAKE = "llama.cpp", "aimi", "bare-asgi", "aimi-fake"
HEALTH_TIMEOUT_S = 180.0
CHAT_PATH = "/v1/chat/completions"

# Defaults of the full run and of --quick; explicit flags override either.
FULL: dict[str, Any] = {
    "repetitions": 3,
    "requests": 32,
    "concurrency": [1, 4, 8],
    "max_tokens": 64,
    "fake_requests": 1000,
    "fake_concurrency": [1, 16],
}
QUICK: dict[str, Any] = {
    "repetitions": 1,
    "requests": 8,
    "concurrency": [1, 4],
    "max_tokens": 16,
    "fake_requests": 100,
    "fake_concurrency": [1, 16],
}


# --------------------------------------------------------------------------- results


@dataclass
class Sample:
    """One request, as the client saw it."""

    ok: bool
    latency_s: float  # sending -> response complete (whole body, or the end of the stream)
    ttft_s: float | None  # sending -> first non-empty content delta (streams only)
    completion_tokens: int
    error: str | None = None
    stale: bool = False  # sent on a keep-alive connection the server had closed: never processed
    reconnects: int = 0


@dataclass
class RunStats:
    """One closed-loop run: ``requests`` requests by ``concurrency`` workers."""

    concurrency: int
    requests: int
    errors: int
    wrong_token_counts: int  # successful answers whose completion_tokens != the expected count
    reconnects: int  # requests resent after a stale keep-alive connection (see send_fresh)
    wall_s: float
    completion_tokens: int
    tokens_per_s: float
    requests_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    server_cpu_s: float | None  # CPU time of the server process during the timed loop (10 ms ticks)
    server_cpu_ms_per_request: float | None
    other_cpu_pct: float | None  # CPU of processes other than ours, % of the machine's capacity
    first_error: str | None
    attempt: int = 1  # >1: earlier attempts were discarded because other processes were busy
    waited_s: float = 0.0  # time spent waiting for a quiet machine before this attempt


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linearly interpolated between closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summarize(
    samples: list[Sample],
    wall_s: float,
    concurrency: int,
    expected_tokens: int | None,
    cpu: tuple[float | None, float | None],
) -> RunStats:
    """Aggregate one run's samples into throughput and latency figures."""
    ok = [s for s in samples if s.ok]
    failed = [s for s in samples if not s.ok]
    latencies = [s.latency_s for s in ok]
    ttfts = [s.ttft_s for s in ok if s.ttft_s is not None]
    tokens = sum(s.completion_tokens for s in ok)
    return RunStats(
        concurrency=concurrency,
        requests=len(samples),
        errors=len(failed),
        wrong_token_counts=sum(1 for s in ok if expected_tokens is not None and s.completion_tokens != expected_tokens),
        reconnects=sum(s.reconnects for s in samples),
        wall_s=wall_s,
        completion_tokens=tokens,
        tokens_per_s=tokens / wall_s,
        requests_per_s=len(ok) / wall_s,
        latency_p50_ms=_ms(percentile(latencies, 50)),
        latency_p99_ms=_ms(percentile(latencies, 99)),
        ttft_p50_ms=_ms(percentile(ttfts, 50)),
        ttft_p99_ms=_ms(percentile(ttfts, 99)),
        server_cpu_s=cpu[0],
        server_cpu_ms_per_request=None if cpu[0] is None or not samples else cpu[0] * 1000 / len(samples),
        other_cpu_pct=cpu[1],
        first_error=failed[0].error if failed else None,
    )


# --------------------------------------------------------------------------- load generator


def chat_body(max_tokens: int, stream: bool) -> dict[str, Any]:
    """The request every run sends: one fixed user turn, greedy, exactly ``max_tokens`` tokens."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _has_content(chunk: dict[str, Any]) -> bool:
    return any((choice.get("delta") or {}).get("content") for choice in chunk.get("choices") or [])


def _failure(start: float, exc: Exception, ttft: float | None = None, tokens: int = 0) -> Sample:
    """A failed request; a stale keep-alive connection (nothing was processed) is marked as such."""
    stale = isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in str(exc)
    return Sample(False, time.perf_counter() - start, ttft, tokens, repr(exc), stale=stale)


async def send_streaming(client: httpx.AsyncClient, body: dict[str, Any]) -> Sample:
    """A streamed chat request; TTFT is the first non-empty content delta, tokens from usage."""
    start = time.perf_counter()
    ttft: float | None = None
    tokens = 0
    done = False
    try:
        async with client.stream("POST", CHAT_PATH, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Sample(False, time.perf_counter() - start, None, 0, f"HTTP {response.status_code}: {text[:300]}")
            # Read to the end (not just to [DONE]) so the connection goes back to the pool.
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    elapsed = time.perf_counter() - start
                    return Sample(False, elapsed, ttft, tokens, f"stream error: {data[:300]}")
                if ttft is None and _has_content(chunk):
                    ttft = time.perf_counter() - start
                if chunk.get("usage"):
                    tokens = int(chunk["usage"].get("completion_tokens", 0))
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return _failure(start, exc, ttft, tokens)
    latency = time.perf_counter() - start
    if not done:
        return Sample(False, latency, ttft, tokens, "stream ended without data: [DONE]")
    return Sample(True, latency, ttft, tokens)


async def send_whole(client: httpx.AsyncClient, body: dict[str, Any]) -> Sample:
    """A non-streamed chat request."""
    start = time.perf_counter()
    try:
        response = await client.post(CHAT_PATH, json=body)
        latency = time.perf_counter() - start
        if response.status_code != 200:
            return Sample(False, latency, None, 0, f"HTTP {response.status_code}: {response.text[:300]}")
        tokens = int(response.json()["usage"]["completion_tokens"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return _failure(start, exc)
    return Sample(True, latency, None, tokens)


async def send_fresh(send: Callable[[], Awaitable[Sample]]) -> Sample:
    """``send()``, once more if the pooled connection was stale (as the OpenAI SDKs retry).

    llama.cpp's server sometimes closes a connection right after a streamed response although it
    announced keep-alive; the next request written to it fails before the server reads it. Only
    the resent request is timed; the resend is counted in ``reconnects``.
    """
    sample = await send()
    if sample.stale:
        sample = await send()
        sample.reconnects += 1
    return sample


async def closed_loop(
    send: Callable[[], Awaitable[Sample]], concurrency: int, total: int
) -> tuple[list[Sample], float]:
    """``concurrency`` workers send back to back until ``total`` requests have been sent."""
    remaining = total
    samples: list[Sample] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await send_fresh(send))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


# --------------------------------------------------------------------------- CPU accounting


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (steal included) since boot; None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads); None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """From construction to ``read()``: CPU of the server under test, and of everybody else."""

    def __init__(self, server_pid: int, own_pids: Sequence[int]) -> None:
        self.pids = [server_pid, *own_pids]
        self.started = time.perf_counter()
        self.machine = machine_busy_s()
        self.processes = [process_cpu_s(pid) for pid in self.pids]

    def read(self) -> tuple[float | None, float | None]:
        """(server CPU seconds, CPU of other processes as % of the machine's capacity)."""
        wall = time.perf_counter() - self.started
        machine = machine_busy_s()
        deltas = [
            None if before is None or after is None else after - before
            for before, after in zip(self.processes, map(process_cpu_s, self.pids), strict=True)
        ]
        if self.machine is None or machine is None or any(d is None for d in deltas):
            return deltas[0], None
        foreign = (machine - self.machine) - sum(d for d in deltas if d is not None)
        return deltas[0], max(0.0, foreign) / (wall * (os.cpu_count() or 1)) * 100


def wait_for_quiet(own_pids: Sequence[int], max_wait_s: float, threshold_pct: float, quiet_for_s: float = 2.0) -> float:
    """Watch 0.5 s windows until other processes have used under ``threshold_pct`` of the machine
    for ``quiet_for_s`` in a row (a lull inside someone's test run is shorter), or ``max_wait_s``
    has passed; returns the seconds waited."""
    if max_wait_s <= 0:
        return 0.0
    started = time.perf_counter()
    quiet_since = started
    while True:
        meter = CpuMeter(os.getpid(), own_pids)
        time.sleep(0.5)
        foreign = meter.read()[1]
        now = time.perf_counter()
        if foreign is None:
            return now - started
        if foreign >= threshold_pct:
            quiet_since = now
        if now - quiet_since >= quiet_for_s or now - started >= max_wait_s:
            return now - started


# --------------------------------------------------------------------------- server processes


@dataclass(frozen=True)
class Target:
    """A running server under test."""

    name: str
    url: str
    pid: int


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Poll GET /health until it answers 200; fail if the process exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = _log_tail(log_path)
                raise RuntimeError(f"server exited ({process.returncode}); {log_path}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{url}/health").status_code == 200:
                    return
            time.sleep(0.05)
    raise RuntimeError(f"{url}/health not 200 within {timeout_s:.0f}s; {log_path}:\n{_log_tail(log_path)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Close its stdin, SIGTERM, and SIGKILL if it has not exited within 15 s."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def serve(name: str, command: list[str], port: int, log_dir: Path) -> Iterator[Target]:
    """Run ``command`` (a server on ``port``) for the block; yields it once healthy."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        # The deployment quotas (1,000 requests a minute by default) would refuse the load itself.
        env = {**os.environ, "AIMI_QUOTA_REQUESTS_PER_MINUTE": "0", "AIMI_QUOTA_TOKENS_PER_MINUTE": "0"}
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        wait_healthy(url, process, log_path, HEALTH_TIMEOUT_S)
        progress(f"  {name} ready on :{port} in {time.perf_counter() - started:.1f}s")
        yield Target(name, url, process.pid)
    finally:
        stop(process)


def aimi_command(args: argparse.Namespace, port: int, engine: str) -> list[str]:
    """``aimi serve`` with the benchmark's settings; the fake engine gets 64 slots."""
    command = [args.aimi, "serve", "--model", args.model, "--port", str(port), "--api-key", API_KEY, "--engine", engine]
    if engine == "fake":
        return [*command, "--slots", "64"]
    return [
        *command,
        "--slots",
        str(args.slots),
        "--context-size",
        str(args.context_size),
        "--threads",
        str(args.threads),
    ]


def llamacpp_command(args: argparse.Namespace, port: int) -> list[str]:
    """llama.cpp's server (benchmarks/llamacpp_server.py) with the same settings as aimi."""
    return [
        sys.executable,
        str(HERE / "llamacpp_server.py"),
        "--model",
        args.model,
        "--port",
        str(port),
        "--slots",
        str(args.slots),
        "--context-size",
        str(args.context_size),
        "--threads",
        str(args.threads),
    ]


def bare_command(port: int) -> list[str]:
    """The bare Starlette reference app (benchmarks/bare_asgi.py)."""
    return [sys.executable, str(HERE / "bare_asgi.py"), "--port", str(port)]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- runs

Runs = dict[str, dict[str, list[RunStats]]]  # server -> configuration -> one RunStats per repetition


async def measure(
    target: Target,
    body: dict[str, Any],
    concurrency: int,
    requests: int,
    expected_tokens: int | None,
    bystanders: Sequence[int],
) -> RunStats:
    """One run: a fresh client, an untimed warm-up of one request per worker, the timed loop.

    ``bystanders``: pids of our other (idle) servers, not counted as foreign load.
    """
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=target.url, headers=headers, limits=limits, timeout=httpx.Timeout(600.0)
    ) as client:
        send = partial(send_streaming if body["stream"] else send_whole, client, body)
        await closed_loop(send, concurrency, concurrency)  # opens one connection per worker
        meter = CpuMeter(target.pid, [os.getpid(), *bystanders])
        samples, wall_s = await closed_loop(send, concurrency, requests)
        cpu = meter.read()
    return summarize(samples, wall_s, concurrency, expected_tokens, cpu)


def label_of(body: dict[str, Any], concurrency: int, engine: bool) -> str:
    if engine:
        return str(concurrency)
    return f"{'stream' if body['stream'] else 'whole'} c={concurrency}"


def _report(target: Target, label: str, stats: RunStats) -> None:
    notes = [f"{stats.errors} errors"] if stats.errors else []
    notes += [f"{stats.wrong_token_counts} wrong token counts"] if stats.wrong_token_counts else []
    notes += [f"{stats.reconnects} reconnects"] if stats.reconnects else []
    notes += [f"waited {stats.waited_s:.0f}s for quiet"] if stats.waited_s >= 3 else []
    ttft = f"  TTFT p50 {fmt(stats.ttft_p50_ms):>6} ms" if stats.ttft_p50_ms is not None else ""
    progress(
        f"    {target.name:10} {label:12} {stats.tokens_per_s:8.1f} tok/s "
        f"{stats.requests_per_s:7.1f} req/s"
        f"  p50 {fmt(stats.latency_p50_ms):>6} ms{ttft}  server CPU {fmt(stats.server_cpu_s)} s"
        f"  others {fmt(stats.other_cpu_pct, 0)}%  {', '.join(notes)}"
    )
    if stats.first_error:
        progress(f"      first error: {stats.first_error}")


def run_one(
    args: argparse.Namespace, target: Target, body: dict[str, Any], concurrency: int, bystanders: Sequence[int] = ()
) -> RunStats:
    """One measured run, after waiting for a quiet machine; redone (up to ``--retries`` times) if
    other processes used more than ``--max-other-cpu`` percent of the machine while it ran."""
    engine = target.name in (LLAMACPP, AIMI)
    requests = args.requests if engine else args.fake_requests
    expected = args.max_tokens if engine else None
    label = label_of(body, concurrency, engine)
    for attempt in range(1, args.retries + 2):
        waited = wait_for_quiet([target.pid, *bystanders], args.quiet_wait, args.max_other_cpu)
        stats = asyncio.run(measure(target, body, concurrency, requests, expected, bystanders))
        stats.attempt, stats.waited_s = attempt, waited
        _report(target, f"c={label}" if engine else label, stats)
        if stats.other_cpu_pct is None or stats.other_cpu_pct <= args.max_other_cpu:
            break
        if attempt <= args.retries:
            progress(f"      other processes used {stats.other_cpu_pct:.0f}% of the CPU: again")
    return stats


def _abba(names: list[str], repetition: int) -> list[str]:
    """Even repetitions run ``names`` forwards, odd ones backwards: drift hits both alike."""
    return names if repetition % 2 == 0 else names[::-1]


def run_engine_part(args: argparse.Namespace, log_dir: Path) -> Runs:
    """Part A: llama.cpp's server and aimi, one at a time, restarted each repetition, ABBA order."""
    names = [LLAMACPP, AIMI]
    runs: Runs = {name: {str(c): [] for c in args.concurrency} for name in names}
    body = chat_body(args.max_tokens, stream=True)
    for repetition in range(args.repetitions):
        for name in _abba(names, repetition):
            progress(f"[A] repetition {repetition + 1}/{args.repetitions}: {name}")
            port = free_port()
            if name == LLAMACPP:
                command = llamacpp_command(args, port)
            else:
                command = aimi_command(args, port, "llamacpp")
            with serve(name, command, port, log_dir) as target:
                for concurrency in args.concurrency:
                    runs[name][str(concurrency)].append(run_one(args, target, body, concurrency))
    return runs


def run_overhead_part(args: argparse.Namespace, log_dir: Path) -> Runs:
    """Part B: aimi on the fake engine and the bare app, both up (one idle while the other is
    measured), each configuration interleaved in ABBA order."""
    names = [BARE, AIMI_FAKE]
    bodies = [chat_body(args.max_tokens, stream=stream) for stream in (False, True)]
    configs = [(body, c) for body in bodies for c in args.fake_concurrency]
    runs: Runs = {name: {label_of(b, c, engine=False): [] for b, c in configs} for name in names}
    bare_port, aimi_port = free_port(), free_port()
    with (
        serve(BARE, bare_command(bare_port), bare_port, log_dir) as bare,
        serve(AIMI_FAKE, aimi_command(args, aimi_port, "fake"), aimi_port, log_dir) as aimi,
    ):
        targets = {BARE: bare, AIMI_FAKE: aimi}
        for repetition in range(args.repetitions):
            progress(f"[B] repetition {repetition + 1}/{args.repetitions}")
            for body, concurrency in configs:
                for name in _abba(names, repetition):
                    idle = [t.pid for t in targets.values() if t.name != name]
                    stats = run_one(args, targets[name], body, concurrency, idle)
                    runs[name][label_of(body, concurrency, engine=False)].append(stats)
    return runs


# --------------------------------------------------------------------------- reporting


def median_of(stats: Sequence[Any], metric: str) -> float | None:
    """The median of ``metric`` over runs of any kind, skipping runs where it is None."""
    values = [getattr(s, metric) for s in stats if getattr(s, metric) is not None]
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def compare(runs: Runs, base: str, other: str, metrics: list[str]) -> dict[str, dict[str, Any]]:
    """Per configuration and metric: both servers' medians and the ratio other/base."""
    result: dict[str, dict[str, Any]] = {}
    for label in runs[base]:
        result[label] = {}
        for metric in metrics:
            b, o = median_of(runs[base][label], metric), median_of(runs[other][label], metric)
            result[label][metric] = {base: b, other: o, f"{other}/{base}": ratio(o, b)}
    return result


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return " | ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "-+-".join("-" * w for w in widths), *(line(r) for r in rows)])


def footnotes(args: argparse.Namespace, runs: Runs) -> list[str]:
    """Errors, token counts, reconnects and foreign CPU load, per server, over all kept runs."""
    lines = []
    for name, by_label in runs.items():
        stats = [s for per_label in by_label.values() for s in per_label]
        others = [s.other_cpu_pct for s in stats if s.other_cpu_pct is not None]
        lines.append(
            f"   {name}: {sum(s.requests for s in stats)} requests, {sum(s.errors for s in stats)} errors, "
            f"{sum(s.wrong_token_counts for s in stats)} wrong token counts, "
            f"{sum(s.reconnects for s in stats)} stale keep-alive reconnects; "
            f"{sum(s.attempt - 1 for s in stats)} runs redone for foreign CPU load; other processes used "
            f"{fmt(statistics.median(others) if others else None, 0)}% median / "
            f"{fmt(max(others, default=None), 0)}% "
            f"max of the CPU during kept runs ({sum(o > args.max_other_cpu for o in others)} above "
            f"{args.max_other_cpu:.0f}%)"
        )
    return lines


def engine_report(args: argparse.Namespace, runs: Runs, summary: dict[str, dict[str, Any]]) -> str:
    headers = [
        "conc",
        "llama.cpp tok/s",
        "aimi tok/s",
        "aimi/llama",
        "TTFT p50 llama",
        "aimi",
        "aimi/llama",
        "TTFT p99 llama",
        "aimi",
        "aimi/llama",
    ]
    key = f"{AIMI}/{LLAMACPP}"
    rows = []
    for label, row in summary.items():
        tps, p50, p99 = row["tokens_per_s"], row["ttft_p50_ms"], row["ttft_p99_ms"]
        rows.append(
            [
                label,
                fmt(tps[LLAMACPP]),
                fmt(tps[AIMI]),
                fmt(tps[key], 3),
                fmt(p50[LLAMACPP]),
                fmt(p50[AIMI]),
                fmt(p50[key], 2),
                fmt(p99[LLAMACPP]),
                fmt(p99[AIMI]),
                fmt(p99[key], 2),
            ]
        )
    spread = "; ".join(f"c={c} llama.cpp {_spread(runs[LLAMACPP][c])}, aimi {_spread(runs[AIMI][c])}" for c in summary)
    return "\n".join(
        [
            f"A. aimi vs llama.cpp's server: {Path(args.model).name}, {args.slots} slots, "
            f"{args.threads} threads, "
            f"{args.context_size} context/slot; streaming, {args.max_tokens} tokens/answer (ignore_eos), "
            f"{args.requests} requests/run; medians of {args.repetitions} run(s); TTFT in ms",
            table(headers, rows),
            f"   tok/s min-max over runs: {spread}",
            *footnotes(args, runs),
        ]
    )


def _spread(stats: list[RunStats]) -> str:
    values = [s.tokens_per_s for s in stats]
    return f"{min(values):.0f}-{max(values):.0f}"


def overhead_report(args: argparse.Namespace, runs: Runs, summary: dict[str, dict[str, Any]]) -> str:
    headers = [
        "mode conc",
        "bare req/s",
        "aimi req/s",
        "aimi/bare",
        "p50 bare",
        "aimi",
        "aimi/bare",
        "p99 bare",
        "aimi",
        "aimi/bare",
        "aimi-bare p50",
        "CPU/req bare",
        "aimi",
        "aimi/bare",
    ]
    key = f"{AIMI_FAKE}/{BARE}"
    rows = []
    for label, row in summary.items():
        rps, p50, p99 = row["requests_per_s"], row["latency_p50_ms"], row["latency_p99_ms"]
        cpu = row["server_cpu_ms_per_request"]
        delta = None if p50[AIMI_FAKE] is None or p50[BARE] is None else p50[AIMI_FAKE] - p50[BARE]
        rows.append(
            [
                label,
                fmt(rps[BARE]),
                fmt(rps[AIMI_FAKE]),
                fmt(rps[key], 3),
                fmt(p50[BARE], 2),
                fmt(p50[AIMI_FAKE], 2),
                fmt(p50[key], 2),
                fmt(p99[BARE], 2),
                fmt(p99[AIMI_FAKE], 2),
                fmt(p99[key], 2),
                fmt(delta, 2),
                fmt(cpu[BARE], 2),
                fmt(cpu[AIMI_FAKE], 2),
                fmt(cpu[key], 2),
            ]
        )
    return "\n".join(
        [
            f"B. aimi's own overhead: aimi on the fake engine (engine ~0 ms: aimi's latency is the latency "
            f"aimi adds) vs a bare Starlette+uvicorn app sending the same bytes; "
            f"{args.fake_requests} requests/run; "
            f"medians of {args.repetitions} run(s); latency in ms, client-side, to the end of the answer; "
            f"CPU/req: server process CPU ms per request",
            table(headers, rows),
            *footnotes(args, runs),
        ]
    )


# --------------------------------------------------------------------------- CLI


def default_model() -> str:
    """The catalog's default model file (fetched into aimi's model cache on first use)."""
    from aimi.deployments.sources import resolve
    from aimi.settings import Settings

    return str(resolve("smollm2-135m-instruct", Settings().cache_dir).path)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def new_parser(doc: str | None, quick: dict[str, Any]) -> argparse.ArgumentParser:
    """A benchmark's command line: its module docstring as the help, and ``--quick``."""
    lines = (doc or "").splitlines()
    parser = argparse.ArgumentParser(
        description=lines[0], epilog="\n".join(lines[1:]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a fast smoke run: {quick}")
    return parser


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    quiet_wait: float | str,
    retries: int | str,
    json_help: str = "also write every run, the medians and ratios here",
    log_help: str = "server logs",
) -> None:
    """How runs wait for a quiet machine (``--max-other-cpu``, ``--quiet-wait``, ``--retries``) and
    where they write (``--json``, ``--log-dir``). A default given as text is set by the QUICK/FULL
    settings; the text says what it is (e.g. "30; quick 5")."""

    def default(value: float | str) -> float | None:
        return None if isinstance(value, str) else value

    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=10.0,
        help="foreign load limit, %% of the machine: runs wait until other processes use less, and are "
        "redone if they used more (default 10)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=default(quiet_wait),
        help=f"longest wait for a quiet machine before a run, s (default {quiet_wait}; 0: none)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=default(retries),
        help=f"times a run is redone when other processes were busy (default {retries})",
    )
    parser.add_argument("--json", type=Path, help=json_help)
    parser.add_argument("--log-dir", type=Path, help=f"{log_help} (default: a new temporary directory)")


def parsed(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: dict[str, Any], full: dict[str, Any]
) -> argparse.Namespace:
    """The arguments, with what was not given taken from the quick or the full settings."""
    args = parser.parse_args(argv)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def package_versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import version

    return {package: version(package) for package in packages}


def run_metadata(args: argparse.Namespace, versions: dict[str, str | None], **extra: Any) -> dict[str, Any]:
    """What a results file says of the run: the command, its settings, the machine, the versions."""
    return {
        "command": [sys.executable, *sys.argv],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **extra,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = new_parser(__doc__, QUICK)

    def default(key: str) -> str:
        value = FULL[key]
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    parser.add_argument(
        "-r", "--repetitions", type=int, help=f"runs of each configuration (default {default('repetitions')})"
    )
    parser.add_argument("-n", "--requests", type=int, help=f"A: timed requests per run (default {default('requests')})")
    parser.add_argument(
        "-c", "--concurrency", type=_ints, help=f"A: comma-separated concurrencies (default {default('concurrency')})"
    )
    parser.add_argument("--max-tokens", type=int, help=f"tokens per answer (default {default('max_tokens')})")
    parser.add_argument(
        "--fake-requests", type=int, help=f"B: timed requests per run (default {default('fake_requests')})"
    )
    parser.add_argument(
        "--fake-concurrency",
        type=_ints,
        help=f"B: comma-separated concurrencies (default {default('fake_concurrency')})",
    )
    parser.add_argument("--slots", type=int, default=4, help="A: parallel slots of both servers (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="A: CPU threads of both servers (default 2)")
    parser.add_argument("--context-size", type=int, default=2048, help="A: context per slot (default 2048)")
    parser.add_argument("--model", help="A: GGUF file (default: the smollm2-135m-instruct catalog model)")
    parser.add_argument("--aimi", default=str(Path(sys.executable).with_name("aimi")), help="aimi executable")
    parser.add_argument("--only", choices=["engine", "overhead"], help="run only part A or only part B")
    add_run_options(parser, quiet_wait=30.0, retries=2)
    return parsed(parser, argv, QUICK, FULL)


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    versions = package_versions("aimi", "xllamacpp", "httpx", "starlette", "uvicorn")
    return run_metadata(args, dict(versions), prompt=PROMPT)


def _runs_json(runs: Runs) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {
        name: {label: [asdict(s) for s in stats] for label, stats in by_label.items()}
        for name, by_label in runs.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.model = args.model or default_model()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-serving-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    progress(f"model {args.model}; server logs in {log_dir}")
    result: dict[str, Any] = {"meta": metadata(args)}
    started = time.perf_counter()
    reports = []
    if args.only in (None, "engine"):
        runs = run_engine_part(args, log_dir)
        summary = compare(
            runs,
            LLAMACPP,
            AIMI,
            ["tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms", "latency_p99_ms", "server_cpu_s"],
        )
        result["engine"] = {"medians": summary, "runs": _runs_json(runs)}
        reports.append(engine_report(args, runs, summary))
    if args.only in (None, "overhead"):
        runs = run_overhead_part(args, log_dir)
        summary = compare(
            runs,
            BARE,
            AIMI_FAKE,
            [
                "requests_per_s",
                "latency_p50_ms",
                "latency_p99_ms",
                "ttft_p50_ms",
                "ttft_p99_ms",
                "server_cpu_ms_per_request",
            ],
        )
        result["overhead"] = {"medians": summary, "runs": _runs_json(runs)}
        reports.append(overhead_report(args, runs, summary))
    result["meta"]["duration_s"] = time.perf_counter() - started
    print("\n" + "\n\n".join(reports) + f"\n\n(total {result['meta']['duration_s']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
