"""API keys: held as SHA-256 digests, compared in constant time, never logged.

When no key is configured, aimi generates one on first start and keeps it in the state
directory, readable by its owner only, so ``aimi serve`` can print it and ``aimi chat`` can use
it. The server itself only ever holds digests.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.types import Scope

from aimi.quota.api import QuotaLimits

KEY_FILE = "api-key"
SCOPES = ("inference", "metrics", "admin")
ALL_SCOPES = frozenset(SCOPES)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (its id in logs, never the secret), the deployments it may
    use (None: all of them), its own quota, and its scopes: ``inference`` (the model routes),
    ``metrics`` (``/metrics``) and ``admin`` (``/admin/...``). ``kind`` says what it presented:
    a ``key`` (named by the key's name) or a ``token`` (named by its subject)."""

    name: str
    deployments: frozenset[str] | None = None
    quota: QuotaLimits | None = None
    scopes: frozenset[str] = ALL_SCOPES
    kind: str = "key"

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    def may_use(self, deployment: str) -> bool:
        return self.deployments is None or deployment in self.deployments


@dataclass(frozen=True)
class ApiKey:
    """A configured key: its SHA-256 digest, who it stands for, and when it stops working (Unix
    time; None: never), as a managed key's expiry or a rotated-out secret's grace period."""

    sha256: bytes
    principal: Principal
    expires_at: float | None = None

    @classmethod
    def from_secret(
        cls,
        secret: str,
        name: str,
        deployments: frozenset[str] | None = None,
        quota: QuotaLimits | None = None,
        scopes: frozenset[str] = ALL_SCOPES,
    ) -> ApiKey:
        return cls(digest(secret), Principal(name, deployments, quota, scopes))


class KeyVerifier:
    """Checks presented keys against the digests of the configured ones."""

    def __init__(self, keys: Iterable[str | ApiKey]) -> None:
        self._keys = [
            key if isinstance(key, ApiKey) else ApiKey.from_secret(key, f"key-{i + 1}") for i, key in enumerate(keys)
        ]
        if not self._keys:
            raise ValueError("a KeyVerifier needs at least one key")

    def identify(self, presented: str) -> Principal | None:
        """The principal of the presented key, or None."""
        candidate = digest(presented)
        # Compare against every key, without stopping at a match, so timing tells nothing.
        found: Principal | None = None
        now = time.time()
        for key in self._keys:
            if hmac.compare_digest(candidate, key.sha256) and (key.expires_at is None or now < key.expires_at):
                found = key.principal
        return found

    def names(self) -> frozenset[str]:
        """The names of the keys, for telling a managed key's name apart from theirs."""
        return frozenset(key.principal.name for key in self._keys)

    def extended(self, keys: Sequence[ApiKey]) -> KeyVerifier:
        """A verifier of these keys and ``keys``."""
        return KeyVerifier([*self._keys, *keys])

    def verify(self, presented: str) -> bool:
        return self.identify(presented) is not None


def principal_of(scope: Scope) -> Principal | None:
    """The caller the auth middleware identified; None without auth, or on a public path
    called without a key."""
    principal: Principal | None = scope.get("state", {}).get("principal")
    return principal


class KeyRing:
    """The server's current keys: those of the flags and the file (a reload swaps them in place;
    None: no authentication) and the managed keys of the database (swapped by
    :meth:`manage` on every refresh). ``verifier`` checks both."""

    def __init__(self, verifier: KeyVerifier | None) -> None:
        self._configured = verifier
        self._managed: tuple[ApiKey, ...] = ()
        self._verifier = verifier

    @property
    def verifier(self) -> KeyVerifier | None:
        return self._verifier

    @verifier.setter
    def verifier(self, verifier: KeyVerifier | None) -> None:
        self._configured = verifier
        self._combine()

    @property
    def configured(self) -> KeyVerifier | None:
        """The keys of the flags and the file alone."""
        return self._configured

    def manage(self, keys: Sequence[ApiKey]) -> None:
        """Serve ``keys`` as the managed keys from now on."""
        self._managed = tuple(keys)
        self._combine()

    def _combine(self) -> None:
        configured = self._configured
        self._verifier = configured.extended(self._managed) if configured is not None and self._managed else configured


def generate_key() -> str:
    """A new 32-character key."""
    return secrets.token_urlsafe(24)


def load_or_create_key(home: Path) -> tuple[str, bool]:
    """The state directory's key, created on first use; returns (key, created)."""
    path = home / KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if key:
            return key, False
    home.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key, True


def read_key(home: Path) -> str | None:
    """The state directory's key, if there is one (for local clients such as ``aimi chat``)."""
    path = home / KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
