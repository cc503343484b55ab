"""The engine contract, run over every engine available here: the fake one, llama.cpp, and vLLM
(marked ``vllm``: it runs where vLLM is installed, on a tiny random-weight Llama built offline)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from aimi.engines import build_engine
from aimi.engines.api import (
    ChatTurn,
    Engine,
    EngineConfig,
    EngineState,
    Event,
    Finish,
    GenerationRequest,
    ModelFacts,
    RequestFailed,
    TextDelta,
    Usage,
)
from aimi.engines.fake import KEEP, FakeEngine
from tests.engines.tiny_llama import build_tiny_llama

LONG_TEXT = " ".join(f"word{i}" for i in range(3000))


FACTS: dict[int, ModelFacts] = {}  # what each engine under test said when it started
# vLLM takes a minute or more to start on a CPU: one engine serves every test of the module.
_SHARED: dict[str, Engine] = {}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    # Module-scoped: one event loop for the module, which the shared vLLM engine is bound to.
    return "asyncio"


@pytest.fixture(scope="module", autouse=True)
async def _close_shared_engines(anyio_backend: str) -> AsyncIterator[None]:
    yield
    while _SHARED:
        _, shared = _SHARED.popitem()
        await shared.close()
        assert shared.health() is EngineState.DEAD


@pytest.fixture(params=["fake", "llamacpp", pytest.param("vllm", marks=pytest.mark.vllm)])
async def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    if request.param == "vllm":
        if "vllm" not in _SHARED:
            model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
            options = {"enforce_eager": True, "kv_cache_gib": 1}
            config = EngineConfig(model_path=str(model), slots=1, context_size=512, threads=2, options=options)
            shared = build_engine("vllm", config)
            assert shared.health() is EngineState.LOADING
            FACTS[id(shared)] = facts = await shared.start()
            assert (facts.n_slots, facts.context_length) == (1, 512)
            _SHARED["vllm"] = shared
        assert _SHARED["vllm"].health() is EngineState.READY
        yield _SHARED["vllm"]
        return
    if request.param == "llamacpp":
        path: Path = request.getfixturevalue("default_model_path")
        config = EngineConfig(model_path=str(path), slots=1, context_size=512, threads=2)
    else:
        config = EngineConfig(slots=1, context_size=512, options={"text": LONG_TEXT, "tokens_per_second": 200})
    built = build_engine(request.param, config)
    assert built.health() is EngineState.LOADING
    facts = await built.start()
    FACTS[id(built)] = facts
    assert (facts.n_slots, facts.context_length) == (1, 512)
    assert built.health() is EngineState.READY
    yield built
    await built.close()
    assert built.health() is EngineState.DEAD


def _request(max_tokens: int, **extra: object) -> GenerationRequest:
    return GenerationRequest(
        request_id=uuid.uuid4().hex,
        max_tokens=max_tokens,
        messages=[ChatTurn("user", "Count from one to one hundred.")],
        temperature=0,
        extra=dict(extra),
    )


async def _collect(engine: Engine, request: GenerationRequest) -> list[Event]:
    return [event async for event in engine.generate(request)]


@pytest.mark.anyio
async def test_events_are_text_then_one_finish_then_usage(engine: Engine) -> None:
    events = await _collect(engine, _request(5, ignore_eos=True))
    assert all(isinstance(e, TextDelta) for e in events[:-2])
    assert events[-2] == Finish("length")
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert usage.completion_tokens == 5
    assert usage.prompt_tokens > 0
    assert "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.anyio
async def test_prompt_longer_than_the_context_fails_before_any_event(engine: Engine) -> None:
    request = _request(4)
    request.messages = [ChatTurn("user", LONG_TEXT)]
    with pytest.raises(RequestFailed) as caught:
        await _collect(engine, request)
    assert caught.value.client_error
    assert caught.value.code == "context_length_exceeded"


@pytest.mark.anyio
async def test_closing_the_iterator_stops_the_generation(engine: Engine) -> None:
    # One slot: the next request runs only once the abandoned one (400 tokens asked) let go of
    # it, and the engine's own count shows the abandoned one stopped within a few tokens.
    before = (await engine.metrics())["tokens_generated"]
    events = engine.generate(_request(400, ignore_eos=True))
    assert isinstance(await anext(events), TextDelta)
    assert isinstance(events, AsyncGenerator)  # declared an AsyncIterator; aclose() is an async generator's
    await events.aclose()
    after = await _collect(engine, _request(3, ignore_eos=True))
    assert isinstance(after[-1], Usage) and after[-1] == Usage(after[-1].prompt_tokens, 3)
    assert 4 <= (await engine.metrics())["tokens_generated"] - before < 20


@pytest.mark.anyio
async def test_text_completion_from_a_raw_prompt(engine: Engine) -> None:
    request = GenerationRequest(
        request_id="raw", max_tokens=3, prompt="One, two, three,", temperature=0, extra={"ignore_eos": True}
    )
    events = await _collect(engine, request)
    assert isinstance(events[-1], Usage) and events[-2:] == [Finish("length"), Usage(events[-1].prompt_tokens, 3)]


@pytest.mark.anyio
async def test_the_prompt_count_before_generating_is_the_one_usage_reports(engine: Engine) -> None:
    # Quotas reserve the prompt's tokens before the engine runs: the count must be the model's own.
    chat = _request(2, ignore_eos=True)
    chat.messages = [ChatTurn("system", "Be brief."), ChatTurn("user", "Name three colours, please.")]
    raw = GenerationRequest(request_id="raw-count", max_tokens=2, prompt="One, two, three,", temperature=0)
    for request in (chat, raw):
        counted = await engine.count_tokens(request)
        usage = (await _collect(engine, request))[-1]
        assert isinstance(usage, Usage)
        assert counted == usage.prompt_tokens


@pytest.mark.anyio
async def test_a_prompt_bound_is_never_less_than_the_count(engine: Engine) -> None:
    # Where an engine gives a bound, admission reserves it instead of asking the engine to count.
    bound = FACTS[id(engine)].prompt_bound
    if bound is None:
        pytest.skip("this engine gives no bound: its count is asked")
    conversations = [
        [ChatTurn("user", "")],
        [ChatTurn("user", "hi")],
        [ChatTurn("system", "Be brief."), ChatTurn("user", "Name three colours, please.")],
        [ChatTurn("user", "a b c " * 50), ChatTurn("assistant", "d e f"), ChatTurn("user", "<|im_start|>system")],
        [ChatTurn("user", "naïve café, 東京, 🙂 " * 10), ChatTurn("assistant", "   \n\n  "), ChatTurn("user", "ok")],
        [ChatTurn("system", "x")] + [ChatTurn("user" if i % 2 else "assistant", f"turn {i}") for i in range(20)],
    ]
    for turns in conversations:
        request = GenerationRequest(request_id=uuid.uuid4().hex, max_tokens=1, messages=turns)
        counted = await engine.count_tokens(request)
        limit = bound.of(turns)
        assert counted is not None and limit is not None and counted <= limit <= counted * 4 + 64, turns


@pytest.mark.anyio
async def test_the_fake_engine_keeps_only_its_latest_requests() -> None:
    engine = FakeEngine(EngineConfig(options={"text": "ok"}))
    await engine.start()
    for i in range(2 * KEEP + 1):
        await _collect(engine, replace(_request(1), request_id=f"r{i}"))
    assert len(engine.requests) == KEEP
    assert engine.requests[-1].request_id == f"r{2 * KEEP}"
