"""JSON responses of both surfaces, errors included."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse as StarletteJSONResponse

from aimi.protocol.errors import ApiError
from aimi.protocol.jsonbytes import ascii_json


class JSONResponse(StarletteJSONResponse):
    """JSON with non-ASCII escaped: the same bytes as the SSE frames, and a value quoted back to
    the client (a lone surrogate included) can never make the body unencodable."""

    def render(self, content: Any) -> bytes:
        return ascii_json(content)


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers={**error.headers(), **(headers or {})})
