"""Quotas over HTTP (in-process, memory backend): the x-ratelimit-* headers, the 429s with
Retry-After, settlement of answers and streams, per-key limits, concurrency, and exactness under
hundreds of concurrent requests.

The fake engine counts a chat message as its words plus 3, so ``"hi"`` is 4 prompt tokens, and
answers 12 tokens (fewer when ``max_tokens`` is lower). A reservation is the prompt plus
``max_tokens``; with ``max_tokens`` <= 12 the answer uses all of it, so nothing comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aimi.auth.keys import ApiKey
from aimi.deployments.profile import ModelProfile
from aimi.deployments.sources import ResolvedModel
from aimi.quota.api import QuotaLimits
from tests.api.helpers import CHAT, abort, assert_error, open_request, sse_payloads
from tests.conftest import KEY, InProcessServer, in_process, wait_until

PROMPT = 4  # "hi" as the fake engine counts a chat message
ANSWER = 12  # tokens in the fake engine's default answer
CHAT_PATHS = ["/chat/completions", "/v1/chat/completions"]
EMBED_MODEL = ResolvedModel(
    Path("/nonexistent/fake-embed"), "fake-embed", "Fake-Embed", ModelProfile(model_type="embeddings", provider="aimi")
)


def metric(server: InProcessServer, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` (e.g. ``aimi_requests_total``) matching ``labels``."""
    with server.client() as http:
        text = http.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def settled(server: InProcessServer, count: int) -> None:
    """Wait until ``count`` inference requests have been closed (settled, then counted)."""
    wait_until(lambda: metric(server, "aimi_requests_total") == count, 10, f"{count} requests to be settled")


def quota_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}


def limits(requests: int, tokens: int, left_requests: int, left_tokens: int) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(requests),
        "x-ratelimit-limit-tokens": str(tokens),
        "x-ratelimit-remaining-requests": str(left_requests),
        "x-ratelimit-remaining-tokens": str(left_tokens),
    }


def assert_rate_limited(response: httpx.Response, what: str, reason: str, *, longest: float, shortest: float) -> int:
    """The 429 of a per-minute limit: exact body, Retry-After (whole seconds, rounded up) and
    retry-after-ms agreeing, within [shortest, longest] seconds. Returns Retry-After."""
    assert response.status_code == 429, response.text
    milliseconds = int(response.headers["retry-after-ms"])
    seconds = int(response.headers["retry-after"])
    assert seconds == math.ceil(milliseconds / 1000), response.headers
    assert shortest * 1000 - 1 <= milliseconds <= longest * 1000, (milliseconds, shortest, longest)
    assert response.json() == {
        "error": {
            "code": "TooManyRequests",
            "message": f"rate limit of {what} reached ({reason}); retry after {seconds} second(s)",
            "type": "rate_limit_error",
            "param": None,
        }
    }
    assert_error(response, 429, "TooManyRequests", param=None)
    return seconds


def chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {**CHAT, "max_tokens": max_tokens, **extra}


# -- headers and refusals ---------------------------------------------------------------------


def test_answers_carry_the_limits_and_what_is_left_after_their_reservation() -> None:
    with in_process({"quota_tokens_per_minute": 300}) as server, server.client() as http:
        first = http.post("/chat/completions", json=chat(50))
        assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] == PROMPT
        # Reserved 4 + 50; the answer used 4 + 12, so 38 come back when it settles.
        assert quota_headers(first) == limits(1000, 300, 999, 300 - 54)
        settled(server, 1)
        second = http.post("/v1/chat/completions", json=chat(50))
        assert second.status_code == 200
        assert quota_headers(second) == limits(1000, 300, 998, 300 - 16 - 54)
        settled(server, 2)
        # A completion's prompt is its words: "hi" is 1.
        third = http.post("/completions", json={"prompt": "hi", "max_tokens": 50})
        assert third.status_code == 200
        assert quota_headers(third) == limits(1000, 300, 997, 300 - 32 - 51)
        settled(server, 3)
        # n choices reserve max_tokens each.
        fourth = http.post("/v1/chat/completions", json=chat(20, n=3))
        assert fourth.status_code == 200 and len(fourth.json()["choices"]) == 3
        assert quota_headers(fourth) == limits(1000, 300, 996, 300 - 32 - 13 - (4 + 60))
        # What goes through no quota carries no quota headers.
        for path in ("/health", "/v1/models", "/info"):
            response = http.get(path)
            assert response.status_code == 200 and quota_headers(response) == {}, path


