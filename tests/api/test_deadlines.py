"""Deadlines for receiving a request: a head that does not arrive, a body that stops, a body framed
two ways, too many connections."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import KEY, InProcessServer, in_process

HEAD_S, BODY_S = 0.5, 0.5
CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process({"header_timeout": HEAD_S, "body_timeout": BODY_S, "max_connections": 6}) as running:
        yield running


def _connect(server: InProcessServer) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _head(path: str = "/chat/completions", length: int = len(CHAT), extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: aimi\r\napi-key: {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (10 s at most)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        data = _read_all(sock)
    except TimeoutError:
        return False
    return data == b"" and time.monotonic() - started < seconds


def test_a_connection_that_sends_nothing_is_closed_after_the_head_deadline(server: InProcessServer) -> None:
    with _connect(server) as sock:
        assert _closed_within(sock, HEAD_S + 5)


def test_a_head_sent_too_slowly_is_closed(server: InProcessServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: aimi\r\n")
        assert _closed_within(sock, HEAD_S + 5)


def test_a_kept_alive_connection_gets_the_same_deadline_for_its_next_head(server: InProcessServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_head() + CHAT)
        sock.settimeout(10)
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: ai")
        assert _closed_within(sock, HEAD_S + 5)


def test_a_body_that_stops_arriving_is_a_408_in_the_surface_shape(server: InProcessServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_head(length=100) + b'{"messages": ')
        sock.settimeout(BODY_S + 10)
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"] == {
        "code": "request_timeout",
        "message": f"the request body stopped arriving for {BODY_S:g} seconds",
        "type": "invalid_request_error",
        "param": None,
    }


def test_a_body_framed_by_both_length_and_chunks_is_a_400(server: InProcessServer) -> None:
    with _connect(server) as sock:
        sock.sendall(_head(extra="Transfer-Encoding: chunked\r\n") + b'5\r\n{"a":\r\n')
        sock.settimeout(10)
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["message"] == "a request may give Content-Length or Transfer-Encoding, not both"


def test_past_the_connection_cap_a_request_gets_a_503(server: InProcessServer) -> None:
    idle = [_connect(server) for _ in range(6)]
    try:
        with _connect(server) as sock:
            sock.sendall(_head() + CHAT)
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /chat/completions HTTP/1.1\r\nHost: aimi\r\nX-Bad: a\x00b\r\n\r\n",
        b"POST /chat/completions HTTP/1.1\r\nHost: aimi\r\nContent-Length: -5\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
)
def test_what_is_not_http_gets_a_400_in_the_surface_shape(server: InProcessServer, head: bytes) -> None:
    with _connect(server) as sock:
        sock.sendall(head)
        sock.settimeout(10)
        answer = _read_all(sock)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in status.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("the request is not valid HTTP: ")


def test_a_head_over_the_size_limit_gets_a_400_in_the_surface_shape(server: InProcessServer) -> None:
    from aimi.server.protocol import MAX_HEAD_BYTES

    with _connect(server) as sock:
        sock.sendall(b"POST /chat/completions HTTP/1.1\r\nHost: aimi\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1))
        sock.settimeout(10)
        answer = _read_all(sock)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["message"] == f"the request head is over {MAX_HEAD_BYTES} bytes"


def test_past_the_connection_cap_the_503_has_the_surface_shape(server: InProcessServer) -> None:
    idle = [_connect(server) for _ in range(6)]
    try:
        with _connect(server) as sock:
            sock.sendall(_head() + CHAT)
            sock.settimeout(10)
            answer = _read_all(sock)
    finally:
        for sock in idle:
            sock.close()
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in status.lower()
    assert json.loads(body)["error"]["message"] == "the server is at its connection limit; retry shortly"
    assert re.search(rb"\r\nx-request-id: [0-9a-f]{32}\r\n", status), status  # as every 5xx has


def _response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response's head and body, on a connection kept alive."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


FLOOD = json.dumps({"messages": [{"role": "user", "content": "hi"}] * 100_000}).encode()


def test_a_body_refused_from_its_start_is_answered_before_its_rest_and_the_connection_serves_on(
    server: InProcessServer,
) -> None:
    with _connect(server) as sock:
        sock.settimeout(10)
        sock.sendall(_head(length=len(FLOOD)) + FLOOD[:300_000])  # a twelfth of it
        head, body = _response(sock)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert json.loads(body)["error"]["message"] == "`messages` may hold at most 1024 messages; got more"
        sock.sendall(FLOOD[300_000:])  # the rest is discarded as it arrives, not read as a head
        sock.sendall(_head() + CHAT)
        head, body = _response(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body)["object"] == "chat.completion"


def test_the_rest_of_a_refused_body_must_arrive_within_the_head_deadline(server: InProcessServer) -> None:
    with _connect(server) as sock:
        sock.settimeout(10)
        sock.sendall(_head(length=len(FLOOD)) + FLOOD[:300_000])
        head, _ = _response(sock)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert _closed_within(sock, HEAD_S + 5)
