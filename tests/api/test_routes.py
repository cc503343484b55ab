"""Routes: prefixes, api-version, 404/405 envelopes, /info, /v1/models, request ids, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openapi_spec_validator import validate

from tests.api.helpers import CHAT, COMPLETION, assert_error
from tests.conftest import InProcessServer, in_process

AZURE_PREFIXES = ["", "/models", "/api/models"]
INFO = {"model_name": "Fake-Model", "model_type": "chat-completions", "model_provider_name": "aimi"}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


@pytest.mark.parametrize(
    "path", ["/nope", "/v2/chat/completions", "/models/nope", "/chat/completions/extra", "/console/nope"]
)
def test_an_unknown_path_with_a_valid_key_is_a_404_envelope(http: httpx.Client, path: str) -> None:
    body = assert_error(http.get(path), 404, "NotFound")
    assert body == {
        "error": {"code": "NotFound", "message": f"there is no route {path}", "type": "not_found_error", "param": None}
    }


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/chat/completions"),
        ("PUT", "/models/chat/completions"),
        ("DELETE", "/api/models/completions"),
        ("POST", "/info"),
        ("POST", "/v1/models"),
        ("PATCH", "/v1/chat/completions"),
        ("OPTIONS", "/completions"),
        ("POST", "/health"),
        ("DELETE", "/openapi.json"),
    ],
)
def test_a_wrong_method_is_a_405_envelope(http: httpx.Client, method: str, path: str) -> None:
    body = assert_error(http.request(method, path), 405, "MethodNotAllowed")
    assert body == {
        "error": {
            "code": "MethodNotAllowed",
            "message": f"{method} is not allowed on {path}",
            "type": "invalid_request_error",
            "param": None,
        }
    }


@pytest.mark.parametrize("prefix", AZURE_PREFIXES)
@pytest.mark.parametrize(
    "api_version", [None, "2024-05-01-preview", "2025-04-01", "2024-04-01-preview", "not-a-version", ""]
)
def test_azure_routes_accept_any_api_version_or_none(http: httpx.Client, prefix: str, api_version: str | None) -> None:
    params = {} if api_version is None else {"api-version": api_version}
    info = http.get(f"{prefix}/info", params=params)
    assert info.status_code == 200, info.text
    assert info.json() == INFO
    chat = http.post(f"{prefix}/chat/completions", params=params, json=CHAT)
    assert chat.status_code == 200, chat.text
    assert chat.json()["object"] == "chat.completion"
    completion = http.post(f"{prefix}/completions", params=params, json=COMPLETION)
    assert completion.status_code == 200, completion.text
    assert completion.json()["object"] == "text_completion"


@pytest.mark.parametrize("prefix", AZURE_PREFIXES)
def test_chat_under_every_azure_prefix_answers_the_same_shape(http: httpx.Client, prefix: str) -> None:
    body = http.post(f"{prefix}/chat/completions", json=CHAT).json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["model"] == "Fake-Model"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_info_has_exactly_the_model_info_shape(http: httpx.Client) -> None:
    response = http.get("/info")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == INFO


def test_v1_models_lists_the_deployment_in_the_openai_shape(http: httpx.Client) -> None:
    response = http.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"object", "data"}
    assert body["object"] == "list"
    assert len(body["data"]) == 1
    card = body["data"][0]
    assert set(card) == {"id", "object", "created", "owned_by"}
    assert card["id"] == "fake-model"
    assert card["object"] == "model"
    assert card["owned_by"] == "aimi"
    assert isinstance(card["created"], int) and card["created"] > 1_600_000_000


@pytest.mark.parametrize(
    "request_args",
    [
        pytest.param(("POST", "/chat/completions", CHAT), id="200"),
        pytest.param(("POST", "/chat/completions", {"messages": []}), id="400"),
        pytest.param(("GET", "/nope", None), id="404"),
        pytest.param(("GET", "/health", None), id="public"),
    ],
)
def test_the_client_request_id_is_echoed_and_a_request_id_is_added(
    http: httpx.Client, request_args: tuple[str, str, object]
) -> None:
    method, path, body = request_args
    response = http.request(method, path, json=body, headers={"x-ms-client-request-id": "3f2a-client-id-01"})
    assert response.headers["x-ms-client-request-id"] == "3f2a-client-id-01"
    assert len(response.headers["x-request-id"]) >= 16


def test_the_client_request_id_is_echoed_on_a_401(server: InProcessServer) -> None:
    response = httpx.get(f"{server.url}/info", headers={"x-ms-client-request-id": "id-on-401"})
    assert response.status_code == 401
    assert response.headers["x-ms-client-request-id"] == "id-on-401"
    assert response.headers["x-request-id"]


def test_every_response_gets_its_own_request_id(http: httpx.Client) -> None:
    ids = {http.post("/chat/completions", json=CHAT).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_an_unsafe_client_request_id_is_not_echoed(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=CHAT, headers={"x-ms-client-request-id": "a b<script>"})
    assert response.status_code == 200
    assert "x-ms-client-request-id" not in response.headers


def test_swagger_json_and_openapi_json_are_the_same_valid_document(server: InProcessServer) -> None:
    swagger = httpx.get(f"{server.url}/swagger.json")
    openapi = httpx.get(f"{server.url}/openapi.json")
    assert swagger.status_code == openapi.status_code == 200
    assert swagger.json() == openapi.json()
    document = openapi.json()
    assert document["openapi"].startswith("3.")
    validate(document)


def test_the_openapi_document_lists_exactly_the_routes_and_methods_the_app_serves(server: InProcessServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    served: dict[str, set[str]] = {}
    for route in server.app.routes:
        served.setdefault(route.path, set()).update(m.lower() for m in route.methods if m != "HEAD")
    documented = {path: set(operations) for path, operations in document["paths"].items()}
    assert documented == served


def test_the_openapi_document_marks_exactly_the_public_routes_as_unauthenticated(server: InProcessServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    public = {
        path
        for path, operations in document["paths"].items()
        for operation in operations.values()
        if operation.get("security") == []
    }
    assert public == {"/health", "/swagger.json", "/openapi.json", "/", "/console/app.js", "/console/app.css"}
    assert document["security"], "routes without their own security must inherit a required one"


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("GET", "/chat/completions", {"POST"}),
        ("PUT", "/v1/completions", {"POST"}),
        ("POST", "/info", {"GET", "HEAD"}),
        ("DELETE", "/v1/models", {"GET", "HEAD"}),
    ],
)
def test_a_405_carries_an_allow_header_listing_the_route_methods(
    http: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    # RFC 9110 15.5.6: the origin server MUST generate an Allow header field in a 405 response.
    response = http.request(method, path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()} == allowed


@pytest.mark.parametrize("method, path", [("POST", "/chat/completions/"), ("GET", "/info/"), ("GET", "/v1/models/")])
def test_a_trailing_slash_is_a_404_envelope_not_a_redirect(http: httpx.Client, method: str, path: str) -> None:
    # A redirect is no envelope, and its Location is built from the client's Host header.
    response = http.request(method, path, json=CHAT if method == "POST" else None)
    assert_error(response, 404, "NotFound", message=f"there is no route {path}")


def test_with_one_deployment_the_model_field_and_deployment_header_are_ignored(http: httpx.Client) -> None:
    assert http.post("/chat/completions", json={**CHAT, "model": "some-other-model"}).status_code == 200
    assert http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"}).status_code == 200
    response = http.post("/chat/completions", json=CHAT, headers={"azureml-model-deployment": "elsewhere"})
    assert response.status_code == 200
    assert http.get("/info", params={"model": "elsewhere"}).json() == INFO


def test_a_401_carries_www_authenticate(server: InProcessServer) -> None:
    response = httpx.post(f"{server.url}/chat/completions", json=CHAT)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_openapi_document_describes_every_status_a_generation_route_answers(server: InProcessServer) -> None:
    # 500 is what a non-streamed engine failure answers (engine_error).
    document = httpx.get(f"{server.url}/openapi.json").json()
    expected = {"200", "400", "401", "413", "422", "429", "500", "503"}
    for path in ("/chat/completions", "/completions", "/v1/chat/completions", "/v1/completions"):
        assert expected <= set(document["paths"][path]["post"]["responses"]), path
