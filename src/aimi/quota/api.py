"""Quotas: what a request is charged against, and what an admission decides.

A request is charged against every :class:`Scope` it falls in (its deployment, its key). Each
scope holds up to three limits: requests per minute, tokens per minute and concurrent requests.
The per-minute limits are sliding windows of one-second buckets: a charge made at second ``s``
counts until second ``s + 60``, so over any 60 seconds a scope admits at most its limit.

Admission charges one request and the request's whole reservation (prompt tokens plus the most
it may generate) at once, in every scope or in none. When the request ends, its reservation
settles to the true usage: the unused tokens go back to the bucket they were taken from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

WINDOW_SECONDS = 60


class QuotaLimits(BaseModel):
    """Limits of one scope; None means unlimited, and 0 (as settings and files write it) is None.

    The server's values are the ``AIMI_QUOTA_*`` settings; a file's ``[deployments.quota]`` or
    ``[keys.quota]`` table is this model too, read as overrides (absent: the deployment keeps the
    server's value, a key has no limit of its own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: Annotated[int, Field(ge=0)] | None = Field(None, description="Requests per minute.")
    tokens_per_minute: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Tokens (prompt + max_tokens, settled to usage) per minute."
    )
    max_concurrent: Annotated[int, Field(ge=0)] | None = Field(None, description="Requests running at once.")

    @field_validator("requests_per_minute", "tokens_per_minute", "max_concurrent")
    @classmethod
    def _zero_is_unlimited(cls, value: int | None) -> int | None:
        return value or None

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None and self.max_concurrent is None


@dataclass(frozen=True)
class Scope:
    """What a request is charged against: ``deployment:<name>`` or ``key:<name>``, with its limits."""

    name: str
    limits: QuotaLimits


class Refusal(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"
    CONCURRENCY = "concurrency"
    TOO_LARGE = "too_large"  # the reservation alone exceeds the scope's tokens per minute


@dataclass(frozen=True)
class Remaining:
    """The tightest scope's limits and what is left of them after this admission (None: unlimited)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None

    def headers(self) -> dict[str, str]:
        values = {
            "x-ratelimit-limit-requests": self.limit_requests,
            "x-ratelimit-limit-tokens": self.limit_tokens,
            "x-ratelimit-remaining-requests": self.remaining_requests,
            "x-ratelimit-remaining-tokens": self.remaining_tokens,
        }
        return {name: str(max(0, value)) for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Decision:
    """An admission's outcome. ``retry_after`` (seconds) is when enough capacity is back; None when
    waiting cannot help (a reservation larger than the limit)."""

    admitted: bool
    remaining: Remaining
    second: int = 0
    refusal: Refusal | None = None
    scope: str | None = None
    retry_after: float | None = None


@dataclass
class Reservation:
    """What an admitted request holds until it settles."""

    request_id: str
    scopes: tuple[Scope, ...]
    tokens: int
    second: int
    remaining: Remaining = field(default_factory=Remaining)
    backend: QuotaBackend | None = None
    settled: bool = False


class QuotaBackend(Protocol):
    """Where the counters live. Both calls are atomic across every process sharing the backend."""

    name: str

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        """Charge one request and ``tokens`` in every scope, or in none and say why."""
        ...

    async def settle(self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int) -> None:
        """Give back ``reserved - used`` tokens (charge the excess if ``used`` is more), and end the
        request's concurrency lease."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PooledBackend(QuotaBackend, Protocol):
    """A shared backend whose calls each take one connection of a bounded pool. Waiting for a
    connection is not the backend failing: the gate times only the call made on it."""

    async def acquire(self) -> object:
        """A connection, opened if need be; waits while every one is taken (up to the pool's own
        timeout)."""
        ...

    async def release(self, connection: object) -> None: ...

    def on(self, connection: object) -> QuotaBackend:
        """This backend's calls, made on ``connection``."""
        ...

    async def warm(self) -> None:
        """Open the pool's connections ahead of the first calls."""
        ...


def tightest(rows: Sequence[tuple[QuotaLimits, int, int]], tokens: int, requests: int = 1) -> Remaining:
    """The smallest remainders over ``rows`` of (limits, requests used, tokens used), after
    charging ``requests`` and ``tokens`` (nothing, for a refusal)."""
    best = Remaining()
    for limits, used_requests, used_tokens in rows:
        if limits.requests_per_minute is not None:
            left = limits.requests_per_minute - used_requests - requests
            if best.remaining_requests is None or left < best.remaining_requests:
                best = Remaining(limits.requests_per_minute, left, best.limit_tokens, best.remaining_tokens)
        if limits.tokens_per_minute is not None:
            left = limits.tokens_per_minute - used_tokens - tokens
            if best.remaining_tokens is None or left < best.remaining_tokens:
                best = Remaining(best.limit_requests, best.remaining_requests, limits.tokens_per_minute, left)
    return best
