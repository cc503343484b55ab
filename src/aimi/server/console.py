"""``GET /`` and ``/console/app.{js,css}``: the web console, a static page with no data in it.

The page is public like ``/health`` (a browser cannot attach a key to a navigation); everything
it shows comes from the API routes, which it calls with the key the user signs in with, held in
the tab's ``sessionStorage`` and sent as the ``api-key`` header. Nothing is authenticated by a
cookie, so a cross-site page cannot act for the user (there is no ambient credential to ride on,
and aimi answers no CORS preflight). A strict Content-Security-Policy allows only this origin's
script, style and connections: no inline code, no CDN, no frames.
"""

from __future__ import annotations

import hashlib
from functools import cache

from starlette.requests import Request
from starlette.responses import Response

from aimi.console import ASSETS, asset

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    # Revalidate every time (the files keep their names across releases), cheaply by ETag.
    "cache-control": "no-cache",
}


@cache
def _loaded(name: str) -> tuple[bytes, str]:
    body = asset(name)
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(request: Request, name: str) -> Response:
    body, etag = _loaded(name)
    headers = {**SECURITY_HEADERS, "etag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[name], headers=headers)


async def page(request: Request) -> Response:
    """The console's one page; its hash routes (``#/usage``, ...) pick what it shows."""
    return _serve(request, "index.html")


async def script(request: Request) -> Response:
    return _serve(request, "app.js")


async def stylesheet(request: Request) -> Response:
    return _serve(request, "app.css")