def test_a_request_without_max_tokens_reserves_the_default_and_settles_to_its_answer() -> None:
    with in_process() as server, server.client() as http:  # the server's default quotas
        first = http.post("/chat/completions", json=CHAT)
        assert first.status_code == 200 and first.json()["usage"]["total_tokens"] == PROMPT + ANSWER
        # 1,024 tokens reserved for the answer (the deployment's cap is its 2,048-token context).
        assert quota_headers(first) == limits(1000, 200_000, 999, 200_000 - (PROMPT + 1024))
        settled(server, 1)
        second = http.post("/v1/chat/completions", json={**CHAT, "n": 2})
        assert second.status_code == 200
        assert quota_headers(second) == limits(1000, 200_000, 998, 200_000 - 16 - (PROMPT + 2 * 1024))


def test_a_default_reservation_of_0_reserves_the_deployments_whole_cap() -> None:
    with in_process({"quota_default_reservation": 0}) as server, server.client() as http:
        response = http.post("/chat/completions", json=CHAT)
        assert response.status_code == 200
        assert quota_headers(response) == limits(1000, 200_000, 999, 200_000 - (PROMPT + 2048))


def test_an_answer_longer_than_the_default_reservation_is_charged_in_full() -> None:
    words = " ".join(["word"] * 40)  # 40 tokens as the fake engine counts them
    settings = {"quota_default_reservation": 10, "engine_options": {"text": words}}
    with in_process(settings) as server, server.client() as http:
        first = http.post("/chat/completions", json=CHAT)
        assert first.status_code == 200 and first.json()["usage"]["completion_tokens"] == 40
        assert quota_headers(first) == limits(1000, 200_000, 999, 200_000 - (PROMPT + 10))
        settled(server, 1)
        second = http.post("/chat/completions", json=chat(5))
        assert quota_headers(second) == limits(1000, 200_000, 998, 200_000 - (PROMPT + 40) - (PROMPT + 5))


def test_on_a_default_server_64_concurrent_requests_without_max_tokens_are_all_admitted() -> None:
    # A 4,096-token context: reserving the whole cap, 64 requests would be 262,400 tokens, past the
    # 200,000 a minute, and about 48 of them would pass. Slots and the queue (2 + 64) are the limit.
    with in_process({"context_size": 4096}) as server:
        for round_ in (1, 2):  # the answers settled to what they used: the next 64 pass too
            responses = asyncio.run(_burst(server, [CHAT] * 64))
            assert [r.status_code for r in responses] == [200] * 64, {r.text for r in responses}
            settled(server, 64 * round_)


def _charged_in_the_ledger(server: InProcessServer) -> int:
    from aimi.runtime import runtime_of
    from aimi.usage.store import usage_records

    runtime = runtime_of(server.app)
    runtime.ledger.flush(5)
    with runtime.store.engine.connect() as connection:
        rows = connection.execute(usage_records.select()).mappings().all()
    return sum(row["prompt_tokens"] + row["completion_tokens"] for row in rows)


def test_whatever_way_requests_without_max_tokens_end_the_window_keeps_only_their_usage() -> None:
    # Each ends another way: answered, streamed, several choices, refused by the engine for its
    # length, refused for an unsupported parameter, abandoned mid-stream, a completion.
    long_prompt = {"messages": [{"role": "user", "content": " ".join(["word"] * 3000)}]}
    with in_process({"context_size": 4096}) as server, server.client() as http:
        assert http.post("/chat/completions", json=CHAT).status_code == 200
        assert http.post("/v1/chat/completions", json={**CHAT, "stream": True}).status_code == 200
        assert http.post("/v1/chat/completions", json={**CHAT, "n": 4}).status_code == 200
        assert http.post("/v1/completions", json={"prompt": "hi"}).status_code == 200
        assert http.post("/chat/completions", json={**long_prompt, "n": 2}).status_code == 400
        json_object = {**CHAT, "response_format": {"type": "json_object"}}
        assert http.post("/chat/completions", json=json_object).status_code == 422
        server.engine.options["hang"] = True
        sock = open_request(server, "/chat/completions", {**CHAT, "stream": True})
        wait_until(lambda: server.engine.active == 1, 5, "the stream to start")
        abort(sock)
        server.engine.options["hang"] = False
        settled(server, 7)
        used = _charged_in_the_ledger(server)
        last = http.post("/chat/completions", json=chat(5))
        # The 400 and the 422 were refused before admission: 5 requests and the last one charged.
        assert quota_headers(last) == limits(1000, 200_000, 1000 - 6, 200_000 - used - (PROMPT + 5))


