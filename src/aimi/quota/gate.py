"""Admission against the configured quota backend, with a bounded wait and an explicit policy for
when a shared backend cannot be reached.

A call to the shared backend that fails or takes longer than ``timeout`` applies the policy:
``closed`` refuses the request (503 with Retry-After), ``local`` admits it against the same limits
counted in this process only. After a failure the backend is left alone for ``retry_seconds``, so
requests do not each pay the timeout while it is down.

A backend with a bounded connection pool (:class:`PooledBackend`, Redis) is asked in two steps:
first a connection, for as long as its pool lets a call wait (a burst of requests is not the
backend failing; opening a connection has its own timeout), then the call on it, timed. A failure
ends every wait for a connection at once: those requests get the policy, as the ones arriving
during the pause do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from aimi.quota.api import Decision, PooledBackend, QuotaBackend, Reservation, Scope
from aimi.quota.memory import MemoryQuotas

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Unavailable(Exception):
    """The shared quota backend could not be asked, and the policy is to fail closed."""


class _Skipped(Exception):
    """The backend was found down while this call waited for a connection: it was never sent."""


class OnError(StrEnum):
    CLOSED = "closed"
    LOCAL = "local"


@dataclass
class QuotaHealth:
    backend: str
    up: bool
    on_error: str
    errors: int

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "state": "ok" if self.up else "unreachable", "on_error": self.on_error}


class Quotas:
    """The quota gate: :meth:`reserve` before the engine runs, :meth:`settle` when the request ends."""

    def __init__(
        self,
        backend: QuotaBackend,
        *,
        on_error: OnError = OnError.CLOSED,
        timeout: float = 0.25,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.on_error = on_error
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._local = backend if isinstance(backend, MemoryQuotas) else MemoryQuotas()
        self._down_until = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self._pool = backend if isinstance(backend, PooledBackend) else None
        self._waiting: set[asyncio.Timeout] = set()  # the calls waiting for a pooled connection
        self.errors = 0
        self.on_failure: Callable[[], None] | None = None  # counts each failed call (the metrics)
        self.up = True

    @property
    def shared(self) -> bool:
        return self.backend is not self._local

    def health(self) -> QuotaHealth:
        return QuotaHealth(self.backend.name, self.up, self.on_error.value if self.shared else "none", self.errors)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if self.on_failure is not None:
            self.on_failure()
        if self.up:
            reason = str(exc) or exc.__class__.__name__
            log.error(
                "quota backend %s unreachable (%s: %s); policy: %s", self.backend.name, what, reason, self.on_error
            )
        self.up = False
        self._down_until = self._clock() + self.retry_seconds
        waiting, self._waiting = self._waiting, set()
        for scope in waiting:
            scope.reschedule(0)  # now: see _connection

    async def warm(self) -> None:
        """Open the shared backend's connections ahead of the first requests (at start-up). A
        failure is only logged: the first requests open connections themselves, and apply the
        policy if the backend is really away."""
        if self._pool is None:
            return
        try:
            await self._pool.warm()
        except Exception as exc:
            log.warning("could not open connections to the %s quota backend ahead: %s", self.backend.name, exc)

    async def _connection(self, pool: PooledBackend) -> object:
        """One of the pool's connections, however long the pool makes the call wait, unless a
        failure meanwhile finds the backend down (then :class:`_Skipped`)."""
        scope = asyncio.timeout(None)
        try:
            async with scope:
                self._waiting.add(scope)
                try:
                    return await pool.acquire()
                finally:
                    self._waiting.discard(scope)
        except TimeoutError:
            if scope.expired():
                raise _Skipped from None
            raise

    async def _ask(
        self,
        what: str,
        backend: QuotaBackend,
        call: Callable[[QuotaBackend], Awaitable[_T]],
        sent: Callable[[], None],
    ) -> _T:
        """``call`` on ``backend`` within ``timeout`` (after a pooled connection, if it has a pool).
        A failure is counted before the connection goes back, so the calls waiting for it get the
        policy rather than a turn on a backend just found down; ``sent`` runs when the call that
        failed may have reached the backend."""
        pool = self._pool if backend is self.backend else None
        if pool is None:
            try:
                return await self._answered(call(backend))
            except (Exception, TimeoutError) as exc:
                self._failed(what, exc)
                if isinstance(exc, TimeoutError):
                    sent()
                raise
        try:
            connection = await self._connection(pool)
        except _Skipped:
            raise
        except Exception as exc:
            self._failed(what, exc)
            raise
        try:
            return await self._answered(call(pool.on(connection)))
        except Exception as exc:  # TimeoutError included
            self._failed(what, exc)
            sent()
            raise
        finally:
            await pool.release(connection)

    async def _answered(self, call: Awaitable[_T]) -> _T:
        """``call``, cut when ``timeout`` is up, as the backend would count it: the cut comes one
        turn of the event loop late, so an answer that has reached this process in time is taken
        even when the loop, busy with a burst of requests, has not read it yet (the loop hands the
        cut on only after the reads it has already picked up)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as scope:
            timer = loop.call_later(self.timeout, scope.reschedule, 0)  # now: on the next turn
            try:
                return await call
            finally:
                timer.cancel()

    async def reserve(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> tuple[Decision, Reservation]:
        """Admit the request in every scope or refuse it; raises :class:`Unavailable` when the shared
        backend cannot be asked and the policy is ``closed``."""
        backend: QuotaBackend = self.backend
        if self.shared and self._clock() < self._down_until:
            backend = self._fallback()
        if backend is not self._local:
            shared = backend
            try:
                decision = await self._ask(
                    "admit",
                    shared,
                    lambda b: b.admit(scopes, tokens, request_id),
                    lambda: self._forget(shared, scopes, request_id),
                )
            except Exception:  # counted by _ask, unless it was never sent (_Skipped)
                backend = self._fallback()
            else:
                if not self.up:
                    log.warning("quota backend %s reachable again", self.backend.name)
                self.up = True
                return decision, Reservation(
                    request_id, tuple(scopes), tokens, decision.second, decision.remaining, backend
                )
        decision = await backend.admit(scopes, tokens, request_id)
        return decision, Reservation(request_id, tuple(scopes), tokens, decision.second, decision.remaining, backend)

    def _forget(self, backend: QuotaBackend, scopes: Sequence[Scope], request_id: str) -> None:
        """An admission cut at the timeout may still have run, and a settle that failed left its
        request's leases: release them in the background, so they do not hold a slot until they
        expire. (Tokens stay charged: the safe side.)"""
        forget = getattr(backend, "forget", None)
        if forget is None:
            return

        async def release() -> None:
            # Retried while the backend is away (a restart, a failover), for as long as a lease lives.
            for attempt in range(12):
                try:
                    await asyncio.wait_for(forget(list(scopes), request_id), max(1.0, self.timeout * 4))
                    return
                except (Exception, TimeoutError):
                    await asyncio.sleep(min(60.0, self.retry_seconds * 2**attempt))
            log.warning("could not release the concurrency leases of request %s", request_id)

        task = asyncio.get_running_loop().create_task(release())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _fallback(self) -> QuotaBackend:
        if self.on_error is OnError.CLOSED:
            raise Unavailable(f"the {self.backend.name} quota backend is unreachable")
        return self._local

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Return the unused part of the reservation; at most once, never raises."""
        if reservation.settled or reservation.backend is None:
            return
        reservation.settled = True
        if reservation.backend is self._local:  # in process: nothing to wait for
            await self._local.settle(
                reservation.scopes, reservation.request_id, reservation.second, reservation.tokens, used
            )
            return
        shared = reservation.backend
        try:
            await self._ask(
                "settle",
                shared,
                lambda b: b.settle(
                    reservation.scopes, reservation.request_id, reservation.second, reservation.tokens, used
                ),
                lambda: None,  # released below in any case
            )
        except Exception:  # counted by _ask, unless it was never sent (_Skipped)
            # The tokens stay charged until they leave the window (the safe side); the concurrency
            # lease is released as soon as the backend answers again.
            self._forget(shared, reservation.scopes, reservation.request_id)

    async def close(self) -> None:
        await self.backend.close()
