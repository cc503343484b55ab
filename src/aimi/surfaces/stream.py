"""The SSE response: streams a generation, aborts it when the client leaves.

The response listens for the client's disconnect while it streams, so a client that goes away
during a quiet stretch (a long prompt being read) still stops the engine. An engine failure
after the 200 sends one ``data: {"error": ...}`` frame (OpenAI clients raise on it) and then
returns without ending the body: the server breaks the connection (no ``[DONE]``, no final
chunk), so the Azure SDK raises "Response ended prematurely" instead of taking a cut answer
for a whole one.
"""

from __future__ import annotations

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aimi.pipeline.context import RequestContext
from aimi.protocol.errors import ApiError
from aimi.surfaces.encode import Encoder
from aimi.usage.records import Outcome


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, context: RequestContext, encoder: Encoder) -> None:
        assert context.generation is not None and context.events is not None, "the generate step comes first"
        self.context = context
        self.generation = context.generation
        self.events = context.events
        self.encoder = encoder
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ended = False  # the stream ended on our side: a disconnect after that is no abort

        async def stream(cancel: anyio.CancelScope) -> None:
            nonlocal ended
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for frame in self.encoder.stream(self.events):
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            except ApiError as exc:
                ended = True
                await send({"type": "http.response.body", "body": exc.sse_frame(), "more_body": True})
            except OSError:
                self.context.fail(Outcome.ABORTED)  # the client went away while we were writing
            else:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                ended = True
                await self.generation.close()
                cancel.cancel()

        async def watch(cancel: anyio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not ended:
                self.context.fail(Outcome.ABORTED)
            cancel.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(stream, group.cancel_scope)
            group.start_soon(watch, group.cancel_scope)
