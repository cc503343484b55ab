"""What Ray Serve adds per request: plain ``aimi serve`` against ``aimi serve --ray`` on the fake
engine (engine time ~0: the difference is the cost of Ray's path), at concurrency 1.

Three servers, each in its own process, one after another per round (ABBA order across rounds):

* ``uvicorn``: ``aimi serve --config F`` (the one-machine default);
* ``ray-proxy``: ``aimi serve --config F --ray`` with Serve's default HTTP proxy in front of the
  gateway replica (client → proxy → gateway replica → engine pool replica);
* ``ray-direct``: the same with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: the gateway replica listens
  itself (direct ingress), and handles use gRPC (client → gateway replica → engine pool replica).

Reports the p50 and p90 latency of non-streamed and streamed chat requests (10 tokens), and
what each Ray mode adds over uvicorn at p50. Needs the ray extra. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

KEY = "bench-key-0123456789abcdef012345"
FILE = """
[[deployments]]
name = "chat"
engine = "fake"
model = "{model}"
slots = 4
[deployments.engine_options]
text = "one two three four five six seven eight nine ten"
[deployments.quota]
requests_per_minute = 0
tokens_per_minute = 0
"""
ON_RAY = """
[deployments.scale]
num_cpus = 0.5
[gateway]
num_cpus = 0.5
"""
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
SERVERS = ["uvicorn", "ray-proxy", "ray-direct"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(name: str, root: Path, home: Path, log: Path) -> Iterator[str]:
    """One server up; its URL (for ray-direct, the gateway replica's own)."""
    config = root / ("aimi.toml" if name == "uvicorn" else "aimi-ray.toml")
    port = free_port()
    env = {**os.environ, "AIMI_HOME": str(home), "AIMI_API_KEY": KEY, "AIMI_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "aimi", "serve", "--config", str(config), "--port", str(port)]
    if name != "uvicorn":
        command.append("--ray")
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1" if name == "ray-direct" else "0"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text()[-2000:]}")
            text = log.read_text(errors="replace")
            direct = re.findall(r"gateway replica at (http://\S+) \(direct ingress\)", text)
            if name == "ray-direct" and direct:
                url = direct[0]
            ready = name != "ray-direct" or direct
            with contextlib.suppress(httpx.HTTPError):
                if ready and httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def timed(url: str, requests: int, stream: bool) -> list[float]:
    """Latencies (ms) of ``requests`` chat requests one after another on one connection."""
    body = {**BODY, "stream": stream}
    seconds = []
    with httpx.Client(base_url=url, headers={"api-key": KEY}, timeout=30) as http:
        for _ in range(10):  # warm-up
            http.post("/chat/completions", json=body).raise_for_status()
        for _ in range(requests):
            started = time.perf_counter()
            response = http.post("/chat/completions", json=body)
            response.raise_for_status()
            seconds.append((time.perf_counter() - started) * 1000)
    return seconds


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=300, help="timed requests per run (default 300)")
    parser.add_argument("-r", "--rounds", type=int, default=2, help="rounds over the servers (default 2)")
    parser.add_argument("--only", choices=SERVERS, action="append", help="servers to run (default all)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    names = args.only or SERVERS
    results: dict[str, dict[str, list[float]]] = {n: {"json": [], "stream": []} for n in names}
    with tempfile.TemporaryDirectory(prefix="aimi-bench-ray-") as tmp:
        root = Path(tmp)
        model = root / "stand-in.gguf"
        model.write_bytes(b"GGUF")
        (root / "aimi.toml").write_text(FILE.format(model=model))
        (root / "aimi-ray.toml").write_text(FILE.format(model=model) + ON_RAY)
        for round_ in range(args.rounds):
            order = names if round_ % 2 == 0 else list(reversed(names))
            for name in order:
                print(f"round {round_ + 1}: {name}", file=sys.stderr, flush=True)
                with server(name, root, root / f"home-{name}", root / f"{name}-{round_}.log") as url:
                    for kind in ("json", "stream"):
                        results[name][kind] += timed(url, args.requests, kind == "stream")
    summary = {
        name: {
            kind: {"p50": statistics.median(values), "p90": quantile(values, 0.9), "n": len(values)}
            for kind, values in kinds.items()
        }
        for name, kinds in results.items()
    }
    print(
        f"{'server':<12} {'json p50':>9} {'json p90':>9} {'stream p50':>11} {'stream p90':>11}  added p50 (json/stream)"
    )
    base = summary.get("uvicorn")
    for name, kinds in summary.items():
        added = ""
        if base is not None and name != "uvicorn":
            json_added = kinds["json"]["p50"] - base["json"]["p50"]
            stream_added = kinds["stream"]["p50"] - base["stream"]["p50"]
            added = f"{json_added:+.2f} / {stream_added:+.2f} ms"
        print(
            f"{name:<12} {kinds['json']['p50']:>9.2f} {kinds['json']['p90']:>9.2f} "
            f"{kinds['stream']['p50']:>11.2f} {kinds['stream']['p90']:>11.2f}  {added}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
