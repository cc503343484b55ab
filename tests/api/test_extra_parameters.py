"""The ``extra-parameters`` header: error (Azure default), drop, pass-through/allow (/v1 default)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, assert_error
from tests.conftest import InProcessServer, in_process

AZURE_CHAT = ["/chat/completions", "/models/chat/completions", "/api/models/chat/completions"]
NOT_ALLOWED = (
    "Extra parameters {names} are not allowed when extra-parameters is not set or set to be "
    "'error'. Set extra-parameters to 'pass-through' to pass to the model."
)
UNSUPPORTED_FOO = "extra parameter 'foo' is not supported by this deployment's engine"


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def last_extra(server: InProcessServer) -> dict[str, Any]:
    extra: dict[str, Any] = server.engine.requests[-1].extra
    return extra


def assert_not_allowed(response: httpx.Response, names: list[str]) -> None:
    message = NOT_ALLOWED.format(names=names)
    assert_error(response, 400, "extra_parameters_not_allowed")
    assert response.json() == {
        "error": {
            "code": "extra_parameters_not_allowed",
            "message": message,
            "type": "invalid_request_error",
            "param": names[0],
        },
        "detail": message,
    }


def assert_unsupported(response: httpx.Response, key: str, value: Any, msg: str) -> None:
    body = assert_error(response, 422, "parameter_not_supported", param=key, message=msg)
    assert body["detail"] == [{"loc": ["body", key], "input": value, "msg": msg, "type": "parameter_not_supported"}]
    assert body["status"] == 422
    assert body["code"] == "parameter_not_supported"


@pytest.mark.parametrize("path", AZURE_CHAT)
def test_an_unknown_key_without_the_header_is_400_with_the_azure_detail(http: httpx.Client, path: str) -> None:
    response = http.post(path, json={**CHAT, "foo": 1})
    assert_not_allowed(response, ["foo"])
    assert response.json()["detail"] == (
        "Extra parameters ['foo'] are not allowed when extra-parameters is not set or set to be 'error'. "
        "Set extra-parameters to 'pass-through' to pass to the model."
    )


def test_an_unknown_key_with_extra_parameters_error_is_400(http: httpx.Client) -> None:
    assert_not_allowed(
        http.post("/chat/completions", json={**CHAT, "foo": 1}, headers={"extra-parameters": "error"}), ["foo"]
    )


def test_every_unknown_key_is_named_sorted(http: httpx.Client) -> None:
    assert_not_allowed(http.post("/chat/completions", json={**CHAT, "zeta": 1, "alpha": 2}), ["alpha", "zeta"])


def test_an_engine_extra_without_the_header_is_still_400_on_azure(http: httpx.Client) -> None:
    # top_k is an extra the engine understands, but the Azure default is error.
    assert_not_allowed(http.post("/chat/completions", json={**CHAT, "top_k": 5}), ["top_k"])


def test_an_openai_only_key_is_an_extra_parameter_on_azure(http: httpx.Client) -> None:
    # What langchain#29679 hit against the real service: n on the Azure route.
    assert_not_allowed(http.post("/chat/completions", json={**CHAT, "n": 1}), ["n"])


def test_an_unknown_key_on_the_azure_completions_route_is_400(http: httpx.Client) -> None:
    assert_not_allowed(http.post("/completions", json={"prompt": "hi", "foo": 1}), ["foo"])


def test_a_streaming_request_with_an_unknown_key_gets_a_json_400(http: httpx.Client) -> None:
    assert_not_allowed(http.post("/chat/completions", json={**CHAT, "foo": 1, "stream": True}), ["foo"])


@pytest.mark.parametrize("path", AZURE_CHAT + ["/v1/chat/completions"])
def test_drop_removes_unknown_keys_and_answers_200(server: InProcessServer, http: httpx.Client, path: str) -> None:
    response = http.post(path, json={**CHAT, "foo": 1, "top_k": 5}, headers={"extra-parameters": "drop"})
    assert response.status_code == 200, response.text
    assert last_extra(server) == {}


@pytest.mark.parametrize("value", ["pass-through", "allow"])
@pytest.mark.parametrize("path", AZURE_CHAT)
def test_pass_through_hands_a_known_extra_to_the_engine(
    server: InProcessServer, http: httpx.Client, path: str, value: str
) -> None:
    response = http.post(path, json={**CHAT, "top_k": 5}, headers={"extra-parameters": value})
    assert response.status_code == 200, response.text
    assert last_extra(server) == {"top_k": 5}


@pytest.mark.parametrize("value", ["pass-through", "allow"])
def test_pass_through_hands_every_known_extra_to_the_engine(
    server: InProcessServer, http: httpx.Client, value: str
) -> None:
    extras = {"top_k": 40, "min_p": 0.05, "ignore_eos": True}
    response = http.post("/chat/completions", json={**CHAT, **extras}, headers={"extra-parameters": value})
    assert response.status_code == 200, response.text
    assert last_extra(server) == extras


@pytest.mark.parametrize("value", ["pass-through", "allow"])
@pytest.mark.parametrize("path", AZURE_CHAT)
def test_pass_through_of_a_key_the_engine_does_not_know_is_422(http: httpx.Client, path: str, value: str) -> None:
    assert_unsupported(
        http.post(path, json={**CHAT, "foo": "bar"}, headers={"extra-parameters": value}), "foo", "bar", UNSUPPORTED_FOO
    )


@pytest.mark.parametrize("value, kind", [("5", "an integer"), (True, "an integer"), (1.5, "an integer")])
def test_pass_through_of_a_known_extra_with_the_wrong_type_is_422(http: httpx.Client, value: Any, kind: str) -> None:
    assert_unsupported(
        http.post("/chat/completions", json={**CHAT, "top_k": value}, headers={"extra-parameters": "pass-through"}),
        "top_k",
        value,
        f"extra parameter 'top_k' must be {kind}",
    )


def test_a_refused_extra_reaches_no_engine(server: InProcessServer, http: httpx.Client) -> None:
    started = server.engine.started
    http.post("/chat/completions", json={**CHAT, "foo": 1})
    http.post("/chat/completions", json={**CHAT, "foo": 1}, headers={"extra-parameters": "pass-through"})
    assert server.engine.started == started


@pytest.mark.parametrize("value", ["ignore", "passthrough", "true", "", "error,drop"])
def test_any_other_header_value_is_400_naming_it(http: httpx.Client, value: str) -> None:
    response = http.post("/chat/completions", json=CHAT, headers={"extra-parameters": value})
    message = f"Unexpected EXTRA_PARAMETERS option {value}, expected options are ['error', 'drop', 'pass-through']"
    assert_error(response, 400, "invalid_extra_parameters_header")
    assert response.json() == {
        "error": {
            "code": "invalid_extra_parameters_header",
            "message": message,
            "type": "invalid_request_error",
            "param": "extra-parameters",
        },
        "detail": message,
    }


def test_a_bad_header_value_is_400_on_v1_too(http: httpx.Client) -> None:
    assert_error(
        http.post("/v1/chat/completions", json=CHAT, headers={"extra-parameters": "ignore"}),
        400,
        "invalid_extra_parameters_header",
        param="extra-parameters",
    )


# --- /v1: pass-through by default ------------------------------------------------------------


def test_v1_passes_a_known_extra_through_without_the_header(server: InProcessServer, http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**CHAT, "top_k": 5})
    assert response.status_code == 200, response.text
    assert last_extra(server) == {"top_k": 5}


def test_v1_completions_passes_a_known_extra_through(server: InProcessServer, http: httpx.Client) -> None:
    response = http.post("/v1/completions", json={"prompt": "hi", "min_p": 0.1})
    assert response.status_code == 200, response.text
    assert last_extra(server) == {"min_p": 0.1}


def test_v1_answers_422_for_an_unknown_key_without_the_header(http: httpx.Client) -> None:
    assert_unsupported(http.post("/v1/chat/completions", json={**CHAT, "foo": 1}), "foo", 1, UNSUPPORTED_FOO)


def test_v1_honours_extra_parameters_error(http: httpx.Client) -> None:
    assert_not_allowed(
        http.post("/v1/chat/completions", json={**CHAT, "foo": 1}, headers={"extra-parameters": "error"}), ["foo"]
    )


def test_v1_keys_of_the_openai_api_are_not_extras(server: InProcessServer, http: httpx.Client) -> None:
    body = {**CHAT, "user": "u-1", "n": 1, "store": False, "parallel_tool_calls": False}
    response = http.post("/v1/chat/completions", json=body, headers={"extra-parameters": "error"})
    assert response.status_code == 200, response.text
    assert last_extra(server) == {}


def test_an_unsupported_extra_that_is_a_lone_surrogate_is_422_not_500(server: InProcessServer) -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "foo": "\\ud800"}'
    with server.client() as fresh:
        response = fresh.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    body = assert_error(response, 422, "parameter_not_supported", param="foo", message=UNSUPPORTED_FOO)
    assert body["detail"][0]["loc"] == ["body", "foo"]
