"""The litellm SDK against a live ``aimi serve``: its ``azure_ai/``, ``azure/`` and ``openai/`` providers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.helpers import (
    AZURE_OPENAI_API_VERSION,
    CHAT_MODEL,
    COLOR_QUESTION,
    COLOR_SCHEMA,
    EMBEDDINGS_DIMS,
    EMBEDDINGS_MODEL,
    PROMPT,
    WEATHER_QUESTION,
    WEATHER_TOOL,
)
from tests.conftest import LiveServer, aimi_process

# litellm fetches its model price list from the network at import unless told to use its own copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm", reason="needs litellm (pip install -e '.[clients]')")

pytestmark = [
    pytest.mark.model,
    pytest.mark.clients,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # litellm builds pydantic models of TypedDicts that mark items ReadOnly; pydantic says it will not enforce it.
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
]

# provider -> (the path under the server's URL litellm is given, the deployment or model name)
PROVIDERS = {"azure_ai": "/models", "azure": "", "openai": "/v1"}


def base(server: LiveServer, provider: str) -> dict[str, Any]:
    extra = {"api_version": AZURE_OPENAI_API_VERSION} if provider == "azure" else {}
    return {"api_base": f"{server.url}{PROVIDERS[provider]}", "num_retries": 0, **extra}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_and_stream(live_server: LiveServer, provider: str) -> None:
    call = {"model": f"{provider}/{CHAT_MODEL}", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    whole = litellm.completion(**call, temperature=0, api_key=live_server.key, **base(live_server, provider))
    content = whole.choices[0].message.content
    assert isinstance(content, str) and content
    assert whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(
        litellm.completion(**call, temperature=0, stream=True, api_key=live_server.key, **base(live_server, provider))
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call(live_server: LiveServer, provider: str) -> None:
    answer = litellm.completion(
        model=f"{provider}/{CHAT_MODEL}",
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        max_tokens=60,
        temperature=0,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        # azure_ai/ refuses tool_choice for a model missing from litellm's own table unless allowed.
        allowed_openai_params=["tool_choice"],
        api_key=live_server.key,
        **base(live_server, provider),
    )
    calls = answer.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_schema_output_parses(live_server: LiveServer, provider: str) -> None:
    schema = {k: v for k, v in COLOR_SCHEMA.items() if k not in ("title", "description")}
    answer = litellm.completion(
        model=f"{provider}/{CHAT_MODEL}",
        messages=[{"role": "user", "content": COLOR_QUESTION}],
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "color", "schema": schema, "strict": True}},
        api_key=live_server.key,
        **base(live_server, provider),
    )
    parsed = json.loads(answer.choices[0].message.content)
    assert set(parsed) == {"color"} and parsed["color"] in ("red", "green", "blue")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_wrong_key_raises_authentication_error(live_server: LiveServer, provider: str) -> None:
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(
            model=f"{provider}/{CHAT_MODEL}",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=4,
            api_key="wrong-" + live_server.key,
            **base(live_server, provider),
        )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embeddings_have_the_model_dimension(live_embeddings_server: LiveServer, provider: str) -> None:
    result = litellm.embedding(
        model=f"{provider}/{EMBEDDINGS_MODEL}",
        input=["hello world", "The quick brown fox."],
        api_key=live_embeddings_server.key,
        **base(live_embeddings_server, provider),
    )
    assert [len(item["embedding"]) for item in result.data] == [EMBEDDINGS_DIMS, EMBEDDINGS_DIMS]


# A deployment named like a route word ------------------------------------------------------------
# azure_ai/ joins "/chat/completions" onto api_base merging a repeated segment, so with the
# deployments docs' example name, api_base .../deployments/chat, it posts the chat body to
# .../deployments/chat/completions. Embeddings go through the openai SDK and are not merged.


@pytest.fixture(scope="module")
def named_chat(
    tmp_path_factory: pytest.TempPathFactory, default_model_path: Path, embeddings_model_path: Path
) -> Iterator[LiveServer]:
    """``aimi serve --config`` with the docs' deployments file: "chat" and "minilm"."""
    home = tmp_path_factory.mktemp("aimi-named-chat")
    config = home / "aimi.toml"
    config.write_text(
        '[[deployments]]\nname = "chat"\nmodel = "smollm2-135m-instruct"\ncontext_size = 2048\n\n'
        '[[deployments]]\nname = "minilm"\nmodel = "all-minilm-l6-v2"\n'
    )
    with aimi_process(home, ["--config", str(config)], env={"HF_HUB_OFFLINE": "1"}) as server:
        yield server


@pytest.mark.parametrize("prefix", ["/deployments", "/openai/deployments"])
def test_azure_ai_with_a_deployment_named_chat(named_chat: LiveServer, prefix: str) -> None:
    call = {
        "model": "azure_ai/chat",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 16,
        "temperature": 0,
        "api_key": named_chat.key,
        "api_base": f"{named_chat.url}{prefix}/chat",
        "num_retries": 0,
    }
    whole = litellm.completion(**call)
    content = whole.choices[0].message.content
    assert isinstance(content, str) and content
    assert whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(litellm.completion(**call, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
    result = litellm.embedding(
        model="azure_ai/minilm",
        input=["hello world"],
        api_key=named_chat.key,
        api_base=f"{named_chat.url}{prefix}/minilm",
        num_retries=0,
    )
    assert [len(item["embedding"]) for item in result.data] == [EMBEDDINGS_DIMS]
