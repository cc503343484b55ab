"""The SSE wire format of both surfaces, byte by byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from aimi.engines.fake import DEFAULT_TEXT, tokenize
from aimi.surfaces.stream import EventStreamResponse
from tests.api.helpers import CHAT, COMPLETION, sse_payloads
from tests.conftest import InProcessServer, in_process

AZURE_CHAT = ["/chat/completions", "/models/chat/completions", "/api/models/chat/completions"]


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    # The default text has é, ï, 東京 and 🙂 (a surrogate pair once \u-escaped).
    with in_process() as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def stream(http: httpx.Client, path: str, body: dict[str, Any], **headers: str) -> tuple[httpx.Response, bytes]:
    with http.stream("POST", path, json={**body, "stream": True}, headers=headers) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200, raw
    assert response.headers["content-type"].split(";")[0] == "text/event-stream"
    return response, raw


def chat_text(payloads: list[dict[str, Any]]) -> str:
    return "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"])


def check_envelopes(payloads: list[dict[str, Any]], obj: str, model: str) -> None:
    ids = {p["id"] for p in payloads}
    assert len(ids) == 1, ids
    for payload in payloads:
        assert payload["object"] == obj
        assert payload["model"] == model
        assert isinstance(payload["created"], int)
        for choice in payload["choices"]:
            assert choice["index"] == 0


@pytest.mark.parametrize("path", AZURE_CHAT)
def test_azure_chat_stream_wire_format(http: httpx.Client, path: str) -> None:
    _, raw = stream(http, path, CHAT)
    payloads = sse_payloads(raw)
    check_envelopes(payloads, "chat.completion.chunk", "Fake-Model")
    assert all(len(p["choices"]) == 1 for p in payloads)
    first, *middle, last = payloads
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["finish_reason"] is None
    for payload in middle:
        choice = payload["choices"][0]
        assert "role" not in choice["delta"], payload
        assert isinstance(choice["delta"]["content"], str)
        assert choice["finish_reason"] is None
        assert "usage" not in payload, payload
    assert "role" not in last["choices"][0]["delta"]
    assert last["choices"][0]["delta"]["content"] == ""
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"] == {"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16}
    assert "usage" not in first


def test_v1_chat_stream_without_include_usage_has_no_usage_anywhere(http: httpx.Client) -> None:
    _, raw = stream(http, "/v1/chat/completions", CHAT)
    payloads = sse_payloads(raw)
    check_envelopes(payloads, "chat.completion.chunk", "fake-model")
    assert all("usage" not in p for p in payloads), payloads
    assert payloads[0]["id"].startswith("chatcmpl-")
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in p["choices"][0]["delta"] for p in payloads[1:])
    assert [p["choices"][0]["finish_reason"] for p in payloads][-1] == "stop"
    assert all(p["choices"][0]["finish_reason"] is None for p in payloads[:-1])


def test_v1_chat_stream_with_include_usage_ends_with_a_usage_chunk_with_no_choices(http: httpx.Client) -> None:
    _, raw = stream(http, "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}})
    payloads = sse_payloads(raw)
    check_envelopes(payloads, "chat.completion.chunk", "fake-model")
    *chunks, finish, trailer = payloads
    assert trailer["choices"] == []
    assert trailer["usage"] == {"prompt_tokens": 4, "completion_tokens": 12, "total_tokens": 16}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish.get("usage") is None
    assert all(p.get("usage") is None and p["choices"][0]["finish_reason"] is None for p in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    "path, body",
    [
        ("/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}),
        ("/chat/completions", {**CHAT, "max_tokens": 5}),
        ("/v1/chat/completions", {**CHAT, "max_tokens": 5, "stream_options": {"include_usage": True}}),
    ],
)
def test_streamed_text_and_usage_equal_the_non_streamed_answer(
    http: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    whole = http.post(path, json=body).json()
    _, raw = stream(http, path, body)
    payloads = sse_payloads(raw)
    assert chat_text(payloads) == whole["choices"][0]["message"]["content"]
    usages = [p["usage"] for p in payloads if p.get("usage")]
    assert usages == [whole["usage"]]
    finishes = [p["choices"][0]["finish_reason"] for p in payloads if p["choices"] and p["choices"][0]["finish_reason"]]
    assert finishes == [whole["choices"][0]["finish_reason"]]


def test_max_tokens_cuts_the_stream_with_finish_reason_length(http: httpx.Client) -> None:
    payloads = sse_payloads(stream(http, "/chat/completions", {**CHAT, "max_tokens": 3})[1])
    assert chat_text(payloads) == "Hello from the "
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert payloads[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_multibyte_characters_are_never_split_across_events(http: httpx.Client, path: str) -> None:
    assert any(ord(c) > 0xFFFF for c in DEFAULT_TEXT)  # the fixture text needs a surrogate pair
    _, raw = stream(http, path, CHAT)
    payloads = sse_payloads(raw)  # decodes every event as strict UTF-8 and JSON on its own
    for payload in payloads:
        for choice in payload["choices"]:
            content = choice["delta"].get("content") or ""
            content.encode("utf-8")  # a lone surrogate (half of 🙂) would raise here
    assert chat_text(payloads) == DEFAULT_TEXT


def test_multibyte_characters_survive_a_non_ascii_custom_text() -> None:
    text = "Ünïcödé 東京タワー 🙂🙃 𝄞 done"
    with in_process({"engine_options": {"text": text}}) as running, running.client() as http:
        payloads = sse_payloads(stream(http, "/chat/completions", CHAT)[1])
        assert chat_text(payloads) == text
        assert http.post("/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_a_stream_echoes_the_client_request_id_and_adds_a_request_id(http: httpx.Client, path: str) -> None:
    response, _ = stream(http, path, CHAT, **{"x-ms-client-request-id": "stream-req-42"})
    assert response.headers["x-ms-client-request-id"] == "stream-req-42"
    assert len(response.headers["x-request-id"]) >= 16


def test_a_stream_is_not_cached_and_not_buffered(http: httpx.Client) -> None:
    response, _ = stream(http, "/chat/completions", CHAT)
    assert response.headers["cache-control"] == "no-cache"
    assert "content-length" not in response.headers


def test_stream_true_streams_even_when_accept_is_application_json(http: httpx.Client) -> None:
    # Both Azure SDKs send Accept: application/json for streaming requests too.
    response, raw = stream(http, "/chat/completions", CHAT, accept="application/json")
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"data: [DONE]\n\n")


def test_stream_false_answers_json(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json={**CHAT, "stream": False})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["object"] == "chat.completion"


@pytest.mark.parametrize(
    "path, model, usage_on_finish",
    [
        ("/completions", "Fake-Model", True),
        ("/v1/completions", "fake-model", False),
    ],
)
def test_completion_stream_wire_format(http: httpx.Client, path: str, model: str, usage_on_finish: bool) -> None:
    whole = http.post(path, json=COMPLETION).json()
    _, raw = stream(http, path, COMPLETION)
    payloads = sse_payloads(raw)
    check_envelopes(payloads, "text_completion", model)
    assert "".join(p["choices"][0]["text"] for p in payloads) == whole["choices"][0]["text"] == DEFAULT_TEXT
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(p["choices"][0]["finish_reason"] is None for p in payloads[:-1])
    if usage_on_finish:
        assert payloads[-1]["usage"] == whole["usage"]
        assert all("usage" not in p for p in payloads[:-1])
    else:
        assert all("usage" not in p for p in payloads)


def test_v1_completion_stream_with_include_usage_ends_with_a_usage_chunk(http: httpx.Client) -> None:
    body = {**COMPLETION, "stream_options": {"include_usage": True}}
    whole = http.post("/v1/completions", json=body).json()
    payloads = sse_payloads(stream(http, "/v1/completions", body)[1])
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"] == whole["usage"]


def _written_bodies(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every body a streamed response writes, one entry per write."""
    bodies: list[bytes] = []
    respond = EventStreamResponse.__call__

    async def counted(self: EventStreamResponse, scope: Scope, receive: Receive, send: Send) -> None:
        async def write(message: Message) -> None:
            if message["type"] == "http.response.body":
                bodies.append(message["body"])
            await send(message)

        await respond(self, scope, receive, write)

    monkeypatch.setattr(EventStreamResponse, "__call__", counted)
    return bodies


@pytest.mark.parametrize("options", [{"burst": True}, {"tokens_per_second": 200}])
def test_events_that_come_together_are_written_together(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    bodies = _written_bodies(monkeypatch)
    with in_process({"engine_options": options}) as running, running.client() as http:
        whole = http.post("/chat/completions", json=CHAT).json()
        _, raw = stream(http, "/chat/completions", CHAT)
    assert b"".join(bodies) == raw
    assert chat_text(sse_payloads(raw)) == whole["choices"][0]["message"]["content"] == DEFAULT_TEXT
    written = [body for body in bodies if body]
    if options.get("burst"):  # every event was there at the first write: the first, then the rest
        assert len(written) <= 3, [body[:60] for body in written]
    else:  # a token every 5 ms: each is written when it comes, none waits for the next
        assert len(written) >= len(tokenize(DEFAULT_TEXT)), [body[:60] for body in written]
