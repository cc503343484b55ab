"""The real SDKs retry aimi's quota 429s on their own, waiting the Retry-After it sends.

One slow stream holds the deployment's only concurrent place (``quota_max_concurrent`` 1, the
fake engine at 10 tokens a second: its 12-token answer takes 1.2 s); a request made meanwhile is
refused with Retry-After 1, and the SDK's retry, after the stream ended, succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import openai
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.models import ChatRequestMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from prometheus_client.parser import text_string_to_metric_families

from aimi.engines.fake import DEFAULT_TEXT, tokenize
from tests.conftest import KEY, InProcessServer, in_process, wait_until

FIRST_TWO = "".join(tokenize(DEFAULT_TEXT)[:2])  # "Hello from ": the answer at max_tokens 2
HI: list[ChatRequestMessage] = [UserMessage("hi")]
SLOW = {"quota_max_concurrent": 1, "engine_options": {"tokens_per_second": 10}}


def metric(server: InProcessServer, name: str, **labels: str) -> float:
    with server.client() as http:
        text = http.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class Holder:
    """A slow stream, read to its end in a thread."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        self.status = 0
        self.body = b""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
        with self.server.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
            self.status = response.status_code
            self.body = response.read()

    def __enter__(self) -> Holder:
        self.thread.start()
        wait_until(lambda: self.server.engine.active == 1, 5, "the slow stream to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[InProcessServer]:
    with in_process(SLOW) as running:
        yield running


def _after(server: InProcessServer, holder: Holder, started: float) -> None:
    """What both SDKs must leave behind: one refusal at least, then success after the wait."""
    assert time.monotonic() - started >= 1.0  # it waited the Retry-After
    holder.thread.join(timeout=10)
    assert holder.status == 200 and b"data: [DONE]" in holder.body
    wait_until(lambda: metric(server, "aimi_requests_total", status="200") == 2, 10, "both answers to be counted")
    assert metric(server, "aimi_rate_limit_rejections_total", scope="deployment", reason="concurrency") >= 1
    assert metric(server, "aimi_requests_total", status="429") >= 1


def test_the_azure_sdk_retries_a_concurrency_429_and_succeeds(server: InProcessServer) -> None:
    with ChatCompletionsClient(endpoint=server.url, credential=AzureKeyCredential(KEY)) as client:
        with Holder(server) as holder:
            started = time.monotonic()
            response = client.complete(messages=HI, max_tokens=2)
        assert response.choices[0].message.content == FIRST_TWO
        _after(server, holder, started)


def test_the_openai_sdk_retries_a_concurrency_429_and_succeeds(server: InProcessServer) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=2) as client:
        with Holder(server) as holder:
            started = time.monotonic()
            response = client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert response.choices[0].message.content == FIRST_TWO
        _after(server, holder, started)


def test_without_retries_the_sdks_surface_the_429_and_its_retry_after(server: InProcessServer) -> None:
    with Holder(server):
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
        error = caught.value
        assert error.status_code == 429
        assert (error.response.headers["retry-after"], error.response.headers["retry-after-ms"]) == ("1", "1000")
        assert error.body == {
            "code": "TooManyRequests",
            "message": "rate limit of deployment 'fake-model' reached (concurrent requests); retry after 1 second(s)",
            "type": "rate_limit_error",
            "param": None,
        }


def test_the_openai_sdk_does_not_retry_a_request_that_can_never_fit() -> None:
    with in_process({"quota_tokens_per_minute": 50}) as running:
        with openai.OpenAI(base_url=f"{running.url}/v1", api_key=KEY, max_retries=1) as client:
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": "hi"}], max_tokens=100
                )
        assert metric(running, "aimi_rate_limit_rejections_total", reason="too_large") == 1


def test_the_azure_sdk_does_not_retry_a_request_that_can_never_fit() -> None:
    with in_process({"quota_tokens_per_minute": 50}) as running:
        with ChatCompletionsClient(endpoint=running.url, credential=AzureKeyCredential(KEY)) as client:
            with pytest.raises(HttpResponseError) as caught:
                client.complete(messages=HI, max_tokens=100)
        assert caught.value.status_code == 429
        assert caught.value.error is not None and caught.value.error.code == "TooManyRequests"
        wait_until(lambda: metric(running, "aimi_requests_total") == 1, 10, "the refusal to be counted")
        assert metric(running, "aimi_rate_limit_rejections_total", reason="too_large") == 1
