"""An engine pool on a Ray cluster, seen from the gateway: the :class:`Engine` protocol over a
Ray Serve ``DeploymentHandle`` to an :class:`aimi.scale.pool.EnginePool`.

The application builder (:mod:`aimi.scale`) gives every deployment it places on the cluster this
engine, with the capabilities and facts of the engine the pool runs, so that the gateway checks a
request exactly as it would in process. What can go wrong past the handle maps onto what aimi
already answers:

* the pool at its ``max_replicas``, each replica full, and its queue too (Ray's back-pressure):
  :class:`EngineBusy`, a 429 with ``Retry-After``, before any byte of the answer;
* a replica that dies while it streams, or whose engine dies: :class:`RequestFailed`, so the
  stream ends with the error frame; Serve replaces the replica (its health check fails) and the
  next request goes to a live one, while the gateway's deployment stays up;
* the client gone, the deadline passed: the stream's ``finally`` cancels the call, and the
  replica's ``finally`` stops the engine's work.

Ray is imported only when the engine starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import ConfigDict

from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    EngineBusy,
    EngineCapabilities,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
    TextDelta,
)
from aimi.engines.options import EngineOptions

REPLICA_LOST = "the engine replica serving this request stopped"


class RayOptions(EngineOptions):
    """Set by the application builder, never written in a deployments file.

    ``app``/``pool``: the Serve application and deployment of the pool; ``model_id``: the
    multiplexed model id in a shared pool; ``capabilities`` and ``facts``: those of the engine the
    pool runs (``facts`` None: ask a replica at start); ``capacity``: the most requests the pool holds
    (at its most replicas, each full, and its queue), which the gateway counts as the engine's slots
    so that Ray's back-pressure, shared by every gateway replica, is what refuses first;
    ``start_timeout``: how long to wait for a replica.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    engine_name: ClassVar[str] = "ray"
    needs_model: ClassVar[bool] = False

    app: str
    pool: str
    model_id: str | None = None
    capabilities: EngineCapabilities = EngineCapabilities()
    facts: ModelFacts | None = None
    capacity: int | None = None
    start_timeout: float = 600.0


class RayEngine:
    """Generations streamed from a pool's replicas; ``capabilities`` are those of the pool's engine."""

    Options = RayOptions

    def __init__(self, config: EngineConfig) -> None:
        self.options = RayOptions.parse(config.options)
        self.capabilities = self.options.capabilities
        self._state = EngineState.LOADING
        self._handle: Any = None
        self._streams: dict[str, Any] = {}
        self._events = 0

    async def start(self) -> ModelFacts:
        from ray import serve

        handle = serve.get_deployment_handle(self.options.pool, app_name=self.options.app)
        if self.options.model_id is not None:
            handle = handle.options(multiplexed_model_id=self.options.model_id)
        self._handle = handle
        facts = self.options.facts
        if facts is None:
            try:
                async with asyncio.timeout(self.options.start_timeout):
                    facts = await handle.facts.remote()
            except TimeoutError:
                raise EngineDead(
                    f"no replica of pool {self.options.pool!r} answered within {self.options.start_timeout:g} s"
                ) from None
            except Exception as exc:
                raise EngineDead(f"pool {self.options.pool!r} did not start: {exc}") from None
        self._state = EngineState.READY
        return facts if self.options.capacity is None else replace(facts, n_slots=self.options.capacity)

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        return self._generate(request)

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        from aimi.scale.pool import Failure

        response = self._handle.options(stream=True).generate.remote(request)
        self._streams[request.request_id] = response
        try:
            async for item in _mapped(response):
                if isinstance(item, Failure):
                    raise _failed(item)
                self._events += sum(1 for event in item if isinstance(event, TextDelta))
                for event in item:
                    yield event
        finally:
            self._streams.pop(request.request_id, None)
            response.cancel()

    async def _call(self, method: str, request: Any) -> Any:
        from aimi.scale.pool import Failure

        async def call() -> Any:
            return await getattr(self._handle, method).remote(request)

        result = await _mapped_call(call)
        if isinstance(result, Failure):
            raise _failed(result)
        return result

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        embeddings: Embeddings = await self._call("embed", request)
        return embeddings

    async def count_tokens(self, request: GenerationRequest) -> int | None:
        count: int | None = await self._call("count_tokens", request)
        return count

    async def abort(self, request_id: str) -> None:
        response = self._streams.pop(request_id, None)
        if response is not None:
            response.cancel()

    def health(self) -> EngineState:
        return self._state

    async def metrics(self) -> dict[str, float]:
        """What this gateway replica saw: the text events streamed to it (tokens, batched by the
        pool, for engines that stream one token an event)."""
        return {"tokens_generated": self._events, "streams": len(self._streams)}

    async def close(self) -> None:
        for response in list(self._streams.values()):
            response.cancel()
        self._streams.clear()
        self._state = EngineState.LOADING


def _failed(failure: Any) -> RequestFailed:
    """The gateway's failure for one a replica reported: its engine dying ends this request only,
    since Serve replaces the replica (its health check fails) while the pool serves on."""
    if failure.dead:
        return RequestFailed(REPLICA_LOST)
    error: RequestFailed = failure.error()
    return error


def _translate(exc: BaseException) -> RequestFailed | EngineDead | None:
    """aimi's failure for what Ray raised past a handle; None for what is not Ray's."""
    from ray.exceptions import RayError
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, RayServeException

    if isinstance(exc, BackPressureError):
        wait = exc.retry_after_s if exc.retry_after_s is not None else 1.0
        return EngineBusy(
            "the engine pool is at its limit of replicas and every one is full; retry later", retry_after=wait
        )
    if isinstance(exc, DeploymentUnavailableError):
        return EngineDead(f"the engine pool is unavailable: {exc}")
    if isinstance(exc, RayError | RayServeException):
        return RequestFailed(REPLICA_LOST)
    return None


async def _mapped(response: Any) -> AsyncIterator[Any]:
    """The items of a streaming response, Ray's errors raised as aimi's."""
    iterator = response.__aiter__()
    while True:
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = _translate(exc)
            if failure is None:
                raise
            raise failure from None
        yield item


async def _mapped_call(call: Any) -> Any:
    try:
        return await call()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        failure = _translate(exc)
        if failure is None:
            raise
        raise failure from None
