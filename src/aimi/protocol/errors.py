"""The error table: every failure a client can see, as one exception type with a stable code.

Both surfaces share one envelope, shaped so that azure-core's ODataV4 parser, the Azure JS SDK,
the OpenAI SDK and plain curl users all find what they look for::

    {"error": {"code": "...", "message": "...", "type": "...", "param": "..."}}

Some codes add top-level keys that the Azure service is known to send (``detail`` for the
extra-parameters 400 and the 422 ``parameter_not_supported`` list). ``Retry-After`` is only
ever attached to 429 and 503: azure-core retries any other status that carries it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aimi.protocol.sse import frame

# code -> (HTTP status, OpenAI-style error type)
ERROR_CODES: dict[str, tuple[int, str | None]] = {
    "invalid_request": (400, "invalid_request_error"),
    "invalid_json": (400, "invalid_request_error"),
    "extra_parameters_not_allowed": (400, "invalid_request_error"),
    "invalid_extra_parameters_header": (400, "invalid_request_error"),
    "context_length_exceeded": (400, "invalid_request_error"),
    "content_filter": (400, None),  # Azure OpenAI sends "type": null
    "Unauthorized": (401, "authentication_error"),
    "Forbidden": (403, "permission_error"),
    "NotFound": (404, "not_found_error"),
    "DeploymentNotFound": (404, "not_found_error"),  # Azure OpenAI's, for an unknown path deployment
    "MethodNotAllowed": (405, "invalid_request_error"),
    "Conflict": (409, "invalid_request_error"),
    "request_timeout": (408, "invalid_request_error"),
    "payload_too_large": (413, "invalid_request_error"),
    "unsupported_media_type": (415, "invalid_request_error"),
    "parameter_not_supported": (422, "invalid_request_error"),
    "TooManyRequests": (429, "rate_limit_error"),
    "engine_error": (500, "server_error"),
    "ServiceUnavailable": (503, "server_error"),
    "timeout": (504, "server_error"),
}


class ApiError(Exception):
    """An error with a status, a stable code and a message meant for the client.

    ``param`` names the offending field (OpenAI's ``param``); ``detail`` and ``extra`` add
    top-level keys to the body; ``retry_after`` (seconds) becomes ``Retry-After`` on 429/503.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        detail: Any = None,
        extra: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
        inner: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message
        self.param = param
        self.detail = detail
        self.extra = dict(extra or {})
        self.retry_after = retry_after
        self.inner = dict(inner) if inner is not None else None
        self.extra_headers = dict(headers or {})

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code][0]

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "type": ERROR_CODES[self.code][1],
            "param": self.param,
        }
        if self.inner is not None:
            error["innererror"] = self.inner
        body: dict[str, Any] = {"error": error, **self.extra}
        if self.detail is not None:
            body["detail"] = self.detail
        return body

    def headers(self) -> dict[str, str]:
        headers = {"x-ms-error-code": self.code, **self.extra_headers}
        if self.retry_after is not None and self.status in (429, 503):
            # Whole seconds, rounded up so a client that waits them finds the capacity back.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["retry-after-ms"] = str(max(1, math.ceil(self.retry_after * 1000)))
        return headers

    def sse_frame(self) -> bytes:
        """The error as one SSE ``data:`` frame, for failures after the 200 went out."""
        return frame(self.body())


def invalid_request(message: str, param: str | None = None) -> ApiError:
    return ApiError("invalid_request", message, param=param)


def unauthorized() -> ApiError:
    # The Azure SDK's live tests look for this sentence in the message.
    return ApiError("Unauthorized", "Auth token validation failed: a valid api-key or bearer token is required")


def extra_parameters_not_allowed(names: Sequence[str]) -> ApiError:
    message = (
        f"Extra parameters {sorted(names)!r} are not allowed when extra-parameters is not set or set to "
        "be 'error'. Set extra-parameters to 'pass-through' to pass to the model."
    )
    return ApiError("extra_parameters_not_allowed", message, param=sorted(names)[0], detail=message)


def parameter_not_supported(problems: Sequence[tuple[tuple[str | int, ...], Any, str]]) -> ApiError:
    """422 naming each unsupported parameter: ``problems`` holds (loc, input, why)."""
    detail = [
        {"loc": ["body", *loc], "input": value, "msg": why, "type": "parameter_not_supported"}
        for loc, value, why in problems
    ]
    message = "; ".join(why for _, _, why in problems)
    first = ".".join(str(part) for part in problems[0][0])
    return ApiError(
        "parameter_not_supported",
        message,
        param=first,
        detail=detail,
        extra={"status": 422, "code": "parameter_not_supported", "message": message},
    )


def content_filtered(results: Mapping[str, Any], param: str = "messages") -> ApiError:
    """400 for a prompt that content safety refused, with the category results (Azure's shape);
    ``param`` names the prompt: ``messages`` for chat, ``prompt`` for text completions."""
    message = (
        "The response was filtered due to the prompt triggering the content management policy. "
        "Please modify your prompt and retry."
    )
    return ApiError(
        "content_filter",
        message,
        param=param,
        extra={"status": 400, "code": "content_filter", "message": message, "param": param, "type": None},
        inner={"code": "ResponsibleAIPolicyViolation", "content_filter_result": dict(results)},
    )


def deployment_not_found() -> ApiError:
    """Azure OpenAI's 404 for a deployment the path names and the resource does not have (its
    message word for word: clients and people search for it)."""
    return ApiError(
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last "
        "5 minutes, please wait a moment and try again.",
    )


def service_unavailable(message: str, retry_after: float = 5) -> ApiError:
    return ApiError("ServiceUnavailable", message, retry_after=retry_after)
