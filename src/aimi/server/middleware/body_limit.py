"""Bounds on a request body: its size (413, whether announced or chunked), the silence while it
arrives (408), and its framing (a body announced both by length and as chunked is a 400: a proxy
and aimi could read it differently)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimi.protocol.errors import ApiError
from aimi.surfaces.json_response import error_response


def too_large(limit: int) -> ApiError:
    return ApiError("payload_too_large", f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = {name for name, _ in scope["headers"]}
        if b"content-length" in names and b"transfer-encoding" in names:
            error = ApiError("invalid_request", "a request may give Content-Length or Transfer-Encoding, not both")
            await error_response(error, {"connection": "close"})(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await error_response(too_large(self.max_bytes))(scope, receive, send)
                return
        received = 0
        complete = False

        async def receive_limited() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what comes next is the client going away, whenever it does
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise ApiError(
                    "request_timeout", f"the request body stopped arriving for {self.timeout:g} seconds"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, receive_limited, send)
