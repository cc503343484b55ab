"""/health and the 503s while the model loads, after it failed to load, and while it is retried."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import CHAT, assert_error
from tests.conftest import InProcessServer, in_process, wait_until

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/chat/completions", CHAT),
    ("/models/chat/completions", {**CHAT, "stream": True}),
    ("/v1/chat/completions", CHAT),
    ("/completions", {"prompt": "hi"}),
    ("/v1/completions", {"prompt": "hi"}),
]


def health(server: InProcessServer) -> httpx.Response:
    return httpx.get(f"{server.url}/health", timeout=10)


def test_health_is_200_ok_when_ready_and_needs_no_key() -> None:
    with in_process() as running:
        response = health(running)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert "retry-after" not in response.headers


def test_while_loading_health_is_503_loading_and_requests_are_503_with_retry_after() -> None:
    with in_process({"engine_options": {"load_seconds": 1.5}}, wait_ready=False) as running:
        response = health(running)
        assert response.status_code == 503
        assert response.json() == {"status": "loading"}
        assert int(response.headers["retry-after"]) >= 1
        with running.client() as http:
            for path, body in REQUESTS:
                assert_error(
                    http.post(path, json=body),
                    503,
                    "ServiceUnavailable",
                    param=None,
                    message="deployment 'fake-model' is still loading its model",
                )
        assert running.deployment.in_flight == 0
        assert running.engine.started == 0
        # Once loaded: 200 ok, and the same requests succeed.
        wait_until(lambda: health(running).status_code == 200, 10, "the model to load")
        assert health(running).json() == {"status": "ok"}
        with running.client() as http:
            for path, body in REQUESTS:
                assert http.post(path, json=body).status_code == 200, path


def test_while_loading_the_public_documents_and_info_still_answer() -> None:
    with in_process({"engine_options": {"load_seconds": 1.5}}, wait_ready=False) as running:
        assert httpx.get(f"{running.url}/openapi.json").status_code == 200
        with running.client() as http:
            assert http.get("/v1/models").status_code == 200
            assert http.get("/info").status_code == 200
        assert health(running).status_code == 503


@pytest.fixture
def failed_load() -> Any:
    settings = {"engine_options": {"fail_load": True}, "engine_max_restarts": 0}
    with in_process(settings, wait_ready=False) as running:
        wait_until(lambda: health(running).json()["status"] != "loading", 10, "the load to fail")
        yield running


def test_a_failed_load_makes_health_503_unhealthy(failed_load: InProcessServer) -> None:
    response = health(failed_load)
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy"}
    assert "retry-after" not in response.headers  # nothing is coming back


def test_after_a_failed_load_requests_are_503_saying_the_engine_is_not_running(failed_load: InProcessServer) -> None:
    # Not "still loading": a client told that would wait for a load that will never finish.
    with failed_load.client() as http:
        for path, body in REQUESTS:
            assert_error(
                http.post(path, json=body),
                503,
                "ServiceUnavailable",
                param=None,
                message="deployment 'fake-model' has no running engine and will not be restarted",
                retry=False,
            )
    assert failed_load.deployment.in_flight == 0


def test_a_failed_load_is_retried_and_health_says_restarting_meanwhile() -> None:
    settings = {"engine_options": {"fail_load": True}, "engine_restart_backoff": 30}
    with in_process(settings, wait_ready=False) as running:
        wait_until(lambda: health(running).json()["status"] != "loading", 10, "the load to fail")
        response = health(running)
        assert response.status_code == 503
        assert response.json() == {"status": "restarting"}
        assert 28 <= int(response.headers["retry-after"]) <= 31
        with running.client() as http:
            assert http.get("/health").json()["deployments"] == {"fake-model": "restarting"}
