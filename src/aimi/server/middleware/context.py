"""Opens a :class:`RequestContext` for every inference request and settles it exactly once,
whatever happens inside (an answer, a refusal, an abort, an error), so each request leaves one
usage record, settles its quota reservation and is counted in the metrics. Responses that went
through a quota carry its ``x-ratelimit-*`` headers."""

from __future__ import annotations

import asyncio
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimi.auth.keys import principal_of
from aimi.pipeline.context import AZURE_OPENAI, Kind, RequestContext
from aimi.pipeline.settle import settle
from aimi.runtime import runtime_of

ROUTES = (
    ("/chat/completions", Kind.CHAT),
    ("/images/embeddings", Kind.IMAGE_EMBEDDINGS),
    ("/completions", Kind.COMPLETIONS),
    ("/embeddings", Kind.EMBEDDINGS),
)


_OPENAI = re.compile(r"^/(deployments/[^/]+/|openai/)?v1/")


def kind_of(path: str) -> Kind | None:
    return next((kind for suffix, kind in ROUTES if path.endswith(suffix)), None)


def surface_of(path: str) -> str:
    """The surface a path belongs to, as usage records and traces name it."""
    if path.startswith("/openai/deployments/"):
        return AZURE_OPENAI
    return "openai" if _OPENAI.match(path) else "azure"


class ContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = kind_of(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        context = RequestContext(
            runtime_of(scope["app"]),
            kind,
            surface_of(scope["path"]),
            id=state["request_id"],
            principal=principal_of(scope),
            receive=receive,
        )
        state["context"] = context
        status = 500

        async def send_metered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if context.remaining is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in context.remaining.headers().items():
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_metered)
        finally:
            # Shielded: a cancelled request is still settled and recorded.
            await asyncio.shield(asyncio.ensure_future(settle(context, status)))
