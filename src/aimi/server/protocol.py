"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for every request head.

uvicorn bounds the silence between two requests of a kept-alive connection, but not the time a
client may take to send a request head: a connection that opens and sends nothing, or a header a
byte a second, would stay open for ever (slowloris). Here each connection must complete each
request head within ``header_timeout`` seconds of opening, or of the previous response; else it is
closed. Bodies have their own deadline in :mod:`aimi.server.middleware.body_limit`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aimi.protocol.errors import ApiError


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol whose connections must send each request head within ``header_timeout`` s."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is complete: the app has the request
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()  # the next request's head, on a kept-alive connection

    def send_400_response(self, msg: str) -> None:
        """What is not HTTP at all (a NUL in a header, a negative length, a head too large) gets
        the surfaces' error body, not uvicorn's plain text."""
        body = json.dumps(ApiError("invalid_request", f"the request is not valid HTTP: {msg}").body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-ms-error-code", b"invalid_request"),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body)):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol(header_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class for a server whose request heads must arrive within ``header_timeout`` s."""
    return type("HeadDeadlineProtocol", (DeadlineH11Protocol,), {"header_timeout": header_timeout})
