"""Under a slowloris attack (1,000 connections sending their heads a byte at a time) an ordinary
request is still answered at once, and the attacking connections are closed at the head deadline."""

from __future__ import annotations

import socket
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import aimi_process, wait_until

ATTACKERS = 1000
HEAD_TIMEOUT_S = 3.0


def test_slow_heads_neither_starve_requests_nor_stay_open(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    args = ["--model", str(model), "--engine", "fake", "--api-key", "loris-key-0123456789"]
    env = {"AIMI_HEADER_TIMEOUT": str(HEAD_TIMEOUT_S), "AIMI_QUOTA_REQUESTS_PER_MINUTE": "0"}
    with aimi_process(tmp_path / "home", args, env=env) as server:
        parts = urlsplit(server.url)
        attackers = []
        try:
            for _ in range(ATTACKERS):
                sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
                sock.sendall(b"POST /chat/completions HTTP/1.1\r\n")
                attackers.append(sock)
            opened = time.monotonic()
            latencies = []
            with httpx.Client(base_url=server.url, headers={"api-key": "loris-key-0123456789"}) as client:
                for _ in range(20):
                    started = time.perf_counter()
                    response = client.get("/v1/models")
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200
                    for sock in attackers[:50]:  # a byte each, as slowloris does
                        sock.sendall(b"X")
            print(f"p50 {statistics.median(latencies) * 1000:.1f} ms under {ATTACKERS} slow connections")
            assert statistics.median(latencies) < 0.05

            def closed(sock: socket.socket) -> bool:
                sock.settimeout(0.01)
                try:
                    return sock.recv(1) == b""
                except TimeoutError:
                    return False
                except OSError:
                    return True

            wait_until(lambda: all(closed(sock) for sock in attackers), HEAD_TIMEOUT_S + 20, "the slow heads closed")
            assert time.monotonic() - opened >= HEAD_TIMEOUT_S - 0.5
        finally:
            for sock in attackers:
                sock.close()
