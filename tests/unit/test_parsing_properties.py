"""Body parsing never fails but with a 400 ApiError, whatever the bytes or JSON values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aimi.pipeline.validation import parse, parse_json_object
from aimi.protocol.chat import AzureChatRequest, OpenAIChatRequest
from aimi.protocol.errors import ApiError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_are_an_object_or_a_400(raw: bytes) -> None:
    try:
        assert isinstance(parse_json_object(raw), dict)
    except ApiError as error:
        assert error.status == 400


@settings(derandomize=True, max_examples=300)
@given(st.dictionaries(st.text(max_size=12), JSON, max_size=6))
def test_arbitrary_json_objects_parse_or_are_a_400(body: dict[str, Any]) -> None:
    for model in (AzureChatRequest, OpenAIChatRequest):
        try:
            parse(model, parse_json_object(json.dumps(body).encode()))
        except ApiError as error:
            assert error.status == 400


@settings(derandomize=True, max_examples=100)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_a_valid_chat_body_round_trips(texts: list[str]) -> None:
    body = {"messages": [{"role": "user", "content": text} for text in texts]}
    for model in (AzureChatRequest, OpenAIChatRequest):
        parsed = parse(model, parse_json_object(json.dumps(body).encode()))
        again = parse(model, parse_json_object(parsed.model_dump_json(exclude_unset=True).encode()))
        assert again == parsed
