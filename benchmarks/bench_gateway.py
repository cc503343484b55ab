"""Gateway benchmark: aimi's upstream engine in front of a canned OpenAI-compatible server, vs
LiteLLM's proxy in front of the same server, vs the server alone.

Three targets, measured one at a time with ``wrk`` (HTTP/1.1 keep-alive, closed loop):

- direct:  the fake upstream itself (benchmarks/fake_upstream.py): the baseline for latency;
- aimi:    ``aimi serve --config`` with one deployment ``engine = "upstream"`` pointing at it, on
           the normal path: key auth (a key file), in-process quota admission with limits that
           never refuse, the usage ledger (SQLite in a temporary AIMI_HOME), metrics;
- litellm: LiteLLM's proxy (one worker, master-key auth, no database) with model ``chat`` routed
           to the fake upstream through its ``openai/`` provider. It is installed into its own
           virtual environment on first use (``--litellm-venv``), or taken from ``--litellm PATH``.

The server under test is pinned to ``--server-cpu`` (default core 0), the fake upstream and wrk
to ``--client-cpu`` (default core 1), with ``taskset``. Each run is an untimed wrk warm-up, then
a timed wrk run of ``--duration`` seconds at each concurrency (one connection per concurrent
request); non-streamed and streamed (``"stream": true``: wrk times the whole stream) chat
requests. Requests/s, latency p50/p99 from wrk's own histogram (exact, via benchmarks/wrk_post.lua),
the server process's CPU per request, and the ratios of the gateway goals. Every configuration
runs ``--repetitions`` times (servers restarted each time, targets in rotated order); the tables
show medians. As in bench_serving.py, a run first waits for other processes to go quiet and is
redone if they used much CPU while it ran.

    .venv/bin/python benchmarks/bench_gateway.py                    # full run (~15 min on 2 cores)
    .venv/bin/python benchmarks/bench_gateway.py --quick            # smoke run (~4-5 min)
    .venv/bin/python benchmarks/bench_gateway.py --only aimi,direct # without LiteLLM
    .venv/bin/python benchmarks/bench_gateway.py --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_serving import (
    CHAT_PATH,
    HEALTH_TIMEOUT_S,
    PROMPT,
    CpuMeter,
    Target,
    _log_tail,
    add_run_options,
    fmt,
    free_port,
    median_of,
    new_parser,
    package_versions,
    parsed,
    progress,
    ratio,
    run_metadata,
    stop,
    table,
    wait_for_quiet,
    wait_healthy,
)

HERE = Path(__file__).resolve().parent
DIRECT, AIMI, LITELLM = "direct", "aimi", "litellm"
TARGETS = [DIRECT, AIMI, LITELLM]
MODES = ["whole", "stream"]
DEPLOYMENT = "chat"
API_KEY = "bench-gateway-key-0123456789"
LITELLM_KEY = "sk-bench-gateway-0123456789"  # LiteLLM wants its master key to start with sk-
LITELLM_SPEC = "litellm[proxy]==1.108.*"
DEFAULT_VENV = Path.home() / ".cache" / "aimi-bench" / "litellm-venv"
HIGH_RPM = 1_000_000_000  # never reached: nothing is refused, but every request is admitted
HIGH_TPM = 1_000_000_000_000
WRK_TIMEOUT = "10s"
# The goals of the gateway work: at concurrency 16 aimi serves >= 10x LiteLLM's requests/s and
# >= 700 req/s on one core; at 1 it adds <= 1 ms p50 over the upstream alone; at 64 it keeps
# >= 0.9x of its throughput at 16.
GOAL_VS_LITELLM, GOAL_RPS, GOAL_ADDED_P50_MS, GOAL_KEPT = 10.0, 700.0, 1.0, 0.9

FULL: dict[str, Any] = {
    "repetitions": 3,
    "duration": 10,
    "warmup": 2,
    "concurrency": [1, 16, 64],
    "quiet_wait": 30.0,
    "retries": 2,
}
QUICK: dict[str, Any] = {
    "repetitions": 1,
    "duration": 5,
    "warmup": 1,
    "concurrency": [1, 16, 64],
    "quiet_wait": 5.0,
    "retries": 0,
}


# --------------------------------------------------------------------------- results


@dataclass
class WrkRun:
    """One timed wrk run against one target."""

    target: str
    mode: str
    concurrency: int
    requests: int
    duration_s: float
    requests_per_s: float  # answers without error per second
    latency_p50_ms: float | None  # None: no answer completed within the run
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    errors: int  # connect, read, write, timeout, and answers with a status >= 400
    status_errors: int
    server_cpu_s: float | None  # CPU time of the server under test during the run (10 ms ticks)
    server_cpu_ms_per_request: float | None
    upstream_cpu_ms_per_request: float | None  # the fake upstream's (for direct: the same as server)
    other_cpu_pct: float | None  # CPU of processes other than ours, % of the machine's capacity
    attempt: int = 1
    waited_s: float = 0.0


def chat_body(stream: bool, max_tokens: int) -> dict[str, Any]:
    """The request of every run; ``model`` names the deployment (aimi) and the model (LiteLLM)."""
    body: dict[str, Any] = {
        "model": DEPLOYMENT,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# --------------------------------------------------------------------------- processes


def pinned(cpu: str, command: list[str]) -> list[str]:
    """``command`` under ``taskset -c cpu`` (taskset execs it: the pid stays the server's)."""
    return ["taskset", "-c", cpu, *command] if cpu else command


def clean_env(**more: str) -> dict[str, str]:
    """Our environment without AIMI_* and LITELLM_* settings, plus ``more``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIMI_", "LITELLM_"))}
    env.update(more)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Poll GET ``url`` until it answers 200 (for servers whose health route is not /health)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited ({process.returncode}); {log_path}:\n{_log_tail(log_path)}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{url} not 200 within {timeout_s:.0f}s; {log_path}:\n{_log_tail(log_path)}")


@contextlib.contextmanager
def run_server(
    name: str, command: list[str], env: dict[str, str], port: int, log_dir: Path, ready_path: str = "/health"
) -> Iterator[Target]:
    """Run ``command`` (a server on ``port``) for the block; yields it once ``ready_path`` is 200."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        if ready_path == "/health":
            wait_healthy(url, process, log_path, HEALTH_TIMEOUT_S)
        else:
            wait_ready(url + ready_path, process, log_path, HEALTH_TIMEOUT_S)
        progress(f"  {name} ready on :{port} in {time.perf_counter() - started:.1f}s")
        yield Target(name, url, process.pid)
    finally:
        stop(process)


def upstream_command(args: argparse.Namespace, port: int) -> list[str]:
    return pinned(args.client_cpu, [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(port)])


def aimi_config(upstream: Target) -> str:
    """The deployments file: one upstream deployment, quotas on with limits that never refuse."""
    return f"""\
[[deployments]]
name = "{DEPLOYMENT}"
engine = "upstream"

[deployments.engine_options]
url = "{upstream.url}/v1"
model = "fake-model"

[deployments.quota]
requests_per_minute = {HIGH_RPM}
tokens_per_minute = {HIGH_TPM}
"""


@contextlib.contextmanager
def aimi_server(args: argparse.Namespace, upstream: Target, work: Path, ledger: list[int]) -> Iterator[Target]:
    """aimi for the block; then the rows its usage ledger holds are appended to ``ledger`` (every
    request, warm-ups and checks included, leaves one: the ledger was on)."""
    home = Path(tempfile.mkdtemp(prefix="aimi-home-", dir=work))
    config = home / "aimi.toml"
    config.write_text(aimi_config(upstream))
    keys = home / "keys"
    keys.write_text(API_KEY + "\n")
    port = free_port()
    command = [args.aimi, "serve", "--config", str(config), "--port", str(port), "--api-key-file", str(keys)]
    env = clean_env(AIMI_HOME=str(home), AIMI_QUOTA_BACKEND="memory")
    with run_server(AIMI, pinned(args.server_cpu, command), env, port, work) as target:
        health = httpx.get(f"{target.url}/health", headers={"api-key": API_KEY}, timeout=5).json()
        if health.get("quota", {}).get("backend") != "memory":
            raise RuntimeError(f"aimi's quota backend is not the in-process one: {health}")
        yield target
    with contextlib.closing(sqlite3.connect(home / "usage.db")) as db:
        records = int(db.execute("SELECT count(*) FROM usage_records").fetchone()[0])
    progress(f"  aimi's usage ledger holds {records} records")
    ledger.append(records)


def litellm_config(upstream: Target) -> str:
    return f"""\
model_list:
  - model_name: {DEPLOYMENT}
    litellm_params:
      model: openai/fake-model
      api_base: {upstream.url}/v1
      api_key: none
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
litellm_settings:
  telemetry: false
"""


def litellm_server(args: argparse.Namespace, upstream: Target, work: Path) -> contextlib.AbstractContextManager[Target]:
    config = work / "litellm.yaml"
    config.write_text(litellm_config(upstream))
    port = free_port()
    command = [
        str(args.litellm_bin),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = clean_env(
        LITELLM_MASTER_KEY=LITELLM_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no download of the price list at start
        LITELLM_LOG="ERROR",
    )
    env.pop("DATABASE_URL", None)
    return run_server(LITELLM, pinned(args.server_cpu, command), env, port, work, "/health/liveliness")


def litellm_executable(args: argparse.Namespace) -> Path:
    """``--litellm`` (an executable or a virtual environment), else the benchmark's own venv,
    created and filled with ``LITELLM_SPEC`` on first use."""
    if args.litellm:
        path = Path(args.litellm).expanduser()
        binary = path / "bin" / "litellm" if path.is_dir() else path
        if not binary.exists():
            raise SystemExit(f"--litellm {args.litellm}: no litellm executable at {binary}")
        return binary
    venv = Path(args.litellm_venv).expanduser()
    binary = venv / "bin" / "litellm"
    if binary.exists():
        return binary
    progress(f"installing {LITELLM_SPEC} into {venv} (first use only; a few minutes) ...")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LITELLM_SPEC],
        check=True,
    )
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from importlib.metadata import version; print(version('litellm'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    progress(f"installed litellm {version} in {time.perf_counter() - started:.0f}s")
    return binary


def litellm_version(binary: Path) -> str | None:
    python = binary.with_name("python")
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('litellm'))"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() or None


# --------------------------------------------------------------------------- load


def key_of(target: str) -> str | None:
    return {AIMI: API_KEY, LITELLM: LITELLM_KEY}.get(target)


def check_answer(target: Target, key: str | None, body: dict[str, Any]) -> None:
    """One request outside the timed runs: the target answers 200 with the canned text, and a
    stream ends with ``data: [DONE]``, so a fast run of errors cannot pass for a result."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{target.url}{CHAT_PATH}", json=body, headers=headers, timeout=30)
    text = response.text
    if response.status_code != 200:
        raise RuntimeError(f"{target.name}: HTTP {response.status_code}: {text[:300]}")
    if body["stream"]:
        events = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        content = "".join(
            (choice.get("delta") or {}).get("content") or ""
            for event in events[:-1]
            for choice in json.loads(event).get("choices") or []
        )
        if not events or events[-1] != "[DONE]":
            raise RuntimeError(f"{target.name}: the stream does not end with [DONE]: {text[-300:]}")
    else:
        content = response.json()["choices"][0]["message"]["content"]
    if not content.startswith("word0 ") or "word11" not in content:
        raise RuntimeError(f"{target.name}: unexpected answer {content!r}")


def wrk(
    args: argparse.Namespace, target: Target, body_file: Path, concurrency: int, seconds: int
) -> subprocess.Popen[str]:
    key = key_of(target.name)
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_PATH": CHAT_PATH, "BENCH_API_KEY": key or ""}
    command = [
        "wrk",
        "-t",
        str(min(args.wrk_threads, concurrency)),
        "-c",
        str(concurrency),
        "-d",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(HERE / "wrk_post.lua"),
        target.url,
    ]
    return subprocess.Popen(
        pinned(args.client_cpu, command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


def wrk_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = process.communicate()
    for line in reversed(output.splitlines()):
        if line.startswith('{"bench_gateway"'):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"wrk exited ({process.returncode}) without a result:\n{output[-2000:]}")


def measure(
    args: argparse.Namespace, target: Target, upstream: Target, mode: str, body_file: Path, concurrency: int
) -> WrkRun:
    """An untimed warm-up, then one timed wrk run, with the CPU of the server and the upstream."""
    if args.warmup > 0:
        wrk_result(wrk(args, target, body_file, concurrency, args.warmup))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = wrk(args, target, body_file, concurrency, args.duration)
    upstream_meter = CpuMeter(upstream.pid, [])
    meter = CpuMeter(target.pid, sorted({upstream.pid, os.getpid()} - {target.pid}))
    result = wrk_result(process)
    server_cpu, other = meter.read()
    upstream_cpu = upstream_meter.read()[0]
    # wrk has exited (and been reaped) by now: its CPU is in our children's usage, not in /proc.
    wall = time.perf_counter() - meter.started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    if other is not None:
        other = max(0.0, other - wrk_cpu / (wall * (os.cpu_count() or 1)) * 100)
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    requests = int(result["requests"])
    seconds = result["duration_us"] / 1e6

    def ms(key: str) -> float | None:
        return result[key] / 1000 if requests else None

    return WrkRun(
        target=target.name,
        mode=mode,
        concurrency=concurrency,
        requests=requests,
        duration_s=seconds,
        requests_per_s=(requests - result["status_errors"]) / seconds,
        latency_p50_ms=ms("p50_us"),
        latency_p90_ms=ms("p90_us"),
        latency_p99_ms=ms("p99_us"),
        latency_max_ms=ms("max_us"),
        errors=errors,
        status_errors=result["status_errors"],
        server_cpu_s=server_cpu,
        server_cpu_ms_per_request=None if server_cpu is None or not requests else server_cpu * 1000 / requests,
        upstream_cpu_ms_per_request=None if upstream_cpu is None or not requests else upstream_cpu * 1000 / requests,
        other_cpu_pct=other,
    )


def run_one(
    args: argparse.Namespace, target: Target, upstream: Target, mode: str, body_file: Path, concurrency: int
) -> WrkRun:
    """One measured run after waiting for a quiet machine; redone (up to ``--retries`` times) if
    other processes used more than ``--max-other-cpu`` percent of the machine while it ran."""
    ours = sorted({target.pid, upstream.pid})
    for attempt in range(1, args.retries + 2):
        waited = wait_for_quiet(ours, args.quiet_wait, args.max_other_cpu)
        run = measure(args, target, upstream, mode, body_file, concurrency)
        run.attempt, run.waited_s = attempt, waited
        notes = [f"{run.errors} ERRORS ({run.status_errors} HTTP >= 400)"] if run.errors else []
        notes += [] if run.requests else ["NO ANSWER completed within the run"]
        notes += [f"waited {waited:.0f}s for quiet"] if waited >= 3 else []
        progress(
            f"    {target.name:8} {mode:6} c={concurrency:<3} {run.requests_per_s:8.1f} req/s"
            f"  p50 {fmt(run.latency_p50_ms, 2):>7} ms  p99 {fmt(run.latency_p99_ms, 2):>7} ms"
            f"  CPU/req {fmt(run.server_cpu_ms_per_request, 3)} ms  others {fmt(run.other_cpu_pct, 0)}%"
            f"  {', '.join(notes)}"
        )
        if run.other_cpu_pct is None or run.other_cpu_pct <= args.max_other_cpu:
            break
        if attempt <= args.retries:
            progress(f"      other processes used {run.other_cpu_pct:.0f}% of the CPU: again")
    return run


Runs = dict[str, dict[str, list[WrkRun]]]  # target -> "mode c=N" -> one run per repetition


def label(mode: str, concurrency: int) -> str:
    return f"{mode} c={concurrency}"


@contextlib.contextmanager
def target_server(
    args: argparse.Namespace, name: str, upstream: Target, work: Path, ledger: list[int]
) -> Iterator[Target]:
    if name == DIRECT:
        yield dataclasses.replace(upstream, name=DIRECT)
    elif name == AIMI:
        with aimi_server(args, upstream, work, ledger) as target:
            yield target
    else:
        with litellm_server(args, upstream, work) as target:
            yield target


def run_all(args: argparse.Namespace, work: Path, ledger: list[int]) -> Runs:
    """Every repetition: each target in turn (order rotated per repetition), every mode and
    concurrency; aimi and LiteLLM restarted each repetition, never both up at once."""
    bodies = {}
    for mode in args.modes:
        bodies[mode] = work / f"body-{mode}.json"
        bodies[mode].write_text(json.dumps(chat_body(mode == "stream", args.max_tokens)))
    runs: Runs = {name: {label(m, c): [] for m in args.modes for c in args.concurrency} for name in args.only}
    port = free_port()
    env = clean_env()
    with run_server("fake-upstream", upstream_command(args, port), env, port, work) as upstream:
        for repetition in range(args.repetitions):
            shift = repetition % len(args.only)
            for name in args.only[shift:] + args.only[:shift]:
                progress(f"repetition {repetition + 1}/{args.repetitions}: {name}")
                with target_server(args, name, upstream, work, ledger) as target:
                    for mode in args.modes:
                        check_answer(target, key_of(name), chat_body(mode == "stream", args.max_tokens))
                        for concurrency in args.concurrency:
                            run = run_one(args, target, upstream, mode, bodies[mode], concurrency)
                            runs[name][label(mode, concurrency)].append(run)
    return runs


# --------------------------------------------------------------------------- report


def medians(runs: Runs) -> dict[str, dict[str, dict[str, float | None]]]:
    metrics = [
        "requests_per_s",
        "latency_p50_ms",
        "latency_p99_ms",
        "server_cpu_ms_per_request",
        "upstream_cpu_ms_per_request",
        "other_cpu_pct",
    ]
    return {
        name: {key: {m: median_of(stats, m) for m in metrics} for key, stats in by_label.items()}
        for name, by_label in runs.items()
    }


def _get(summary: dict[str, Any], name: str, mode: str, concurrency: int, metric: str) -> float | None:
    value: float | None = summary.get(name, {}).get(label(mode, concurrency), {}).get(metric)
    return value


def goals(summary: dict[str, Any], mode: str) -> dict[str, float | None]:
    """The figures the gateway goals are stated in, for one mode."""
    aimi_16 = _get(summary, AIMI, mode, 16, "requests_per_s")
    aimi_p50 = _get(summary, AIMI, mode, 1, "latency_p50_ms")
    direct_p50 = _get(summary, DIRECT, mode, 1, "latency_p50_ms")
    return {
        "aimi_rps_c16": aimi_16,
        "aimi_over_litellm_rps_c16": ratio(aimi_16, _get(summary, LITELLM, mode, 16, "requests_per_s")),
        "aimi_minus_direct_p50_ms_c1": None if aimi_p50 is None or direct_p50 is None else aimi_p50 - direct_p50,
        "aimi_rps_c64_over_c16": ratio(_get(summary, AIMI, mode, 64, "requests_per_s"), aimi_16),
        "litellm_rps_c64_over_c16": ratio(
            _get(summary, LITELLM, mode, 64, "requests_per_s"), _get(summary, LITELLM, mode, 16, "requests_per_s")
        ),
    }


def _verdict(value: float | None, goal: float, at_least: bool) -> str:
    if value is None:
        return "-"
    return "met" if (value >= goal if at_least else value <= goal) else "NOT met"


def mode_report(args: argparse.Namespace, runs: Runs, summary: dict[str, Any], mode: str) -> str:
    headers = ["target", "conc", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "upstream CPU ms/req", "errors"]
    rows = []
    for name in args.only:
        for concurrency in args.concurrency:
            key = label(mode, concurrency)
            row = summary[name][key]
            errors = sum(r.errors for r in runs[name][key])
            empty = sum(1 for r in runs[name][key] if not r.requests)
            rows.append(
                [
                    name,
                    str(concurrency),
                    fmt(row["requests_per_s"]),
                    fmt(row["latency_p50_ms"], 2),
                    fmt(row["latency_p99_ms"], 2),
                    fmt(row["server_cpu_ms_per_request"], 3) if name != DIRECT else "-",
                    fmt(row["upstream_cpu_ms_per_request"], 3),
                    (f"{errors} !" if errors else "0") + (f" ({empty} empty run(s)!)" if empty else ""),
                ]
            )
    g = goals(summary, mode)
    times = "-" if g["aimi_over_litellm_rps_c16"] is None else f"{g['aimi_over_litellm_rps_c16']:.2f}x"
    lines = [
        f"{mode}: {'streamed (wrk times the whole stream)' if mode == 'stream' else 'non-streamed'} chat "
        f"completions; {args.duration:g} s per run after {args.warmup:g} s of warm-up; medians of "
        f"{args.repetitions} run(s)",
        table(headers, rows),
        f"   aimi req/s at 16:                 {fmt(g['aimi_rps_c16'])}  (goal >= {GOAL_RPS:.0f}: "
        f"{_verdict(g['aimi_rps_c16'], GOAL_RPS, True)})",
        f"   aimi / litellm req/s at 16:       {times}  (goal >= "
        f"{GOAL_VS_LITELLM:.0f}x: {_verdict(g['aimi_over_litellm_rps_c16'], GOAL_VS_LITELLM, True)})",
        f"   aimi p50 - direct p50 at 1:       {fmt(g['aimi_minus_direct_p50_ms_c1'], 3)} ms  (goal <= "
        f"{GOAL_ADDED_P50_MS:g} ms: {_verdict(g['aimi_minus_direct_p50_ms_c1'], GOAL_ADDED_P50_MS, False)})",
        f"   aimi req/s at 64 / at 16:         {fmt(g['aimi_rps_c64_over_c16'], 2)}  (goal >= {GOAL_KEPT:g}: "
        f"{_verdict(g['aimi_rps_c64_over_c16'], GOAL_KEPT, True)})",
        f"   litellm req/s at 64 / at 16:      {fmt(g['litellm_rps_c64_over_c16'], 2)}",
    ]
    return "\n".join(lines)


def footer(runs: Runs, ledger: Sequence[int]) -> list[str]:
    lines = []
    if ledger:
        timed = sum(r.requests for per_label in runs[AIMI].values() for r in per_label)
        lines.append(
            f"   aimi's usage ledger: {', '.join(map(str, ledger))} records after each repetition "
            f"(timed requests in all: {timed}; warm-ups and checks leave records too)"
        )
    for name, by_label in runs.items():
        stats = [s for per_label in by_label.values() for s in per_label]
        others = [s.other_cpu_pct for s in stats if s.other_cpu_pct is not None]
        errors = sum(s.errors for s in stats)
        empty = sum(1 for s in stats if not s.requests)
        flagged = errors or empty
        lines.append(
            f"   {name}: {sum(s.requests for s in stats)} requests, {errors} errors, {empty} runs without "
            f"any completed answer{' (RUNS WITH ERRORS OR NO ANSWER ARE NOT COMPARABLE)' if flagged else ''}; "
            f"{sum(s.attempt - 1 for s in stats)} runs redone for foreign CPU load; other processes used "
            f"{fmt(statistics.median(others) if others else None, 0)}% median / {fmt(max(others, default=None), 0)}% "
            f"max of the CPU during kept runs"
        )
    return lines


# --------------------------------------------------------------------------- CLI


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _names(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return [n for n in choices if n in names]

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = new_parser(__doc__, QUICK)
    parser.add_argument(
        "-r", "--repetitions", type=int, help=f"runs of each configuration (default {FULL['repetitions']})"
    )
    parser.add_argument("-d", "--duration", type=int, help=f"seconds of each timed run (default {FULL['duration']})")
    parser.add_argument(
        "--warmup", type=int, help=f"seconds of untimed load before each run, 0: none (default {FULL['warmup']})"
    )
    parser.add_argument(
        "-c", "--concurrency", type=_ints, help="comma-separated concurrencies (default 1,16,64; the goals use these)"
    )
    parser.add_argument("--only", type=_names(TARGETS), default=TARGETS, help="targets, comma-separated (default all)")
    parser.add_argument("--modes", type=_names(MODES), default=MODES, help="whole, stream or both (default both)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of the request (default 16)")
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list of the server under test (default 0)")
    parser.add_argument(
        "--client-cpu", default="1", help="taskset CPU list of the fake upstream and wrk (default 1; '' for none)"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--aimi", default=str(Path(sys.executable).with_name("aimi")), help="aimi executable")
    parser.add_argument("--litellm", help="an existing litellm executable, or a virtual environment holding one")
    parser.add_argument(
        "--litellm-venv",
        default=str(DEFAULT_VENV),
        help=f"where {LITELLM_SPEC} is installed on first use (default {DEFAULT_VENV})",
    )
    add_run_options(
        parser,
        quiet_wait="30; quick 5",
        retries="2; quick 0",
        json_help="also write every run, the medians and the goal figures here",
        log_help="server logs and state",
    )
    return parsed(parser, argv, QUICK, FULL)


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:2]  # wrk VERSION
    return run_metadata(
        args,
        {
            **package_versions("aimi"),
            "litellm": litellm_version(args.litellm_bin) if LITELLM in args.only else None,
            "wrk": " ".join(wrk_version) or None,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    if (args.server_cpu or args.client_cpu) and shutil.which("taskset") is None:
        raise SystemExit("taskset is not installed (Debian: util-linux); or pass --server-cpu '' --client-cpu ''")
    args.litellm_bin = litellm_executable(args) if LITELLM in args.only else None
    work = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    work.mkdir(parents=True, exist_ok=True)
    progress(
        f"server logs in {work}; server on CPU {args.server_cpu or 'any'}, "
        f"upstream and wrk on {args.client_cpu or 'any'}"
    )
    result: dict[str, Any] = {"meta": metadata(args)}
    started = time.perf_counter()
    ledger: list[int] = []
    runs = run_all(args, work, ledger)
    summary = medians(runs)
    result["meta"]["duration_s"] = time.perf_counter() - started
    result["medians"] = summary
    result["aimi_usage_records"] = ledger
    result["goals"] = {mode: goals(summary, mode) for mode in args.modes}
    result["runs"] = {name: {k: [asdict(r) for r in v] for k, v in by_label.items()} for name, by_label in runs.items()}
    versions = result["meta"]["versions"]
    reports = [mode_report(args, runs, summary, mode) for mode in args.modes]
    print(
        f"\nGateway: aimi {versions['aimi']} (upstream engine; auth, in-process quotas, usage ledger, metrics) "
        f"vs LiteLLM proxy {versions['litellm'] or '-'} (one worker, master key, no DB) vs the fake upstream "
        f"alone (direct); server on CPU {args.server_cpu or 'any'}, upstream and {versions['wrk'] or 'wrk'} on "
        f"CPU {args.client_cpu or 'any'}; latency to the end of the answer\n\n"
        + "\n\n".join(reports)
        + "\n\n"
        + "\n".join(footer(runs, ledger))
        + f"\n\n(total {result['meta']['duration_s']:.0f} s)",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
