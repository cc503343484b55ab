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

# The most a stream keeps before writing, when the engine's events come faster than one a write.
_BATCH_BYTES = 16 * 1024


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(self, context: RequestContext, encoder: Encoder) -> None:
        assert context.generation is not None and context.events is not None, "the generate step comes first"
        self.context = context
        self.generation = context.generation
        self.events = context.events
        self.encoder = encoder
        # Frames whose next event is already here are written together. Only without a stage
        # that holds events back (tools being read, content safety's windows): behind one, an
        # event that is here may not make a frame, and the frames kept would wait for the engine.
        work = context.work
        self.batching = work is not None and work.tools is None and context.serving().safety is None
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ended = False  # the stream ended on our side: a disconnect after that is no abort

        async def stream(cancel: anyio.CancelScope) -> None:
            nonlocal ended
            kept: list[bytes] = []
            size = 0
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for frame in self.encoder.stream(self.events):
                    kept.append(frame)
                    size += len(frame)
                    if self.batching and size < _BATCH_BYTES and self.generation.ready():
                        continue
                    await send({"type": "http.response.body", "body": b"".join(kept), "more_body": True})
                    kept.clear()
                    size = 0
            except ApiError as exc:
                ended = True
                kept.append(exc.sse_frame())
                await send({"type": "http.response.body", "body": b"".join(kept), "more_body": True})
            except OSError:
                self.context.fail(Outcome.ABORTED)  # the client went away while we were writing
            else:
                ended = True
                await send({"type": "http.response.body", "body": b"".join(kept), "more_body": False})
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
