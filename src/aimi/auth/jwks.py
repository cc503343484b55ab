"""An issuer's signing keys: found through its discovery document, fetched, cached, refreshed.

``{issuer}/.well-known/openid-configuration`` names the ``jwks_uri``; the keys there are kept
until they are ``refresh`` seconds old, and then fetched again on the next use. A token naming a
key that is not cached (the issuer rotated its keys) fetches them at once, but never more often
than once every ``min_interval`` seconds: a flood of tokens with made-up ``kid``\\ s costs the
issuer one request per interval. When the issuer cannot be reached, the keys already cached keep
working; with none cached, :class:`KeysUnavailable` says when to try again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from jwt import PyJWK, PyJWTError

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 512 * 1024
MAX_KEYS = 100
UNCACHED_RETRY = 5.0
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


class KeysUnavailable(Exception):
    """The issuer's keys are not cached and cannot be fetched now; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_url(url: str, what: str) -> str:
    """``url`` if it is https (or http on this machine's loopback, for local issuers); else ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return url
    raise ValueError(f"{what} must be an https URL (http only on localhost); got {url!r}")


@dataclass(frozen=True)
class FetchOptions:
    """How keys are fetched: the request timeout, when cached keys are old, and the least time
    between two fetches."""

    timeout: float = 5.0
    refresh: float = 3600.0
    min_interval: float = 60.0


class IssuerKeys:
    """The signing keys of one issuer, by ``kid``."""

    def __init__(
        self,
        issuer: str,
        options: FetchOptions,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.options = options
        self._client = client
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._tried_at: float | None = None  # the last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    @property
    def cached(self) -> bool:
        return self._fetched_at is not None

    async def get(self, kid: str | None) -> PyJWK | None:
        """The key ``kid`` names (with no ``kid``: the only key, if there is one); None when the
        issuer does not publish it. Raises :class:`KeysUnavailable` when nothing is cached and the
        issuer cannot be reached."""
        key = self._find(kid)
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self.options.refresh
        if (key is None or stale) and self._may_fetch():
            async with self._lock:
                # Another request may have fetched while this one waited for the lock.
                if self._may_fetch() and (self._find(kid) is None or stale):
                    await self._refresh()
            key = self._find(kid)
        if key is None and not self.cached:
            wait = self._next_fetch_in()
            raise KeysUnavailable(f"the signing keys of {self.issuer} cannot be fetched", max(wait, 1.0))
        return key

    def _find(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return self._next_fetch_in() <= 0

    def _next_fetch_in(self) -> float:
        if self._tried_at is None:
            return 0.0
        # With nothing cached every token fails, so an issuer that was down is tried again sooner.
        interval = self.options.min_interval if self.cached else min(self.options.min_interval, UNCACHED_RETRY)
        return self._tried_at + interval - self._clock()

    async def _refresh(self) -> None:
        self._tried_at = self._clock()
        self.fetches += 1
        try:
            async with asyncio.timeout(self.options.timeout):
                await self._fetch()
        except (httpx.HTTPError, ValueError, TimeoutError) as exc:
            # Cached keys stay; a token signed with one of them keeps working.
            log.warning("cannot refresh the signing keys of %s: %s", self.issuer, exc or type(exc).__name__)

    async def _fetch(self) -> None:
        """The discovery document, then the keys it names; the whole within the timeout."""
        discovery = await self._json(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        if str(discovery.get("issuer", "")).rstrip("/") != self.issuer.rstrip("/"):
            raise ValueError(f"its discovery document names another issuer: {discovery.get('issuer')!r}")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("its discovery document has no jwks_uri")
        document = await self._json(check_url(jwks_uri, "jwks_uri"))
        self._keys = parse_keys(document)
        self._fetched_at = self._clock()

    async def _json(self, url: str) -> dict[str, Any]:
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ValueError(f"{url} answered {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise ValueError(f"{url} did not send JSON") from None
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not send a JSON object")
        return document


def parse_keys(document: dict[str, Any]) -> dict[str, PyJWK]:
    """The usable signing keys of a JWKS document, by ``kid``; keys of other uses or types are skipped."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the JWKS document has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for i, entry in enumerate(entries[:MAX_KEYS]):
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            keys[str(entry.get("kid", f"#{i}"))] = PyJWK(entry)
        except (PyJWTError, ValueError, TypeError, KeyError) as exc:
            log.warning("skipping an unusable signing key %r: %s", entry.get("kid"), exc)
    return keys
