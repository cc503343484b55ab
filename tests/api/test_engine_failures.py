"""Engine failures: one request failing (fail_after), the engine dying (die_after) and being
restarted, and the watchdog declaring a hung engine (hang, hang_after) dead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, assert_error, sse_payloads
from tests.conftest import InProcessServer, in_process, wait_until

ENGINE_ERROR = {
    "error": {
        "code": "engine_error",
        "message": "the engine failed to generate a response",
        "type": "server_error",
        "param": None,
    }
}
ENGINE_STOPPED = {
    "error": {
        "code": "ServiceUnavailable",
        "message": "the engine stopped; retry shortly",
        "type": "server_error",
        "param": None,
    }
}


@pytest.fixture
def failing_server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"fail_after": 3}}) as running:
        yield running


@pytest.fixture
def dying_server() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"die_after": 2}, "engine_restart_backoff": 30}) as running:
        yield running


def broken_stream(server: InProcessServer, path: str, body: dict[str, Any]) -> bytes:
    """The bytes of a stream the server breaks off; pins that httpx sees a protocol error."""
    received = []
    with server.client() as http, http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        # The server breaks the chunked body instead of ending it, so the Azure SDK raises
        # "Response ended prematurely" rather than taking a cut answer for a whole one.
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for chunk in response.iter_raw():
                received.append(chunk)
    return b"".join(received)


def split_error_frame(raw: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chunks before the error frame, and the error frame, which must come last."""
    assert b"[DONE]" not in raw
    *events, last = raw[:-2].split(b"\n\n")
    assert raw.endswith(b"\n\n")
    assert last.startswith(b"data: ") and b"\n" not in last
    return sse_payloads(b"\n\n".join(events) + b"\n\n", done=False), json.loads(last[len(b"data: ") :])


# --- fail_after: one request fails, the engine keeps serving ---------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_a_failure_mid_stream_sends_the_first_tokens_then_one_error_frame_and_no_done(
    failing_server: InProcessServer, path: str
) -> None:
    chunks, error = split_error_frame(broken_stream(failing_server, path, CHAT))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello from the "
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    assert all(c.get("usage") is None for c in chunks)
    assert error == ENGINE_ERROR


def test_a_failed_stream_frees_its_place(failing_server: InProcessServer) -> None:
    broken_stream(failing_server, "/chat/completions", CHAT)
    wait_until(
        lambda: failing_server.deployment.in_flight == 0 and failing_server.engine.active == 0,
        5,
        "the failed generation to be released",
    )
    assert failing_server.engine.aborted == 1


def test_the_server_keeps_serving_after_a_failed_stream(failing_server: InProcessServer) -> None:
    broken_stream(failing_server, "/chat/completions", CHAT)
    with failing_server.client() as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert {k: health.json()[k] for k in ("status", "deployments")} == {
            "status": "ok",
            "deployments": {"fake-model": "ready"},
        }
        # Two tokens: fewer than fail_after, so this one completes.
        response = http.post("/chat/completions", json={**CHAT, "max_tokens": 2})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Hello from "
        assert response.json()["choices"][0]["finish_reason"] == "length"
        streamed = http.post("/chat/completions", json={**CHAT, "max_tokens": 2, "stream": True})
        assert streamed.status_code == 200
        assert streamed.content.endswith(b"data: [DONE]\n\n")
    assert failing_server.engine.completed == 2


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions", "/completions"])
def test_a_non_streaming_failure_is_500_engine_error_without_retry_after(
    failing_server: InProcessServer, path: str
) -> None:
    body = CHAT if "chat" in path else {"prompt": "hi"}
    with failing_server.client() as http:
        response = http.post(path, json=body)
    assert_error(response, 500, "engine_error")
    assert response.json() == ENGINE_ERROR
    assert failing_server.deployment.in_flight == 0
    assert failing_server.engine.active == 0


# --- die_after: the engine dies; the supervisor restarts it --------------------------------


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_an_engine_dying_mid_stream_ends_the_stream_visibly(dying_server: InProcessServer, path: str) -> None:
    chunks, error = split_error_frame(broken_stream(dying_server, path, CHAT))
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello from "
    assert error == ENGINE_STOPPED


def test_after_the_engine_died_health_is_503_restarting_until_the_restart_is_due(
    dying_server: InProcessServer,
) -> None:
    broken_stream(dying_server, "/chat/completions", CHAT)
    response = httpx.get(f"{dying_server.url}/health")
    assert response.status_code == 503
    assert response.json() == {"status": "restarting"}
    # The restart is due 30 s after the death (the first back-off): that is when to come back.
    assert 28 <= int(response.headers["retry-after"]) <= 31
    with dying_server.client() as http:
        assert http.get("/health").json()["deployments"] == {"fake-model": "restarting"}


@pytest.mark.parametrize(
    "path, body",
    [
        ("/chat/completions", CHAT),
        ("/v1/chat/completions", CHAT),
        ("/completions", {"prompt": "hi"}),
        ("/chat/completions", {**CHAT, "stream": True}),
    ],
)
def test_after_the_engine_died_requests_are_503_with_the_time_until_its_restart(
    dying_server: InProcessServer, path: str, body: dict[str, Any]
) -> None:
    broken_stream(dying_server, "/chat/completions", CHAT)
    with dying_server.client() as http:
        response = http.post(path, json=body)
    assert_error(
        response,
        503,
        "ServiceUnavailable",
        param=None,
        message="deployment 'fake-model' has no running engine; it is being restarted",
    )
    assert 28 <= int(response.headers["retry-after"]) <= 31
    assert dying_server.deployment.in_flight == 0


