"""The upstream engine against real OpenAI-compatible servers: a second aimi (on the fake engine)
and llama.cpp's own HTTP server; plus its parsing and error mapping on their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.conftest as conftest
from aimi.engines.api import (
    ChatTurn,
    EmbeddingRequest,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    Finish,
    GenerationRequest,
    JsonObject,
    RequestFailed,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)
from aimi.engines.fake import FakeEngine
from aimi.engines.upstream import UpstreamEngine, _events, _Progress, _sse_data, _whole_events
from tests.conftest import KEY, LiveServer, aimi_process, free_port, in_process

UPKEY = "upkey"
TEXT = "one two three four"
LONG_TEXT = " ".join(f"w{i}" for i in range(400))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- upstream servers: `aimi serve` processes on the fake engine -----------------------------


@contextlib.contextmanager
def _fake_upstream(
    factory: pytest.TempPathFactory, options: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    home = factory.mktemp("upstream")
    model = home / "stand-in.gguf"
    model.write_bytes(b"")
    args = ["--model", str(model), "--engine", "fake", "--engine-options", options, "--api-key", UPKEY, *extra]
    with aimi_process(home, args, env=env, timeout=60) as server:
        yield server


@pytest.fixture(scope="module")
def chat_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _fake_upstream(tmp_path_factory, f'{{"text": "{TEXT}"}}') as server:
        yield server


@pytest.fixture(scope="module")
def failing_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _fake_upstream(tmp_path_factory, f'{{"text": "{TEXT}", "fail_after": 2}}') as server:
        yield server


@pytest.fixture(scope="module")
def erroring_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Fails before its first token: it answers 500 instead of a stream."""
    with _fake_upstream(tmp_path_factory, f'{{"text": "{TEXT}", "fail_after": 0}}') as server:
        yield server


@pytest.fixture(scope="module")
def slow_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _fake_upstream(tmp_path_factory, f'{{"text": "{TEXT}", "tokens_per_second": 1}}') as server:
        yield server


@pytest.fixture(scope="module")
def gated_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One slot and no queue: while a request runs, any other is a 429, so a 200 shows that the
    upstream let go of the one before."""
    options = f'{{"text": "{LONG_TEXT}", "tokens_per_second": 20}}'
    with _fake_upstream(tmp_path_factory, options, "--slots", "1", env={"AIMI_MAX_QUEUE": "0"}) as server:
        yield server


@pytest.fixture(scope="module")
def embeddings_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with _fake_upstream(tmp_path_factory, '{"kind": "embeddings"}') as server:
        yield server


# --- helpers -----------------------------------------------------------------------------------


def _config(url: str, **options: Any) -> EngineConfig:
    return EngineConfig(options={"url": url, **options})


@contextlib.asynccontextmanager
async def _engine(server: LiveServer | str, **options: Any) -> AsyncIterator[UpstreamEngine]:
    url = server if isinstance(server, str) else f"{server.url}/v1"
    if not isinstance(server, str):
        options.setdefault("api_key", UPKEY)
    engine = UpstreamEngine(_config(url, **options))
    assert engine.health() is EngineState.LOADING
    await engine.start()
    assert engine.health() is EngineState.READY
    try:
        yield engine
    finally:
        await engine.close()
        assert engine.health() is EngineState.DEAD


def _chat(max_tokens: int | None = None, **fields: Any) -> GenerationRequest:
    return GenerationRequest(
        request_id=uuid.uuid4().hex,
        max_tokens=max_tokens,
        messages=[ChatTurn("user", "Say something.")],
        **fields,
    )


async def _collect(engine: UpstreamEngine, request: GenerationRequest) -> list[Event]:
    return [event async for event in engine.generate(request)]


def _text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def _direct_status(server: LiveServer) -> int:
    """A one-token chat straight to the upstream: 200, or 429 while its one slot is taken."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {UPKEY}"}, timeout=10) as client:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        return (await client.post(f"{server.url}/v1/chat/completions", json=body)).status_code


