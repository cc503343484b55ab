"""One request's account, filled in as the request goes: who, where, how many tokens, when the
first token came. The metering middleware opens it and closes it exactly once, however the
request ends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aimi.quota.api import Remaining, Reservation
from aimi.usage.records import Outcome, Prices


@dataclass
class Meter:
    id: str
    surface: str
    route: str
    key: str | None
    started: float = field(default_factory=time.monotonic)
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    deployment: str | None = None
    model: str | None = None
    prices: Prices | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token: float | None = None
    last_token: float | None = None
    gaps: list[float] = field(default_factory=list)
    outcome: Outcome | None = None
    reservation: Reservation | None = None
    remaining: Remaining | None = None

    def token(self) -> None:
        """A piece of output was produced (for time to first token and inter-token latency)."""
        now = time.monotonic()
        if self.first_token is None:
            self.first_token = now
        elif self.last_token is not None:
            self.gaps.append(now - self.last_token)
        self.last_token = now

    def fail(self, outcome: Outcome) -> None:
        """Mark how the request ended, if nothing marked it before."""
        if self.outcome is None:
            self.outcome = outcome

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_token is None else (self.first_token - self.started) * 1000


def outcome_of(status: int) -> Outcome:
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
