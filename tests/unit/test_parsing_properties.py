"""Body parsing never fails but with a 400 ApiError, whatever the bytes or JSON values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aimi.pipeline.validation import OUTLINE_FROM_BYTES, check_counts, check_outline, parse, parse_json_object
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


def _outcome(check: Any) -> tuple[int, str, str] | None:
    try:
        check()
    except ApiError as error:
        return error.status, error.code, error.message
    return None


def _padded(raw: bytes) -> bytes:
    """``raw`` with trailing blanks (still the same JSON) up to the size read by outline first."""
    return raw + b" " * max(0, OUTLINE_FROM_BYTES - len(raw))


BODY_ITEMS = st.lists(JSON, max_size=5)
_NOT_JSON = "the request body is not valid JSON: "


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "messages": BODY_ITEMS | JSON,
            "input": BODY_ITEMS | st.lists(st.integers(), max_size=5) | JSON,
            "model": st.text(max_size=8),
        },
    )
)
def test_a_large_bodys_outline_refuses_exactly_what_the_decoded_counts_refuse(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()

    def decoded() -> None:
        check_counts(parse_json_object(raw), 2, 3)

    def outlined() -> None:
        large = _padded(raw)
        check_outline(large, 2, 3)
        check_counts(parse_json_object(large), 2, 3)

    def rule(outcome: tuple[int, str, str] | None) -> tuple[int, str, str] | None:
        # Past a cap the outline says "got more" where the decoded body says how many; what is not
        # JSON (NaN, Infinity) is refused by both, in the outline's words or the decoder's.
        if outcome is None:
            return None
        status, code, message = outcome
        if message.startswith(_NOT_JSON):
            return status, code, _NOT_JSON
        return status, code, message.rsplit("; got ", 1)[0]

    assert rule(_outcome(outlined)) == rule(_outcome(decoded))


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=256) | JSON.map(lambda value: json.dumps(value).encode()))
def test_a_large_bodys_outline_passes_it_on_or_is_a_400(raw: bytes) -> None:
    large = _padded(raw)
    outcome = _outcome(lambda: check_outline(large, 2, 3))
    assert outcome is None or outcome[:2] == (400, "invalid_json") or outcome[:2] == (400, "invalid_request")
    if outcome is not None and outcome[1] == "invalid_json":  # what the outline calls not JSON, json calls so too
        assert _outcome(lambda: parse_json_object(large)) is not None
