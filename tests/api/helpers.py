"""Shared assertions and small clients for the in-process API tests."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import KEY, InProcessServer

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
COMPLETION: dict[str, Any] = {"prompt": "hi"}
ERROR_KEYS = {"code", "message", "type", "param"}
_UNSET: Any = object()


def assert_error(
    response: httpx.Response,
    status: int,
    code: str,
    *,
    param: Any = _UNSET,
    message: str | None = None,
    retry: bool = True,
) -> dict[str, Any]:
    """The response is the error envelope with exactly this status and code; returns the body.

    Also pins what every error shares: JSON, ``x-ms-error-code`` equal to the code, a
    ``Retry-After`` on 429/503 only (azure-core retries any other status that carries one), and
    on a 5xx the ``x-request-id`` an operator finds it by; with ``retry`` false, a 503 that must
    carry none (nothing is coming back).
    """
    assert response.status_code == status, (response.status_code, response.text)
    if status >= 500:
        assert len(response.headers.get("x-request-id", "")) == 32, response.headers
    assert response.headers["content-type"] == "application/json", response.headers
    body: dict[str, Any] = response.json()
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    assert response.headers.get("x-ms-error-code") == code, response.headers
    assert isinstance(body["error"]["type"], str) and body["error"]["type"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    if param is not _UNSET:
        assert body["error"]["param"] == param, body
    if message is not None:
        assert body["error"]["message"] == message, body
    assert_retry_after_rule(response, retry)
    return body


def assert_retry_after_rule(response: httpx.Response, retry: bool = True) -> None:
    """Retry-After on 429 and 503 (unless ``retry`` is false), and on nothing else."""
    if response.status_code in (429, 503) and retry:
        assert response.headers.get("retry-after", "").isdigit(), response.headers
        assert int(response.headers["retry-after"]) >= 1
    else:
        assert "retry-after" not in response.headers, (response.status_code, response.headers)


def sse_payloads(raw: bytes, *, done: bool = True) -> list[dict[str, Any]]:
    """The JSON payloads of a raw SSE body, checking its framing byte by byte.

    Every event is exactly ``data: <one line of JSON>\\n\\n``; LF only; nothing but ``data: ``
    lines; each event is valid UTF-8 and valid JSON on its own; ``data: [DONE]\\n\\n`` ends it
    when ``done`` (and appears nowhere when not).
    """
    assert b"\r" not in raw, raw
    assert raw.endswith(b"\n\n"), raw[-200:]
    events = raw[:-2].split(b"\n\n")
    if done:
        assert events[-1] == b"data: [DONE]", events[-1]
        events = events[:-1]
    assert b"data: [DONE]" not in events
    payloads = []
    for event in events:
        assert event.startswith(b"data: "), event
        assert b"\n" not in event, event
        text = event[len(b"data: ") :].decode("utf-8")  # strict: a split character raises here
        payload = json.loads(text)
        assert isinstance(payload, dict), payload
        payloads.append(payload)
    return payloads


def client(server: InProcessServer, **kwargs: Any) -> httpx.Client:
    """Like ``server.client()`` but with any timeout."""
    kwargs.setdefault("timeout", 30)
    return httpx.Client(base_url=server.url, headers=server.headers, **kwargs)


def open_request(
    server: InProcessServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> socket.socket:
    """Send a POST on a raw socket and return the socket without reading anything.

    Closing the socket is the client going away.
    """
    parts = urlsplit(server.url)
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.hostname}:{parts.port}",
        f"api-key: {KEY}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    return sock


def abort(sock: socket.socket) -> None:
    """Go away abruptly: the server sees the connection close."""
    sock.close()
