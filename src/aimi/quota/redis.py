"""The Redis quota backend: one Lua script per admission (one round trip), so every aimi process
sharing the Redis shares one limit exactly. The script reads the clock from Redis (``TIME``), so
the replicas need not agree on the time.

Keys share the hash tag ``{quota}`` so a script's keys live on one Redis Cluster node.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from aimi.quota.api import Decision, Refusal, Remaining, Scope

# KEYS: per scope, its requests hash, tokens hash and leases sorted set.
# ARGV: tokens, request id, lease seconds, then per scope: rpm, tpm, max concurrent (-1: none).
# Returns {admitted, second, refused scope (1-based) or 0, refusal, retry ms (-1: never),
#          limit req, left req, limit tok, left tok} with -1 for "no limit".
ADMIT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local id = ARGV[2]
local lease = tonumber(ARGV[3])
local n = #KEYS / 3

local function window(key)
  local flat = redis.call('HGETALL', key)
  local total, live, stale = 0, {}, {}
  for i = 1, #flat, 2 do
    local s, v = tonumber(flat[i]), tonumber(flat[i + 1])
    if s <= sec - 60 then stale[#stale + 1] = flat[i] else total = total + v; live[#live + 1] = {s, v} end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return total, live
end

local function wait(live, need)
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local freed = 0
  for _, e in ipairs(live) do
    freed = freed + e[2]
    if freed >= need then return math.max(0, math.ceil((e[1] + 60 - now) * 1000)) end
  end
  return 60000
end

local lr, rr, lt, rt = -1, -1, -1, -1
local function track(rpm, tpm, ur, ut, requests, charge)
  if rpm >= 0 and (lr < 0 or rpm - ur - requests < rr) then lr, rr = rpm, rpm - ur - requests end
  if tpm >= 0 and (lt < 0 or tpm - ut - charge < rt) then lt, rt = tpm, tpm - ut - charge end
end

-- Every scope's counters first: a refusal reports all of them.
local used = {}
for i = 1, n do
  local ur, lrv = window(KEYS[3 * i - 2])
  local ut, ltv = window(KEYS[3 * i - 1])
  used[i] = {ur, ut, lrv, ltv}
end

local function refuse(i, refusal, retry)
  -- Nothing is charged: the remainders of every scope as they stand.
  for j = 1, n do
    track(tonumber(ARGV[1 + 3 * j]), tonumber(ARGV[2 + 3 * j]), used[j][1], used[j][2], 0, 0)
  end
  return {0, sec, i, refusal, retry, lr, rr, lt, rt}
end

-- A reservation no scope could ever hold is refused first: waiting would not help.
for i = 1, n do
  local tpm = tonumber(ARGV[2 + 3 * i])
  if tpm >= 0 and cost > tpm then return refuse(i, 'too_large', -1) end
end
for i = 1, n do
  local rpm, tpm, conc = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i])
  local ur, ut, lrv, ltv = used[i][1], used[i][2], used[i][3], used[i][4]
  if rpm >= 0 and ur + 1 > rpm then return refuse(i, 'requests', wait(lrv, ur + 1 - rpm)) end
  if tpm >= 0 and ut + cost > tpm then return refuse(i, 'tokens', wait(ltv, ut + cost - tpm)) end
  if conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3 * i], '-inf', now)
    if redis.call('ZCARD', KEYS[3 * i]) >= conc then return refuse(i, 'concurrency', 1000) end
  end
  track(rpm, tpm, ur, ut, 1, cost)
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[3 * i - 2], sec, 1)
  redis.call('EXPIRE', KEYS[3 * i - 2], 120)
  redis.call('HINCRBY', KEYS[3 * i - 1], sec, cost)
  redis.call('EXPIRE', KEYS[3 * i - 1], 120)
  if tonumber(ARGV[3 + 3 * i]) >= 0 then
    redis.call('ZADD', KEYS[3 * i], now + lease, id)
    redis.call('EXPIRE', KEYS[3 * i], math.ceil(lease) * 2)
  end
end
return {1, sec, 0, '', -1, lr, rr, lt, rt}
"""

