"""An engine pool: the Serve deployment whose replicas run one aimi deployment's engine (or, for a
multiplexed pool, several deployments' engines, loaded on demand, at most ``models_per_replica``
at once per replica).

The gateway talks to it through :class:`aimi.engines.ray.RayEngine` only. Events leave a replica
in small batches: each streamed item costs about a millisecond through a handle, so whatever the
engine produced while the previous batch was on its way goes in the next one, without waiting
for more. A failure the engine reports is sent as the last item, plainly, so that the gateway
raises the same :class:`RequestFailed` or :class:`EngineDead` as an engine in process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aimi.engines import build_engine
from aimi.engines.api import (
    EmbeddingRequest,
    Embeddings,
    Engine,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
)

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Most events in one streamed item."""


@dataclass(frozen=True)
class PoolMember:
    """One aimi deployment a pool serves: its engine, its config, and the model as the file names
    it (resolved on the replica's own node, into its own cache)."""

    name: str
    engine: str
    config: EngineConfig
    model_ref: str | None = None


@dataclass(frozen=True)
class Failure:
    """An engine's failure, carried to the gateway as a stream's last item."""

    dead: bool
    message: str
    client_error: bool = False
    code: str = "engine_error"

    @classmethod
    def of(cls, exc: RequestFailed | EngineDead) -> Failure:
        if isinstance(exc, EngineDead):
            return cls(True, str(exc) or "the engine stopped")
        return cls(False, exc.message, exc.client_error, exc.code)

    def error(self) -> RequestFailed | EngineDead:
        if self.dead:
            return EngineDead(self.message)
        return RequestFailed(self.message, client_error=self.client_error, code=self.code)


class _Loaded:
    """An engine a multiplexed replica holds; Serve awaits ``__del__`` when it evicts it."""

    def __init__(self, engine: Engine, facts: ModelFacts) -> None:
        self.engine = engine
        self.facts = facts

    async def __del__(self) -> None:
        await self.engine.close()


async def start_engine(member: PoolMember, cache_dir: str | None) -> tuple[Engine, ModelFacts]:
    """Build and start ``member``'s engine, its model fetched into this node's cache first."""
    config = member.config
    if member.model_ref is not None and cache_dir is not None:
        from dataclasses import replace

        from aimi.deployments.sources import resolve

        model = await asyncio.to_thread(resolve, member.model_ref, Path(cache_dir), lambda line: log.info("%s", line))
        config = replace(config, model_path=str(model.path))
    engine = build_engine(member.engine, config)
    facts = await engine.start()
    return engine, facts


class EnginePool:
    """A replica of an engine pool. ``members`` maps each model id (the aimi deployment's name) to
    what it runs; with one member and no multiplexing, the engine starts with the replica, so the
    replica is ready only once the model is loaded."""

    async def __init__(  # type: ignore[misc]  # Ray Serve awaits an async constructor
        self,
        members: dict[str, PoolMember],
        models_per_replica: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.members = members
        self.cache_dir = cache_dir
        self.multiplexed = models_per_replica is not None
        self.single: _Loaded | None = None
        if not self.multiplexed:
            (member,) = members.values()
            self.single = _Loaded(*await start_engine(member, cache_dir))
            return
        from ray import serve

        async def load(model_id: str) -> _Loaded:
            member = self.members.get(model_id)
            if member is None:
                raise RequestFailed(f"this pool serves no model {model_id!r}")
            return _Loaded(*await start_engine(member, self.cache_dir))

        self._load = serve.multiplexed(max_num_models_per_replica=models_per_replica)(load)

    async def _engine(self) -> _Loaded:
        if self.single is not None:
            return self.single
        from ray import serve

        loaded: _Loaded = await self._load(serve.get_multiplexed_model_id())
        return loaded

    async def facts(self) -> ModelFacts:
        return (await self._engine()).facts

    async def generate(self, request: GenerationRequest) -> AsyncIterator[list[Event] | Failure]:
        """The engine's events in batches; a failure as the last item."""
        try:
            loaded = await self._engine()
        except (RequestFailed, EngineDead) as exc:
            yield Failure.of(exc)
            return
        queue: asyncio.Queue[Event | RequestFailed | EngineDead | None] = asyncio.Queue()
        stream = loaded.engine.generate(request)

        async def pump() -> None:
            try:
                async for event in stream:
                    queue.put_nowait(event)
                queue.put_nowait(None)
            except (RequestFailed, EngineDead) as exc:
                queue.put_nowait(exc)
            except Exception as exc:
                log.exception("engine %s raised", type(loaded.engine).__name__)
                queue.put_nowait(RequestFailed(f"the engine raised {type(exc).__name__}"))

        task = asyncio.create_task(pump())
        try:
            done = False
            while not done:
                batch: list[Event] = []
                item = await queue.get()
                while True:
                    if item is None:
                        done = True
                        break
                    if isinstance(item, RequestFailed | EngineDead):
                        if batch:
                            yield batch
                        yield Failure.of(item)
                        return
                    batch.append(item)
                    if len(batch) >= MAX_BATCH or queue.empty():
                        break
                    item = queue.get_nowait()
                if batch:
                    yield batch
        finally:
            # The gateway cancelled (its client went away) or the stream ended: the engine's
            # own ``finally`` frees the slot.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await stream.aclose()  # type: ignore[attr-defined]

    async def embed(self, request: EmbeddingRequest) -> Embeddings | Failure:
        try:
            return await (await self._engine()).engine.embed(request)
        except (RequestFailed, EngineDead) as exc:
            return Failure.of(exc)

    async def count_tokens(self, request: GenerationRequest) -> int | None | Failure:
        try:
            return await (await self._engine()).engine.count_tokens(request)
        except (RequestFailed, EngineDead) as exc:
            return Failure.of(exc)

    async def metrics(self) -> dict[str, float]:
        if self.single is None:
            return {}
        return await self.single.engine.metrics()

    def check_health(self) -> None:
        """Serve's health check: a dead engine fails it, and Serve replaces the replica."""
        if self.single is not None and self.single.engine.health() is EngineState.DEAD:
            raise RuntimeError("the engine is dead")

    async def __del__(self) -> None:
        if self.single is not None:
            await self.single.engine.close()
