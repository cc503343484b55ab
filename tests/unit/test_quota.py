"""Quota backends and the quota guard: exact sliding windows on an injected clock, settlement,
concurrency leases, the failure policy, and Redis deciding as the in-process backend does."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from aimi.quota.api import Decision, QuotaLimits, Refusal, Remaining, Reservation, Scope
from aimi.quota.gate import OnError, Quotas, Unavailable
from aimi.quota.memory import MemoryQuotas


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scope(name: str = "deployment:d", **limits: int) -> Scope:
    return Scope(name, QuotaLimits(**limits))


def ids() -> str:
    return uuid.uuid4().hex


# -- MemoryQuotas: the sliding window ---------------------------------------------------------


@pytest.mark.anyio
async def test_the_request_window_admits_exactly_the_limit_then_frees_with_the_oldest_second() -> None:
    clock = Clock(1000.5)
    quotas = MemoryQuotas(clock)
    s = scope(requests_per_minute=5)
    first = [await quotas.admit([s], 0, ids()) for _ in range(2)]
    assert [d.remaining.remaining_requests for d in first] == [4, 3]
    assert all(d.admitted and d.second == 1000 for d in first)
    clock.now = 1010.2
    later = [await quotas.admit([s], 0, ids()) for _ in range(3)]
    assert [(d.admitted, d.second, d.remaining.remaining_requests) for d in later] == [
        (True, 1010, 2),
        (True, 1010, 1),
        (True, 1010, 0),
    ]
    clock.now = 1030.7
    refused = await quotas.admit([s], 0, ids())
    assert (refused.admitted, refused.refusal, refused.scope) == (False, Refusal.REQUESTS, "deployment:d")
    # The oldest charges (second 1000) leave the window at second 1060.
    assert refused.retry_after == pytest.approx(1060 - 1030.7)
    clock.now = 1059.999
    assert (await quotas.admit([s], 0, ids())).retry_after == pytest.approx(0.001)
    clock.now = 1060.0
    # Second 1000's two requests have left: exactly two more fit.
    assert [(await quotas.admit([s], 0, ids())).admitted for _ in range(3)] == [True, True, False]
    clock.now = 1060.4
    again = await quotas.admit([s], 0, ids())
    assert again.refusal is Refusal.REQUESTS
    assert again.retry_after == pytest.approx(1070 - 1060.4)


@pytest.mark.anyio
async def test_the_token_window_says_when_enough_of_the_oldest_charges_have_left() -> None:
    clock = Clock(1000.2)
    quotas = MemoryQuotas(clock)
    s = scope(tokens_per_minute=100)
    for at, tokens, left in [(1000.2, 30, 70), (1020.5, 30, 40), (1040.0, 30, 10)]:
        clock.now = at
        decision = await quotas.admit([s], tokens, ids())
        assert decision.admitted and decision.remaining == Remaining(None, None, 100, left)
    clock.now = 1050.25
    # 90 used: 25 more needs 15 freed, which second 1000's 30 does at 1060.
    small = await quotas.admit([s], 25, ids())
    assert (small.admitted, small.refusal) == (False, Refusal.TOKENS)
    assert small.retry_after == pytest.approx(1060 - 1050.25)
    assert small.remaining == Remaining(None, None, 100, 10)
    # 45 more needs 35 freed: seconds 1000 and 1020 must both leave.
    large = await quotas.admit([s], 45, ids())
    assert large.retry_after == pytest.approx(1080 - 1050.25)
    # Exactly filling the limit is admitted.
    exact = await quotas.admit([s], 10, ids())
    assert exact.admitted and exact.remaining.remaining_tokens == 0
    assert not (await quotas.admit([s], 1, ids())).admitted
    clock.now = 1060.0
    assert (await quotas.admit([s], 30, ids())).admitted
    assert not (await quotas.admit([s], 1, ids())).admitted


@pytest.mark.anyio
async def test_a_reservation_larger_than_the_tokens_per_minute_is_too_large_and_charges_nothing() -> None:
    quotas = MemoryQuotas(Clock())
    s = scope(tokens_per_minute=100, requests_per_minute=10)
    refused = await quotas.admit([s], 101, ids())
    assert refused == Decision(False, Remaining(10, 10, 100, 100), 1_000_000, Refusal.TOO_LARGE, "deployment:d", None)
    whole = await quotas.admit([s], 100, ids())
    assert whole.admitted and whole.remaining == Remaining(10, 9, 100, 0)


# -- MemoryQuotas: settlement -----------------------------------------------------------------


@pytest.mark.anyio
async def test_settle_returns_the_unused_tokens_to_the_bucket_they_were_taken_from() -> None:
    clock = Clock(1000.0)
    quotas = MemoryQuotas(clock)
    s = scope(tokens_per_minute=100)
    first = await quotas.admit([s], 60, "first")
    clock.now = 1005.0
    second = await quotas.admit([s], 30, "second")
    assert first.admitted and second.admitted
    assert not (await quotas.admit([s], 11, ids())).admitted
    clock.now = 1007.0
    await quotas.settle([s], "first", first.second, 60, 10)
    # 50 tokens came back: 10 (second 1000) + 30 (second 1005) are charged now.
    fits = await quotas.admit([s], 55, "third")
    assert fits.admitted and fits.remaining.remaining_tokens == 5
    # Second 1000 now holds only the 10 used: needing 10 freed is second 1000's departure at 1060.
    need_ten = await quotas.admit([s], 15, ids())
    assert need_ten.refusal is Refusal.TOKENS and need_ten.retry_after == pytest.approx(1060 - 1007.0)
    # Needing 11 takes second 1005's 30 as well.
    need_more = await quotas.admit([s], 16, ids())
    assert need_more.retry_after == pytest.approx(1065 - 1007.0)
    clock.now = 1060.0
    assert (await quotas.admit([s], 15, ids())).admitted


@pytest.mark.anyio
async def test_settle_charges_an_overrun_to_the_current_second() -> None:
    clock = Clock(1000.0)
    quotas = MemoryQuotas(clock)
    s = scope(tokens_per_minute=100)
    decision = await quotas.admit([s], 20, "r")
    clock.now = 1030.0
    await quotas.settle([s], "r", decision.second, 20, 50)
    # 20 at second 1000 and the 30 overrun at second 1030.
    probe = await quotas.admit([s], 51, ids())
    assert probe.refusal is Refusal.TOKENS and probe.remaining.remaining_tokens == 50
    assert probe.retry_after == pytest.approx(1060 - 1030.0)
    probe = await quotas.admit([s], 71, ids())
    assert probe.retry_after == pytest.approx(1090 - 1030.0)
    assert (await quotas.admit([s], 50, ids())).admitted


@pytest.mark.anyio
async def test_settling_after_the_charge_left_the_window_changes_nothing() -> None:
    clock = Clock(1000.0)
    quotas = MemoryQuotas(clock)
    s = scope(tokens_per_minute=100)
    old = await quotas.admit([s], 40, "old")
    clock.now = 1061.0
    fresh = await quotas.admit([s], 90, "fresh")
    assert fresh.admitted and fresh.remaining.remaining_tokens == 10
    await quotas.settle([s], "old", old.second, 40, 0)
    assert (await quotas.admit([s], 11, ids())).refusal is Refusal.TOKENS
    assert (await quotas.admit([s], 10, ids())).admitted


# -- MemoryQuotas: concurrency and scopes -----------------------------------------------------


@pytest.mark.anyio
async def test_concurrency_leases_are_held_until_settled() -> None:
    quotas = MemoryQuotas(Clock())
    s = scope(max_concurrent=2)
    assert (await quotas.admit([s], 5, "a")).admitted
    assert (await quotas.admit([s], 5, "b")).admitted
    refused = await quotas.admit([s], 5, "c")
    assert (refused.refusal, refused.retry_after, refused.scope) == (Refusal.CONCURRENCY, 1.0, "deployment:d")
    await quotas.settle([s], "a", refused.second, 5, 5)
    assert (await quotas.admit([s], 5, "c")).admitted
    # Settling twice frees one lease, not two.
    await quotas.settle([s], "b", refused.second, 5, 5)
    await quotas.settle([s], "b", refused.second, 5, 5)
    assert (await quotas.admit([s], 5, "d")).admitted
    assert (await quotas.admit([s], 5, "e")).refusal is Refusal.CONCURRENCY


@pytest.mark.anyio
async def test_every_scope_is_charged_or_none_is() -> None:
    quotas = MemoryQuotas(Clock())
    deployment = scope("deployment:d", requests_per_minute=10, tokens_per_minute=1000)
    key = scope("key:k", requests_per_minute=2)
    both = [deployment, key]
    assert [(await quotas.admit(both, 100, ids())).admitted for _ in range(2)] == [True, True]
    refused = await quotas.admit(both, 100, ids())
    assert (refused.admitted, refused.refusal, refused.scope) == (False, Refusal.REQUESTS, "key:k")
    # The deployment was not charged for the refused request: 2 requests and 200 tokens.
    alone = await quotas.admit([deployment], 100, ids())
    assert alone.remaining == Remaining(10, 7, 1000, 700)
    # A refusal by the first scope leaves the second untouched as well.
    full = scope("deployment:full", tokens_per_minute=50)
    other = scope("key:other", requests_per_minute=1)
    assert (await quotas.admit([full, other], 60, ids())).scope == "deployment:full"
    assert (await quotas.admit([other], 0, ids())).admitted


@pytest.mark.anyio
async def test_the_headers_report_the_tightest_scope_per_limit() -> None:
    quotas = MemoryQuotas(Clock())
    deployment = scope("deployment:d", requests_per_minute=100, tokens_per_minute=1000)
    key = scope("key:k", requests_per_minute=3, tokens_per_minute=5000)
    decision = await quotas.admit([deployment, key], 40, ids())
    assert decision.remaining == Remaining(3, 2, 1000, 960)
    assert decision.remaining.headers() == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-remaining-tokens": "960",
    }
    assert Remaining(5, -1, None, None).headers() == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
    }


# -- Quotas: the guard around a shared backend ------------------------------------------------


class Flaky:
    """A shared backend stand-in: in-process counters that can fail or hang on demand."""

    name = "redis"

    def __init__(self) -> None:
        self.inner = MemoryQuotas()
        self.mode = "ok"
        self.calls = 0
        self.cancelled = 0
        self.closed = False

    async def _act(self) -> None:
        self.calls += 1
        if self.mode == "fail":
            raise ConnectionError("Connection refused")
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        await self._act()
        return await self.inner.admit(scopes, tokens, request_id)

    async def settle(self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int) -> None:
        await self._act()
        await self.inner.settle(scopes, request_id, second, reserved, used)

    async def close(self) -> None:
        self.closed = True


LIMITED = [scope(requests_per_minute=2, tokens_per_minute=100)]


@pytest.mark.anyio
async def test_a_healthy_shared_backend_decides_and_settles() -> None:
    backend = Flaky()
    quotas = Quotas(backend, on_error=OnError.CLOSED)
    decision, reservation = await quotas.reserve(LIMITED, 30, "r1")
    assert decision.admitted and reservation.backend is backend
    assert (reservation.tokens, reservation.scopes, reservation.request_id) == (30, tuple(LIMITED), "r1")
    await quotas.settle(reservation, 10)
    await quotas.settle(reservation, 10)  # at most once
    assert reservation.settled and backend.calls == 2
    assert quotas.health().as_dict() == {"backend": "redis", "state": "ok", "on_error": "closed"}
    assert quotas.errors == 0 and quotas.shared
    await quotas.close()
    assert backend.closed


@pytest.mark.anyio
async def test_policy_closed_refuses_when_the_backend_fails() -> None:
    backend = Flaky()
    backend.mode = "fail"
    quotas = Quotas(backend, on_error=OnError.CLOSED)
    with pytest.raises(Unavailable, match="^the redis quota backend is unreachable$"):
        await quotas.reserve(LIMITED, 30, "r1")
    assert (quotas.errors, quotas.up) == (1, False)
    assert quotas.health().as_dict() == {"backend": "redis", "state": "unreachable", "on_error": "closed"}


@pytest.mark.anyio
async def test_policy_local_falls_back_to_the_same_limits_in_this_process() -> None:
    backend = Flaky()
    backend.mode = "fail"
    quotas = Quotas(backend, on_error=OnError.LOCAL)
    first, reservation = await quotas.reserve(LIMITED, 30, "r1")
    assert first.admitted and reservation.backend is not backend
    assert isinstance(reservation.backend, MemoryQuotas)
    assert first.remaining == Remaining(2, 1, 100, 70)
    second, _ = await quotas.reserve(LIMITED, 30, "r2")
    assert second.admitted
    third, _ = await quotas.reserve(LIMITED, 30, "r3")
    assert (third.admitted, third.refusal) == (False, Refusal.REQUESTS)
    # The local reservation settles locally, without asking the failing backend.
    calls = backend.calls
    await quotas.settle(reservation, 30)
    assert backend.calls == calls and reservation.settled
    assert quotas.health().as_dict() == {"backend": "redis", "state": "unreachable", "on_error": "local"}


@pytest.mark.anyio
async def test_a_backend_slower_than_the_timeout_is_cut_at_the_timeout() -> None:
    backend = Flaky()
    backend.mode = "hang"
    quotas = Quotas(backend, on_error=OnError.CLOSED, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await quotas.reserve(LIMITED, 30, "r1")
    elapsed = time.monotonic() - started
    assert 0.05 <= elapsed < 0.5, elapsed
    assert (backend.calls, backend.cancelled, quotas.errors, quotas.up) == (1, 1, 1, False)

    hanging = Flaky()
    local = Quotas(hanging, on_error=OnError.LOCAL, timeout=0.05)
    hanging.mode = "hang"
    started = time.monotonic()
    decision, _ = await local.reserve(LIMITED, 30, "r1")
    assert decision.admitted and time.monotonic() - started < 0.5


@pytest.mark.anyio
async def test_after_a_failure_the_backend_is_left_alone_for_retry_seconds_then_retried() -> None:
    clock = Clock(500.0)
    backend = Flaky()
    backend.mode = "fail"
    quotas = Quotas(backend, on_error=OnError.CLOSED, retry_seconds=2.0, clock=clock)
    with pytest.raises(Unavailable):
        await quotas.reserve(LIMITED, 1, "r1")
    assert backend.calls == 1
    backend.mode = "ok"
    clock.now = 501.999
    for _ in range(3):
        with pytest.raises(Unavailable):
            await quotas.reserve(LIMITED, 1, ids())
    assert (backend.calls, quotas.errors) == (1, 1)  # skipped: neither asked nor counted as errors
    clock.now = 502.0
    decision, reservation = await quotas.reserve(LIMITED, 1, "r2")
    assert decision.admitted and reservation.backend is backend
    assert (backend.calls, quotas.up) == (2, True)
    assert quotas.health().as_dict()["state"] == "ok"


@pytest.mark.anyio
async def test_while_skipped_policy_local_admits_locally_without_asking() -> None:
    clock = Clock(500.0)
    backend = Flaky()
    backend.mode = "fail"
    quotas = Quotas(backend, on_error=OnError.LOCAL, retry_seconds=2.0, clock=clock)
    decisions = [(await quotas.reserve(LIMITED, 1, ids()))[0] for _ in range(3)]
    assert [d.admitted for d in decisions] == [True, True, False]
    assert (backend.calls, quotas.errors) == (1, 1)


@pytest.mark.anyio
async def test_a_failed_settle_is_counted_and_never_raises() -> None:
    clock = Clock(500.0)
    backend = Flaky()
    quotas = Quotas(backend, on_error=OnError.CLOSED, retry_seconds=2.0, clock=clock)
    _, reservation = await quotas.reserve(LIMITED, 30, "r1")
    backend.mode = "fail"
    await quotas.settle(reservation, 10)
    assert reservation.settled and (quotas.errors, quotas.up) == (1, False)
    await quotas.settle(reservation, 10)
    assert backend.calls == 2
    # The failure also starts the pause.
    with pytest.raises(Unavailable):
        await quotas.reserve(LIMITED, 1, "r2")
    assert backend.calls == 2


@pytest.mark.anyio
async def test_the_memory_backend_alone_is_never_unavailable() -> None:
    quotas = Quotas(MemoryQuotas(), on_error=OnError.CLOSED)
    assert not quotas.shared
    assert quotas.health().as_dict() == {"backend": "memory", "state": "ok", "on_error": "none"}
    decision, reservation = await quotas.reserve(LIMITED, 30, "r1")
    assert decision.admitted and reservation == Reservation(
        "r1", tuple(LIMITED), 30, decision.second, decision.remaining, quotas.backend
    )


class Pooled(Flaky):
    """A shared backend stand-in with a pool of ``size`` connections, like RedisQuotas."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.free = asyncio.Semaphore(size)
        self.warmed = False

    async def acquire(self) -> object:
        await self.free.acquire()
        if self.mode == "refuse":  # a connection that cannot be opened
            self.free.release()
            raise ConnectionError("Connection refused")
        return object()

    async def release(self, connection: object) -> None:
        self.free.release()

    def on(self, connection: object) -> Flaky:
        return self

    async def warm(self) -> None:
        self.warmed = True


