"""Two clients looping bodies of 100,000 messages (3.6 MB, under the body limit, far past the
1,024-message cap) barely slow anyone else: the count is read from the body's outline and the body
refused before it is decoded, so the event loop is never held for long. Others' p50 under the
flood stays under twice their p50 measured idle in the same run."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import aimi_process, wait_until

KEY = "flood-key-0123456789"
FLOODERS = 2
SAMPLES = 150
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
REFUSAL = b"`messages` may hold at most 1024 messages; got more"


def _flood_request(host: str, port: int) -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}] * 100_000, "max_tokens": 4}).encode()
    assert 3_000_000 < len(body) < 4 * 1024 * 1024  # under the default body limit
    head = (
        f"POST /chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\napi-key: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _read_response(sock: socket.socket) -> bytes:
    """One response of a kept-alive connection (the refusals have a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the flooding connection"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the flooding connection"
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _p50_ms(client: httpx.Client) -> float:
    latencies = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        response = client.post("/chat/completions", json=CHAT)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(latencies) * 1000


def test_a_flood_of_bodies_past_the_message_cap_barely_slows_other_requests(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    args = ["--model", str(model), "--engine", "fake", "--engine-options", '{"text": "ok"}', "--api-key", KEY]
    env = {"AIMI_QUOTA_REQUESTS_PER_MINUTE": "0", "AIMI_QUOTA_TOKENS_PER_MINUTE": "0"}
    with aimi_process(tmp_path / "home", args, env=env) as server:
        parts = urlsplit(server.url)
        assert parts.hostname is not None and parts.port is not None
        request = _flood_request(parts.hostname, parts.port)
        stop = threading.Event()
        refused = [0] * FLOODERS
        failures: list[str] = []

        def flood(index: int) -> None:
            try:
                with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
                    while not stop.is_set():
                        sock.sendall(request)
                        response = _read_response(sock)
                        assert response.startswith(b"HTTP/1.1 400 ") and REFUSAL in response, response[:300]
                        refused[index] += 1
            except Exception as exc:  # reported by the test's thread
                failures.append(repr(exc))

        with httpx.Client(base_url=server.url, headers={"api-key": KEY}, timeout=30) as client:
            _p50_ms(client)  # warm: connections, caches
            idle = _p50_ms(client)
            threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(FLOODERS)]
            for thread in threads:
                thread.start()
            try:
                wait_until(lambda: all(refused) or bool(failures), 30, "every flooder's first refusal")
                before = sum(refused)
                flooded = _p50_ms(client)
                during = sum(refused) - before
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
    assert failures == []
    print(f"p50 idle {idle:.1f} ms, under the flood {flooded:.1f} ms ({during} bodies of 100,000 messages refused)")
    assert during >= 10, "the flood hardly ran while others were measured"
    assert flooded < 2 * idle
