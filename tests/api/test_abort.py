"""A client that goes away stops its generation and frees its place, streaming or not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, abort, client, open_request
from tests.conftest import InProcessServer, in_process, wait_until

# 100 tokens at 20 per second: 5 s if nobody stops it. Every wait below is far shorter.
SLOW = {"engine_options": {"tokens_per_second": 20, "text": "word " * 100}}
GONE_WITHIN = 3.0


@pytest.fixture
def slow_server() -> Iterator[InProcessServer]:
    with in_process(SLOW) as running:
        yield running


@pytest.fixture
def hanging_server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"hang": True}, "slots": 1, "max_queue": 1}) as running:
        yield running


def settled(server: InProcessServer) -> bool:
    return bool(server.engine.active == 0 and server.deployment.in_flight == 0)


def assert_aborted_once(server: InProcessServer) -> None:
    wait_until(lambda: settled(server), GONE_WITHIN, "the generation to stop and free its place")
    assert server.engine.aborted == 1
    assert server.engine.completed == 0
    assert server.deployment.in_flight == 0


def assert_serves_next(server: InProcessServer) -> None:
    with server.client() as fresh:
        response = fresh.post("/chat/completions", json={**CHAT, "max_tokens": 2})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "word word "
    assert server.engine.completed == 1
    assert settled(server)


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_closing_a_stream_after_one_event_aborts_the_generation(slow_server: InProcessServer, path: str) -> None:
    with slow_server.client() as http:
        with http.stream("POST", path, json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept: dropping the iterator would close the response
            assert next(lines).startswith("data: {")
            assert slow_server.engine.active == 1
        # Leaving the block closes the half-read response, and with it the connection.
    assert_aborted_once(slow_server)
    assert_serves_next(slow_server)


def test_closing_a_stream_after_some_tokens_aborts_the_generation(slow_server: InProcessServer) -> None:
    with slow_server.client() as http, http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
        lines = r.iter_lines()
        events: list[dict[str, Any]] = []
        while len(events) < 4:  # the role chunk and three words
            line = next(lines)
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
        assert [e["choices"][0]["delta"]["content"] for e in events] == ["", "word ", "word ", "word "]
        assert slow_server.engine.active == 1
    assert_aborted_once(slow_server)


def test_a_non_streaming_client_that_times_out_aborts_the_generation(slow_server: InProcessServer) -> None:
    with client(slow_server, timeout=httpx.Timeout(30, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/chat/completions", json=CHAT)
    assert_aborted_once(slow_server)
    assert_serves_next(slow_server)


def test_a_non_streaming_client_that_closes_its_socket_aborts_the_generation(slow_server: InProcessServer) -> None:
    sock = open_request(slow_server, "/v1/chat/completions", CHAT)
    try:
        wait_until(lambda: slow_server.engine.active == 1, GONE_WITHIN, "the generation to start")
    finally:
        abort(sock)
    assert_aborted_once(slow_server)
    assert_serves_next(slow_server)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_leaving_a_hanging_generation_frees_the_slot(hanging_server: InProcessServer, stream: bool) -> None:
    sock = open_request(hanging_server, "/chat/completions", {**CHAT, "stream": stream})
    try:
        wait_until(lambda: hanging_server.engine.active == 1, GONE_WITHIN, "the generation to start")
        assert hanging_server.deployment.in_flight == 1
    finally:
        abort(sock)
    assert_aborted_once(hanging_server)
    # The freed place takes a new request: admitted (it reaches the engine), not refused with 429.
    socks = [open_request(hanging_server, "/chat/completions", CHAT) for _ in range(2)]
    try:
        wait_until(lambda: hanging_server.engine.started == 3, GONE_WITHIN, "two new generations to start")
        assert hanging_server.deployment.in_flight == 2
    finally:
        for sock in socks:
            abort(sock)
    wait_until(lambda: settled(hanging_server), GONE_WITHIN, "the new generations to stop")


def test_a_client_leaving_with_a_timeout_frees_the_slot_of_a_hanging_generation(
    hanging_server: InProcessServer,
) -> None:
    with client(hanging_server, timeout=httpx.Timeout(30, read=0.3)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/chat/completions", json=CHAT)
    assert_aborted_once(hanging_server)


def test_many_clients_leaving_leave_nothing_behind(slow_server: InProcessServer) -> None:
    socks = [open_request(slow_server, "/chat/completions", {**CHAT, "stream": i % 2 == 0}) for i in range(6)]
    try:
        wait_until(lambda: slow_server.engine.active == 6, GONE_WITHIN, "six generations to start")
    finally:
        for sock in socks:
            abort(sock)
    wait_until(lambda: settled(slow_server), GONE_WITHIN, "every generation to stop")
    assert slow_server.engine.aborted == 6
    assert slow_server.engine.completed == 0
