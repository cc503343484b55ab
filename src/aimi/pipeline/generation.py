"""Driving an engine for one request: admission, the first event, the rest, and the settling.

A generation is opened by waiting for its first event, so everything the engine can refuse
(a prompt longer than the context) is refused before a byte of the 200 goes out. After that,
a failure can only end the stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aimi.deployments.registry import Deployment
from aimi.engines.api import EngineDead, Event, Finish, FinishReason, GenerationRequest, RequestFailed, TextDelta, Usage
from aimi.protocol.errors import ApiError, service_unavailable

log = logging.getLogger(__name__)


def engine_error(exc: RequestFailed | EngineDead, request: GenerationRequest) -> ApiError:
    """The client-facing error for an engine failure."""
    if isinstance(exc, EngineDead):
        return service_unavailable("the engine stopped; retry shortly", retry_after=10)
    if exc.client_error and exc.code == "context_length_exceeded":
        return ApiError(exc.code, exc.message, param="messages" if request.messages is not None else "prompt")
    if exc.client_error:
        return ApiError("invalid_request", exc.message)
    return ApiError("engine_error", "the engine failed to generate a response")


class Generation:
    """One running generation: its first events, and an iterator of the rest.

    Always :meth:`close` it (the response does so in a ``finally``): closing stops the engine's
    work and frees the deployment's place.
    """

    def __init__(self, deployment: Deployment, request: GenerationRequest) -> None:
        self.deployment = deployment
        self.request = request
        self._events: AsyncIterator[Event] = deployment.engine.generate(request)
        self._head: list[Event] = []
        self._closed = False

    @classmethod
    async def open(cls, deployment: Deployment, request: GenerationRequest) -> Generation:
        deployment.ready().admit()
        generation = cls(deployment, request)
        try:
            generation._head.append(await anext(generation._events))
        except StopAsyncIteration:
            pass
        except (RequestFailed, EngineDead) as exc:
            await generation.close()
            raise engine_error(exc, generation.request) from None
        except BaseException:
            await generation.close()
            raise
        return generation

    async def events(self) -> AsyncIterator[Event]:
        """Every event, the first included. Engine failures raise :class:`ApiError`."""
        for event in self._head:
            yield event
        self._head.clear()
        try:
            async for event in self._events:
                yield event
        except (RequestFailed, EngineDead) as exc:
            log.warning("generation %s failed after the response started: %s", self.request.request_id, exc)
            raise engine_error(exc, self.request) from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.deployment.release()
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass
class Result:
    """A whole generation, gathered for a non-streamed answer."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    finish: dict[int, FinishReason] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(0, 0))

    def text(self, index: int) -> str:
        return "".join(self.texts.get(index, ()))

    @property
    def indexes(self) -> list[int]:
        return sorted(set(self.texts) | set(self.finish) | {0})


async def gather(generation: Generation) -> Result:
    """Run a generation to its end and collect it."""
    result = Result()
    try:
        async for event in generation.events():
            if isinstance(event, TextDelta):
                result.texts.setdefault(event.index, []).append(event.text)
            elif isinstance(event, Finish):
                result.finish[event.index] = event.reason
            elif isinstance(event, Usage):
                result.usage = event
    finally:
        await generation.close()
    return result
