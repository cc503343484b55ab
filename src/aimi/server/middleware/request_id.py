"""Gives every request an id, and echoes the client's ``x-ms-client-request-id``."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Echo only ids that cannot smuggle anything into a header or a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        client_id = None
        for name, value in scope["headers"]:
            if name == b"x-ms-client-request-id":
                text = value.decode("latin-1")
                client_id = text if _SAFE_ID.match(text) else None
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                if client_id is not None:
                    headers["x-ms-client-request-id"] = client_id
            await send(message)

        await self.app(scope, receive, send_with_ids)
