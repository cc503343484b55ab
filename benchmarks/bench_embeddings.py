"""Embeddings throughput: all-MiniLM-L6-v2 served by aimi vs the same model called directly.

aimi (``aimi serve --model all-minilm-l6-v2``, sentence-transformers engine, ``--threads``) answers
``POST /v1/embeddings`` (``encoding_format: float``) from an httpx client in this process. The
baseline is ``SentenceTransformer(<the same model directory>, device="cpu").encode(batch)`` in this
process, with ``torch.set_num_threads(--threads)``, run while the aimi server is stopped, so the
two never share the CPU. Scenarios:

  (a) batch 1, one client sending requests back to back
  (b) batch 32, one client
  (c) 8 concurrent clients each sending batch-1 requests; aimi gathers concurrent requests into
      one forward pass. Baseline: the direct model encoding single inputs one by one (the same
      work as (a), measured in its own run); the direct batch-8 figure is shown for reference.

Inputs are short varied sentences (~14 words), the same sequence for both sides. Each run is
preceded by an untimed warm-up and lasts ``--seconds`` (or sends ``--requests`` requests / encode
calls). Every repetition restarts the server; aimi and direct alternate in ABBA order. Reported:
medians over ``--repetitions`` of embeddings/s (inputs per second), request latency p50/p99, CPU
per embedding, and aimi/direct ratios.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embeddings.py              # ~2.5 min on an idle 2-core machine
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embeddings.py --quick      # ~1 min
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embeddings.py --json results.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is a local directory: never touch the hub

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_serving import (
    API_KEY,
    CpuMeter,
    add_run_options,
    fmt,
    free_port,
    median_of,
    new_parser,
    package_versions,
    parsed,
    percentile,
    progress,
    ratio,
    run_metadata,
    serve,
    table,
    wait_for_quiet,
)

MODEL = "all-minilm-l6-v2"
EMBEDDINGS_PATH = "/v1/embeddings"
DIMENSIONS = 384
AIMI, DIRECT = "aimi", "direct"

# Scenario -> (inputs per request, concurrent clients). "c8" is direct-only (reference for c).
AIMI_SCENARIOS: dict[str, tuple[int, int]] = {"a": (1, 1), "b": (32, 1), "c": (1, 8)}
DIRECT_SCENARIOS: dict[str, tuple[int, int]] = {"a": (1, 1), "b": (32, 1), "c": (1, 1), "c8": (8, 1)}
LABELS = {
    "a": "(a) batch 1, 1 client",
    "b": "(b) batch 32, 1 client",
    "c": "(c) batch 1, 8 clients",
    "c8": "(c) vs direct batch 8 (ref)",
}
DIRECT_LABELS = {**LABELS, "c": "(c) baseline: 1 by 1", "c8": "batch 8 (ref for c)"}

FULL: dict[str, Any] = {"repetitions": 3, "seconds": 5.0}
QUICK: dict[str, Any] = {"repetitions": 1, "seconds": 2.0}

ADJECTIVES = ["quiet", "bright", "ancient", "curious", "heavy", "gentle", "rapid"]
NOUNS = ["river", "engine", "library", "garden", "signal", "market", "mountain", "letter", "bridge", "forest", "clock"]
VERBS = [
    "changes",
    "follows",
    "crosses",
    "protects",
    "explains",
    "measures",
    "surprises",
    "connects",
    "shapes",
    "reveals",
    "outlasts",
    "welcomes",
    "ignores",
]
PLACES = ["the old harbour", "a busy city", "the northern valley", "every small village", "the research lab"]


def sentence(i: int) -> str:
    """The i-th input: short (~14 words), different for every i."""
    return (
        f"Sentence number {i} about topic {i % 17}: the {ADJECTIVES[i % 7]} {NOUNS[i % 11]} "
        f"{VERBS[i % 13]} {PLACES[i % 5]} today."
    )


class Inputs:
    """Consecutive sentences from ``start``; every run starts at 0, so both sides embed the same."""

    def __init__(self, start: int = 0) -> None:
        self.next = start

    def take(self, n: int) -> list[str]:
        texts = [sentence(i) for i in range(self.next, self.next + n)]
        self.next += n
        return texts


WARMUP_START = 10_000_000  # warm-up inputs never overlap the timed ones


# --------------------------------------------------------------------------- results


@dataclass
class Run:
    """One timed run of one scenario on one side."""

    side: str
    scenario: str
    batch: int
    concurrency: int
    requests: int
    inputs: int  # embeddings received (aimi: from successful answers) or computed (direct)
    errors: int
    wall_s: float
    embeddings_per_s: float
    requests_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    cpu_s: float | None  # CPU of the process doing the work: the aimi server, or this process (direct)
    cpu_ms_per_embedding: float | None
    other_cpu_pct: float | None  # other processes (not the server, not this one), % of the machine
    first_error: str | None
    attempt: int = 1
    waited_s: float = 0.0


def make_run(
    side: str,
    scenario: str,
    batch: int,
    concurrency: int,
    samples: list[tuple[bool, float, int, str | None]],
    wall_s: float,
    cpu: tuple[float | None, float | None],
) -> Run:
    """``samples``: (ok, latency s, embeddings, error) per request."""
    ok = [s for s in samples if s[0]]
    failed = [s for s in samples if not s[0]]
    latencies = [s[1] for s in ok]
    inputs = sum(s[2] for s in ok)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Run(
        side=side,
        scenario=scenario,
        batch=batch,
        concurrency=concurrency,
        requests=len(samples),
        inputs=inputs,
        errors=len(failed),
        wall_s=wall_s,
        embeddings_per_s=inputs / wall_s if wall_s else 0.0,
        requests_per_s=len(ok) / wall_s if wall_s else 0.0,
        latency_p50_ms=None if p50 is None else p50 * 1000,
        latency_p99_ms=None if p99 is None else p99 * 1000,
        cpu_s=cpu[0],
        cpu_ms_per_embedding=None if cpu[0] is None or not inputs else cpu[0] * 1000 / inputs,
        other_cpu_pct=cpu[1],
        first_error=failed[0][3] if failed else None,
    )


class Budget:
    """When a run stops: after ``seconds`` of wall time, or after ``requests`` requests."""

    def __init__(self, seconds: float | None, requests: int | None) -> None:
        self.seconds, self.requests = seconds, requests
        self.deadline = math.inf
        self.sent = 0

    def start(self) -> None:
        if self.seconds is not None:
            self.deadline = time.perf_counter() + self.seconds

    def claim(self) -> bool:
        """True if one more request may start now (and counts it)."""
        if self.requests is not None and self.sent >= self.requests:
            return False
        if time.perf_counter() >= self.deadline:
            return False
        self.sent += 1
        return True


# --------------------------------------------------------------------------- aimi side


async def send(client: httpx.AsyncClient, texts: list[str]) -> tuple[bool, float, int, str | None]:
    """One /v1/embeddings request; the answer must hold one 384-float vector per input."""
    body = {"input": texts, "model": MODEL, "encoding_format": "float"}
    start = time.perf_counter()
    try:
        response = await client.post(EMBEDDINGS_PATH, json=body)
        payload = response.json() if response.status_code == 200 else None
        latency = time.perf_counter() - start
        if payload is None:
            return False, latency, 0, f"HTTP {response.status_code}: {response.text[:300]}"
        data = payload["data"]
        if len(data) != len(texts) or any(len(item["embedding"]) != DIMENSIONS for item in data):
            return False, latency, 0, f"wrong answer shape: {len(data)} vectors for {len(texts)} inputs"
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return False, time.perf_counter() - start, 0, repr(exc)
    return True, latency, len(texts), None


async def aimi_run(
    url: str, server_pid: int, scenario: str, batch: int, concurrency: int, budget: Budget, warmup: int
) -> Run:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120.0) as client:
        warm = Inputs(WARMUP_START)

        async def warm_worker() -> None:  # also opens one connection per client
            for _ in range(warmup):
                await send(client, warm.take(batch))

        await asyncio.gather(*(warm_worker() for _ in range(concurrency)))
        inputs = Inputs()
        samples: list[tuple[bool, float, int, str | None]] = []

        async def worker() -> None:
            while budget.claim():
                samples.append(await send(client, inputs.take(batch)))

        meter = CpuMeter(server_pid, [os.getpid()])
        budget.start()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        cpu = meter.read()
    return make_run(AIMI, scenario, batch, concurrency, samples, wall, cpu)


async def aimi_vectors(url: str, texts: list[str]) -> list[list[float]]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120.0) as client:
        response = await client.post(EMBEDDINGS_PATH, json={"input": texts, "model": MODEL, "encoding_format": "float"})
        response.raise_for_status()
        return [item["embedding"] for item in sorted(response.json()["data"], key=lambda d: d["index"])]


# --------------------------------------------------------------------------- direct side


def direct_run(model: Any, scenario: str, batch: int, budget: Budget, warmup: int) -> Run:
    """``model.encode(batch)`` back to back in this process."""
    warm = Inputs(WARMUP_START)
    for _ in range(warmup):
        model.encode(warm.take(batch))
    inputs = Inputs()
    samples: list[tuple[bool, float, int, str | None]] = []
    meter = CpuMeter(os.getpid(), [])
    budget.start()
    start = time.perf_counter()
    while budget.claim():
        texts = inputs.take(batch)
        t0 = time.perf_counter()
        vectors = model.encode(texts)
        samples.append((len(vectors) == len(texts), time.perf_counter() - t0, len(texts), None))
    wall = time.perf_counter() - start
    return make_run(DIRECT, scenario, batch, 1, samples, wall, meter.read())


def load_direct(path: str, threads: int) -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    return SentenceTransformer(path, device="cpu", local_files_only=True)


# --------------------------------------------------------------------------- orchestration


def with_retries(args: argparse.Namespace, own_pids: Sequence[int], measure: Callable[[], Run]) -> Run:
    """Wait for a quiet machine, measure; measure again (up to ``--retries`` times) if other
    processes used more than ``--max-other-cpu`` % of the machine meanwhile."""
    for attempt in range(1, args.retries + 2):
        patient = time.perf_counter() < args.patient_until  # past --budget: no more waiting or redoing
        waited = wait_for_quiet(own_pids, args.quiet_wait if patient else 0, args.max_other_cpu, quiet_for_s=1.0)
        run = measure()
        run.attempt, run.waited_s = attempt, waited
        notes = f"  {run.errors} errors, first: {run.first_error}" if run.errors else ""
        label = (DIRECT_LABELS if run.side == DIRECT else LABELS)[run.scenario]
        progress(
            f"    {run.side:6} {label:28} {run.embeddings_per_s:8.1f} emb/s  "
            f"p50 {fmt(run.latency_p50_ms, 2):>7} ms  p99 {fmt(run.latency_p99_ms, 2):>7} ms  "
            f"{run.requests} req  CPU/emb {fmt(run.cpu_ms_per_embedding, 2)} ms  "
            f"others {fmt(run.other_cpu_pct, 0)}%{notes}"
        )
        if run.other_cpu_pct is None or run.other_cpu_pct <= args.max_other_cpu:
            break
        if attempt > args.retries:
            break
        if time.perf_counter() >= args.patient_until:
            progress(f"      other processes used {run.other_cpu_pct:.0f}% of the CPU; past --budget: kept")
            break
        progress(f"      other processes used {run.other_cpu_pct:.0f}% of the CPU: again")
    return run


Runs = dict[str, dict[str, list[Run]]]  # side -> scenario -> one Run per repetition


def run_aimi_phase(args: argparse.Namespace, runs: Runs, log_dir: Path, check: dict[str, Any]) -> None:
    port = free_port()
    command = [
        args.aimi,
        "serve",
        "--model",
        MODEL,
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--threads",
        str(args.threads),
    ]
    with serve(AIMI, command, port, log_dir) as target:  # terminates the server however we leave
        if "aimi" not in check:
            check["aimi"] = asyncio.run(aimi_vectors(target.url, check["texts"]))
        for scenario, (batch, concurrency) in AIMI_SCENARIOS.items():
            warmup = 2 if batch > 1 else 5

            def measure(s: str = scenario, b: int = batch, c: int = concurrency, w: int = warmup) -> Run:
                return asyncio.run(aimi_run(target.url, target.pid, s, b, c, Budget(args.seconds, args.requests), w))

            runs[AIMI][scenario].append(with_retries(args, [target.pid, os.getpid()], measure))


def run_direct_phase(args: argparse.Namespace, runs: Runs, model: Any) -> None:
    for scenario, (batch, _) in DIRECT_SCENARIOS.items():
        requests = args.requests
        if requests is not None and scenario == "c8":
            requests = max(1, requests // 8)  # the same inputs as (c), 8 at a time
        warmup = 2 if batch > 1 else 5

        def measure(s: str = scenario, b: int = batch, n: int | None = requests, w: int = warmup) -> Run:
            return direct_run(model, s, b, Budget(args.seconds, n), w)

        runs[DIRECT][scenario].append(with_retries(args, [os.getpid()], measure))


# --------------------------------------------------------------------------- report


def summarize(runs: Runs) -> dict[str, dict[str, Any]]:
    """Per scenario: medians of both sides and the aimi/direct ratios. The "c8" row compares aimi's
    (c) with the direct batch-8 figure."""
    metrics = ["embeddings_per_s", "requests_per_s", "latency_p50_ms", "latency_p99_ms", "cpu_ms_per_embedding"]
    summary: dict[str, dict[str, Any]] = {}
    for scenario in DIRECT_SCENARIOS:
        aimi_runs = runs[AIMI]["c" if scenario == "c8" else scenario]
        row: dict[str, Any] = {"label": LABELS[scenario]}
        for metric in metrics:
            d, a = median_of(runs[DIRECT][scenario], metric), median_of(aimi_runs, metric)
            row[metric] = {DIRECT: d, AIMI: a, f"{AIMI}/{DIRECT}": ratio(a, d)}
        summary[scenario] = row
    return summary


def cosine_check(model: Any, check: dict[str, Any]) -> dict[str, float] | None:
    if "aimi" not in check:
        return None
    direct = model.encode(check["texts"], normalize_embeddings=True).tolist()
    cosines = []
    for u, v in zip(check["aimi"], direct, strict=True):
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        cosines.append(dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v))))
    return {"min_cosine": min(cosines), "max_one_minus_cosine": 1 - min(cosines), "inputs": len(cosines)}


def report(args: argparse.Namespace, runs: Runs, summary: dict[str, dict[str, Any]], check: Any) -> str:
    headers = [
        "scenario",
        "direct emb/s",
        "aimi emb/s",
        "aimi/direct",
        "p50 ms direct",
        "aimi",
        "p99 ms aimi",
        "CPU ms/emb direct",
        "aimi",
    ]
    rows = []
    for row in summary.values():
        eps, p50, p99, cpu = (
            row[m] for m in ("embeddings_per_s", "latency_p50_ms", "latency_p99_ms", "cpu_ms_per_embedding")
        )
        rows.append(
            [
                row["label"],
                fmt(eps[DIRECT]),
                fmt(eps[AIMI]),
                fmt(eps[f"{AIMI}/{DIRECT}"], 3),
                fmt(p50[DIRECT], 2),
                fmt(p50[AIMI], 2),
                fmt(p99[AIMI], 2),
                fmt(cpu[DIRECT], 2),
                fmt(cpu[AIMI], 2),
            ]
        )
    per_run = args.requests and f"{args.requests} requests/run" or f"{args.seconds:g} s/run"
    lines = [
        f"Embeddings: {MODEL} served by aimi (sentence-transformers engine, --threads {args.threads}) vs "
        f"SentenceTransformer.encode in one process (torch threads {args.threads}); {per_run}; "
        f"medians of {args.repetitions} run(s); latency in ms per request (direct: per encode call); "
        f"CPU/emb: ms of CPU per embedding of the aimi server process / of the direct process",
        table(headers, rows),
        "   (c) direct = single inputs encoded one by one; the last row compares aimi's (c) with direct batch-8 "
        "encode calls",
    ]
    spreads = []
    for scenario in AIMI_SCENARIOS:
        for side in (DIRECT, AIMI):
            values = [r.embeddings_per_s for r in runs[side][scenario]]
            spreads.append(f"{scenario} {side} {min(values):.0f}-{max(values):.0f}")
    lines.append(f"   emb/s min-max over runs: {'; '.join(spreads)}")
    for side, by_scenario in runs.items():
        all_runs = [r for rs in by_scenario.values() for r in rs]
        others = [r.other_cpu_pct for r in all_runs if r.other_cpu_pct is not None]
        lines.append(
            f"   {side}: {sum(r.requests for r in all_runs)} requests, {sum(r.errors for r in all_runs)} errors, "
            f"{sum(r.attempt - 1 for r in all_runs)} runs redone for foreign CPU load; other processes used "
            f"{fmt(statistics.median(others) if others else None, 0)}% median / {fmt(max(others, default=None), 0)}% "
            f"max of the CPU during kept runs"
        )
        first = next((r.first_error for r in all_runs if r.first_error), None)
        if first:
            lines.append(f"   {side} first error: {first}")
    if check:
        lines.append(
            f"   check: aimi's vectors vs direct encode of the same {check['inputs']} inputs: "
            f"1 - cosine at most {check['max_one_minus_cosine']:.1e}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def model_path() -> str:
    from aimi.deployments.sources import resolve
    from aimi.settings import Settings

    return str(resolve(MODEL, Settings().cache_dir).path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = new_parser(__doc__, QUICK)
    parser.add_argument("-r", "--repetitions", type=int, help=f"runs of each scenario (default {FULL['repetitions']})")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("-s", "--seconds", type=float, help=f"length of each timed run (default {FULL['seconds']:g})")
    length.add_argument(
        "-n",
        "--requests",
        type=int,
        help="requests (encode calls) per timed run instead of --seconds; (c): in total over the 8 clients",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides (default 2)")
    parser.add_argument("--aimi", default=str(Path(sys.executable).with_name("aimi")), help="aimi executable")
    parser.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="after this many seconds of the whole run, stop waiting for quiet and redoing runs (default 300)",
    )
    add_run_options(parser, quiet_wait=5.0, retries=1)
    args = parsed(parser, argv, QUICK, {"repetitions": FULL["repetitions"]})
    if args.seconds is None and args.requests is None:
        args.seconds = (QUICK if args.quick else FULL)["seconds"]
    return args


def metadata(args: argparse.Namespace, path: str) -> dict[str, Any]:
    versions = package_versions("aimi", "torch", "sentence-transformers", "transformers", "httpx")
    return run_metadata(args, dict(versions), model_path=path, example_input=sentence(0))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    path = model_path()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-embeddings-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    progress(f"model {path}; server logs in {log_dir}")
    started = time.perf_counter()
    args.patient_until = started + args.budget
    result: dict[str, Any] = {"meta": metadata(args, path)}
    model = load_direct(path, args.threads)
    runs: Runs = {AIMI: {s: [] for s in AIMI_SCENARIOS}, DIRECT: {s: [] for s in DIRECT_SCENARIOS}}
    check: dict[str, Any] = {"texts": Inputs(20_000_000).take(16)}
    for repetition in range(args.repetitions):
        order = [AIMI, DIRECT] if repetition % 2 == 0 else [DIRECT, AIMI]
        for side in order:
            progress(f"repetition {repetition + 1}/{args.repetitions}: {side}")
            if side == AIMI:
                run_aimi_phase(args, runs, log_dir, check)
            else:
                run_direct_phase(args, runs, model)
    summary = summarize(runs)
    checked = cosine_check(model, check)
    duration = time.perf_counter() - started
    result["meta"]["duration_s"] = duration
    result.update(
        medians=summary,
        check=checked,
        runs={side: {s: [asdict(r) for r in rs] for s, rs in by.items()} for side, by in runs.items()},
    )
    print("\n" + report(args, runs, summary, checked) + f"\n\n(total {duration:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
