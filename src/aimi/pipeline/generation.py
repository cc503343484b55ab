"""Driving an engine for one request: its choices, the first event, the rest, and the usage.

A generation is opened by waiting for its first event, so everything the engine can refuse
(a prompt longer than the context) is refused before a byte of the 200 goes out. After that,
a failure can only end the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from aimi.deployments.registry import Deployment
from aimi.deployments.supervisor import EngineStalled
from aimi.engines.api import (
    EngineDead,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    RequestFailed,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from aimi.pipeline.context import RequestContext
from aimi.protocol.errors import ApiError, service_unavailable
from aimi.safety.filter import Annotation
from aimi.usage.records import Outcome

log = logging.getLogger(__name__)


class _Expired:
    """On the queue when the generation's deadline passed."""


_EXPIRED = _Expired()


def engine_error(
    exc: RequestFailed | EngineDead, request: GenerationRequest | None = None, deployment: Deployment | None = None
) -> ApiError:
    """The client-facing error for an engine failure; a dead engine's 503 says when to retry only
    when a restart is coming (and then how long until it is due)."""
    if isinstance(exc, EngineDead):
        wait = deployment.supervision.retry_after(time.monotonic()) if deployment is not None else 10.0
        if isinstance(exc, EngineStalled):
            return ApiError("ServiceUnavailable", str(exc), retry_after=wait)
        if wait is None:
            return ApiError("ServiceUnavailable", "the engine stopped and will not be restarted")
        return service_unavailable("the engine stopped; retry shortly", retry_after=wait)
    if exc.client_error and exc.code == "context_length_exceeded":
        param = "input" if request is None else "messages" if request.messages is not None else "prompt"
        return ApiError(exc.code, exc.message, param=param)
    if exc.client_error:
        return ApiError("invalid_request", exc.message)
    return ApiError("engine_error", "the engine failed to generate a response")


