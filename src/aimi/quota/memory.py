"""The in-process quota backend: exact for one aimi process (its event loop runs one admission at
a time), and the local fallback when a shared backend is unreachable."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from aimi.quota.api import WINDOW_SECONDS, Decision, Refusal, Scope, tightest


class _Window:
    """One-second buckets of the last minute's charges."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def used(self, second: int) -> int:
        stale = [s for s in self.buckets if s <= second - WINDOW_SECONDS]
        for s in stale:
            del self.buckets[s]
        return sum(self.buckets.values())

    def wait(self, need: int, now: float) -> float:
        """Seconds until ``need`` of what is charged has left the window."""
        freed = 0
        for s in sorted(self.buckets):
            freed += self.buckets[s]
            if freed >= need:
                return max(0.0, s + WINDOW_SECONDS - now)
        return float(WINDOW_SECONDS)

    def add(self, second: int, amount: int) -> None:
        self.buckets[second] = self.buckets.get(second, 0) + amount


class MemoryQuotas:
    """Sliding-window counters in this process."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._requests: dict[str, _Window] = {}
        self._tokens: dict[str, _Window] = {}
        self._leases: dict[str, set[str]] = {}

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        now = self._clock()
        second = int(now)
        windows = [
            (self._requests.setdefault(s.name, _Window()), self._tokens.setdefault(s.name, _Window())) for s in scopes
        ]
        rows = [(s.limits, r.used(second), t.used(second)) for s, (r, t) in zip(scopes, windows, strict=True)]

        def refused(refusal: Refusal, scope: Scope, retry: float | None) -> Decision:
            # Nothing is charged: every scope's remainders as they stand.
            return Decision(False, tightest(rows, 0, 0), second, refusal, scope.name, retry)

        # A reservation no scope could ever hold is refused first: waiting would not help.
        for scope in scopes:
            if scope.limits.tokens_per_minute is not None and tokens > scope.limits.tokens_per_minute:
                return refused(Refusal.TOO_LARGE, scope, None)
        for scope, (requests, charged), (limits, used_requests, used_tokens) in zip(scopes, windows, rows, strict=True):
            if limits.requests_per_minute is not None and used_requests + 1 > limits.requests_per_minute:
                return refused(
                    Refusal.REQUESTS, scope, requests.wait(used_requests + 1 - limits.requests_per_minute, now)
                )
            if limits.tokens_per_minute is not None and used_tokens + tokens > limits.tokens_per_minute:
                return refused(
                    Refusal.TOKENS, scope, charged.wait(used_tokens + tokens - limits.tokens_per_minute, now)
                )
            if limits.max_concurrent is not None and len(self._leases.get(scope.name, ())) >= limits.max_concurrent:
                return refused(Refusal.CONCURRENCY, scope, 1.0)
        for scope, (requests, charged) in zip(scopes, windows, strict=True):
            requests.add(second, 1)
            charged.add(second, tokens)
            if scope.limits.max_concurrent is not None:
                self._leases.setdefault(scope.name, set()).add(request_id)
        return Decision(True, tightest(rows, tokens), second)

    async def settle(self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int) -> None:
        now = int(self._clock())
        for scope in scopes:
            window = self._tokens.get(scope.name)
            if window is not None:
                if used < reserved and second > now - WINDOW_SECONDS and second in window.buckets:
                    window.buckets[second] = max(0, window.buckets[second] - (reserved - used))
                elif used > reserved:
                    window.add(now, used - reserved)
            self._leases.get(scope.name, set()).discard(request_id)

    async def close(self) -> None:
        return None