# KEYS as for ADMIT; ARGV: second charged, reserved, used, request id.
SETTLE = """
local sec = tonumber(redis.call('TIME')[1])
local charged, reserved, used, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = 1, #KEYS / 3 do
  local tokens = KEYS[3 * i - 1]
  if used < reserved and charged > sec - 60 then
    local left = tonumber(redis.call('HGET', tokens, charged) or '0')
    if left > 0 then redis.call('HSET', tokens, charged, math.max(0, left - (reserved - used))) end
  elseif used > reserved then
    redis.call('HINCRBY', tokens, sec, used - reserved)
    redis.call('EXPIRE', tokens, 120)
  end
  redis.call('ZREM', KEYS[3 * i], id)
end
return 1
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


def _opt(value: int) -> int | None:
    return None if value < 0 else value


class RedisQuotas:
    """Counters in Redis, shared by every aimi pointed at it.

    ``lease_seconds`` bounds how long a crashed process's concurrency slot stays taken. Each call
    takes one connection of the client's pool (see :meth:`from_url`) for its one round trip.
    """

    name = "redis"

    def __init__(self, client: Any, prefix: str = "aimi", lease_seconds: float = 900.0) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._prefix = prefix
        self._lease = lease_seconds
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)

    @classmethod
    def from_url(
        cls,
        url: str,
        timeout: float,
        prefix: str = "aimi",
        lease_seconds: float = 900.0,
        *,
        connect_timeout: float | None = None,
        pool_size: int = 32,
        wait: float = 600.0,
    ) -> RedisQuotas:
        """``timeout``: longest wait for Redis to answer a command (its handshake on a new
        connection too); ``connect_timeout`` (default ``timeout``): to open a connection. At most
        ``pool_size`` connections; a call finding them all taken waits up to ``wait`` seconds for
        one, since a burst of requests is not Redis failing."""
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=wait,
            socket_timeout=timeout,
            socket_connect_timeout=timeout if connect_timeout is None else connect_timeout,
            # No retries inside a call: the gate's policy decides what a failure means, at once.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(redis.asyncio.Redis(connection_pool=pool), prefix, lease_seconds)

    async def acquire(self) -> Any:
        return await self._pool.get_connection()

    async def release(self, connection: Any) -> None:
        await self._pool.release(connection)

    def on(self, connection: Any) -> _Connected:
        return _Connected(self, connection)

    async def warm(self) -> None:
        """Open every connection of the pool and load the scripts, so that the first burst of
        requests neither waits for connections to open nor sends a script in full."""
        size = min(int(getattr(self._pool, "max_connections", 1)), 1024)
        held = await asyncio.gather(*(self.acquire() for _ in range(size)), return_exceptions=True)
        opened = [c for c in held if not isinstance(c, BaseException)]
        try:
            if opened:
                for script in (self._admit, self._settle):
                    await opened[0].send_command("SCRIPT", "LOAD", script.script)
                    await opened[0].read_response()
        finally:
            for connection in opened:
                await self.release(connection)
        failure = next((c for c in held if isinstance(c, BaseException)), None)
        if failure is not None:
            raise failure

    async def _run(self, script: Any, keys: list[str], args: list[object], connection: Any) -> Any:
        """``script``: one round trip (two if Redis had not loaded it). An error or a cancellation
        while sending or reading closes the connection (redis-py does), so no reply is ever left on
        one the pool hands out again."""
        if connection is None:  # a call of its own, bounded by redis-py's timeouts
            connection = await self.acquire()
            try:
                return await self._send(script, keys, args, connection, None)
            finally:
                await self.release(connection)
        # On a connection the caller holds, the caller times the answer (Quotas._answered):
        # redis-py's read timeout would cut it without the allowance for a busy event loop.
        return await self._send(script, keys, args, connection, math.inf)

    @staticmethod
    async def _send(script: Any, keys: list[str], args: list[object], connection: Any, timeout: float | None) -> Any:
        try:
            await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return await connection.read_response(timeout=timeout)
        except NoScriptError:  # a Redis that restarted, or flushed its scripts
            await connection.send_command("EVAL", script.script, len(keys), *keys, *args)
            return await connection.read_response(timeout=timeout)

    def _keys(self, scopes: Sequence[Scope]) -> list[str]:
        keys: list[str] = []
        for scope in scopes:
            base = f"{self._prefix}:{{quota}}:{scope.name}"
            keys += [f"{base}:requests", f"{base}:tokens", f"{base}:leases"]
        return keys

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str, connection: Any = None) -> Decision:
        args: list[object] = [tokens, request_id, self._lease]
        for scope in scopes:
            limits = scope.limits
            args += [
                _limit(limits.requests_per_minute),
                _limit(limits.tokens_per_minute),
                _limit(limits.max_concurrent),
            ]
        reply = await self._run(self._admit, self._keys(scopes), args, connection)
        admitted, second, index, refusal, retry_ms, lr, rr, lt, rt = reply
        remaining = Remaining(_opt(lr), rr if lr >= 0 else None, _opt(lt), rt if lt >= 0 else None)
        if admitted:
            return Decision(True, remaining, int(second))
        text = refusal.decode() if isinstance(refusal, bytes) else str(refusal)
        return Decision(
            False,
            remaining,
            int(second),
            Refusal(text),
            scopes[int(index) - 1].name,
            None if retry_ms < 0 else retry_ms / 1000,
        )

    async def settle(
        self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int, connection: Any = None
    ) -> None:
        await self._run(self._settle, self._keys(scopes), [second, reserved, used, request_id], connection)

    async def forget(self, scopes: Sequence[Scope], request_id: str) -> None:
        """End the request's concurrency leases, if an admission that timed out took them."""
        leases = self._keys(scopes)[2::3]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in leases:
                pipe.zrem(key, request_id)
            await pipe.execute()

    async def close(self) -> None:
        await self._client.aclose(close_connection_pool=True)


class _Connected:
    """A :class:`RedisQuotas`' calls on one connection its caller holds."""

    name = "redis"

    def __init__(self, quotas: RedisQuotas, connection: Any) -> None:
        self._quotas = quotas
        self._connection = connection

    async def admit(self, scopes: Sequence[Scope], tokens: int, request_id: str) -> Decision:
        return await self._quotas.admit(scopes, tokens, request_id, self._connection)

    async def settle(self, scopes: Sequence[Scope], request_id: str, second: int, reserved: int, used: int) -> None:
        await self._quotas.settle(scopes, request_id, second, reserved, used, self._connection)

    async def close(self) -> None:
        return None
