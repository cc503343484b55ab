"""Failure paths of the pipeline around quotas and metering: an engine that raises what it
should not, a request refused by a full queue, a usage report asked twice for one grouping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aimi.engines.api import Event, GenerationRequest, TextDelta
from aimi.runtime import runtime_of
from tests.api.helpers import assert_error, sse_payloads
from tests.conftest import in_process, wait_until

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 8}


def _record(server: Any, request_id: str) -> dict[str, Any]:
    from aimi.usage.store import usage_records

    def found() -> dict[str, Any] | None:
        runtime_of(server.app).ledger.flush(1)
        with runtime_of(server.app).store.engine.connect() as connection:
            row = connection.execute(usage_records.select().where(usage_records.c.id == request_id)).mappings().first()
        return dict(row) if row else None

    wait_until(lambda: found() is not None, 10, "the usage record")
    row = found()
    assert row is not None
    return row


def _buggy(engine: Any) -> None:
    """The engine yields a word, then raises what no engine should (a bug, not a RequestFailed)."""

    async def generate(request: GenerationRequest) -> AsyncIterator[Event]:
        yield TextDelta("Hello")
        raise KeyError("oops")

    engine.generate = generate


def test_an_engine_bug_fails_the_request_and_never_passes_for_a_whole_answer(caplog: pytest.LogCaptureFixture) -> None:
    with in_process() as server:
        _buggy(runtime_of(server.app).deployments.resolve(None).engine)
        with server.client() as client:
            whole = client.post("/chat/completions", json=CHAT)
            assert_error(whole, 500, "engine_error")
            with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as streamed:
                assert streamed.status_code == 200
                raw = b""
                with pytest.raises(httpx.RemoteProtocolError):
                    for chunk in streamed.iter_raw():
                        raw += chunk
        assert sse_payloads(raw, done=False)[-1]["error"]["code"] == "engine_error"
        assert _record(server, whole.headers["x-request-id"])["outcome"] == "engine_error"
        assert _record(server, streamed.headers["x-request-id"])["outcome"] == "engine_error"
    assert "engine FakeEngine raised on request" in caplog.text


def test_a_request_refused_by_a_full_queue_is_not_charged_its_prompt() -> None:
    settings = {"slots": 1, "max_queue": 0, "engine_options": {"text": "word " * 200, "tokens_per_second": 20}}
    with in_process(settings) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as client:
            held_request = {**CHAT, "stream": True, "max_tokens": 200}
            with client.stream("POST", "/chat/completions", json=held_request) as held:
                wait_until(
                    lambda: runtime_of(server.app).deployments.resolve(None).in_flight == 1, 10, "the slot taken"
                )
                refused = client.post("/chat/completions", json=CHAT)
                assert_error(refused, 429, "TooManyRequests")
                assert held.status_code == 200
        row = _record(server, refused.headers["x-request-id"])
        assert (row["status"], row["outcome"], row["prompt_tokens"], row["completion_tokens"]) == (
            429,
            "rate_limited",
            0,
            0,
        )


def test_a_usage_report_takes_a_grouping_named_twice_once() -> None:
    with in_process() as server:
        with server.client() as client:
            assert client.post("/chat/completions", json=CHAT).status_code == 200
            twice = client.get("/admin/usage", params={"by": "key,key"})
            once = client.get("/admin/usage", params={"by": "key"})
    assert twice.status_code == 200, twice.text
    assert twice.json()["data"] == once.json()["data"]
    assert twice.json()["by"] == ["key"]


def test_the_default_ledger_is_readable_by_its_owner_only() -> None:
    import os
    import stat

    with in_process() as server:
        home = runtime_of(server.app).settings.home
        with server.client() as client:
            assert client.post("/chat/completions", json=CHAT).status_code == 200
        wait_until(lambda: runtime_of(server.app).ledger.written == 1, 10, "the record written")
        modes = {name: stat.S_IMODE(os.stat(home / name).st_mode) for name in os.listdir(home)}
    assert modes == {"usage.db": 0o600, "usage.db-wal": 0o600, "usage.db-shm": 0o600}


def test_requests_without_a_valid_key_are_counted_in_the_metrics_not_the_ledger() -> None:
    with in_process() as server:
        for _ in range(3):
            assert httpx.post(f"{server.url}/chat/completions", json=CHAT).status_code == 401
        with server.client() as client:
            text = client.get("/metrics").text
        assert "aimi_unauthorized_requests_total 3.0" in text.splitlines()
        assert runtime_of(server.app).ledger.pending + runtime_of(server.app).ledger.written == 0