@pytest.mark.anyio
async def test_waiting_for_a_pooled_connection_is_not_a_failure() -> None:
    backend = Pooled(2)
    quotas = Quotas(backend, on_error=OnError.CLOSED, timeout=0.05)
    await quotas.warm()
    assert backend.warmed
    held = [await backend.acquire(), await backend.acquire()]  # every connection busy
    waiting = asyncio.ensure_future(quotas.reserve(LIMITED, 1, "r1"))
    await asyncio.sleep(0.2)  # four times the answer timeout
    assert not waiting.done()
    for connection in held:
        await backend.release(connection)
    decision, reservation = await asyncio.wait_for(waiting, 5)
    assert decision.admitted and reservation.backend is backend
    assert (quotas.errors, quotas.up, backend.calls) == (0, True, 1)
    # Each of many admissions at once waits its turn for one of the two connections.
    decisions = await asyncio.gather(*(quotas.reserve([scope(requests_per_minute=100)], 1, ids()) for _ in range(50)))
    assert all(d.admitted for d, _ in decisions) and quotas.errors == 0


@pytest.mark.anyio
async def test_a_failure_ends_the_waits_for_a_connection_at_once_without_counting_them() -> None:
    backend = Pooled(1)
    backend.mode = "hang"
    quotas = Quotas(backend, on_error=OnError.CLOSED, timeout=0.05)
    started = time.monotonic()
    results = await asyncio.gather(*(quotas.reserve(LIMITED, 1, ids()) for _ in range(20)), return_exceptions=True)
    # One call held the connection and timed out; the 19 waiting behind it got the policy then.
    assert all(isinstance(r, Unavailable) for r in results)
    assert time.monotonic() - started < 0.5
    assert (backend.calls, quotas.errors, quotas.up) == (1, 1, False)
    assert backend.free._value == 1  # every connection came back