def test_with_every_limit_off_answers_carry_no_quota_headers() -> None:
    settings = {"quota_tokens_per_minute": 0, "quota_requests_per_minute": 0, "quota_max_concurrent": 0}
    with in_process(settings) as server, server.client() as http:
        for path in CHAT_PATHS:
            response = http.post(path, json=chat(5))
            assert response.status_code == 200 and quota_headers(response) == {}


def test_past_the_tokens_per_minute_both_surfaces_answer_429_with_retry_after() -> None:
    # Each request reserves (and uses) 4 + 10 = 14: two fit in 30.
    with in_process({"quota_tokens_per_minute": 30}) as server, server.client() as http:
        started = time.time()
        for left in (16, 2):
            response = http.post("/chat/completions", json=chat(10))
            assert response.status_code == 200
            assert quota_headers(response) == limits(1000, 30, 1000 - (30 - left) // 14, left)
        for path in CHAT_PATHS:
            refused = http.post(path, json=chat(10))
            # The first charge leaves the window 60 s after the second it was made in.
            assert_rate_limited(
                refused,
                "deployment 'fake-model'",
                "tokens per minute",
                longest=60,
                shortest=int(started) + 60 - time.time(),
            )
            assert quota_headers(refused)["x-ratelimit-remaining-tokens"] == "2"
            assert quota_headers(refused)["x-ratelimit-limit-tokens"] == "30"
        # A request that fits the 2 left is still admitted.
        small = http.post("/completions", json={"prompt": "hi", "max_tokens": 1})
        assert small.status_code == 200 and quota_headers(small)["x-ratelimit-remaining-tokens"] == "0"
        settled(server, 5)
        assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment", reason="tokens") == 2
        assert metric(server, "aimi_requests_total", status="429") == 2


def test_past_the_requests_per_minute_the_request_is_429() -> None:
    with in_process({"quota_requests_per_minute": 3}) as server, server.client() as http:
        started = time.time()
        for left in (2, 1, 0):
            response = http.post("/v1/chat/completions", json=chat(5))
            assert response.status_code == 200
            assert quota_headers(response)["x-ratelimit-remaining-requests"] == str(left)
        refused = http.post("/chat/completions", json=chat(5))
        assert_rate_limited(
            refused,
            "deployment 'fake-model'",
            "requests per minute",
            longest=60,
            shortest=int(started) + 60 - time.time(),
        )
        assert quota_headers(refused)["x-ratelimit-remaining-requests"] == "0"
        settled(server, 4)
        assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment", reason="requests") == 1


def test_a_reservation_larger_than_the_tokens_per_minute_is_429_without_retry_after() -> None:
    # Waiting cannot help: no Retry-After (tests/clients/test_sdk_retry.py: which SDKs retry it anyway).
    with in_process({"quota_tokens_per_minute": 300}) as server, server.client() as http:
        response = http.post("/chat/completions", json=chat(297))
        assert response.status_code == 429
        assert response.json() == {
            "error": {
                "code": "TooManyRequests",
                "message": "this request reserves 301 tokens (its prompt plus max_tokens), more than the tokens "
                "per minute of deployment 'fake-model'; lower max_tokens",
                "type": "rate_limit_error",
                "param": None,
            }
        }
        assert "retry-after" not in response.headers and "retry-after-ms" not in response.headers
        assert response.headers["x-ms-error-code"] == "TooManyRequests"
        # Nothing was charged: exactly the limit still fits.
        whole = http.post("/chat/completions", json=chat(296))
        assert whole.status_code == 200 and quota_headers(whole)["x-ratelimit-remaining-tokens"] == "0"
        settled(server, 2)
        assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment", reason="too_large") == 1


def test_embeddings_reserve_their_bytes_and_settle_to_their_tokens() -> None:
    settings = {"engine_options": {"kind": "embeddings"}, "quota_tokens_per_minute": 100}
    with in_process(settings, model=EMBED_MODEL) as server, server.client() as http:
        # "hello world" reserves its 11 bytes + 2 and uses its 2 words.
        first = http.post("/embeddings", json={"input": ["hello world"]})
        assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] == 2
        assert quota_headers(first) == limits(1000, 100, 999, 100 - 13)
        settled(server, 1)
        second = http.post("/v1/embeddings", json={"input": "hello world", "model": "fake-embed"})
        assert second.status_code == 200
        assert quota_headers(second) == limits(1000, 100, 998, 100 - 2 - 13)
        settled(server, 2)
        # Token arrays reserve exactly their length: 96 left, 97 do not fit.
        refused = http.post("/v1/embeddings", json={"input": [list(range(97))], "model": "fake-embed"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["message"].startswith(
            "rate limit of deployment 'fake-embed' reached (tokens per minute); retry after "
        )
        assert refused.headers["retry-after"].isdigit()
        fits = http.post("/v1/embeddings", json={"input": [list(range(96))], "model": "fake-embed"})
        assert fits.status_code == 200 and quota_headers(fits)["x-ratelimit-remaining-tokens"] == "0"


# -- settlement of streams --------------------------------------------------------------------


def test_a_stream_is_settled_to_its_usage_when_it_ends() -> None:
    with in_process({"quota_tokens_per_minute": 300}) as server, server.client() as http:
        with http.stream("POST", "/v1/chat/completions", json=chat(50, stream=True)) as response:
            raw = response.read()
        assert response.status_code == 200
        assert quota_headers(response) == limits(1000, 300, 999, 300 - 54)
        assert sse_payloads(raw)
        settled(server, 1)
        after = http.post("/chat/completions", json=chat(50))
        assert quota_headers(after) == limits(1000, 300, 998, 300 - 16 - 54)


def test_a_stream_the_client_abandons_is_settled_to_its_prompt() -> None:
    settings = {"quota_tokens_per_minute": 300, "engine_options": {"hang": True}}
    with in_process(settings) as server:
        sock = open_request(server, "/chat/completions", chat(50, stream=True))
        wait_until(lambda: server.engine.active == 1, 5, "the stream to start")
        abort(sock)
        settled(server, 1)
        server.engine.options["hang"] = False
        with server.client() as http:
            after = http.post("/chat/completions", json=chat(50))
        # Only the 4 prompt tokens stayed charged.
        assert after.status_code == 200 and quota_headers(after) == limits(1000, 300, 998, 300 - 4 - 54)


# -- per-key limits ---------------------------------------------------------------------------

LIMITED_SECRET = "limited-key-0123456789abcdef0123"


def test_a_key_past_its_own_limit_is_refused_while_other_keys_pass() -> None:
    keys = [
        ApiKey.from_secret(KEY, "main"),
        ApiKey.from_secret(LIMITED_SECRET, "limited", quota=QuotaLimits(requests_per_minute=2)),
    ]
    with in_process({"quota_tokens_per_minute": 1000}, keys=keys) as server:
        limited = httpx.Client(base_url=server.url, headers={"api-key": LIMITED_SECRET}, timeout=30)
        with limited, server.client() as main:
            started = time.time()
            for left in (1, 0):
                response = limited.post("/chat/completions", json=chat(10))
                assert response.status_code == 200
                # The key's 2 requests are tighter than the deployment's 1000; tokens are the deployment's.
                assert quota_headers(response) == limits(2, 1000, left, 1000 - 14 * (2 - left))
            refused = limited.post("/v1/chat/completions", json=chat(10))
            assert_rate_limited(
                refused, "key 'limited'", "requests per minute", longest=60, shortest=int(started) + 60 - time.time()
            )
            # The refused request charged neither the key nor the deployment.
            other = main.post("/chat/completions", json=chat(10))
            assert other.status_code == 200
            assert quota_headers(other) == limits(1000, 1000, 1000 - 3, 1000 - 3 * 14)
            again = limited.post("/chat/completions", json=chat(10))
            assert again.status_code == 429
        settled(server, 5)
        assert metric(server, "aimi_rate_limit_rejections_total", scope="key", reason="requests") == 2
        assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment") == 0


# -- concurrency ------------------------------------------------------------------------------


def test_with_max_concurrent_1_a_second_request_during_a_stream_is_429_retry_after_1() -> None:
    settings = {"quota_max_concurrent": 1, "engine_options": {"hang": True}}
    with in_process(settings) as server:
        sock = open_request(server, "/v1/chat/completions", chat(10, stream=True))
        try:
            wait_until(lambda: server.engine.active == 1, 5, "the stream to start")
            with server.client() as http:
                for path in CHAT_PATHS:
                    refused = http.post(path, json=chat(10))
                    assert_error(
                        refused,
                        429,
                        "TooManyRequests",
                        param=None,
                        message="rate limit of deployment 'fake-model' reached (concurrent requests); "
                        "retry after 1 second(s)",
                    )
                    assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("1", "1000")
            assert server.engine.started == 1
        finally:
            abort(sock)
        settled(server, 3)
        assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment", reason="concurrency") == 2
        # The lease went with the stream: the next request is admitted (and reaches the engine).
        again = open_request(server, "/chat/completions", chat(10, stream=True))
        try:
            wait_until(lambda: server.engine.started == 2 and server.engine.active == 1, 5, "the next request")
        finally:
            abort(again)
        settled(server, 4)


# -- exactness under concurrency --------------------------------------------------------------


_TLS = ssl.create_default_context()  # shared: building one per client is what would take time


async def _burst(server: InProcessServer, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every body at once, alternating the two surfaces. Many small clients: one httpx pool
    of hundreds of connections spends its time scanning itself."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url,
                    headers=server.headers,
                    timeout=60,
                    verify=_TLS,
                    limits=httpx.Limits(max_connections=10),
                )
            )
            for _ in range(math.ceil(len(bodies) / 10))
        ]
        return await asyncio.gather(
            *(clients[i % len(clients)].post(CHAT_PATHS[i % 2], json=body) for i, body in enumerate(bodies))
        )


