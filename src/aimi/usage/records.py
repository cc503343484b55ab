"""One usage record: what a request cost, however it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    ABORTED = "aborted"  # the client went away
    ENGINE_ERROR = "engine_error"
    TIMEOUT = "timeout"
    CONTENT_FILTER = "content_filter"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"  # any other 4xx: bad input, unknown deployment, forbidden
    UNAVAILABLE = "unavailable"  # 503: loading, no engine, quota backend down
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """``id`` is aimi's own request id (unique); ``key`` the key's name, never its secret."""

    id: str
    time: datetime
    key: str | None
    deployment: str | None
    model: str | None
    surface: str
    route: str
    status: int
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class Prices:
    """A deployment's prices, per million prompt and completion tokens."""

    prompt_per_1m: float = 0.0
    completion_per_1m: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_1m + completion_tokens * self.completion_per_1m) / 1_000_000


def outcome_of(status: int) -> Outcome:
    """How a request ended, from its status, when nothing on its way said otherwise."""
    if status < 400:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status == 499:
        return Outcome.ABORTED
    if status == 503:
        return Outcome.UNAVAILABLE
    if status == 504:
        return Outcome.TIMEOUT
    if status < 500:
        return Outcome.REJECTED
    return Outcome.SERVER_ERROR
