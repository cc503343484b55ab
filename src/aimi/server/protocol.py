"""uvicorn's HTTP/1.1 protocol (httptools, llhttp's parser) with the bounds a public server needs.

uvicorn bounds the silence between two requests of a kept-alive connection, but not the time a
client may take to send a request head, nor the head's size: a connection that opens and sends
nothing, or a header a byte a second, would stay open for ever (slowloris), and llhttp keeps
reading a header of any length. Here each connection must complete each request head within
``header_timeout`` seconds of opening, or of the previous response, and in at most
``MAX_HEAD_BYTES``; else it is closed (a head too large gets a 400 first). Bodies have their own
deadline in :mod:`aimi.server.middleware.body_limit`.

What is not HTTP, and the 503 past ``limit_concurrency``, are answered in the surfaces' error
shape rather than uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aimi.protocol.errors import ApiError, service_unavailable
from aimi.protocol.jsonbytes import ascii_json
from aimi.surfaces.json_response import error_response

MAX_HEAD_BYTES = 64 * 1024
_BOTH_FRAMINGS = "a request may give Content-Length or Transfer-Encoding, not both"


def _error_bytes(error: ApiError) -> bytes:
    """A whole response for ``error``, written straight to the transport (no app runs for it)."""
    body = ascii_json(error.body())
    headers = {
        "content-type": "application/json",
        "content-length": str(len(body)),
        **error.headers(),
        "connection": "close",
    }
    head = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + body


# The answer past the connection cap: a 503 the clients retry.
_busy = error_response(
    service_unavailable("the server is at its connection limit; retry shortly", retry_after=1),
    {"connection": "close"},
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose connections must send each request head within ``header_timeout``
    seconds and ``MAX_HEAD_BYTES`` bytes."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The connection cap is checked here, so that its 503 has the surfaces' shape.
        self._cap = self.limit_concurrency
        self.limit_concurrency = None
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True

    def _arm(self) -> None:
        self._disarm()
        self._in_head = True
        self._head_bytes = 0
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self.send_400_response(str(exc) or "unparseable request")
            return
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._reply_and_close(ApiError("invalid_request", f"the request head is over {MAX_HEAD_BYTES} bytes"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        cap = self._cap
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):
            app, self.app = self.app, _busy
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()  # the next request's head, on a kept-alive connection

    def send_400_response(self, msg: str) -> None:
        """What is not HTTP at all (a NUL in a header, a negative length, a body framed two ways)
        gets the surfaces' error body, not uvicorn's plain text."""
        if "Transfer-Encoding" in msg and "Content-Length" in msg:
            error = ApiError("invalid_request", _BOTH_FRAMINGS)
        else:
            error = ApiError("invalid_request", f"the request is not valid HTTP: {msg}")
        self._reply_and_close(error)

    def _reply_and_close(self, error: ApiError) -> None:
        self.transport.write(_error_bytes(error))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(header_timeout: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for a server whose request heads must arrive within ``header_timeout`` s."""
    return type("BoundedProtocol", (BoundedHttpToolsProtocol,), {"header_timeout": header_timeout})