BURST = {"slots": 8, "max_queue": 1000}


def test_hundreds_of_concurrent_requests_admit_exactly_what_fits() -> None:
    limit, reservation = 700, PROMPT + 10
    with in_process({**BURST, "quota_tokens_per_minute": limit}) as server:
        responses = asyncio.run(_burst(server, [chat(10) for _ in range(300)]))
        answered = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert sum(r.json()["usage"]["total_tokens"] for r in answered) <= limit
        assert len(answered) == limit // reservation == 50
        assert {r.status_code for r in refused} == {429}
        assert {r.json()["error"]["message"].split(";")[0] for r in refused} == {
            "rate limit of deployment 'fake-model' reached (tokens per minute)"
        }
        assert sorted(int(r.headers["x-ratelimit-remaining-tokens"]) for r in answered) == [
            limit - reservation * k for k in range(50, 0, -1)
        ]
        settled(server, 300)
        assert metric(server, "aimi_rate_limit_rejections_total", reason="tokens") == 250


def test_concurrent_requests_of_different_sizes_never_exceed_the_limit() -> None:
    limit = 500
    sizes = [1 + (i * 7) % 12 for i in range(300)]  # max_tokens 1..12: each uses all it reserves
    with in_process({**BURST, "quota_tokens_per_minute": limit}) as server:
        responses = asyncio.run(_burst(server, [chat(size) for size in sizes]))
        reserved = [PROMPT + size for size in sizes]
        admitted = sum(r for r, response in zip(reserved, responses, strict=True) if response.status_code == 200)
        assert admitted <= limit
        assert all(response.status_code in (200, 429) for response in responses)
        # Charges only grow (nothing comes back), so each refusal still would not fit now.
        for size, response in zip(reserved, responses, strict=True):
            if response.status_code == 429:
                assert admitted + size > limit
        assert admitted == sum(
            response.json()["usage"]["total_tokens"] for response in responses if response.status_code == 200
        )