def test_an_engine_dying_during_a_non_streaming_request_is_503_with_retry_after(dying_server: InProcessServer) -> None:
    with dying_server.client() as http:
        response = http.post("/chat/completions", json=CHAT)
    assert_error(response, 503, "ServiceUnavailable")
    assert response.json() == ENGINE_STOPPED
    assert 28 <= int(response.headers["retry-after"]) <= 31
    assert dying_server.deployment.in_flight == 0


def restarts(server: InProcessServer) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    line = next((line for line in text.splitlines() if line.startswith("aimi_engine_restarts_total{")), None)
    return float(line.split()[-1]) if line else 0.0


def test_a_dead_engine_is_restarted_and_serves_again() -> None:
    with in_process({"engine_options": {"die_after": 2}, "engine_restart_backoff": 0.05}) as server:
        dead = server.fake()
        broken_stream(server, "/chat/completions", CHAT)
        wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 200, 10, "the engine to be restarted")
        assert server.fake() is not dead
        with server.client() as http:
            assert http.get("/health").json()["deployments"] == {"fake-model": "ready"}
            # Two tokens: fewer than die_after, so the fresh engine answers in full.
            response = http.post("/chat/completions", json={**CHAT, "max_tokens": 2})
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "Hello from "
        assert restarts(server) == 1.0
        assert dead.active == 0  # closed: nothing of it runs on


def test_restarts_back_off_and_past_the_most_the_deployment_stays_failed_without_retry_after() -> None:
    settings = {
        "engine_options": {"fail_load": True},
        "engine_restart_backoff": 0.2,
        "engine_max_restarts": 2,
    }
    with in_process(settings, wait_ready=False) as server:
        wait_until(lambda: server.deployment.state() == "failed", 10, "the restarts to be given up")
        first, second = server.deployment.supervision.restarts
        assert second - first >= 0.4  # the second wait doubled the first
        assert restarts(server) == 2.0
        response = httpx.get(f"{server.url}/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unhealthy"}
        assert "retry-after" not in response.headers
        with server.client() as http:
            refused = http.post("/chat/completions", json=CHAT)
        assert_error(
            refused,
            503,
            "ServiceUnavailable",
            param=None,
            message="deployment 'fake-model' has no running engine and will not be restarted",
            retry=False,
        )
        assert "retry-after" not in refused.headers


def test_with_no_restarts_allowed_a_dead_engine_stays_dead_and_its_503s_carry_no_retry_after() -> None:
    with in_process({"engine_options": {"die_after": 2}, "engine_max_restarts": 0}) as server:
        with server.client() as http:
            died = http.post("/chat/completions", json=CHAT)
            assert_error(died, 503, "ServiceUnavailable", retry=False)
            assert died.json()["error"]["message"] == "the engine stopped and will not be restarted"
            assert "retry-after" not in died.headers
            assert http.get("/health").json()["deployments"] == {"fake-model": "failed"}
        assert restarts(server) == 0.0


# --- the watchdog: an engine that makes no progress is declared dead -------------------------

STALLED = "deployment 'fake-model' made no progress for 0.3 seconds; its engine is being restarted"


def test_a_request_on_a_hung_engine_is_503_after_the_stall_timeout_not_the_request_timeout() -> None:
    settings = {"engine_options": {"hang": True}, "engine_stall_timeout": 0.3, "engine_restart_backoff": 30}
    with in_process(settings) as server:
        with server.client() as http:
            response = http.post("/chat/completions", json=CHAT)
            assert_error(response, 503, "ServiceUnavailable", param=None, message=STALLED)
            assert 28 <= int(response.headers["retry-after"]) <= 31
            assert http.get("/health").json()["deployments"] == {"fake-model": "restarting"}
        assert server.deployment.in_flight == 0


def test_a_stream_that_stalls_ends_with_an_error_frame_and_the_engine_is_restarted() -> None:
    settings = {"engine_options": {"hang_after": 2}, "engine_stall_timeout": 0.3, "engine_restart_backoff": 0.05}
    with in_process(settings) as server:
        stalled = server.fake()
        chunks, error = split_error_frame(broken_stream(server, "/chat/completions", CHAT))
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello from "
        assert error == {"error": {**ENGINE_STOPPED["error"], "message": STALLED}}
        wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 200, 10, "the engine to be restarted")
        assert server.fake() is not stalled and stalled.active == 0
        assert restarts(server) == 1.0


def test_a_slow_engine_that_keeps_producing_is_not_declared_stalled() -> None:
    # Ten tokens at one every 0.1 s: each gap is well inside the 0.3 s the watchdog allows.
    settings = {"engine_options": {"tokens_per_second": 10, "text": "a " * 10}, "engine_stall_timeout": 0.3}
    with in_process(settings) as server:
        with server.client() as http:
            response = http.post("/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] == 10
        assert restarts(server) == 0.0
