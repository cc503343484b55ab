"""Deny by default: every path needs a valid key, except an explicit public list.

A key needs the scope of the path: ``metrics`` for ``/metrics``, ``admin`` for ``/admin/...``,
``inference`` for the rest. A key arrives as ``api-key: <key>`` or ``Authorization: Bearer <key>`` (the Azure SDKs send
both). A bearer credential that is no key but has a JWT's shape is checked as a signed token
(:mod:`aimi.auth.tokens`); its 401 says why it was refused. Unknown paths are refused like known
ones, so the route table is not probeable.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from aimi.auth.keys import KeyRing
from aimi.auth.tokens import looks_like_jwt
from aimi.protocol.errors import ApiError, unauthorized
from aimi.runtime import runtime_of
from aimi.surfaces.json_response import error_response

PUBLIC_PATHS = frozenset({"/health", "/swagger.json", "/openapi.json"})


def scope_of(path: str) -> str:
    """The key scope a path needs."""
    if path == "/metrics":
        return "metrics"
    if path.startswith("/admin/"):
        return "admin"
    return "inference"


def credentials(scope: Scope) -> list[str]:
    found: list[str] = []
    for name, value in scope["headers"]:
        if name == b"api-key":
            found.append(value.decode("latin-1").strip())
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                found.append(token.strip())
    return [c for c in found if c]


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        verifier = self.keys.verifier
        if scope["type"] != "http" or verifier is None:
            await self.app(scope, receive, send)
            return
        presented = credentials(scope)
        principal = next((p for p in (verifier.identify(c) for c in presented) if p is not None), None)
        refusal = unauthorized()
        tokens = [c for c in presented if looks_like_jwt(c)]
        if principal is None and tokens:
            try:
                principal = await runtime_of(scope["app"]).tokens.identify(tokens[0])
            except ApiError as exc:
                refusal = exc
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
        if principal is not None and not principal.may(scope_of(scope["path"])):
            needed = scope_of(scope["path"])
            await error_response(
                ApiError("Forbidden", f"{principal.kind} '{principal.name}' lacks the '{needed}' scope")
            )(scope, receive, send)
            return
        if principal is not None or scope["path"] in PUBLIC_PATHS:
            # Public paths answer everyone; a valid key there may see more (/health's details).
            await self.app(scope, receive, send)
            return
        if refusal.status == 401:
            runtime_of(scope["app"]).metrics.unauthorized.inc()
        response = error_response(refusal)
        response.headers.setdefault("www-authenticate", 'Bearer, ApiKey header="api-key"')
        await response(scope, receive, send)
