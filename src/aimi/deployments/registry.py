"""The deployments one aimi serves, and how a request picks one."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aimi.deployments.limits import Limits, SamplingDefaults
from aimi.deployments.profile import ModelProfile
from aimi.deployments.supervisor import Supervision
from aimi.engines.api import Engine, EngineState, ModelFacts
from aimi.protocol.errors import ApiError, service_unavailable
from aimi.quota.api import QuotaLimits
from aimi.safety.filter import ContentFilter
from aimi.usage.records import Prices

log = logging.getLogger(__name__)
_CLOSE_TIMEOUT = 10.0


@dataclass
class Deployment:
    """A model served under a name, by one engine.

    With ``idle_unload_seconds`` the deployment loads its model when first needed and unloads it
    after that long without a request; ``factory`` builds the fresh engine a reload needs.
    """

    name: str
    display_name: str
    profile: ModelProfile
    engine: Engine
    limits: Limits
    defaults: SamplingDefaults = field(default_factory=SamplingDefaults)
    facts: ModelFacts | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    in_flight: int = 0
    idle_unload_seconds: float | None = None
    factory: Callable[[], Engine] | None = None
    last_used: float = field(default_factory=time.monotonic)
    failed: bool = False
    failure: str | None = None
    """Why the engine last failed to load or restart, for operators (``/admin/status``)."""
    spec: Any = None  # what it was built from: a reload keeps it when the spec is unchanged
    quota: QuotaLimits = field(default_factory=QuotaLimits)
    prices: Prices | None = None
    safety: ContentFilter | None = None
    supervision: Supervision = field(default_factory=Supervision)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def on_demand(self) -> bool:
        return self.idle_unload_seconds is not None

    @property
    def loaded(self) -> bool:
        return self.facts is not None and self.engine.health() is EngineState.READY

    @property
    def dead(self) -> bool:
        """The engine failed to load, died, or stalled: it serves nothing until restarted."""
        return self.failed or self.supervision.stalled or self.engine.health() is EngineState.DEAD

    def state(self) -> str:
        """``ready``, ``loading``, ``unloaded`` (on demand, not needed lately), ``restarting`` (its
        engine is dead and a restart is due or under way) or ``failed`` (dead for good)."""
        if self.supervision.restarting or (self.dead and self.supervision.schedule(time.monotonic()) is not None):
            return "restarting"
        if self.dead:
            return "failed"
        if self.loaded:
            return "ready"
        return "unloaded" if self.on_demand and not self._lock.locked() else "loading"

    async def load(self) -> None:
        """Start the engine; a failure leaves the deployment failed (and logged by the caller)."""
        began = time.monotonic()
        try:
            self.facts = await self.engine.start()
        except BaseException as exc:
            self.failed = True
            self.failure = str(exc) or exc.__class__.__name__
            raise
        self.failure = None
        self.supervision.load_seconds = time.monotonic() - began

    async def restart(self) -> None:
        """Replace the dead engine with a fresh one from ``factory`` and load it (an on-demand
        deployment loads with its next request). The supervisor calls this, with back-off."""
        assert self.factory is not None
        try:
            async with self._lock:
                dead, self.engine, self.facts, self.failed = self.engine, self.factory(), None, False
                try:
                    # Bounded: a hung engine may never finish closing; its threads are abandoned.
                    await asyncio.wait_for(dead.close(), _CLOSE_TIMEOUT)
                except Exception as exc:
                    log.warning("deployment %s: closing the dead engine failed: %s", self.name, exc)
                if not self.on_demand:
                    await self.load()
                    log.info("deployment %s restarted", self.name)
        except Exception as exc:
            self.failed = True
            self.failure = str(exc) or exc.__class__.__name__
            log.error("deployment %s failed to restart: %s", self.name, exc)
        finally:
            self.supervision.restarting = False

    async def unload(self) -> None:
        """Release the model; the next request loads it again."""
        await self.engine.close()
        assert self.factory is not None
        self.engine, self.facts = self.factory(), None

    def ready(self) -> Deployment:
        """This deployment if it can take a request now, else a 503 with Retry-After."""
        state = self.engine.health()
        if self.supervision.restarting:
            wait = self.supervision.retry_after(time.monotonic())
            raise service_unavailable(f"deployment '{self.name}' is restarting its engine", retry_after=wait or 1)
        if self.dead:
            wait = self.supervision.retry_after(time.monotonic())
            if wait is None:
                raise ApiError(
                    "ServiceUnavailable", f"deployment '{self.name}' has no running engine and will not be restarted"
                )
            raise service_unavailable(f"deployment '{self.name}' has no running engine; it is being restarted", wait)
        if state is EngineState.LOADING or self.facts is None:
            raise service_unavailable(f"deployment '{self.name}' is still loading its model", retry_after=5)
        return self

    @property
    def max_tokens(self) -> int:
        context = self.facts.context_length if self.facts else self.limits.max_tokens
        return min(self.limits.max_tokens, context)

    def admit(self) -> None:
        """Count one request in; past the slots and the queue, a 429 with Retry-After."""
        self.last_used = time.monotonic()
        slots = self.facts.n_slots if self.facts else 1
        if self.in_flight >= slots + self.limits.max_queue:
            raise ApiError(
                "TooManyRequests",
                f"deployment '{self.name}' has {self.in_flight} requests running or queued; retry later",
                retry_after=1,
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self.last_used = time.monotonic()


@dataclass(frozen=True)
class Endpoint:
    """A name that routes to several deployments by weight (a blue/green rollout), and may mirror a
    share of its traffic to a shadow deployment whose answers are discarded."""

    name: str
    traffic: tuple[tuple[str, float], ...]
    mirror: str | None = None
    mirror_percent: float = 0.0


@dataclass(frozen=True)
class Routed:
    """Where a request goes: the deployment that answers, the name the client used (what a key's
    permissions are checked against), and a shadow deployment to mirror it to, if any."""

    deployment: Deployment
    called: str
    shadow: Deployment | None = None


class Deployments:
    """Every deployment of this server, by name, and the endpoints that split traffic over them."""

    def __init__(
        self, deployments: list[Deployment], endpoints: Sequence[Endpoint] = (), rng: random.Random | None = None
    ) -> None:
        self._by_name = {d.name: d for d in deployments}
        self._endpoints = {e.name: e for e in endpoints}
        self._rng = rng or random.Random()
        # The largest count any deployment accepts: a body past it is refused before it is validated.
        self.most_messages = max((d.limits.max_messages for d in deployments), default=0)
        self.most_inputs = max((d.limits.max_embedding_inputs for d in deployments), default=0)

    def __iter__(self) -> Iterator[Deployment]:
        return iter(self._by_name.values())

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    async def ensure_loaded(self, deployment: Deployment, max_loaded: int = 0) -> None:
        """Load an on-demand deployment's model, first unloading the least recently used idle
        on-demand deployments while ``max_loaded`` (0: no cap) models are loaded."""
        if not deployment.on_demand or deployment.loaded or deployment.failed:
            return
        async with deployment._lock:
            if deployment.loaded or deployment.failed:
                return
            if max_loaded:
                loaded = sorted((d for d in self if d.on_demand and d.loaded), key=lambda d: d.last_used)
                for victim in loaded[: max(0, len(loaded) - max_loaded + 1)]:
                    if victim.in_flight == 0:
                        await self.unload(victim)
            deployment.last_used = time.monotonic()
            await deployment.load()

    async def unload(self, deployment: Deployment) -> None:
        async with deployment._lock:
            if deployment.loaded and deployment.in_flight == 0:
                log.info("unloading deployment %s", deployment.name)
                await deployment.unload()

    async def unload_idle(self) -> None:
        """Unload every on-demand deployment idle for longer than its idle time."""
        now = time.monotonic()
        for deployment in self:
            idle = deployment.idle_unload_seconds
            if idle is not None and deployment.loaded and deployment.in_flight == 0:
                if now - deployment.last_used >= idle:
                    await self.unload(deployment)

    def knows(self, name: str) -> bool:
        """A deployment or an endpoint has this name."""
        return name in self._by_name or name in self._endpoints

    def resolve(self, model: str | None, pinned: str | None = None) -> Deployment:
        """The deployment that answers a request (see :meth:`route`)."""
        return self.route(model, pinned).deployment

    def route(self, model: str | None, pinned: str | None = None) -> Routed:
        """Where a request goes.

        ``pinned`` comes from the path (``/deployments/{name}/...``) and must exist. Otherwise
        ``model`` (the ``azureml-model-deployment`` header, or the body's ``model``) picks a
        deployment or an endpoint; with a single deployment (and no endpoints) it is ignored, as
        Azure endpoints serving one model do. An unknown name is a 404 that does not list the others.
        """
        if pinned is None and len(self._by_name) == 1 and not self._endpoints:
            only = next(iter(self._by_name.values()))
            return Routed(only, only.name)
        name = pinned if pinned is not None else model
        if name is None:
            raise ApiError(
                "invalid_request",
                "this endpoint serves several deployments: name one with `model` in the body, the "
                "azureml-model-deployment header, or the path /deployments/{name}/...",
                param="model",
            )
        endpoint = self._endpoints.get(name)
        if endpoint is not None:
            names = [target for target, _ in endpoint.traffic]
            weights = [weight for _, weight in endpoint.traffic]
            chosen = self._by_name[self._rng.choices(names, weights)[0]]
            shadow = None
            if endpoint.mirror is not None and self._rng.random() * 100 < endpoint.mirror_percent:
                shadow = self._by_name[endpoint.mirror]
            return Routed(chosen, name, shadow)
        deployment = self._by_name.get(name)
        if deployment is None:
            shown = name if len(name) <= 64 else name[:61] + "..."
            raise ApiError("NotFound", f"no deployment named {shown!r}", param="model")
        return Routed(deployment, name)
