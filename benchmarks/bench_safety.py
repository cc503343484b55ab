"""Content safety's cost: what does ``[deployments.safety]`` add to a request?

One ``aimi serve --config`` serves the same engine twice: once with content safety on (the
embedded classifier, all-MiniLM-L6-v2 on the CPU; default window 160 and overlap 48 characters)
and once without. The same request mix goes to each, in ABBA order, so drift hits both alike:

* fake engine (no model, ~0 ms of engine time; it answers ~200 characters of benign prose):
  non-streamed and streamed chat at concurrency 1 and 4. The prompt is judged once and the
  answer in two windows, so this is the classifier's cost with nothing to hide it.
* the default model (llamacpp engine, smollm2-135m-instruct, 64 tokens per answer with
  ``ignore_eos``), streamed at concurrency 1: the cost next to real generation, and how long
  the first window holds the first token back (``--no-model`` skips it).

Closed-loop httpx clients send back to back after an untimed warm-up. The table shows medians
over the repetitions of requests/s, latency p50, TTFT p50 (streams: the first non-empty content
delta, which safety holds back until the first window is judged), and the server process's CPU
per request, each with the ratio safety-on / safety-off. As in bench_serving.py, each run first
waits for other processes to go quiet and is redone once if they used much CPU meanwhile; after
``--budget`` seconds it stops waiting and redoing, and the foot of the table says how busy the
machine was.

    .venv/bin/python benchmarks/bench_safety.py                 # full run (~2.5-4 min on 2 cores)
    .venv/bin/python benchmarks/bench_safety.py --quick         # smoke run (~40 s)
    .venv/bin/python benchmarks/bench_safety.py --json results.json

With ``--quality`` it measures instead how well content safety judges (recall and false positives
per category, language and severity on the held-out evaluation set, and the judging cost; see
``benchmarks/safety_quality.py``):

    .venv/bin/python benchmarks/bench_safety.py --quality                  # embedded, minilm, blocklist
    .venv/bin/python benchmarks/bench_safety.py --quality --classifiers embedded --part dev
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_serving import (
    API_KEY,
    CHAT_PATH,
    HEALTH_TIMEOUT_S,
    PROMPT,
    CpuMeter,
    Target,
    _ms,
    fmt,
    free_port,
    median_of,
    percentile,
    progress,
    ratio,
    stop,
    table,
    wait_for_quiet,
    wait_healthy,
)

# What the fake engine answers: benign prose of about 200 characters (two safety windows).
FAKE_TEXT = (
    "The old lighthouse stands on a rocky point at the edge of the bay. Every evening the keeper "
    "climbs the spiral stairs, polishes the brass lamp and watches the fishing boats come home "
    "with the tide."
)
FAKE_PROMPT = "Tell me about the lighthouse on the bay."
ON, OFF = "safety", "plain"
FAKE, MODEL = "fake", "model"
MODEL_NAME = "smollm2-135m-instruct"

FULL: dict[str, Any] = {
    "repetitions": 3,
    "requests": 32,
    "concurrency": [1, 4],
    "model_requests": 4,
    "model_concurrency": [1],
    "max_tokens": 64,
}
QUICK: dict[str, Any] = {
    "repetitions": 1,
    "requests": 12,
    "concurrency": [1, 4],
    "model_requests": 2,
    "model_concurrency": [1],
    "max_tokens": 32,
}


# --------------------------------------------------------------------------- results


@dataclass
class Sample:
    ok: bool
    latency_s: float
    ttft_s: float | None
    completion_tokens: int
    finish: str | None
    error: str | None = None


@dataclass
class Run:
    """One closed-loop run of one configuration against one deployment."""

    engine: str
    side: str
    mode: str
    concurrency: int
    requests: int
    errors: int
    filtered: int  # answers that ended with content_filter / content_filter_error
    wall_s: float
    requests_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    server_cpu_ms_per_request: float | None
    other_cpu_pct: float | None
    first_error: str | None
    attempt: int = 1
    waited_s: float = 0.0


# --------------------------------------------------------------------------- load generator


def chat_body(engine: str, deployment: str, stream: bool, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": deployment, "stream": stream, "temperature": 0}
    if engine == FAKE:
        body["messages"] = [{"role": "user", "content": FAKE_PROMPT}]
    else:
        body.update(messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, ignore_eos=True)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _check(engine: str, text: str, finish: str | None, tokens: int, max_tokens: int) -> str | None:
    """Why an answer is wrong (None: right). A content_filter finish is counted, not an error."""
    if finish in ("content_filter", "content_filter_error"):
        return None
    if engine == FAKE and (text != FAKE_TEXT or finish != "stop"):
        return f"unexpected fake answer ({finish}): {text[:80]!r}"
    if engine == MODEL and (finish != "length" or tokens != max_tokens):
        return f"expected {max_tokens} tokens and finish length, got {tokens} and {finish}"
    return None


async def send_whole(client: httpx.AsyncClient, body: dict[str, Any], engine: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    try:
        response = await client.post(CHAT_PATH, json=body)
        latency = time.perf_counter() - start
        if response.status_code != 200:
            return Sample(False, latency, None, 0, None, f"HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
        choice = answer["choices"][0]
        text, finish = choice["message"]["content"] or "", choice["finish_reason"]
        tokens = int(answer["usage"]["completion_tokens"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
        return Sample(False, time.perf_counter() - start, None, 0, None, repr(exc))
    wrong = _check(engine, text, finish, tokens, max_tokens)
    return Sample(wrong is None, latency, None, tokens, finish, wrong)


async def send_streaming(client: httpx.AsyncClient, body: dict[str, Any], engine: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    finish: str | None = None
    tokens = 0
    done = False
    try:
        async with client.stream("POST", CHAT_PATH, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Sample(False, time.perf_counter() - start, None, 0, None, f"HTTP {response.status_code}: {text}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    return Sample(False, time.perf_counter() - start, ttft, 0, None, f"stream error: {data[:300]}")
                for choice in chunk.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        parts.append(content)
                    finish = choice.get("finish_reason") or finish
                if chunk.get("usage"):
                    tokens = int(chunk["usage"]["completion_tokens"])
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Sample(False, time.perf_counter() - start, ttft, 0, None, repr(exc))
    latency = time.perf_counter() - start
    if not done:
        return Sample(False, latency, ttft, tokens, finish, "stream ended without data: [DONE]")
    wrong = _check(engine, "".join(parts), finish, tokens, max_tokens)
    return Sample(wrong is None, latency, ttft, tokens, finish, wrong)


async def closed_loop(
    send: Callable[[], Awaitable[Sample]], concurrency: int, total: int
) -> tuple[list[Sample], float]:
    remaining = total
    samples: list[Sample] = []

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await send())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def measure(
    target: Target, engine: str, side: str, mode: str, concurrency: int, requests: int, max_tokens: int
) -> Run:
    """A fresh client, an untimed warm-up of one request per worker, then the timed loop."""
    body = chat_body(engine, f"{engine}-{side}", mode == "stream", max_tokens)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=target.url, headers=headers, limits=limits, timeout=600.0) as client:
        sender = send_streaming if mode == "stream" else send_whole

        async def send() -> Sample:
            return await sender(client, body, engine, max_tokens)

        await closed_loop(send, concurrency, concurrency)
        meter = CpuMeter(target.pid, [os.getpid()])
        samples, wall_s = await closed_loop(send, concurrency, requests)
        server_cpu, others = meter.read()
    ok = [s for s in samples if s.ok]
    failed = [s for s in samples if not s.ok]
    return Run(
        engine=engine,
        side=side,
        mode=mode,
        concurrency=concurrency,
        requests=len(samples),
        errors=len(failed),
        filtered=sum(1 for s in ok if s.finish in ("content_filter", "content_filter_error")),
        wall_s=wall_s,
        requests_per_s=len(ok) / wall_s,
        latency_p50_ms=_ms(percentile([s.latency_s for s in ok], 50)),
        latency_p99_ms=_ms(percentile([s.latency_s for s in ok], 99)),
        ttft_p50_ms=_ms(percentile([s.ttft_s for s in ok if s.ttft_s is not None], 50)),
        server_cpu_ms_per_request=None if server_cpu is None else server_cpu * 1000 / len(samples),
        other_cpu_pct=others,
        first_error=failed[0].error if failed else None,
    )


# --------------------------------------------------------------------------- the server


def config_text(args: argparse.Namespace, stand_in: Path) -> str:
    """Two deployments per engine, the same but for ``[deployments.safety]``."""
    jailbreak = "jailbreak = true\n" if args.jailbreak else ""
    fake_options = f'[deployments.engine_options]\ntext = "{FAKE_TEXT}"\n'
    parts = []
    for side in (ON, OFF):
        safety = f'[deployments.safety]\nclassifier = "embedded"\n{jailbreak}' if side == ON else ""
        parts.append(
            f'[[deployments]]\nname = "{FAKE}-{side}"\nmodel = "{stand_in}"\nengine = "fake"\nslots = 64\n'
            f"{fake_options}{safety}\n"
        )
        if not args.no_model:
            parts.append(
                f'[[deployments]]\nname = "{MODEL}-{side}"\nmodel = "{MODEL_NAME}"\nengine = "llamacpp"\n'
                f"slots = {args.slots}\ncontext_size = 1024\nthreads = {args.threads}\n{safety}\n"
            )
    return "".join(parts)


def wait_classifier(url: str, timeout_s: float) -> dict[str, Any]:
    """/health turns 200 before the content safety classifier has loaded (requests to the guarded
    deployment get 503 until then): wait for a judged answer, and return it."""
    deadline = time.monotonic() + timeout_s
    body = chat_body(FAKE, f"{FAKE}-{ON}", False, 0)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while True:
            response = client.post(CHAT_PATH, json=body)
            if response.status_code == 200:
                answer: dict[str, Any] = response.json()
                return answer
            if response.status_code != 503 or time.monotonic() > deadline:
                raise RuntimeError(f"the guarded deployment answered {response.status_code}: {response.text[:300]}")
            time.sleep(0.25)


@contextlib.contextmanager
def serve(args: argparse.Namespace, work: Path) -> Iterator[Target]:
    stand_in = work / "stand-in.gguf"
    stand_in.write_bytes(b"GGUF")
    config = work / "aimi.toml"
    config.write_text(config_text(args, stand_in))
    port = free_port()
    command = [args.aimi, "serve", "--config", str(config), "--port", str(port), "--api-key", API_KEY]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMI_")}
    env.update({"AIMI_HOME": str(work / "home"), "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1")})
    log_path = args.log_dir / "aimi.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        wait_healthy(url, process, log_path, HEALTH_TIMEOUT_S)
        healthy = time.perf_counter() - started
        answer = wait_classifier(url, HEALTH_TIMEOUT_S)
        ready = time.perf_counter() - started
        progress(f"aimi healthy in {healthy:.1f}s, content safety ready in {ready:.1f}s")
        choice = answer["choices"][0]
        results = choice.get("content_filter_results", {})
        if choice["finish_reason"] != "stop" or any(v.get("filtered") for v in results.values()):
            raise RuntimeError(f"the fake answer does not pass content safety: {choice}")
        args.ready_s = {"healthy": healthy, "classifier": ready}
        args.fake_results = results
        yield Target("aimi", url, process.pid)
    finally:
        stop(process)


# --------------------------------------------------------------------------- runs


def run_one(args: argparse.Namespace, target: Target, engine: str, side: str, mode: str, concurrency: int) -> Run:
    requests = args.requests if engine == FAKE else args.model_requests
    for attempt in range(1, args.retries + 2):
        patient = time.perf_counter() < args.patient_until
        waited = wait_for_quiet([target.pid], args.quiet_wait if patient else 0, args.max_other_cpu, quiet_for_s=1.0)
        run = asyncio.run(measure(target, engine, side, mode, concurrency, requests, args.max_tokens))
        run.attempt, run.waited_s = attempt, waited
        notes = f"  {run.errors} errors, first: {run.first_error}" if run.errors else ""
        notes += f"  {run.filtered} filtered" if run.filtered else ""
        ttft = f"  TTFT p50 {fmt(run.ttft_p50_ms):>7} ms" if run.ttft_p50_ms is not None else ""
        progress(
            f"    {engine:5} {side:6} {mode:6} c={concurrency}  {run.requests_per_s:7.1f} req/s  "
            f"p50 {fmt(run.latency_p50_ms):>7} ms{ttft}  CPU/req {fmt(run.server_cpu_ms_per_request)} ms  "
            f"others {fmt(run.other_cpu_pct, 0)}%{notes}"
        )
        busy = run.other_cpu_pct is not None and run.other_cpu_pct > args.max_other_cpu
        if not busy or attempt > args.retries or time.perf_counter() >= args.patient_until:
            break
        progress(f"      other processes used {run.other_cpu_pct:.0f}% of the CPU: again")
    return run


Runs = dict[str, dict[str, list[Run]]]  # side -> configuration label -> one Run per repetition


def configurations(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    configs = [(FAKE, mode, c) for mode in ("whole", "stream") for c in args.concurrency]
    if not args.no_model:
        configs += [(MODEL, "stream", c) for c in args.model_concurrency]
    return configs


def label(engine: str, mode: str, concurrency: int) -> str:
    return f"{engine} {mode} c={concurrency}"


def run_all(args: argparse.Namespace, target: Target) -> Runs:
    configs = configurations(args)
    runs: Runs = {side: {label(*config): [] for config in configs} for side in (OFF, ON)}
    for repetition in range(args.repetitions):
        progress(f"repetition {repetition + 1}/{args.repetitions}")
        for engine, mode, concurrency in configs:
            sides = [OFF, ON] if repetition % 2 == 0 else [ON, OFF]
            for side in sides:
                run = run_one(args, target, engine, side, mode, concurrency)
                runs[side][label(engine, mode, concurrency)].append(run)
    return runs


# --------------------------------------------------------------------------- reporting


METRICS = ["requests_per_s", "latency_p50_ms", "ttft_p50_ms", "server_cpu_ms_per_request"]


def summarize(runs: Runs) -> dict[str, dict[str, dict[str, float | None]]]:
    summary: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in runs[OFF]:
        summary[name] = {}
        for metric in METRICS:
            off, on = median_of(runs[OFF][name], metric), median_of(runs[ON][name], metric)
            summary[name][metric] = {OFF: off, ON: on, f"{ON}/{OFF}": ratio(on, off)}
    return summary


def report(args: argparse.Namespace, runs: Runs, summary: dict[str, dict[str, dict[str, float | None]]]) -> str:
    headers = ["engine mode conc", "req/s off", "on", "on/off", "p50 off", "on", "on/off", "+p50", "TTFT p50 off",
               "on", "on/off", "CPU/req off", "on", "on/off"]  # fmt: skip
    key = f"{ON}/{OFF}"
    rows = []
    for name, row in summary.items():
        rps, p50, ttft, cpu = (row[m] for m in METRICS)
        added = None if p50[ON] is None or p50[OFF] is None else p50[ON] - p50[OFF]
        rows.append(
            [
                name,
                fmt(rps[OFF]),
                fmt(rps[ON]),
                fmt(rps[key], 2),
                fmt(p50[OFF]),
                fmt(p50[ON]),
                fmt(p50[key], 1),
                fmt(added),
                fmt(ttft[OFF]),
                fmt(ttft[ON]),
                fmt(ttft[key], 1),
                fmt(cpu[OFF]),
                fmt(cpu[ON]),
                fmt(cpu[key], 1),
            ]  # fmt: skip
        )
    lines = [
        f"Content safety on vs off (one aimi serve --config; embedded classifier, window 160, overlap 48"
        f"{', jailbreak on' if args.jailbreak else ''}). fake: {len(FAKE_TEXT)}-character answer, "
        f"{args.requests} requests/run; model: {MODEL_NAME}, {args.max_tokens} tokens/answer, "
        f"{args.model_requests} requests/run, {args.slots} slots, {args.threads} threads. "
        f"Medians of {args.repetitions} run(s); ms; CPU/req: server process CPU ms per request",
        table(headers, rows),
    ]
    for side in (OFF, ON):
        all_runs = [r for per in runs[side].values() for r in per]
        others = [r.other_cpu_pct for r in all_runs if r.other_cpu_pct is not None]
        lines.append(
            f"   {side}: {sum(r.requests for r in all_runs)} requests, {sum(r.errors for r in all_runs)} errors, "
            f"{sum(r.filtered for r in all_runs)} filtered; {sum(r.attempt - 1 for r in all_runs)} runs redone; "
            f"other processes used {fmt(statistics.median(others) if others else None, 0)}% median / "
            f"{fmt(max(others, default=None), 0)}% max of the CPU"
        )
    ready = args.ready_s
    lines.append(
        f"   start: /health 200 after {ready['healthy']:.1f}s, the classifier answered after {ready['classifier']:.1f}s"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    lines = (__doc__ or "").splitlines()
    parser = argparse.ArgumentParser(
        description=lines[0], epilog="\n".join(lines[1:]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"a fast smoke run: {QUICK}")
    parser.add_argument(
        "-r", "--repetitions", type=int, help=f"runs of each configuration (default {FULL['repetitions']})"
    )
    parser.add_argument("-n", "--requests", type=int, help=f"fake: timed requests per run (default {FULL['requests']})")
    parser.add_argument("-c", "--concurrency", type=_ints, help="fake: comma-separated concurrencies (default 1,4)")
    parser.add_argument(
        "--model-requests", type=int, help=f"model: timed requests per run (default {FULL['model_requests']})"
    )
    parser.add_argument("--model-concurrency", type=_ints, help="model: comma-separated concurrencies (default 1)")
    parser.add_argument("--max-tokens", type=int, help=f"model: tokens per answer (default {FULL['max_tokens']})")
    parser.add_argument("--no-model", action="store_true", help="only the fake engine")
    parser.add_argument("--jailbreak", action="store_true", help="also check prompts for jailbreaks")
    parser.add_argument("--slots", type=int, default=4, help="model: parallel slots (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="model: CPU threads (default 2)")
    parser.add_argument("--aimi", default=str(Path(sys.executable).with_name("aimi")), help="aimi executable")
    parser.add_argument("--max-other-cpu", type=float, default=10.0, help="foreign load limit, %% (default 10)")
    parser.add_argument("--quiet-wait", type=float, default=5.0, help="longest wait for a quiet machine, s (default 5)")
    parser.add_argument("--retries", type=int, default=1, help="times a busy run is redone (default 1)")
    parser.add_argument(
        "--budget", type=float, default=150.0, help="after this many s, stop waiting and redoing (default 150)"
    )
    parser.add_argument("--json", type=Path, help="also write every run, the medians and ratios here")
    parser.add_argument("--quality", action="store_true", help="recall and false positives instead of the cost")
    parser.add_argument(
        "--classifiers",
        default="embedded,minilm,blocklist",
        help="--quality: which (default embedded,minilm,blocklist)",
    )
    parser.add_argument("--part", default="heldout", choices=["heldout", "dev"], help="--quality: which part")
    parser.add_argument("--log-dir", type=Path, help="server log (default: a new temporary directory)")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "command": [sys.executable, *sys.argv],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("aimi", "sentence-transformers", "torch", "securevector-guardian-model")},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quality:
        import safety_quality

        return safety_quality.main(args.classifiers.split(","), args.part, args.json)
    started = time.perf_counter()
    args.patient_until = started + args.budget
    args.log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-safety-"))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    progress(f"server log in {args.log_dir}")
    result: dict[str, Any] = {"meta": metadata(args)}
    with tempfile.TemporaryDirectory(prefix="bench-safety-work-") as work, serve(args, Path(work)) as target:
        runs = run_all(args, target)
    summary = summarize(runs)
    result["meta"]["duration_s"] = time.perf_counter() - started
    result["ready_s"], result["fake_results"] = args.ready_s, args.fake_results
    result["medians"] = summary
    result["runs"] = {side: {name: [asdict(r) for r in per] for name, per in by.items()} for side, by in runs.items()}
    print("\n" + report(args, runs, summary) + f"\n\n(total {result['meta']['duration_s']:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
        progress(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