@pytest.mark.anyio
async def test_a_connection_that_cannot_be_opened_is_a_failure() -> None:
    backend = Pooled(2)
    backend.mode = "refuse"
    quotas = Quotas(backend, on_error=OnError.LOCAL)
    decision, reservation = await quotas.reserve(LIMITED, 1, "r1")
    assert decision.admitted and isinstance(reservation.backend, MemoryQuotas)
    assert (backend.calls, quotas.errors, quotas.up) == (0, 1, False)


# -- RedisQuotas against the real Redis -------------------------------------------------------


class Shared:
    """A redis.asyncio client, and the scopes a test made (deleted afterwards)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.names: list[str] = []

    def scope(self, kind: str, **limits: int) -> Scope:
        name = f"{kind}:test-{uuid.uuid4().hex}"
        self.names.append(name)
        return Scope(name, QuotaLimits(**limits))

    def keys(self) -> list[str]:
        return [f"aimi:{{quota}}:{name}:{part}" for name in self.names for part in ("requests", "tokens", "leases")]


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[Shared]:
    import redis.asyncio

    handle = Shared(redis.asyncio.Redis.from_url(redis_url))
    try:
        yield handle
    finally:
        if handle.names:
            await handle.client.delete(*handle.keys())
        await handle.client.aclose()


def _same(memory: Decision, shared: Decision, scopes: Sequence[Scope]) -> None:
    assert (memory.admitted, memory.refusal, memory.scope) == (shared.admitted, shared.refusal, shared.scope)
    if memory.admitted or memory.scope == scopes[0].name:
        assert memory.remaining == shared.remaining
    if memory.retry_after is None or shared.retry_after is None:
        assert memory.retry_after is shared.retry_after is None
    else:
        # Each reads the (same) clock when it charges: at most one second boundary apart.
        assert abs(memory.retry_after - shared.retry_after) < 1.01


@pytest.mark.anyio
async def test_redis_decides_as_the_memory_backend_for_the_same_sequence(shared: Shared) -> None:
    from aimi.quota.redis import RedisQuotas

    backend = RedisQuotas(shared.client)
    memory = MemoryQuotas()
    dep = shared.scope("deployment", requests_per_minute=7, tokens_per_minute=100, max_concurrent=3)
    key = shared.scope("key", requests_per_minute=4)
    other = shared.scope("key", tokens_per_minute=40)
    # (request id, scopes, tokens to admit) or (request id, None, (reserved, used) to settle)
    steps: list[tuple[str, list[Scope] | None, Any]] = [
        ("a", [dep, key], 20),
        ("b", [dep, key], 30),
        ("too-large", [dep, other], 41),
        ("too-large-2", [dep, key], 101),
        ("c", [dep, key], 40),
        ("concurrency", [dep, other], 5),
        ("tokens", [dep, key], 20),
        ("b", None, (30, 5)),
        ("a", None, (20, 20)),
        ("d", [dep, other], 25),
        ("e", [dep, key], 1),
        ("c", None, (40, 45)),
        ("key-requests", [key, dep], 1),
        ("other-tokens", [other, dep], 20),
        ("f", [dep, other], 4),
        ("d", None, (25, 25)),
        ("g", [dep], 0),
        ("deployment-requests", [dep], 0),
    ]
    admitted: dict[str, tuple[list[Scope], Decision, Decision]] = {}
    outcomes: list[tuple[str, bool, Refusal | None]] = []
    for request_id, scopes, amount in steps:
        if scopes is not None:
            m = await memory.admit(scopes, amount, request_id)
            r = await backend.admit(scopes, amount, request_id)
            _same(m, r, scopes)
            admitted[request_id] = (scopes, m, r)
            outcomes.append((request_id, m.admitted, m.refusal))
        else:
            reserved, used = amount
            charged, m, r = admitted[request_id]
            await memory.settle(charged, request_id, m.second, reserved, used)
            await backend.settle(charged, request_id, r.second, reserved, used)
    assert outcomes == [
        ("a", True, None),
        ("b", True, None),
        ("too-large", False, Refusal.TOO_LARGE),
        ("too-large-2", False, Refusal.TOO_LARGE),
        ("c", True, None),
        ("concurrency", False, Refusal.CONCURRENCY),
        ("tokens", False, Refusal.TOKENS),
        ("d", True, None),
        ("e", True, None),
        ("key-requests", False, Refusal.REQUESTS),
        ("other-tokens", False, Refusal.TOKENS),
        ("f", True, None),
        ("g", True, None),
        ("deployment-requests", False, Refusal.REQUESTS),
    ]
    assert admitted["key-requests"][2].scope == key.name
    assert admitted["other-tokens"][2].scope == other.name
    assert admitted["too-large"][2].retry_after is None


@pytest.mark.anyio
async def test_redis_admits_exactly_the_limit_under_concurrent_admissions(shared: Shared) -> None:
    from aimi.quota.redis import RedisQuotas

    backend = RedisQuotas(shared.client)
    s = shared.scope("deployment", tokens_per_minute=1000)
    decisions = await asyncio.gather(*(backend.admit([s], 30, f"r{i}") for i in range(100)))
    admitted = [d for d in decisions if d.admitted]
    assert len(admitted) == 1000 // 30
    assert sorted(d.remaining.remaining_tokens or 0 for d in admitted) == sorted(1000 - 30 * k for k in range(1, 34))
    assert {d.refusal for d in decisions if not d.admitted} == {Refusal.TOKENS}
    stored = await shared.client.hgetall(f"aimi:{{quota}}:{s.name}:tokens")
    assert sum(int(v) for v in stored.values()) == 990


@pytest.mark.anyio
async def test_a_refusal_by_a_later_scope_reports_the_same_remainders_as_memory(shared: Shared) -> None:
    from aimi.quota.redis import RedisQuotas

    backend = RedisQuotas(shared.client)
    memory = MemoryQuotas()
    dep = shared.scope("deployment", tokens_per_minute=100)
    key = shared.scope("key", tokens_per_minute=40)
    assert (await memory.admit([dep], 50, "first")).admitted
    assert (await backend.admit([dep], 50, "first")).admitted
    m = await memory.admit([dep, key], 41, "r")
    r = await backend.admit([dep, key], 41, "r")
    assert (m.refusal, r.refusal) == (Refusal.TOO_LARGE, Refusal.TOO_LARGE)
    # Nothing was charged: the deployment has 50 tokens left, the key 40 (the tightest).
    # Redis reports the deployment's 100 - 50 - 41 = 9 instead.
    assert m.remaining == Remaining(None, None, 40, 40)
    assert r.remaining == m.remaining


class SlowReply:
    """The real Redis backend whose replies arrive late: Redis has run the script, the answer is
    still on its way (a slow network, a busy Redis) when the guard's timeout fires."""

    name = "redis"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        decision: Decision = await self.inner.admit(scopes, tokens, request_id)
        await asyncio.sleep(5)
        return decision

    async def settle(self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int) -> None:
        await self.inner.settle(scopes, request_id, second, reserved, used)

    async def forget(self, scopes: Sequence[Scope], request_id: str) -> None:
        await self.inner.forget(scopes, request_id)

    async def close(self) -> None:
        return None


