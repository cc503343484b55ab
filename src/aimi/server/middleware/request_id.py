"""Gives every request an id, echoes the client's ``x-ms-client-request-id``, and logs one line
per request: method, path, status, duration, request id. No header, no query, no body: nothing a
secret could hide in. One layer for both, since both wrap every response's start."""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimi.protocol.ids import new_id

log = logging.getLogger("aimi.access")

# Echo only ids that cannot smuggle anything into a header or a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = new_id()
        added = [(b"x-request-id", request_id.encode())]
        for name, value in scope["headers"]:
            if name == b"x-ms-client-request-id":
                text = value.decode("latin-1")
                if _SAFE_ID.match(text):
                    added.append((b"x-ms-client-request-id", value))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %d %.1fms id=%s",
                    scope["method"],
                    scope["path"].encode("unicode_escape").decode("ascii"),
                    status,
                    (time.perf_counter() - start) * 1000,
                    request_id,
                )
