"""A generation that runs past AIMI_REQUEST_TIMEOUT ends with a 504 ``timeout`` (or, once the
stream has started, an error event), frees its slot, and is metered as a timeout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aimi.runtime import runtime_of
from tests.api.helpers import assert_error, sse_payloads
from tests.conftest import in_process, wait_until

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}


def _outcomes(server: Any) -> dict[str, tuple[int, str]]:
    from aimi.usage.store import usage_records

    runtime_of(server.app).ledger.flush(1)
    with runtime_of(server.app).store.engine.connect() as connection:
        rows = connection.execute(usage_records.select()).mappings().all()
    return {row["id"]: (row["status"], row["outcome"]) for row in rows}


def test_a_generation_that_never_starts_is_a_504_and_frees_its_slot() -> None:
    with in_process({"request_timeout": 0.3, "engine_options": {"hang": True}}) as server:
        with server.client() as client:
            for stream in (False, True):
                response = client.post("/chat/completions", json={**CHAT, "stream": stream})
                assert_error(response, 504, "timeout", message="the generation did not start within 0.3 seconds")
                request_id = response.headers["x-request-id"]

                def recorded(r: str = request_id) -> bool:
                    return r in _outcomes(server)

                wait_until(recorded, 10, "the usage record")
                assert _outcomes(server)[request_id] == (504, "timeout")
        engine = server.fake()
        wait_until(lambda: engine.active == 0, 10, "the engine's slots to be free")
        assert runtime_of(server.app).deployments.resolve(None).in_flight == 0


def test_a_stream_past_its_deadline_ends_with_an_error_event() -> None:
    options = {"text": " ".join(["word"] * 200), "tokens_per_second": 20}
    with in_process({"request_timeout": 0.5, "engine_options": options}) as server:
        with (
            server.client() as client,
            client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r,
        ):
            assert r.status_code == 200
            request_id = r.headers["x-request-id"]
            raw = b""
            # The connection is broken after the error event, without [DONE]: no cut answer looks whole.
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                for chunk in r.iter_raw():
                    raw += chunk
        payloads = sse_payloads(raw, done=False)
        assert payloads[-1] == {
            "error": {
                "code": "timeout",
                "message": "the generation ran longer than 0.5 seconds",
                "type": "server_error",
                "param": None,
            }
        }
        wait_until(lambda: request_id in _outcomes(server), 10, "the usage record")
        assert _outcomes(server)[request_id] == (200, "timeout")