@pytest.mark.anyio
async def test_an_admission_cut_at_the_timeout_leaves_no_concurrency_lease_in_redis(shared: Shared) -> None:
    from aimi.quota.redis import RedisQuotas

    s = shared.scope("deployment", max_concurrent=1)
    quotas = Quotas(SlowReply(RedisQuotas(shared.client)), on_error=OnError.LOCAL, timeout=0.1)
    decision, reservation = await quotas.reserve([s], 10, "cut")
    assert decision.admitted and isinstance(reservation.backend, MemoryQuotas)  # served locally
    await quotas.settle(reservation, 10)
    # Nothing runs any more, so the next request may have the one place (once the guard has
    # released, in the background, the lease the cut admission took).
    deadline = asyncio.get_running_loop().time() + 5
    while not (await RedisQuotas(shared.client).admit([s], 1, f"next-{ids()}")).admitted:
        assert asyncio.get_running_loop().time() < deadline, "the timed-out admission's lease is still held"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_a_refused_request_is_not_counted_in_the_requests_left() -> None:
    quotas = MemoryQuotas(Clock())
    s = scope(requests_per_minute=10, tokens_per_minute=100)
    assert (await quotas.admit([s], 90, ids())).remaining == Remaining(10, 9, 100, 10)
    refused = await quotas.admit([s], 20, ids())
    assert refused.refusal is Refusal.TOKENS
    # One request was charged: 9 are left, as the admission said.
    assert refused.remaining == Remaining(10, 9, 100, 10)


