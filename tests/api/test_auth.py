"""Deny by default: every route needs a key except /health and the OpenAPI documents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, COMPLETION, assert_error
from tests.conftest import KEY, InProcessServer, in_process

PUBLIC = {"/health", "/swagger.json", "/openapi.json"}
WRONG_KEY = "wrong-key-ZXQ-9f8e7d6c5b4a39281706"
UNAUTHORIZED_MESSAGE = "Auth token validation failed: a valid api-key or bearer token is required"


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


def body_for(path: str) -> dict[str, Any] | None:
    if path.endswith("/images/embeddings"):
        return {"input": [{"image": "data:image/png;base64,AAAA"}]}
    if path.endswith("/embeddings"):
        return {"input": ["hi"]}
    if path.endswith("/chat/completions"):
        return CHAT
    if path.endswith("/completions"):
        return COMPLETION
    return None


# The control plane's routes, called without a body and with the literal "{name}": what they answer after auth.
ADMIN_STATUS = {
    ("/admin/keys", "POST"): 400,
    ("/admin/keys/{name}", "GET"): 404,
    ("/admin/keys/{name}", "HEAD"): 404,
    ("/admin/keys/{name}/rotate", "POST"): 404,
    ("/admin/keys/{name}/revoke", "POST"): 404,
    ("/admin/deployments/{name}", "GET"): 404,
    ("/admin/deployments/{name}", "HEAD"): 404,
    ("/admin/deployments/{name}", "PUT"): 400,
    ("/admin/deployments/{name}", "DELETE"): 404,
}


def expected_status(path: str, method: str = "GET") -> int:
    """The fake deployment serves chat: embeddings routes answer the documented 404 (after auth)."""
    if (path, method) in ADMIN_STATUS:
        return ADMIN_STATUS[path, method]
    return 404 if path.endswith("/embeddings") else 200


def route_calls(server: InProcessServer) -> list[tuple[str, str]]:
    """Every (path, method) the app serves, walked from the live app's route table."""
    # Per-deployment paths are walked for the one deployment this server has.
    return [
        (route.path.replace("{deployment}", server.deployment.name), method)
        for route in server.app.routes
        for method in sorted(route.methods)
    ]


def call(server: InProcessServer, path: str, method: str, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        return anonymous.request(method, path, json=body_for(path) if method == "POST" else None, headers=headers)


def test_the_route_walk_covers_every_prefix(server: InProcessServer) -> None:
    paths = {path for path, _ in route_calls(server)}
    for suffix in ("/info", "/chat/completions", "/completions"):
        assert {suffix, f"/models{suffix}", f"/api/models{suffix}"} <= paths
    assert {"/v1/models", "/v1/chat/completions", "/v1/completions"} | PUBLIC <= paths


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"api-key": WRONG_KEY}, id="wrong-api-key"),
        pytest.param({"Authorization": f"Bearer {WRONG_KEY}"}, id="wrong-bearer"),
        pytest.param({"api-key": ""}, id="empty-api-key"),
        # "Bearer " arrives as "Bearer": HTTP strips the trailing space (and h11 refuses to send it).
        pytest.param({"Authorization": "Bearer"}, id="empty-bearer"),
        pytest.param({"Authorization": f"Basic {KEY}"}, id="right-key-wrong-scheme"),
    ],
)
def test_every_non_public_route_and_method_refuses_a_request_without_a_valid_key(
    server: InProcessServer, headers: dict[str, str]
) -> None:
    failures = []
    for path, method in route_calls(server):
        if path in PUBLIC:
            continue
        response = call(server, path, method, headers)
        try:
            assert response.status_code == 401
            assert response.headers["x-ms-error-code"] == "Unauthorized"
            assert "retry-after" not in response.headers
            if method != "HEAD":
                assert_error(response, 401, "Unauthorized", param=None, message=UNAUTHORIZED_MESSAGE)
                assert response.json() == {
                    "error": {
                        "code": "Unauthorized",
                        "message": UNAUTHORIZED_MESSAGE,
                        "type": "authentication_error",
                        "param": None,
                    }
                }
        except AssertionError as exc:
            failures.append(f"{method} {path}: {response.status_code} {response.text[:200]} ({exc})")
    assert failures == []