class Generation:
    """One request's running generation: its choices fanned out over the engine, merged into one
    stream of events whose ``index`` says the choice, and one :class:`Usage` at the end.

    Opening waits until every choice has produced its first event, so what the engine refuses is
    refused before the response starts. Always :meth:`close` it: the streamed response or
    :func:`collect` does so in a ``finally``, and settling does for a request that failed in
    between. Closing stops the engine's work and gives the request's slot back. Tokens are counted
    on the request's context as they come, so an abort or a failure still meters what ran.
    """

    def __init__(self, context: RequestContext) -> None:
        assert context.work is not None, "the canonicalise step comes first"
        self.context = context
        self.deployment = context.serving()
        self.work = context.work
        self.request = context.work.request
        self.timeout = context.runtime.settings.request_timeout
        self._deadline = 0.0
        self._produced: dict[int, int] = {}
        self._reported: dict[int, Usage] = {}
        self._queue: asyncio.Queue[tuple[int, Event | RequestFailed | EngineDead | _Expired | None]] = asyncio.Queue()
        self._started: list[asyncio.Event] = []
        self._early: dict[int, RequestFailed | EngineDead] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._watched: int | None = None

    def _choices(self) -> list[GenerationRequest]:
        base = self.work.request
        logprobs = base.logprobs
        if logprobs is None and self.work.candidates > self.work.n:
            logprobs = 0  # best_of ranks candidates by their tokens' log-probabilities
        return [
            replace(
                base,
                request_id=f"{base.request_id}-{i}",
                seed=None if base.seed is None else base.seed + i,
                logprobs=logprobs,
            )
            for i in range(self.work.candidates)
        ]

    @classmethod
    async def open(cls, context: RequestContext) -> Generation:
        """Start every choice of the request (which holds its slot) and wait for their first events."""
        generation = cls(context)
        generation._deadline = asyncio.get_running_loop().time() + generation.timeout
        try:
            for i, request in enumerate(generation._choices()):
                generation._started.append(asyncio.Event())
                generation._tasks.append(asyncio.create_task(generation._pump(i, request)))
            generation._watched = generation.deployment.supervision.begin(generation._kill)
            try:
                async with asyncio.timeout_at(generation._deadline):
                    for started in generation._started:
                        await started.wait()
            except TimeoutError:
                context.fail(Outcome.TIMEOUT)
                raise ApiError(
                    "timeout", f"the generation did not start within {generation.timeout:g} seconds"
                ) from None
            if generation._early:
                failure = next(iter(generation._early.values()))
                if isinstance(failure, RequestFailed) and failure.client_error:
                    context.prompt_tokens = 0  # refused before the model read anything
                else:
                    context.fail(Outcome.ENGINE_ERROR)
                raise engine_error(failure, generation.request, generation.deployment)
        except BaseException:
            await generation.close()
            raise
        return generation

    async def _pump(self, index: int, request: GenerationRequest) -> None:
        started = self._started[index]
        try:
            async for event in self.deployment.engine.generate(request):
                self.deployment.supervision.progress()
                self._queue.put_nowait((index, event))
                started.set()
        except (RequestFailed, EngineDead) as exc:
            if not started.is_set():
                self._early[index] = exc
            self._queue.put_nowait((index, exc))
        except Exception as exc:  # an engine bug: the request fails, loudly, never as a cut answer
            log.exception("engine %s raised on request %s", type(self.deployment.engine).__name__, request.request_id)
            failed = RequestFailed(f"the engine raised {type(exc).__name__}")
            if not started.is_set():
                self._early[index] = failed
            self._queue.put_nowait((index, failed))
        finally:
            self._queue.put_nowait((index, None))
            started.set()

    async def events(self) -> AsyncIterator[Event]:
        """Every event of every choice, then one :class:`Usage`; engine failures raise :class:`ApiError`.
        With tools, the model's answer is read back into tool calls."""
        events: AsyncIterator[Any] = self._merged()
        if self.work.tools is not None:
            events = self.work.tools.read(events)
        async for event in events:
            yield event

    def ready(self) -> bool:
        """Whether the engine's next event is already here, so a reader can read on before it
        writes what it has (an upstream's chunks often come many to a packet)."""
        return not self._queue.empty()

    def _kill(self, failure: EngineDead) -> None:
        """The watchdog found the engine stalled: every choice fails with ``failure``."""
        for index, started in enumerate(self._started):
            if not started.is_set():
                self._early[index] = failure
            self._queue.put_nowait((index, failure))
            started.set()
        for task in self._tasks:
            task.cancel()

    def stop_choice(self, index: int) -> None:
        """Stop generating choice ``index`` (its output was cut); the others go on."""
        if index < len(self._tasks):
            self._tasks[index].cancel()

    def _usage(self) -> Usage:
        """The usage so far: the engine's own counts for finished choices, the pieces produced for
        the others; the prompt once (the engine's count, else aimi's)."""
        reported = list(self._reported.values())
        prompt = reported[0].prompt_tokens if reported else self.context.prompt_tokens
        completion = sum(
            self._reported[i].completion_tokens if i in self._reported else self._produced.get(i, 0)
            for i in range(len(self._tasks))
        )
        return Usage(prompt, completion)

    def _account(self) -> None:
        usage = self._usage()
        self.context.prompt_tokens, self.context.completion_tokens = usage.prompt_tokens, usage.completion_tokens

    def _expire(self) -> None:
        """The deadline passed: the reader of the events is told, whatever the engine does."""
        self._queue.put_nowait((-1, _EXPIRED))

    async def _merged(self) -> AsyncIterator[Event]:
        remaining = len(self._tasks)
        # One timer for the whole generation, not one per event.
        expiry = asyncio.get_running_loop().call_at(self._deadline, self._expire)
        try:
            while remaining:
                index, item = await self._queue.get()
                if item is None:
                    remaining -= 1
                elif isinstance(item, _Expired):
                    self.context.fail(Outcome.TIMEOUT)
                    log.warning("generation %s passed its %gs deadline", self.request.request_id, self.timeout)
                    raise ApiError("timeout", f"the generation ran longer than {self.timeout:g} seconds")
                elif isinstance(item, RequestFailed | EngineDead):
                    log.warning("generation %s failed after the response started: %s", self.request.request_id, item)
                    self.context.fail(Outcome.ENGINE_ERROR)
                    raise engine_error(item, self.request, self.deployment)
                elif isinstance(item, Usage):
                    self._reported[index] = item
                    self.context.prompt_bounded = False  # the engine's own count replaces the bound
                    self._account()
                else:
                    if isinstance(item, TextDelta | ToolCallDelta):
                        self._produced[index] = self._produced.get(index, 0) + 1
                        self.context.token()
                        self._account()
                    yield item if item.index == index else replace(item, index=index)
        finally:
            expiry.cancel()
        usage = self._usage()
        self._account()
        yield usage

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watched is not None:
            self.deployment.supervision.end(self._watched)
        self.context.release_slot()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Result:
    """A whole generation, gathered for a non-streamed answer."""

    texts: dict[int, list[str]] = field(default_factory=dict)
    logprobs: dict[int, list[TokenLogprob]] = field(default_factory=dict)
    tool_calls: dict[int, list[ToolCall]] = field(default_factory=dict)
    finish: dict[int, FinishReason] = field(default_factory=dict)
    usage: Usage = field(default_factory=lambda: Usage(0, 0))
    filter_results: dict[int, dict[str, Any]] = field(default_factory=dict)

    def text(self, index: int) -> str:
        return "".join(self.texts.get(index, ()))

    @property
    def indexes(self) -> list[int]:
        return sorted(set(self.texts) | set(self.finish) | set(self.tool_calls) | {0})

    def add(self, event: Event | Annotation) -> None:
        if isinstance(event, Annotation):
            self.filter_results[event.index] = event.results
        elif isinstance(event, TextDelta):
            self.texts.setdefault(event.index, []).append(event.text)
            if event.logprobs:
                self.logprobs.setdefault(event.index, []).extend(event.logprobs)
        elif isinstance(event, ToolCallDelta):
            calls = self.tool_calls.setdefault(event.index, [])
            if event.id is not None:
                calls.append(ToolCall(event.id, event.name or "", ""))
            call = calls[event.call_index]
            calls[event.call_index] = replace(call, arguments=call.arguments + event.arguments)
        elif isinstance(event, Finish):
            self.finish[event.index] = event.reason
        elif isinstance(event, Usage):
            self.usage = event

    def best(self, n: int, keep_logprobs: bool) -> Result:
        """The ``n`` choices with the highest mean token log-probability, renumbered from 0."""

        def mean(index: int) -> float:
            values = [entry.logprob for entry in self.logprobs.get(index, ()) if entry.logprob is not None]
            return sum(values) / len(values) if values else float("-inf")

        ranked = sorted(self.indexes, key=mean, reverse=True)[:n]
        best = Result(usage=self.usage)
        for new, old in enumerate(ranked):
            best.texts[new] = self.texts.get(old, [])
            if old in self.finish:
                best.finish[new] = self.finish[old]
            if old in self.tool_calls:
                best.tool_calls[new] = self.tool_calls[old]
            if keep_logprobs and old in self.logprobs:
                best.logprobs[new] = self.logprobs[old]
            if old in self.filter_results:
                best.filter_results[new] = self.filter_results[old]
        return best


async def collect(context: RequestContext) -> Result:
    """Run the request's generation to its end and gather it (the best ``n`` when ``best_of``
    asked for more): the whole answer of a request that is not streamed."""
    assert context.generation is not None and context.events is not None, "the generate step comes first"
    result = Result()
    try:
        async for event in context.events:
            result.add(event)
    finally:
        await context.generation.close()
    work = context.generation.work
    if work.candidates > work.n:
        return result.best(work.n, keep_logprobs=work.request.logprobs is not None)
    return result
