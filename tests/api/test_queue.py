"""Bounded concurrency: past the slots and the queue, 429 with Retry-After."""

from __future__ import annotations

import socket

from tests.api.helpers import CHAT, abort, assert_error, open_request
from tests.conftest import InProcessServer, in_process, wait_until


def fill(server: InProcessServer, count: int) -> list[socket.socket]:
    socks = [open_request(server, "/chat/completions", CHAT) for _ in range(count)]
    wait_until(lambda: server.deployment.in_flight == count, 5, f"{count} requests to be in flight")
    return socks


def test_with_one_slot_and_no_queue_a_second_request_is_429_too_many_requests() -> None:
    with in_process({"engine_options": {"hang": True}, "slots": 1, "max_queue": 0}) as running:
        socks = fill(running, 1)
        try:
            with running.client() as http:
                response = http.post("/chat/completions", json=CHAT)
            assert_error(
                response,
                429,
                "TooManyRequests",
                param=None,
                message="deployment 'fake-model' has 1 requests running or queued; retry later",
            )
            assert response.json()["error"]["type"] == "rate_limit_error"
            assert running.deployment.in_flight == 1
            assert running.engine.started == 1
        finally:
            for sock in socks:
                abort(sock)
        wait_until(lambda: running.deployment.in_flight == 0, 5, "the slot to be freed")


def test_past_the_slots_and_the_queue_requests_are_429_with_retry_after() -> None:
    with in_process({"engine_options": {"hang": True}, "slots": 1, "max_queue": 1}) as running:
        socks = fill(running, 2)
        try:
            with running.client() as http:
                for path, body in [
                    ("/chat/completions", CHAT),
                    ("/v1/chat/completions", {**CHAT, "stream": True}),
                    ("/completions", {"prompt": "hi"}),
                ]:
                    response = http.post(path, json=body)
                    assert_error(
                        response,
                        429,
                        "TooManyRequests",
                        param=None,
                        message="deployment 'fake-model' has 2 requests running or queued; retry later",
                    )
                    assert response.headers["retry-after"] == "1"
            assert running.deployment.in_flight == 2
        finally:
            for sock in socks:
                abort(sock)
        wait_until(
            lambda: running.deployment.in_flight == 0 and running.engine.active == 0, 5, "every place to be freed"
        )
        # Freed: the next request is admitted again.
        socks = fill(running, 1)
        abort(socks[0])
        wait_until(lambda: running.deployment.in_flight == 0, 5, "the slot to be freed")


def test_a_429_does_not_count_against_the_queue() -> None:
    with in_process({"engine_options": {"hang": True}, "slots": 1, "max_queue": 1}) as running:
        socks = fill(running, 2)
        try:
            with running.client() as http:
                for _ in range(5):
                    assert http.post("/chat/completions", json=CHAT).status_code == 429
            assert running.deployment.in_flight == 2
        finally:
            for sock in socks:
                abort(sock)
        wait_until(lambda: running.deployment.in_flight == 0, 5, "every place to be freed")
