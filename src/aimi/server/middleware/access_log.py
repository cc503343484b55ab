"""One log line per request: method, path, status, duration, request id. No header, no query,
no body: nothing a secret could hide in."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("aimi.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            path = scope["path"].encode("unicode_escape").decode("ascii")
            log.info(
                "%s %s %d %.1fms id=%s",
                scope["method"],
                path,
                status,
                (time.perf_counter() - start) * 1000,
                scope.get("state", {}).get("request_id", "-"),
            )
