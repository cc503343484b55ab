"""Constrained decoding's cost: json_schema and tools against the same prompts unconstrained.

One aimi (llama.cpp engine, default model) serves streamed /v1/chat/completions of three kinds,
interleaved run by run: plain text, ``response_format: json_schema``, and a forced tool call.
Prints output tokens/s and time to first token/byte (p50, p99) per kind, medians over repeated
runs, and each constrained kind as a ratio of the unconstrained one measured in the same run.

A tool call streams when it is complete (aimi holds the constrained answer to parse it), so its
"first byte" is the tool-call delta: close to the whole latency, by design.

    .venv/bin/python benchmarks/bench_constrained.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_serving import (
    API_KEY,
    CHAT_PATH,
    Sample,
    closed_loop,
    default_model,
    fmt,
    free_port,
    median_of,
    progress,
    ratio,
    serve,
    summarize,
    table,
)

PROMPT = "Tell me about a city you like: its name, country, population and three sights."
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population": {"type": "integer", "minimum": 0},
        "sights": {"type": "array", "items": {"type": "string", "maxLength": 60}, "minItems": 3, "maxItems": 3},
    },
    "required": ["city", "country", "population", "sights"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "describe_city", "parameters": SCHEMA}}]
KINDS = {
    "unconstrained": {},
    "json_schema": {"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}},
    "tools": {"tools": TOOLS, "tool_choice": "required"},
}


def body(kind: str, max_tokens: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **KINDS[kind],
    }


async def send(client: httpx.AsyncClient, payload: dict[str, Any]) -> Sample:
    """A streamed request; the first byte is the first content or tool-call delta."""
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    try:
        async with client.stream("POST", CHAT_PATH, json=payload) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Sample(False, time.perf_counter() - start, None, 0, f"HTTP {response.status_code}: {text[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if first is None and (delta.get("content") or delta.get("tool_calls")):
                        first = time.perf_counter() - start
                if chunk.get("usage"):
                    tokens = int(chunk["usage"]["completion_tokens"])
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Sample(False, time.perf_counter() - start, first, tokens, repr(exc))
    return Sample(True, time.perf_counter() - start, first, tokens)


async def run(url: str, payload: dict[str, Any], concurrency: int, requests: int) -> Any:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=600) as client:

        async def one() -> Sample:
            return await send(client, payload)

        await closed_loop(one, concurrency, concurrency)  # warm-up, one connection per worker
        samples, wall = await closed_loop(one, concurrency, requests)
    return summarize(samples, wall, concurrency, None, (None, None))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, 4 requests per run")
    parser.add_argument("-r", "--repetitions", type=int, default=3)
    parser.add_argument("-n", "--requests", type=int, default=12, help="timed requests per run")
    parser.add_argument("-c", "--concurrency", default="1,4", help="comma-separated concurrencies")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="GGUF path (default: the catalog's default model)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repetitions, args.requests = 1, 4
    model = args.model or default_model()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("aimi")),
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--slots",
        str(args.slots),
        "--threads",
        str(args.threads),
    ]
    runs: dict[tuple[str, int], list[Any]] = {}
    with tempfile.TemporaryDirectory() as logs, serve("aimi", command, port, Path(logs)) as target:
        for repetition in range(args.repetitions):
            for concurrency in concurrencies:
                kinds = list(KINDS) if repetition % 2 == 0 else list(KINDS)[::-1]
                for kind in kinds:
                    stats = asyncio.run(run(target.url, body(kind, args.max_tokens), concurrency, args.requests))
                    runs.setdefault((kind, concurrency), []).append(stats)
                    progress(
                        f"  {kind:13} c={concurrency}  {stats.tokens_per_s:7.1f} tok/s  "
                        f"first byte p50 {fmt(stats.ttft_p50_ms)} ms  errors {stats.errors}"
                    )
    rows, result = [], {}
    for concurrency in concurrencies:
        base = runs[("unconstrained", concurrency)]
        for kind in KINDS:
            stats = runs[(kind, concurrency)]
            tps, p50, p99 = (median_of(stats, m) for m in ("tokens_per_s", "ttft_p50_ms", "ttft_p99_ms"))
            base_tps, base_p50 = median_of(base, "tokens_per_s"), median_of(base, "ttft_p50_ms")
            errors = sum(s.errors for s in stats)
            rows.append(
                [
                    f"{kind} c={concurrency}",
                    fmt(tps),
                    fmt(ratio(tps, base_tps), 3),
                    fmt(p50),
                    fmt(p99),
                    fmt(ratio(p50, base_p50), 2),
                    str(errors),
                ]
            )
            result[f"{kind} c={concurrency}"] = {
                "tokens_per_s": tps,
                "first_byte_p50_ms": p50,
                "first_byte_p99_ms": p99,
                "errors": errors,
            }
    print(
        f"\nConstrained decoding on {Path(model).name}, {args.slots} slots, {args.threads} threads; streamed, "
        f"max_tokens {args.max_tokens}, {args.requests} requests/run, medians of {args.repetitions} runs"
    )
    print(
        table(
            ["kind", "tok/s", "vs unconstrained", "first byte p50 ms", "p99 ms", "p50 vs unconstrained", "errors"], rows
        )
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