def test_the_public_routes_are_exactly_health_and_the_openapi_documents(server: InProcessServer) -> None:
    answering_anonymously = set()
    for path, method in route_calls(server):
        response = call(server, path, method, {})
        if response.status_code != 401:
            assert response.status_code == 200, (method, path, response.text)
            answering_anonymously.add(path)
    assert answering_anonymously == PUBLIC


def test_every_route_and_method_answers_200_with_a_valid_api_key(server: InProcessServer) -> None:
    failures = [
        f"{method} {path}: {response.status_code} {response.text[:200]}"
        for path, method in route_calls(server)
        if (response := call(server, path, method, {"api-key": KEY})).status_code != expected_status(path, method)
    ]
    assert failures == []


def test_every_route_and_method_answers_200_with_a_valid_bearer_token(server: InProcessServer) -> None:
    failures = [
        f"{method} {path}: {response.status_code} {response.text[:200]}"
        for path, method in route_calls(server)
        if (response := call(server, path, method, {"Authorization": f"Bearer {KEY}"})).status_code
        != expected_status(path, method)
    ]
    assert failures == []


def test_a_lowercase_bearer_scheme_is_accepted(server: InProcessServer) -> None:
    assert call(server, "/chat/completions", "POST", {"Authorization": f"bearer {KEY}"}).status_code == 200


def test_a_valid_api_key_with_the_empty_bearer_the_python_sdk_sends_is_accepted(server: InProcessServer) -> None:
    # The Azure Python SDK's own tests send headers={"api-key": k} with AzureKeyCredential("").
    response = call(server, "/chat/completions", "POST", {"api-key": KEY, "Authorization": "Bearer"})
    assert response.status_code == 200


def test_both_headers_carrying_the_valid_key_are_accepted(server: InProcessServer) -> None:
    # What both Azure SDKs send with AzureKeyCredential.
    response = call(server, "/chat/completions", "POST", {"api-key": KEY, "Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200


def test_an_unknown_path_without_a_key_is_401_not_404(server: InProcessServer) -> None:
    # Unknown paths are refused like known ones, so the route table cannot be probed.
    response = call(server, "/no/such/route", "GET", {})
    assert_error(response, 401, "Unauthorized")


def test_every_configured_key_works() -> None:
    with in_process(keys=["first-key-aaaaaaaaaaaaaaaaaaaaaaaa", "second-key-bbbbbbbbbbbbbbbbbbbbbbb"]) as running:
        for key in ("first-key-aaaaaaaaaaaaaaaaaaaaaaaa", "second-key-bbbbbbbbbbbbbbbbbbbbbbb"):
            assert call(running, "/info", "GET", {"api-key": key}).status_code == 200
        assert call(running, "/info", "GET", {"api-key": KEY}).status_code == 401


def _no_secret(response: httpx.Response, secret: str) -> None:
    assert secret not in response.text, response.text
    for name, value in response.headers.items():
        assert secret not in name and secret not in value, (name, value)


@pytest.mark.parametrize(
    "path, method",
    [
        ("/chat/completions", "POST"),
        ("/v1/chat/completions", "POST"),
        ("/info", "GET"),
        ("/v1/models", "GET"),
        ("/no/such/route", "GET"),
        ("/health", "GET"),
        ("/openapi.json", "GET"),
    ],
)
@pytest.mark.parametrize("header", ["api-key", "Authorization"])
def test_a_wrong_key_is_never_echoed(server: InProcessServer, path: str, method: str, header: str) -> None:
    value = WRONG_KEY if header == "api-key" else f"Bearer {WRONG_KEY}"
    response = call(server, path, method, {header: value})
    _no_secret(response, WRONG_KEY)


def test_the_valid_key_never_appears_in_any_response(server: InProcessServer) -> None:
    with server.client() as authed:
        responses = [
            authed.post("/chat/completions", json=CHAT),
            authed.post("/chat/completions", json={**CHAT, "stream": True}),
            authed.post("/chat/completions", json={**CHAT, "foo": 1}),
            authed.post("/chat/completions", json={"messages": []}),
            authed.get("/chat/completions"),
            authed.get("/nope"),
            authed.get("/info"),
            authed.get("/v1/models"),
            authed.get("/openapi.json"),
            authed.get("/health"),
        ]
    for response in responses:
        _no_secret(response, KEY)