async def _gate_frees(server: LiveServer) -> None:
    async def admitted() -> bool:
        return await _direct_status(server) == 200

    await _eventually(admitted, 10, "the upstream to end the abandoned request")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{server.url}/health")).status_code == 200


# --- against a second aimi -------------------------------------------------------------------


@pytest.mark.anyio
async def test_chat_streams_the_upstream_answer_and_its_usage(
    chat_upstream: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _engine(chat_upstream) as engine:
        events = await _collect(engine, _chat(temperature=0))
        assert all(isinstance(e, TextDelta) for e in events[:-2])
        assert _text(events) == TEXT
        assert events[-2] == Finish("stop")
        # The fake engine counts the words of each message plus 3: the upstream's own count.
        assert events[-1] == Usage(2 + 3, 4)
        assert await engine.metrics() == {"requests": 1, "failures": 0, "tokens_generated": 4, "active": 0}
    assert UPKEY not in caplog.text


@pytest.mark.anyio
async def test_text_completion_from_a_prompt(chat_upstream: LiveServer) -> None:
    async with _engine(chat_upstream) as engine:
        events = await _collect(engine, GenerationRequest("raw", max_tokens=None, prompt="a b c"))
        assert _text(events) == TEXT
        assert events[-2:] == [Finish("stop"), Usage(3, 4)]


@pytest.mark.anyio
@pytest.mark.parametrize("chat", [True, False])
async def test_a_whole_answer_is_read_whole_and_matches_the_streamed_one(chat_upstream: LiveServer, chat: bool) -> None:
    async with _engine(chat_upstream) as engine:
        request = _chat(3) if chat else GenerationRequest("raw", max_tokens=3, prompt="a b c")
        streamed = await _collect(engine, request)
        request.stream = False
        whole = await _collect(engine, request)
    assert whole == [TextDelta(_text(streamed)), Finish("length"), streamed[-1]]
    assert len(streamed) > len(whole) and _text(streamed) == "one two three "


@pytest.mark.anyio
async def test_max_tokens_cuts_the_answer(chat_upstream: LiveServer) -> None:
    async with _engine(chat_upstream) as engine:
        events = await _collect(engine, _chat(2))
        assert _text(events) == "one two "
        assert events[-2:] == [Finish("length"), Usage(5, 2)]


@pytest.mark.anyio
async def test_closing_the_iterator_ends_the_upstream_request(gated_upstream: LiveServer) -> None:
    async with _engine(gated_upstream) as engine:
        events = engine.generate(_chat(400))
        assert isinstance(await anext(events), TextDelta)
        assert await _direct_status(gated_upstream) == 429  # the gate holds while it runs
        assert isinstance(events, AsyncGenerator)  # declared an AsyncIterator; aclose() is an async generator's
        await events.aclose()
        await _gate_frees(gated_upstream)
        after = await _collect(engine, _chat(3))
        assert after[-2:] == [Finish("length"), Usage(5, 3)]
        assert (await engine.metrics())["active"] == 0


@pytest.mark.anyio
async def test_cancelling_the_consuming_task_ends_the_upstream_request(gated_upstream: LiveServer) -> None:
    async with _engine(gated_upstream) as engine:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in engine.generate(_chat(400)):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _gate_frees(gated_upstream)


@pytest.mark.anyio
async def test_abort_ends_the_iterator_quietly_and_the_upstream_request(gated_upstream: LiveServer) -> None:
    async with _engine(gated_upstream) as engine:
        request = _chat(400)
        events: list[Event] = []
        first = asyncio.Event()

        async def consume() -> None:
            async for event in engine.generate(request):
                events.append(event)
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        await engine.abort(request.request_id)
        await asyncio.wait_for(task, 10)  # no error: an aborted request just ends
        assert events and all(isinstance(e, TextDelta) for e in events)
        assert len(events) < 100
        await _gate_frees(gated_upstream)
        await engine.abort("unknown")  # a no-op


@pytest.mark.anyio
async def test_close_ends_running_generations(gated_upstream: LiveServer) -> None:
    engine = UpstreamEngine(_config(f"{gated_upstream.url}/v1", api_key=UPKEY))
    await engine.start()
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate(_chat(400)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    await engine.close()
    await asyncio.wait_for(task, 10)  # ended, without an error
    assert engine.health() is EngineState.DEAD
    await _gate_frees(gated_upstream)
    with pytest.raises(EngineDead):
        await _collect(engine, _chat(2))


@pytest.mark.anyio
async def test_a_wrong_key_fails_the_start_without_showing_the_key(
    chat_upstream: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "not-the-key-31415926"
    engine = UpstreamEngine(_config(f"{chat_upstream.url}/v1", api_key=secret))
    with pytest.raises(EngineDead) as caught:
        await engine.start()
    assert "401" in str(caught.value) and chat_upstream.url in str(caught.value)
    assert secret not in str(caught.value)
    assert engine.health() is EngineState.DEAD
    with pytest.raises(EngineDead):
        await _collect(engine, _chat(2))
    assert secret not in caplog.text


@pytest.mark.anyio
async def test_start_fails_quickly_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = UpstreamEngine(_config(url, connect_timeout=1))
    started = time.monotonic()
    with pytest.raises(EngineDead) as caught:
        await engine.start()
    assert time.monotonic() - started < 3
    assert "unreachable" in str(caught.value) and url in str(caught.value)
    assert engine.health() is EngineState.DEAD


@pytest.mark.anyio
async def test_start_waits_for_an_upstream_that_comes_up_within_start_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aimi.engines.upstream")
    port = free_port()
    engine = UpstreamEngine(_config(f"http://127.0.0.1:{port}/v1", api_key=KEY, start_timeout=30))
    starting = asyncio.create_task(engine.start())

    async def tried() -> bool:
        return "unreachable" in caplog.text and "retrying" in caplog.text

    await _eventually(tried, 10, "a first, failed, attempt to reach the upstream")
    assert engine.health() is EngineState.LOADING
    monkeypatch.setattr(conftest, "free_port", lambda: port)  # in_process() serves on this port
    with contextlib.ExitStack() as stack:
        await asyncio.to_thread(stack.enter_context, in_process())
        facts = await asyncio.wait_for(starting, 20)
        assert facts.context_length == 4096 and facts.n_slots == 64
        assert engine.health() is EngineState.READY
        events = await _collect(engine, _chat(2))
        assert events[-2] == Finish("length")
        await asyncio.to_thread(stack.close)
    await engine.close()


@pytest.mark.anyio
async def test_an_upstream_gone_after_start_fails_requests_not_the_engine() -> None:
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(stack.enter_context, in_process())
        engine = UpstreamEngine(_config(f"{server.url}/v1", api_key=KEY, connect_timeout=1))
        await engine.start()
        assert _text(await _collect(engine, _chat(2)))
        await asyncio.to_thread(stack.close)
    started = time.monotonic()
    with pytest.raises(RequestFailed) as caught:
        await _collect(engine, _chat(2))
    assert time.monotonic() - started < 3
    assert "unreachable" in caught.value.message and server.url in caught.value.message
    assert not caught.value.client_error
    assert engine.health() is EngineState.READY
    assert (await engine.metrics())["failures"] == 1
    await engine.close()


@pytest.mark.anyio
async def test_a_failure_mid_stream_fails_the_request_after_the_first_events(failing_upstream: LiveServer) -> None:
    async with _engine(failing_upstream) as engine:
        events: list[Event] = []
        with pytest.raises(RequestFailed) as caught:
            async for event in engine.generate(_chat()):
                events.append(event)
        assert _text(events) == "one two "
        assert not caught.value.client_error
        assert engine.health() is EngineState.READY
        assert (await engine.metrics())["failures"] == 1


@pytest.mark.anyio
async def test_an_upstream_500_fails_the_request_not_the_client_nor_the_engine(erroring_upstream: LiveServer) -> None:
    async with _engine(erroring_upstream) as engine:
        with pytest.raises(RequestFailed) as caught:
            await _collect(engine, _chat())
        assert not caught.value.client_error
        assert UPKEY not in caught.value.message
        assert engine.health() is EngineState.READY


@pytest.mark.anyio
async def test_a_silent_upstream_times_out(slow_upstream: LiveServer) -> None:
    async with _engine(slow_upstream, read_timeout=0.3) as engine:
        started = time.monotonic()
        with pytest.raises(RequestFailed) as caught:
            await _collect(engine, _chat())
        assert time.monotonic() - started < 0.9
        assert "timeout" in caught.value.message and not caught.value.client_error
        assert engine.health() is EngineState.READY


@pytest.mark.anyio
async def test_embeddings_come_back_in_order(embeddings_upstream: LiveServer) -> None:
    texts = ["first input", "second", "the third one"]
    local = FakeEngine(EngineConfig(options={"kind": "embeddings"}))
    await local.start()
    expected = await local.embed(EmbeddingRequest("local", texts=texts))
    async with _engine(embeddings_upstream, kind="embeddings", capabilities={"token_inputs": True}) as engine:
        assert engine.capabilities.embeddings and not engine.capabilities.chat and engine.capabilities.token_inputs
        got = await engine.embed(EmbeddingRequest("e", texts=texts))
        assert [len(v) for v in got.vectors] == [8, 8, 8]
        assert got.vectors == expected.vectors
        assert got.prompt_tokens == expected.prompt_tokens == 6
        ids = await engine.embed(EmbeddingRequest("t", token_ids=[[1, 2], [3]]))
        assert len(ids.vectors) == 2 and ids.prompt_tokens == 3
        with pytest.raises(RequestFailed):
            await _collect(engine, _chat(2))


@pytest.mark.anyio
async def test_a_chat_upstream_refuses_embeddings(chat_upstream: LiveServer) -> None:
    async with _engine(chat_upstream) as engine:
        with pytest.raises(RequestFailed):
            await engine.embed(EmbeddingRequest("e", texts=["x"]))


# --- against llama.cpp's own server --------------------------------------------------------------

_LLAMA_SERVER = """
import sys, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.n_parallel = 1
p.n_ctx = 512
p.cpuparams.n_threads = 2
p.cpuparams_batch.n_threads = 2
p.hostnames = ["127.0.0.1"]
p.port = int(sys.argv[2])
p.verbosity = -1
server = xllamacpp.Server(p)
sys.stdin.read()
"""


@pytest.fixture
def llama_server(default_model_path: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "llama-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", _LLAMA_SERVER, str(default_model_path), str(port)],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"llama.cpp's server exited with {process.returncode}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        conftest.wait_until(ready, 120, "llama.cpp's server to load the model")
        yield f"{url}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdin is not None
        process.stdin.close()
        log.close()


@pytest.mark.model
@pytest.mark.anyio
async def test_llama_cpp_server_as_upstream(llama_server: str) -> None:
    async with _engine(llama_server, capabilities={"logprobs": True}) as engine:
        greedy = _chat(8, temperature=0, extra={"ignore_eos": True})
        events = await _collect(engine, greedy)
        assert _text(events)
        assert events[-2] == Finish("length")
        usage = events[-1]
        assert isinstance(usage, Usage) and usage.completion_tokens == 8 and usage.prompt_tokens > 0

        with_logprobs = _chat(3, temperature=0, logprobs=2, extra={"ignore_eos": True})
        deltas = [e for e in await _collect(engine, with_logprobs) if isinstance(e, TextDelta)]
        entries = [entry for delta in deltas for entry in delta.logprobs]
        assert len(entries) == 3 and all(len(entry.top) == 2 for entry in entries)
        assert all(entry.logprob is not None and entry.logprob <= 0 and entry.bytes for entry in entries)

        raw = GenerationRequest("raw", max_tokens=3, prompt="One, two,", temperature=0, logprobs=0)
        raw.extra = {"ignore_eos": True}
        events = await _collect(engine, raw)
        assert isinstance(events[-1], Usage) and events[-1] == Usage(events[-1].prompt_tokens, 3)
        assert all(e.logprobs and e.logprobs[0].top == () for e in events if isinstance(e, TextDelta))

        too_long = _chat(4)
        too_long.messages = [ChatTurn("user", LONG_TEXT * 2)]
        with pytest.raises(RequestFailed) as caught:
            await _collect(engine, too_long)
        assert caught.value.client_error and caught.value.code == "context_length_exceeded"
        assert engine.health() is EngineState.READY


# --- configuration, payloads, parsing and error mapping --------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"url": "ftp://example.com/v1"},
        {"url": "127.0.0.1:8080/v1"},
        {"url": "http://127.0.0.1:8080/v1", "apikey": "typo"},
        {"url": "http://127.0.0.1:8080/v1", "kind": "images"},
        {"url": "http://127.0.0.1:8080/v1", "capabilities": {"telepathy": True}},
        {"url": "http://127.0.0.1:8080/v1", "capabilities": {"logprobs": "yes"}},
        {"url": "http://127.0.0.1:8080/v1", "read_timeout": 0},
        {"url": "http://127.0.0.1:8080/v1", "max_connections": 2.5},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        UpstreamEngine(EngineConfig(options=options))


def test_capabilities_are_off_unless_declared() -> None:
    plain = UpstreamEngine(_config("http://127.0.0.1:1/v1")).capabilities
    assert plain.chat and plain.completions and not plain.embeddings
    assert not (plain.structured_output or plain.logprobs or plain.logit_bias or plain.stop_token_ids)
    assert set(plain.extra_parameters) == {"top_k", "min_p", "repetition_penalty", "ignore_eos"}
    declared = UpstreamEngine(
        _config("http://127.0.0.1:1/v1", capabilities={"structured_output": True, "logprobs": True})
    ).capabilities
    assert declared.structured_output and declared.logprobs and not declared.logit_bias


def test_payloads_carry_the_request() -> None:
    engine = UpstreamEngine(_config("http://127.0.0.1:1/v1", model="served-name"))
    call = ToolCall("c1", "f", "{}")
    request = GenerationRequest(
        "r",
        max_tokens=None,
        messages=[ChatTurn("assistant", None, tool_calls=(call,)), ChatTurn("tool", "42", tool_call_id="c1")],
        temperature=0.5,
        seed=7,
        stop=["\n"],
        logprobs=0,
        logit_bias={13: -100.0},
        response_format=JsonObject(),
        stop_token_ids=[2],
        extra={"top_k": 5, "repetition_penalty": 1.1},
    )
    payload = engine._payload(request)
    assert payload["model"] == "served-name" and "max_tokens" not in payload
    assert payload["stream"] is True and payload["stream_options"] == {"include_usage": True}
    assert payload["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]
    assert (payload["temperature"], payload["seed"], payload["stop"]) == (0.5, 7, ["\n"])
    assert (payload["logprobs"], payload["top_logprobs"]) == (True, 1)
    assert payload["logit_bias"] == {"13": -100.0} and payload["stop_token_ids"] == [2]
    assert payload["response_format"] == {"type": "json_object"}
    assert (payload["top_k"], payload["repetition_penalty"], payload["repeat_penalty"]) == (5, 1.1, 1.1)
    text = engine._payload(GenerationRequest("t", max_tokens=4, prompt="p", logprobs=3))
    assert (text["prompt"], text["max_tokens"], text["logprobs"]) == ("p", 4, 3) and "messages" not in text


@pytest.mark.anyio
async def test_server_sent_events_are_read_whatever_the_line_ends() -> None:
    raw = (
        b': a comment\r\nevent: message\r\nid: 1\r\ndata: {"a": 1}\r\n\r\n'
        b'data:{"b": 2}\n\n'
        b'retry: 10\rdata: {"c":\rdata: 3}\r\r'
        b"data: [DONE]"
    )

    async def pieces(size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(raw), size):
            yield raw[start : start + size]

    for size in (1, 2, 7, len(raw)):  # an event and a line end may be cut anywhere
        got = [data async for data in _sse_data(pieces(size))]
        assert got == ['{"a": 1}', '{"b": 2}', '{"c":\n3}', "[DONE]"], size


def test_a_whole_answer_becomes_the_events_of_its_choices() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": calls},
                "finish_reason": "tool_calls",
            },
            {"index": 1, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9},
    }
    progress = _Progress()
    assert _whole_events(body, True, None, progress) == [
        ToolCallDelta(0, 0, "c1", "f", '{"x": 1}'),
        ToolCallDelta(0, 1, "c2", "g", "{}"),
        Finish("tool_calls", 0),
        TextDelta("hi", 1),
        Finish("stop", 1),
    ]
    assert progress.usage == Usage(5, 9)


def test_chunks_become_events() -> None:
    progress = _Progress()
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": None}
    assert _events(role, True, None, progress) == []
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"x"'}}
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}
    assert _events(chunk, True, None, progress) == [ToolCallDelta(0, 0, "c1", "f", '{"x"')]
    legacy = {
        "choices": [
            {
                "index": 0,
                "text": " or",
                "finish_reason": "eos_token",
                "logprobs": {"tokens": [" or"], "token_logprobs": [-0.5], "top_logprobs": [{" or": -0.5, " and": -1}]},
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2},
    }
    events = _events(legacy, False, 1, progress)
    assert events == [
        TextDelta(
            " or",
            0,
            (TokenLogprob(" or", -0.5, (32, 111, 114), (TopLogprob(" or", -0.5, (32, 111, 114)),)),),
        ),
        Finish("stop"),
    ]
    assert progress.usage == Usage(4, 2) and progress.text_chunks == 2 and progress.finished == {0}


@pytest.mark.parametrize(
    ("status", "body", "client_error", "code", "shown"),
    [
        (400, {"error": {"message": "bad temperature", "code": "invalid_request"}}, True, "invalid_request", "bad"),
        (
            400,
            {"object": "error", "message": "This model's maximum context length is 2048 tokens", "code": 400},
            True,
            "context_length_exceeded",
            "2048",
        ),
        (
            400,
            {"error": {"message": "too long", "type": "exceed_context_size_error"}},
            True,
            "context_length_exceeded",
            "too long",
        ),
        (422, {"detail": [{"msg": "field required"}]}, True, "invalid_request", "field required"),
        (401, {"error": {"message": "bad key sk-secret"}}, False, "engine_error", "HTTP 401"),
        (404, {"error": "model not found"}, False, "engine_error", "model not found"),
        (429, "slow down", False, "engine_error", "HTTP 429"),
        (503, {"error": {"message": "overloaded"}}, False, "engine_error", "overloaded"),
        (None, {"error": {"message": "the engine failed", "code": "engine_error"}}, False, "engine_error", "failed"),
        (None, {"error": {"message": "prompt too big", "code": 400}}, True, "invalid_request", "too big"),
    ],
)
def test_error_answers_map_to_request_failures(
    status: int | None, body: Any, client_error: bool, code: str, shown: str
) -> None:
    engine = UpstreamEngine(_config("http://user:pw@127.0.0.1:1/v1", api_key="sk-secret"))
    failure = engine._failure(status, body)
    assert (failure.client_error, failure.code) == (client_error, code)
    assert shown in failure.message
    assert "sk-secret" not in failure.message and "pw" not in failure.message
    assert len(failure.message) <= 600
