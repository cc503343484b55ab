"""Signed bearer tokens (OpenID Connect, as Microsoft Entra ID issues them) checked into a
:class:`~aimi.auth.keys.Principal`.

A token is accepted when its issuer is trusted, its signature verifies with a key the issuer
publishes, under an algorithm of :data:`ALGORITHMS` (never ``none``, never an HMAC keyed with a
public key), its audience is one the issuer's tokens may carry, and it is within ``exp``/``nbf``
give or take the leeway. Its caller is its ``oid`` (Entra's object id), else its ``sub``.

A refused token gets a 401 that says why; no message holds the token, and only claims whose
signature verified are quoted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from aimi.auth.jwks import FetchOptions, IssuerKeys, KeysUnavailable
from aimi.auth.keys import Principal
from aimi.auth.oidc import TokenPolicy, token_policy
from aimi.protocol.errors import ApiError, service_unavailable
from aimi.settings import Settings

ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 16 * 1024
NOT_CONFIGURED = "this server does not accept bearer tokens; configure AIMI_OIDC_ISSUER"


def looks_like_jwt(credential: str) -> bool:
    """Whether a credential has a JWT's three dot-separated parts (a key has none)."""
    return credential.count(".") == 2


def rejected(reason: str) -> ApiError:
    """The 401 for a refused token, saying why."""
    return ApiError(
        "Unauthorized",
        f"Auth token validation failed: {reason}",
        headers={"www-authenticate": 'Bearer error="invalid_token"'},
    )


def _when(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        return "an unreadable time"


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class TokenVerifier:
    """Checks bearer tokens against the current :class:`TokenPolicy`; a reload replaces
    ``policy`` and keeps the issuers' cached keys."""

    def __init__(
        self,
        policy: TokenPolicy,
        options: FetchOptions,
        leeway: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.options = options
        self.leeway = leeway
        self._clock = clock
        self._issuers: dict[str, IssuerKeys] = {}
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier of ``AIMI_OIDC_*`` (a deployments file's ``[auth.oidc]`` is added by
        setting ``policy`` to its :func:`~aimi.auth.oidc.token_policy`)."""
        options = FetchOptions(settings.oidc_jwks_timeout, settings.oidc_jwks_refresh, settings.oidc_jwks_min_interval)
        return cls(token_policy(settings), options, settings.oidc_leeway)

    def keys_of(self, issuer: str) -> IssuerKeys:
        """The cached keys of a trusted issuer."""
        found = self._issuers.get(issuer)
        if found is None:
            if self._client is None:
                self._client = httpx.AsyncClient(follow_redirects=False)
            found = self._issuers[issuer] = IssuerKeys(issuer, self.options, self._client, self._clock)
        return found

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def identify(self, token: str) -> Principal:
        """The caller a valid token stands for; an :class:`ApiError` (401 saying why, or 503
        when the issuer's keys cannot be had) otherwise."""
        policy = self.policy
        if not policy.issuers:
            raise rejected(NOT_CONFIGURED)
        if len(token) > MAX_TOKEN_CHARS:
            raise rejected(f"the bearer token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise rejected("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            shown = alg if isinstance(alg, str) and alg.isalnum() and len(alg) <= 10 else "this algorithm"
            raise rejected(f"tokens signed with {shown} are not accepted; this server accepts {', '.join(ALGORITHMS)}")
        issuer = unverified.get("iss")
        audiences = policy.audiences(issuer) if isinstance(issuer, str) else None
        if audiences is None:
            raise rejected("issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers")
        assert isinstance(issuer, str)
        kid = header.get("kid")
        try:
            key = await self.keys_of(issuer.rstrip("/")).get(kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            raise service_unavailable(
                f"the signing keys of the token's issuer cannot be fetched right now; try again in "
                f"{exc.retry_after:.0f} s",
                retry_after=exc.retry_after,
            ) from None
        if key is None:
            raise rejected("the token's signing key (kid) is not one its issuer publishes")
        if key.algorithm_name != alg:
            raise rejected(f"the token says {alg}, but its issuer's key is for {key.algorithm_name}")
        claims = self._verified(token, key.key, alg, issuer, audiences)
        subject = claims.get("oid") or claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise rejected("the token names no caller (it has neither oid nor sub)")
        access = policy.access(claims)
        return Principal(subject, access.deployments, access.quota, access.scopes, kind="token")

    def _verified(self, token: str, key: Any, alg: str, issuer: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """The token's claims, signature and times and audience checked (in that order: a claim
        quoted in an error is one the issuer signed)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
            return claims
        except jwt.InvalidSignatureError:
            raise rejected("the token's signature does not verify with its issuer's key") from None
        except jwt.ExpiredSignatureError:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            raise rejected(
                f"token expired at {_when(exp)} (this server allows {self.leeway:.0f} s of clock skew); get a new token"
            ) from None
        except jwt.ImmatureSignatureError:
            signed = jwt.decode(token, options={"verify_signature": False})
            nbf = signed.get("nbf", signed.get("iat"))  # an iat in the future is refused alike
            raise rejected(
                f"token not yet valid: not before {_when(nbf)} (this server allows {self.leeway:.0f} s of clock "
                "skew); check the clocks"
            ) from None
        except jwt.InvalidAudienceError:
            aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
            held = tuple(str(a) for a in (aud if isinstance(aud, list) else [aud]))[:5]
            raise rejected(
                f"audience not accepted: the token is for {_listed(held)}; this server accepts "
                f"{_listed(audiences)} (AIMI_OIDC_AUDIENCE); ask for a token for {audiences[0]}/.default"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise rejected(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidTokenError as exc:
            raise rejected(f"the token is not valid: {type(exc).__name__}") from None
