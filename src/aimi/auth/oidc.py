"""Whose signed tokens are trusted, and what they may do: the ``[auth.oidc]`` table of a
deployments file and ``AIMI_OIDC_ISSUER``/``AIMI_OIDC_AUDIENCE``, read into a :class:`TokenPolicy`.

::

    [auth.oidc]
    audiences = ["https://ml.azure.com"]          # optional: else AIMI_OIDC_AUDIENCE
    [[auth.oidc.issuers]]                         # one per tenant
    url = "https://login.microsoftonline.com/<tenant-id>/v2.0"
    [[auth.oidc.issuers]]
    url = "https://sts.windows.net/<other-tenant-id>/"
    audiences = ["api://aimi"]                    # optional: this issuer's own
    [auth.oidc.quota]                             # optional: each caller's own limits
    requests_per_minute = 60

    [[auth.oidc.grants]]                          # optional: without any, a token may call every deployment
    claim = "roles"                               # roles, scp, groups, oid, sub, or any other claim
    value = "Inference.Chat"
    deployments = ["chat"]                        # optional: else every deployment
    scopes = ["inference"]                        # optional: or "metrics", "admin"

With grants, a token gets what the grants whose claim holds the value give, added up; a token no
grant matches may call nothing (403).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aimi.auth.jwks import check_url
from aimi.quota.api import QuotaLimits

if TYPE_CHECKING:
    from aimi.settings import Settings

Scope = Literal["inference", "metrics", "admin"]
DEFAULT_SCOPES = frozenset({"inference"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssuerConfig(_Strict):
    """A trusted issuer: its URL (its discovery document is under it) and, optionally, its own audiences."""

    url: str
    audiences: Annotated[list[str], Field(min_length=1)] | None = None

    @field_validator("url")
    @classmethod
    def _https(cls, url: str) -> str:
        return check_url(url, "an issuer")


class GrantConfig(_Strict):
    """What a token whose ``claim`` holds ``value`` may do."""

    claim: Annotated[str, Field(min_length=1, max_length=64)]
    value: Annotated[str, Field(min_length=1)]
    issuer: str | None = None
    scopes: Annotated[list[Scope], Field(min_length=1)] = ["inference"]
    deployments: list[str] | None = None
    quota: QuotaLimits | None = None


class OidcConfig(_Strict):
    """The ``[auth.oidc]`` table."""

    issuers: list[IssuerConfig] = Field(default_factory=list)
    audiences: Annotated[list[str], Field(min_length=1)] | None = None
    quota: QuotaLimits | None = None
    grants: list[GrantConfig] = Field(default_factory=list)


class AuthConfig(_Strict):
    """The ``[auth]`` table."""

    oidc: OidcConfig | None = None


def check_grants(config: AuthConfig | None, names: Sequence[str], source: str) -> str | None:
    """What is wrong with the grants (a deployment or issuer they name that the file does not
    have), or None."""
    oidc = config.oidc if config is not None else None
    issuers = {_normal(i.url) for i in oidc.issuers} if oidc is not None else set()
    for i, grant in enumerate(oidc.grants if oidc is not None else ()):
        unknown = sorted(set(grant.deployments or ()) - set(names))
        if unknown:
            return f"{source}: auth.oidc.grants[{i}].deployments: no deployment named {', '.join(map(repr, unknown))}"
        if grant.issuer is not None and _normal(grant.issuer) not in issuers:
            return f"{source}: auth.oidc.grants[{i}].issuer: not one of auth.oidc.issuers"
    return None


def _normal(issuer: str) -> str:
    return issuer.rstrip("/")


@dataclass(frozen=True)
class Grant:
    """What a token whose ``claim`` holds ``value`` (from ``issuer``, if given) may do."""

    claim: str
    value: str
    scopes: frozenset[str]
    deployments: frozenset[str] | None = None
    quota: QuotaLimits | None = None
    issuer: str | None = None

    def matches(self, claims: Mapping[str, Any]) -> bool:
        if self.issuer is not None and _normal(str(claims.get("iss", ""))) != _normal(self.issuer):
            return False
        held = claims.get(self.claim)
        if isinstance(held, str):
            # scp is one space-separated string; roles and groups are lists.
            return self.value in held.split()
        if isinstance(held, list):
            return self.value in (str(v) for v in held)
        return False


@dataclass(frozen=True)
class Access:
    """What a token's caller may do."""

    scopes: frozenset[str]
    deployments: frozenset[str] | None
    quota: QuotaLimits | None


@dataclass(frozen=True)
class TokenPolicy:
    """The trusted issuers (by URL, without a trailing slash) with the audiences each accepts,
    and the grants. No issuers: bearer tokens are refused."""

    issuers: Mapping[str, tuple[str, ...]]
    grants: tuple[Grant, ...] = ()
    quota: QuotaLimits | None = None

    def audiences(self, issuer: str) -> tuple[str, ...] | None:
        """The audiences ``issuer``'s tokens may carry; None: the issuer is not trusted."""
        return self.issuers.get(_normal(issuer))

    def access(self, claims: Mapping[str, Any]) -> Access:
        if not self.grants:
            return Access(DEFAULT_SCOPES, None, self.quota)
        matched = [g for g in self.grants if g.matches(claims)]
        scopes = frozenset(s for g in matched for s in g.scopes)
        deployments: frozenset[str] | None = frozenset(d for g in matched for d in g.deployments or ())
        if any(g.deployments is None for g in matched):
            deployments = None
        quota = next((g.quota for g in matched if g.quota is not None), self.quota)
        return Access(scopes, deployments, quota)


def policy_from(issuers: Sequence[str], audiences: Sequence[str], config: OidcConfig | None = None) -> TokenPolicy:
    """The policy of ``AIMI_OIDC_ISSUER``'s ``issuers`` with ``AIMI_OIDC_AUDIENCE``'s
    ``audiences``, and of a deployments file's ``[auth.oidc]``."""
    trusted = {_normal(check_url(url, "AIMI_OIDC_ISSUER")): tuple(audiences) for url in issuers}
    if config is None:
        return TokenPolicy(trusted)
    file_audiences = tuple(config.audiences or audiences)
    for issuer in config.issuers:
        trusted[_normal(issuer.url)] = tuple(issuer.audiences or file_audiences)
    grants = tuple(
        Grant(
            g.claim,
            g.value,
            frozenset(g.scopes),
            frozenset(g.deployments) if g.deployments is not None else None,
            g.quota,
            g.issuer,
        )
        for g in config.grants
    )
    return TokenPolicy(trusted, grants, config.quota)


def token_policy(settings: Settings, auth: AuthConfig | None = None) -> TokenPolicy:
    """The policy of the settings and of a deployments file's ``[auth]`` table."""
    return policy_from(settings.oidc_issuer, settings.oidc_audience, auth.oidc if auth is not None else None)