# -- What a refusal reports, and in which order limits are checked -----------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("backend_name", ["memory", "redis"])
async def test_a_refusal_reports_every_scope_and_a_hopeless_reservation_is_refused_first(
    backend_name: str, request: pytest.FixtureRequest
) -> None:
    if backend_name == "redis":
        import redis.asyncio

        from aimi.quota.redis import RedisQuotas

        client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
        backend: Any = RedisQuotas(client, prefix=f"aimi-test-{ids()}")
    else:
        backend = MemoryQuotas()
    deployment = scope("deployment:d", requests_per_minute=1)
    key = scope("key:k", tokens_per_minute=50)
    try:
        assert (await backend.admit([deployment, key], 10, ids())).admitted
        # The deployment's one request a minute is used: a 429 that says so, with the key's tokens too.
        refused = await backend.admit([deployment, key], 10, ids())
        assert (refused.refusal, refused.scope) == (Refusal.REQUESTS, "deployment:d")
        assert refused.remaining == Remaining(1, 0, 50, 40)
        # A reservation larger than the key's minute can never pass: said at once, without Retry-After.
        hopeless = await backend.admit([deployment, key], 51, ids())
        assert (hopeless.refusal, hopeless.scope, hopeless.retry_after) == (Refusal.TOO_LARGE, "key:k", None)
    finally:
        if backend_name == "redis":
            await backend.close()


@pytest.mark.anyio
async def test_each_failed_call_is_counted_once_however_many_run_at_once() -> None:
    backend = Flaky()
    backend.mode = "hang"
    quotas = Quotas(backend, on_error=OnError.LOCAL, timeout=0.05)
    counted: list[int] = []
    quotas.on_failure = lambda: counted.append(1)
    await asyncio.gather(*(quotas.reserve(LIMITED, 1, ids()) for _ in range(20)))
    assert len(counted) == quotas.errors == 20
