"""aimi on a local Ray cluster: the gateway as Serve's ingress, engine pools as Serve deployments,
driven through Serve's HTTP proxy with the real SDK and raw HTTP.

Each test deploys its own file (the application is replaced, not stacked) and removes it after.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aimi.engines.fake import DEFAULT_TEXT
from aimi.settings import DEFAULT_MODEL
from tests.api.helpers import sse_payloads
from tests.conftest import KEY
from tests.ray.helpers import GATEWAY, HEADERS, deploy, kill_replica, replaced, replicas, undeploy, wait_for

pytestmark = pytest.mark.ray

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
SLOW_TEXT = " ".join(f"word{i}" for i in range(40))
HOLD = 20.0


def fake_file(model: Path, name: str = "chat", options: str = "", scale: str = "", limits: str = "") -> str:
    return (
        f'[[deployments]]\nname = "{name}"\nengine = "fake"\nmodel = "{model}"\nslots = 2\n'
        f"[deployments.engine_options]\n{options}\n"
        f"[deployments.limits]\n{limits}\n"
        f"[deployments.scale]\nnum_cpus = 0.2\n{scale}\n"
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    stand_in = tmp_path / "stand-in.gguf"
    stand_in.write_bytes(b"GGUF")
    return stand_in


@pytest.fixture
def cleanup() -> Iterator[None]:
    try:
        yield
    finally:
        undeploy()


def _stream_text(url: str, path: str, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    with (
        httpx.Client(headers=HEADERS, timeout=60) as http,
        http.stream("POST", f"{url}{path}", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200, response.read()
        chunks = sse_payloads(response.read())
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks


@pytest.mark.usefixtures("cleanup")
def test_the_fake_pool_answers_both_surfaces_streamed_as_whole(ray_cluster: int, tmp_path: Path, model: Path) -> None:
    url = deploy(ray_cluster, tmp_path, fake_file(model) + GATEWAY)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)
    whole = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    assert whole.choices[0].message.content == DEFAULT_TEXT
    assert (whole.choices[0].finish_reason, whole.usage and whole.usage.prompt_tokens) == ("stop", 4)
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=50, stream=True
        )
        if chunk.choices
    )
    assert streamed == DEFAULT_TEXT
    text, chunks = _stream_text(url, "/chat/completions", CHAT)
    assert text == DEFAULT_TEXT
    assert whole.usage is not None
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )
    info = httpx.get(f"{url}/info", headers=HEADERS, timeout=10)
    assert (info.status_code, info.json()["model_type"]) == (200, "chat-completions")
    unauthorized = httpx.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "chat"}, timeout=10)
    assert unauthorized.status_code == 401


@pytest.mark.usefixtures("cleanup")
def test_the_default_model_on_llama_cpp_in_a_pool(ray_cluster: int, tmp_path: Path) -> None:
    text = (
        f'[[deployments]]\nname = "smol"\nmodel = "{DEFAULT_MODEL}"\nslots = 1\ncontext_size = 512\nthreads = 1\n'
        "[deployments.scale]\nnum_cpus = 0.5\n" + GATEWAY
    )
    url = deploy(ray_cluster, tmp_path, text)
    body = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0, "seed": 7}
    with httpx.Client(headers=HEADERS, timeout=120) as http:
        whole = http.post(f"{url}/v1/chat/completions", json={**body, "model": "smol"})
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    streamed, chunks = _stream_text(url, "/v1/chat/completions", {**body, "model": "smol"})
    assert streamed == answer["choices"][0]["message"]["content"] != ""
    assert answer["usage"]["completion_tokens"] <= 12
    assert answer["usage"]["prompt_tokens"] > 5
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == [answer["choices"][0]["finish_reason"]]


@pytest.mark.usefixtures("cleanup")
def test_a_full_pool_at_its_maximum_answers_429_with_retry_after(ray_cluster: int, tmp_path: Path, model: Path) -> None:
    # One replica at most, one slot, a queue of one: it takes two, the handle holds one more.
    url = deploy(
        ray_cluster,
        tmp_path,
        fake_file(model, options="hang = true", limits="max_queue = 1").replace("slots = 2", "slots = 1") + GATEWAY,
    )
    stop = threading.Event()
    holders: list[threading.Thread] = []

    def hold() -> None:
        # Held until the client gives up: then the gateway cancels it, and the pool's engine stops.
        with contextlib.suppress(httpx.HTTPError), httpx.Client(headers=HEADERS, timeout=HOLD) as http:
            with http.stream("POST", f"{url}/chat/completions", json={**CHAT, "stream": True}):
                stop.wait(HOLD)

    def held() -> bool:
        """One more request that stays unanswered (one refused while the others got in is redone)."""
        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        holders.append(holder)
        holder.join(timeout=1.5)
        return holder.is_alive()

    try:
        for _ in range(3):  # the two the replica takes, and the one the queue holds
            wait_for(held, 60, "a request to be held")
        refused: list[httpx.Response] = []

        def refuses() -> bool:
            try:
                response = httpx.post(f"{url}/chat/completions", json=CHAT, headers=HEADERS, timeout=2)
            except httpx.TimeoutException:
                return False  # not full yet: this one was held too (and is let go)
            refused.append(response)
            return response.status_code == 429

        wait_for(refuses, 60, "the pool to be full")
        response = refused[-1]
        assert response.headers["retry-after"] == "1"
        assert response.json() == {
            "error": {
                "code": "TooManyRequests",
                "message": "the engine pool is at its limit of replicas and every one is full; retry later",
                "type": "rate_limit_error",
                "param": None,
            }
        }
    finally:
        stop.set()
        for holder in holders:
            holder.join(timeout=HOLD + 10)


@pytest.mark.usefixtures("cleanup")
def test_a_replica_killed_mid_stream_ends_it_with_the_error_frame_and_the_next_is_served(
    ray_cluster: int, tmp_path: Path, model: Path
) -> None:
    url = deploy(
        ray_cluster, tmp_path, fake_file(model, options=f'text = "{SLOW_TEXT}"\ntokens_per_second = 10') + GATEWAY
    )
    (replica,) = replicas("engine-chat")
    received = b""
    with (
        httpx.Client(headers=HEADERS, timeout=60) as http,
        http.stream("POST", f"{url}/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        assert response.status_code == 200
        with contextlib.suppress(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                if not received:
                    kill_replica(replica)
                received += chunk
    assert b"[DONE]" not in received
    *events, last = received[:-2].split(b"\n\n")
    assert json.loads(last.removeprefix(b"data: ")) == {
        "error": {
            "code": "engine_error",
            "message": "the engine failed to generate a response",
            "type": "server_error",
            "param": None,
        }
    }
    text = "".join(
        c["choices"][0]["delta"]["content"] for c in sse_payloads(b"\n\n".join(events) + b"\n\n", done=False)
    )
    assert SLOW_TEXT.startswith(text) and text != SLOW_TEXT
    # Serve replaces the replica; the next request is served whole.
    wait_for(lambda: replaced("engine-chat", replica), 90, "a new replica")
    text, _ = _stream_text(url, "/chat/completions", {**CHAT, "max_tokens": 3})
    assert text == "word0 word1 word2 "


@pytest.mark.usefixtures("cleanup")
def test_an_engine_dying_in_a_replica_ends_its_stream_and_serve_replaces_the_replica(
    ray_cluster: int, tmp_path: Path, model: Path
) -> None:
    url = deploy(ray_cluster, tmp_path, fake_file(model, options="die_after = 3") + GATEWAY)
    (replica,) = replicas("engine-chat")
    with (
        httpx.Client(headers=HEADERS, timeout=60) as http,
        http.stream("POST", f"{url}/chat/completions", json={**CHAT, "stream": True}) as response,
    ):
        assert response.status_code == 200
        received = b""
        with contextlib.suppress(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += chunk
    assert b"[DONE]" not in received
    *events, last = received[:-2].split(b"\n\n")
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "engine_error"
    chunks = sse_payloads(b"\n\n".join(events) + b"\n\n", done=False)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "Hello from the "
    # The pool's replica fails its health check and is replaced; the gateway's deployment stays up.
    wait_for(lambda: replaced("engine-chat", replica), 90, "a new replica")
    assert httpx.get(f"{url}/health", headers=HEADERS, timeout=10).status_code == 200


@pytest.mark.usefixtures("cleanup")
def test_a_pool_scaled_to_zero_serves_its_first_request_once_a_replica_is_up(
    ray_cluster: int, tmp_path: Path, model: Path
) -> None:
    scale = "min_replicas = 0\ninitial_replicas = 0\nmax_replicas = 1\nupscale_delay_s = 0\ndownscale_delay_s = 5"
    url = deploy(ray_cluster, tmp_path, fake_file(model, options="load_seconds = 1", scale=scale) + GATEWAY)
    assert replicas("engine-chat") == []  # the gateway is up, the pool has no replica
    started = time.monotonic()
    response = httpx.post(f"{url}/chat/completions", json=CHAT, headers=HEADERS, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert time.monotonic() - started >= 1  # it waited for the replica's engine to load
    assert len(replicas("engine-chat")) == 1
    # Idle past the downscale delay: back to zero.
    wait_for(lambda: replicas("engine-chat") == [], 90, "the pool to scale back to zero")


@pytest.mark.usefixtures("cleanup")
def test_deployments_sharing_a_pool_are_multiplexed(ray_cluster: int, tmp_path: Path, model: Path) -> None:
    shared = 'pool = "small"\nmodels_per_replica = 1'
    text = (
        fake_file(model, "tiny-a", options='text = "from a"', scale=shared)
        + fake_file(model, "tiny-b", options='text = "from b"', scale=shared)
        + GATEWAY
    )
    url = deploy(ray_cluster, tmp_path, text)
    with httpx.Client(headers=HEADERS, timeout=60) as http:
        for name in ("tiny-a", "tiny-b", "tiny-a"):
            response = http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": name})
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == f"from {name[-1]}"
    assert len(replicas("pool-small")) == 1


@pytest.mark.usefixtures("cleanup")
def test_a_reload_changes_a_pool_without_dropping_its_streams(ray_cluster: int, tmp_path: Path, model: Path) -> None:
    before = fake_file(model, options=f'text = "{SLOW_TEXT}"\ntokens_per_second = 20') + GATEWAY
    url = deploy(ray_cluster, tmp_path, before)
    (old,) = replicas("engine-chat")
    results: list[str] = []
    first = threading.Event()

    def stream() -> None:
        with (
            httpx.Client(headers=HEADERS, timeout=60) as http,
            http.stream("POST", f"{url}/chat/completions", json={**CHAT, "stream": True}) as response,
        ):
            raw = b""
            for chunk in response.iter_raw():
                first.set()
                raw += chunk
        results.append("".join(c["choices"][0]["delta"].get("content") or "" for c in sse_payloads(raw)))

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()
    assert first.wait(30)
    deploy(ray_cluster, tmp_path, fake_file(model, options='text = "after the reload"') + GATEWAY)
    streaming.join(timeout=60)
    assert results == [SLOW_TEXT]
    wait_for(lambda: all(r["replica_id"] != old["replica_id"] for r in replicas("engine-chat")), 90, "the new pool")
    response = httpx.post(f"{url}/chat/completions", json=CHAT, headers=HEADERS, timeout=60)
    assert response.json()["choices"][0]["message"]["content"] == "after the reload"


@pytest.mark.usefixtures("cleanup")
def test_two_gateway_replicas_share_the_quota_exactly(
    ray_cluster: int, tmp_path: Path, model: Path, redis_url: str, postgres_url: str
) -> None:
    import asyncio

    import redis
    import sqlalchemy as sa

    from tests.system.test_quota_replicas import RESERVATION, _raw_burst

    name = f"quota-ray-{uuid.uuid4().hex[:10]}"
    limit = 20 * RESERVATION
    text = fake_file(model, name, limits="max_queue = 200").replace(
        "[deployments.scale]", f"[deployments.quota]\ntokens_per_minute = {limit}\n[deployments.scale]"
    )
    text += "\n[gateway]\nreplicas = 2\nnum_cpus = 0.2\n"
    database = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    url = deploy(ray_cluster, tmp_path, text, quota_backend="redis", redis_url=redis_url, database_url=database)
    assert len(replicas("gateway")) == 2
    keys = [f"aimi:{{quota}}:deployment:{name}:{part}" for part in ("requests", "tokens", "leases")]
    client = redis.Redis.from_url(redis_url)
    try:
        results = asyncio.run(_raw_burst([url], 60))
        statuses = [r.status_code for r in results]
        assert (statuses.count(200), statuses.count(429)) == (20, 40)
        remaining = sorted(int(r.headers["x-ratelimit-remaining-tokens"]) for r in results if r.status_code == 200)
        assert remaining == [limit - RESERVATION * k for k in range(20, 0, -1)]
        assert sum(int(v) for v in client.hgetall(keys[1]).values()) == limit
        engine = sa.create_engine(database)
        try:

            def recorded() -> int:
                with engine.connect() as db:
                    query = sa.text("select count(*) from usage_records where deployment = :d and outcome = 'ok'")
                    return int(db.execute(query, {"d": name}).scalar_one())

            wait_for(lambda: recorded() == 20, 30, "every answer in the shared ledger")
        finally:
            engine.dispose()
    finally:
        client.delete(*keys)
        client.close()
