"""Keeping engines running: a dead engine is restarted with back-off, a stalled one declared dead.

Each deployment has a :class:`Supervision`: when its engine died (or never loaded), the next
restart is due after ``backoff`` seconds, doubling with every restart in the last ``window``
seconds up to ``max_backoff``; past ``max_restarts`` restarts in the window it is given up and
stays dead (its 503s then carry no Retry-After). The watchdog sees a deployment with requests in
generation whose engine produced no event at all for ``stall_timeout`` seconds: it fails those
requests with :class:`EngineStalled` and marks the engine dead, so it is restarted like one that died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aimi.engines.api import EngineDead

if TYPE_CHECKING:
    from aimi.deployments.registry import Deployment

log = logging.getLogger(__name__)


class EngineStalled(EngineDead):
    """The engine produced nothing for too long while requests waited on it; its message is the client's."""


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead engine is restarted, and when a silent one counts as dead (0: never)."""

    backoff: float = 1.0
    max_backoff: float = 60.0
    max_restarts: int = 5
    window: float = 600.0
    stall_timeout: float = 120.0

    def delay(self, restarts: int) -> float:
        """The wait before the next restart, after ``restarts`` restarts within the window."""
        return float(min(self.max_backoff, self.backoff * 2 ** min(restarts, 64)))


@dataclass
class Supervision:
    """One deployment's restarts and its engine's progress; no policy: a dead engine stays dead."""

    policy: RestartPolicy | None = None
    restarts: deque[float] = field(default_factory=deque)
    next_attempt: float | None = None
    restarting: bool = False
    given_up: bool = False
    stalled: bool = False
    load_seconds: float = 0.0
    last_progress: float = field(default_factory=time.monotonic)
    _running: dict[int, Callable[[EngineDead], None]] = field(default_factory=dict)
    _ids: int = 0

    def schedule(self, now: float) -> float | None:
        """When the next restart begins (scheduling it now if it is not yet); None when none will."""
        if self.policy is None or self.given_up:
            return None
        if self.next_attempt is None and not self.restarting:
            while self.restarts and now - self.restarts[0] > self.policy.window:
                self.restarts.popleft()
            if len(self.restarts) >= self.policy.max_restarts:
                self.given_up = True
                return None
            self.next_attempt = now + self.policy.delay(len(self.restarts))
        return self.next_attempt

    def retry_after(self, now: float) -> float | None:
        """How long a client should wait before it asks again: until the restart is due and its
        model loaded (as long as the last load took); None when no restart is coming."""
        if self.restarting:
            return max(1.0, self.load_seconds)
        at = self.schedule(now)
        return None if at is None else max(0.0, at - now) + self.load_seconds

    def begin_restart(self, now: float) -> None:
        self.restarts.append(now)
        self.next_attempt, self.restarting, self.stalled = None, True, False
        self._running.clear()  # those requests were failed with the engine

    # --- the watchdog --------------------------------------------------------------------

    def begin(self, kill: Callable[[EngineDead], None]) -> int:
        """A request starts generating; ``kill`` fails it when the engine stalls. Returns its token."""
        if not self._running:
            self.last_progress = time.monotonic()  # an idle engine makes no progress, and needs none
        self._ids += 1
        self._running[self._ids] = kill
        return self._ids

    def progress(self) -> None:
        """The engine produced an event."""
        self.last_progress = time.monotonic()

    def end(self, token: int) -> None:
        self._running.pop(token, None)

    def check_stall(self, now: float, name: str) -> bool:
        """Declare the engine stalled (and fail its requests) when it has been silent too long."""
        timeout = self.policy.stall_timeout if self.policy is not None else 0
        if not timeout or not self._running or self.stalled or now - self.last_progress < timeout:
            return False
        self.stalled = True
        message = f"deployment '{name}' made no progress for {timeout:g} seconds; its engine is being restarted"
        if self.policy is not None and self.policy.max_restarts == 0:
            message = f"deployment '{name}' made no progress for {timeout:g} seconds; its engine is stopped"
        log.error("%s (%d requests failed)", message, len(self._running))
        kills, self._running = list(self._running.values()), {}
        for kill in kills:
            kill(EngineStalled(message))
        return True


def tick(policy: RestartPolicy) -> float:
    """How often the supervisor looks: often enough for the shortest of its times."""
    shortest = min(t for t in (policy.backoff, policy.stall_timeout, 1.0) if t > 0)
    return max(0.01, min(0.25, shortest / 4))


async def supervise(
    deployments: Callable[[], Iterable[Deployment]],
    policy: RestartPolicy,
    on_restart: Callable[[str], None],
    spawn: Callable[[Coroutine[Any, Any, None]], Any],
) -> None:
    """Run the watchdog and start due restarts, for as long as the server runs (``deployments`` is
    asked each time, so a reload's deployments are seen)."""
    while True:
        await asyncio.sleep(tick(policy))
        now = time.monotonic()
        for deployment in deployments():
            supervision = deployment.supervision
            supervision.check_stall(now, deployment.name)
            if not deployment.dead or supervision.restarting or deployment.factory is None:
                continue
            due = supervision.schedule(now)
            if due is not None and now >= due:
                log.warning("restarting the engine of deployment %s", deployment.name)
                supervision.begin_restart(now)
                on_restart(deployment.name)
                spawn(deployment.restart())
