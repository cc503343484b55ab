"""Opens a usage :class:`Meter` for every inference request and closes it exactly once, whatever
happens inside (an answer, a refusal, an abort, an error), so each request leaves one usage
record, settles its quota reservation and is counted in the metrics. Responses that went through
a quota carry its ``x-ratelimit-*`` headers."""

from __future__ import annotations

import asyncio
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimi.usage.meter import Meter

ROUTES = (
    ("/chat/completions", "chat"),
    ("/images/embeddings", "image_embeddings"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
)


_OPENAI = re.compile(r"^/(deployments/[^/]+/)?v1/")


def route_of(path: str) -> str | None:
    return next((route for suffix, route in ROUTES if path.endswith(suffix)), None)


class MeteringMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_of(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        principal = state.get("principal")
        surface = "openai" if _OPENAI.match(scope["path"]) else "azure"
        meter = Meter(state["request_id"], surface, route, principal.name if principal is not None else None)
        state["meter"] = meter
        status = 500

        async def send_metered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if meter.remaining is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in meter.remaining.headers().items():
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_metered)
        finally:
            # Shielded: a cancelled request is still settled and recorded.
            await asyncio.shield(asyncio.ensure_future(scope["app"].state.metering.finish(meter, status)))
