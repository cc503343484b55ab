from typing import Any

import pytest

from aimi.pipeline.validation import parse, parse_json_object
from aimi.protocol.chat import AzureChatRequest
from aimi.protocol.errors import ApiError


def _error(body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(AzureChatRequest, body)
    return caught.value


def test_unknown_role_names_the_role_field() -> None:
    error = _error({"messages": [{"role": "bot", "content": "x"}]})
    assert error.status == 400
    assert error.param == "messages.0.role"
    assert error.message.startswith("`messages.0.role`: ")
    assert error.message.endswith('got "bot"')


def test_string_number_is_not_an_integer() -> None:
    error = _error({"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"})
    assert error.param == "max_tokens"
    assert "valid integer" in error.message and 'got "10"' in error.message


def test_missing_field_says_it_is_required() -> None:
    assert _error({}).message == "`messages` is required"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the request body is empty; expected a JSON object"),
        (b"[1]", "the request body must be a JSON object; got list"),
        (b'"x"', "the request body must be a JSON object; got str"),
    ],
)
def test_body_must_be_a_json_object(raw: bytes, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_json_object(raw)
    assert (caught.value.code, caught.value.message) == ("invalid_json", message)


def test_malformed_json_says_where() -> None:
    with pytest.raises(ApiError) as caught:
        parse_json_object(b'{"messages": [}')
    assert caught.value.message.startswith("the request body is not valid JSON: Expecting value: line 1 column 15")
