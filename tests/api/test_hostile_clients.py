"""Clients that break the rules: a body cut off mid-upload, numbers too long to convert, and a
failure no handler expected. None of them is a 5xx blamed on the server without its request id."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from aimi.runtime import runtime_of
from tests.api.helpers import assert_error
from tests.conftest import KEY, InProcessServer, in_process, wait_until

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


def _records(server: InProcessServer) -> list[dict[str, Any]]:
    from aimi.usage.store import usage_records

    runtime = runtime_of(server.app)
    runtime.ledger.flush(1)
    with runtime.store.engine.connect() as connection:
        return [dict(row) for row in connection.execute(usage_records.select()).mappings().all()]


def _cut_upload(server: InProcessServer, path: str) -> None:
    """Headers announcing 100 bytes of body, one byte of it, then the connection closes."""
    parts = urlsplit(server.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\napi-key: {KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/embeddings"])
def test_a_client_that_leaves_while_uploading_is_an_abort_not_a_server_error(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with in_process() as server:
        caplog.set_level(logging.INFO)
        _cut_upload(server, path)
        wait_until(lambda: len(_records(server)) == 1, 10, "the usage record")
        [record] = _records(server)
        assert (record["status"], record["outcome"]) == (499, "aborted")
        with server.client() as client:
            metrics = client.get("/metrics").text
    assert 'status="499"' in metrics and 'status="500"' not in metrics
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions", "/embeddings", "/v1/embeddings"])
def test_an_integer_too_long_to_convert_is_a_400_in_the_surface_shape(server: InProcessServer, path: str) -> None:
    body = '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + "9" * 5000 + "}"
    with server.client() as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")
    assert response.json()["error"]["message"] == "the request body holds an integer of more than 4300 digits"


def test_an_unexpected_failure_is_a_500_that_carries_its_request_id(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with in_process() as server:
        deployments = runtime_of(server.app).deployments

        def broken(*_: Any) -> Any:
            raise ZeroDivisionError("a bug")

        monkeypatch.setattr(deployments, "route", broken)  # a bug where none is expected
        with server.client() as client:
            response = client.post("/chat/completions", json=CHAT)
    assert_error(response, 500, "engine_error")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert f"unexpected error on /chat/completions (request {request_id})" in caplog.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_a_body_declared_as_anything_but_json_is_a_415(server: InProcessServer, content_type: str) -> None:
    with server.client() as client:
        response = client.post("/chat/completions", json=CHAT, headers={"Content-Type": content_type})
    assert_error(response, 415, "unsupported_media_type")
    media = content_type.split(";")[0]
    assert response.json()["error"]["message"] == (
        f"the request body must be application/json; got Content-Type '{media}'"
    )


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "application/merge+json"])
def test_a_json_body_or_one_without_a_type_is_read(server: InProcessServer, content_type: str | None) -> None:
    import json

    headers = {} if content_type is None else {"Content-Type": content_type}
    with server.client() as client:
        response = client.post("/v1/chat/completions", content=json.dumps(CHAT).encode(), headers=headers)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"


def test_too_many_messages_are_refused_for_their_count_before_each_is_validated(server: InProcessServer) -> None:
    # Every message is malformed: had the schema read them first, the 400 would name a role.
    body = {"messages": [{"role": "nobody"}] * 100_000, "max_tokens": 4}
    with server.client() as client:
        response = client.post("/chat/completions", json=body)
    assert_error(response, 400, "invalid_request")
    # Over 64 KiB the outline refuses it, reading no further than the 1,025th message.
    assert response.json()["error"]["message"] == "`messages` may hold at most 1024 messages; got more"
    assert response.json()["error"]["param"] == "messages"


def test_too_many_embedding_inputs_are_refused_for_their_count(server: InProcessServer) -> None:
    with server.client() as client:
        response = client.post("/v1/embeddings", json={"input": [None] * 3000})
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["message"] == "`input` may hold at most 2048 items; got 3000"


@pytest.mark.parametrize("stream", [False, True])
def test_stream_options_dropped_on_the_azure_surface_change_nothing(server: InProcessServer, stream: bool) -> None:
    body = {**CHAT, "stream": stream, "stream_options": {"include_usage": True}}
    with server.client() as client:
        response = client.post("/chat/completions", json=body, headers={"extra-parameters": "drop"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream" if stream else "application/json")
