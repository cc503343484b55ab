"""Errors into responses: the one place where exceptions become status codes and bodies."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimi.protocol.errors import ApiError
from aimi.surfaces.json_response import error_response

log = logging.getLogger(__name__)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError("MethodNotAllowed", f"{request.method} is not allowed on {request.url.path}")
        return error_response(error, headers=dict(exc.headers or {}))
    return error_response(ApiError("NotFound", f"there is no route {request.url.path}"))


async def client_gone(request: Request, exc: Exception) -> Response:
    # Nobody is listening; the status only shows in the access log.
    return Response(status_code=499)


async def unexpected(request: Request, exc: Exception) -> Response:
    # This handler answers outside every middleware (Starlette's outermost layer), so the request
    # id header is added here: the id the request-id middleware gave the request, as it logged it.
    request_id = request.scope.get("state", {}).get("request_id")
    log.exception("unexpected error on %s (request %s)", request.url.path, request_id or "-")
    headers = {"x-request-id": request_id} if request_id else None
    return error_response(ApiError("engine_error", "internal error; the request id is in x-request-id"), headers)
