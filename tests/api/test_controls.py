"""Generation controls on the fake engine: n, best_of, logprobs, logit_bias, the vLLM-style extras,
safe_prompt and response_format, as the engine receives them and as the client gets them back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from aimi.deployments.profile import ModelProfile
from aimi.engines.api import ChatTurn, GenerationRequest, JsonObject, JsonSchema
from aimi.engines.fake import DEFAULT_TEXT, tokenize
from aimi.pipeline.controls import read_controls
from aimi.protocol.errors import ApiError
from tests.api.helpers import CHAT, COMPLETION, assert_error, sse_payloads
from tests.conftest import FAKE_MODEL, InProcessServer, in_process

TOKENS = tokenize(DEFAULT_TEXT)
PROMPT_TOKENS = 4  # "hi": one word plus the fake engine's 3 per turn
PASS = {"extra-parameters": "pass-through"}
SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
    "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity."
)
NOT_ALLOWED = (
    "Extra parameters {names} are not allowed when extra-parameters is not set or set to be "
    "'error'. Set extra-parameters to 'pass-through' to pass to the model."
)


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    with in_process() as running:
        yield running


@pytest.fixture(scope="module")
def structured() -> Iterator[InProcessServer]:
    with in_process({"engine_options": {"structured_output": True}}) as running:
        yield running


@pytest.fixture
def http(server: InProcessServer) -> Iterator[httpx.Client]:
    with server.client() as authed:
        yield authed


def post(
    server: InProcessServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[GenerationRequest]]:
    """The response and the engine requests it caused."""
    before = len(server.engine.requests)
    with server.client() as http:
        response = http.post(path, json=body, headers=headers or {})
    return response, server.engine.requests[before:]


def stream(
    server: InProcessServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], list[GenerationRequest]]:
    before = len(server.engine.requests)
    with server.client() as http, http.stream("POST", path, json={**body, "stream": True}, headers=headers or {}) as r:
        raw = b"".join(r.iter_raw())
        assert r.status_code == 200, raw
    return sse_payloads(raw), server.engine.requests[before:]


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def assert_unsupported(response: httpx.Response, problems: list[tuple[str, Any, str]]) -> None:
    """One 422 naming each (field, input, why), in order."""
    message = "; ".join(why for _, _, why in problems)
    body = assert_error(response, 422, "parameter_not_supported", param=problems[0][0], message=message)
    assert body["detail"] == [
        {"loc": ["body", key], "input": value, "msg": why, "type": "parameter_not_supported"}
        for key, value, why in problems
    ]
    assert body["status"] == 422 and body["code"] == "parameter_not_supported"


def per_index(payloads: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The streamed choices, grouped by index in the order they came."""
    choices: dict[int, list[dict[str, Any]]] = {}
    for payload in payloads:
        assert len(payload["choices"]) <= 1, payload
        for choice in payload["choices"]:
            choices.setdefault(choice["index"], []).append(choice)
    return choices


def check_choice_stream(choices: list[dict[str, Any]], text: str) -> None:
    """One role delta first, the content, exactly one finish_reason and it comes last."""
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}, choices[0]
    assert choices[0]["finish_reason"] is None
    assert all("role" not in c["delta"] for c in choices[1:]), choices
    assert "".join(c["delta"].get("content") or "" for c in choices) == text
    assert [c["finish_reason"] for c in choices if c["finish_reason"] is not None] == ["stop"]
    assert choices[-1]["finish_reason"] == "stop"


# n -------------------------------------------------------------------------------------------


def test_n_fans_out_into_choices_with_their_own_requests_and_seeds(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "n": 3, "seed": 42})
    body = ok(response)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for choice in body["choices"]:
        assert choice["message"] == {"role": "assistant", "content": DEFAULT_TEXT, "tool_calls": None}
        assert choice["finish_reason"] == "stop"
        assert choice["logprobs"] is None
    assert len(requests) == 3
    assert len({r.request_id for r in requests}) == 3
    assert sorted(r.seed for r in requests if r.seed is not None) == [42, 43, 44]
    assert all(r.logprobs is None for r in requests)
    assert body["usage"] == usage(PROMPT_TOKENS, 3 * len(TOKENS))


def test_n_without_a_seed_leaves_every_choice_unseeded(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "n": 2})
    assert len(ok(response)["choices"]) == 2
    assert [r.seed for r in requests] == [None, None]
    assert len({r.request_id for r in requests}) == 2


def test_n_on_text_completions_fans_out_too(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/completions", {**COMPLETION, "n": 2, "seed": 7})
    body = ok(response)
    assert [(c["index"], c["text"]) for c in body["choices"]] == [(0, DEFAULT_TEXT), (1, DEFAULT_TEXT)]
    assert len(requests) == 2
    assert sorted(r.seed for r in requests if r.seed is not None) == [7, 8]
    assert body["usage"] == usage(1, 2 * len(TOKENS))


def test_n_on_the_azure_route_is_an_extra_parameter(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "n": 2}, PASS)
    assert [c["index"] for c in ok(response)["choices"]] == [0, 1]
    assert len(requests) == 2
    response, requests = post(server, "/chat/completions", {**CHAT, "n": 2})
    body = assert_error(response, 400, "extra_parameters_not_allowed", param="n")
    assert body["detail"] == NOT_ALLOWED.format(names=["n"])
    assert requests == []


def test_n_zero_is_400(server: InProcessServer) -> None:
    assert_error(post(server, "/v1/chat/completions", {**CHAT, "n": 0})[0], 400, "invalid_request", param="n")
    response, requests = post(server, "/chat/completions", {**CHAT, "n": 0}, PASS)
    assert_error(response, 400, "invalid_request", param="n")
    assert requests == []


def test_n_streamed_on_v1_gives_each_index_its_own_whole_stream_and_summed_usage(server: InProcessServer) -> None:
    body = {**CHAT, "n": 2, "stream_options": {"include_usage": True}}
    payloads, requests = stream(server, "/v1/chat/completions", body)
    assert len(requests) == 2
    assert len({p["id"] for p in payloads}) == 1
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    *chunks, trailer = payloads
    assert trailer["choices"] == []
    assert trailer["usage"] == usage(PROMPT_TOKENS, 2 * len(TOKENS))
    assert all(len(p["choices"]) == 1 and p["usage"] is None for p in chunks), chunks
    choices = per_index(chunks)
    assert sorted(choices) == [0, 1]
    for index in (0, 1):
        check_choice_stream(choices[index], DEFAULT_TEXT)


def test_n_streamed_on_azure_puts_the_summed_usage_on_the_last_finish_chunk(server: InProcessServer) -> None:
    payloads, requests = stream(server, "/chat/completions", {**CHAT, "n": 2}, PASS)
    assert len(requests) == 2
    assert all(len(p["choices"]) == 1 for p in payloads), payloads
    choices = per_index(payloads)
    assert sorted(choices) == [0, 1]
    for index in (0, 1):
        check_choice_stream(choices[index], DEFAULT_TEXT)
    last = payloads[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["usage"] == usage(PROMPT_TOKENS, 2 * len(TOKENS))
    assert all("usage" not in p for p in payloads[:-1]), payloads


# best_of --------------------------------------------------------------------------------------


def test_best_of_generates_every_candidate_and_answers_one_without_logprobs(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "best_of": 3, "seed": 1})
    body = ok(response)
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"]["content"] == DEFAULT_TEXT
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert len(requests) == 3
    assert [r.logprobs for r in requests] == [0, 0, 0]  # ranking needs the candidates' log-probabilities
    assert sorted(r.seed for r in requests if r.seed is not None) == [1, 2, 3]
    assert body["usage"] == usage(PROMPT_TOKENS, 3 * len(TOKENS))  # every candidate counts


def test_best_of_keeps_the_logprobs_of_the_chosen_choice_when_asked(server: InProcessServer) -> None:
    body = {**CHAT, "best_of": 3, "n": 2, "logprobs": True, "top_logprobs": 1}
    response, requests = post(server, "/v1/chat/completions", body)
    choices = ok(response)["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    assert [r.logprobs for r in requests] == [1, 1, 1]
    for choice in choices:
        entries = choice["logprobs"]["content"]
        assert [e["token"] for e in entries] == TOKENS
        assert all(len(e["top_logprobs"]) == 1 for e in entries)


def test_best_of_on_the_azure_route_and_on_text_completions(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "best_of": 2}, PASS)
    assert len(ok(response)["choices"]) == 1
    assert [r.logprobs for r in requests] == [0, 0]
    response, requests = post(server, "/v1/completions", {**COMPLETION, "best_of": 2})
    body = ok(response)
    assert [(c["index"], c["text"], c["logprobs"]) for c in body["choices"]] == [(0, DEFAULT_TEXT, None)]
    assert len(requests) == 2


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
def test_best_of_cannot_stream(server: InProcessServer, path: str, body: dict[str, Any]) -> None:
    response, requests = post(server, path, {**body, "best_of": 2, "stream": True})
    assert_error(
        response, 400, "invalid_request", param="best_of", message="`best_of` cannot be used with `stream: true`"
    )
    assert requests == []


def test_best_of_below_n_is_400(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "n": 3, "best_of": 2})
    assert_error(response, 400, "invalid_request", param="best_of", message="`best_of` must be at least `n` (3); got 2")
    assert requests == []


def test_n_and_best_of_over_the_default_limits_are_400(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "n": 9})
    assert_error(response, 400, "invalid_request", param="n", message="`n` must be at most 8; got 9")
    assert requests == []
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "best_of": 9})
    assert_error(response, 400, "invalid_request", param="best_of", message="`best_of` must be at most 8; got 9")
    assert requests == []
    response, requests = post(server, "/v1/completions", {**COMPLETION, "n": 9})
    assert_error(response, 400, "invalid_request", param="n", message="`n` must be at most 8; got 9")
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "n": 8})
    assert len(ok(response)["choices"]) == 8
    assert len(requests) == 8


def test_settings_lower_the_limits_of_n_best_of_and_logit_bias() -> None:
    with in_process({"max_n": 2, "max_best_of": 3, "max_logit_bias": 2}) as limited:
        response, _ = post(limited, "/v1/chat/completions", {**CHAT, "n": 3})
        assert_error(response, 400, "invalid_request", param="n", message="`n` must be at most 2; got 3")
        response, _ = post(limited, "/v1/chat/completions", {**CHAT, "best_of": 4})
        assert_error(response, 400, "invalid_request", param="best_of", message="`best_of` must be at most 3; got 4")
        response, _ = post(limited, "/v1/chat/completions", {**CHAT, "logit_bias": {"1": 1, "2": 2, "3": 3}})
        assert_error(
            response,
            400,
            "invalid_request",
            param="logit_bias",
            message="`logit_bias` may hold at most 2 tokens; got 3",
        )
        response, requests = post(limited, "/v1/chat/completions", {**CHAT, "n": 2, "best_of": 3})
        assert len(ok(response)["choices"]) == 2
        assert len(requests) == 3
        # At the limit, logit_bias gets past the count and meets the engine's lack of it.
        response, _ = post(limited, "/v1/chat/completions", {**CHAT, "logit_bias": {"1": 1, "2": 2}})
        assert_error(response, 422, "parameter_not_supported", param="logit_bias")


# logprobs -------------------------------------------------------------------------------------


def expected_entry(token: str, position: int, alternatives: int) -> dict[str, Any]:
    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    tops = [entry(token, -0.1 * position)] + [entry(f"alt{k}", -0.1 * position - k) for k in range(1, alternatives)]
    return {**entry(token, -0.1 * position), "top_logprobs": tops[:alternatives]}


def test_v1_logprobs_with_top_logprobs_have_openais_chat_shape(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2})
    choice = ok(response)["choices"][0]
    assert [r.logprobs for r in requests] == [2]
    assert set(choice["logprobs"]) == {"content"}
    entries = choice["logprobs"]["content"]
    assert len(entries) == len(TOKENS)
    for entry in entries:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["bytes"] == list(entry["token"].encode("utf-8"))
        assert len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0] == {k: entry[k] for k in ("token", "logprob", "bytes")}
        assert entry["top_logprobs"][1]["logprob"] < entry["logprob"]
    assert "".join(e["token"] for e in entries) == DEFAULT_TEXT
    assert entries == [expected_entry(token, k, 2) for k, token in enumerate(TOKENS, start=1)]
    assert entries[0] == {
        "token": "Hello ",
        "logprob": -0.1,
        "bytes": [72, 101, 108, 108, 111, 32],
        "top_logprobs": [
            {"token": "Hello ", "logprob": -0.1, "bytes": [72, 101, 108, 108, 111, 32]},
            {"token": "alt1", "logprob": pytest.approx(-1.1), "bytes": [97, 108, 116, 49]},
        ],
    }


def test_v1_logprobs_without_top_logprobs_have_empty_alternatives(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logprobs": True})
    entries = ok(response)["choices"][0]["logprobs"]["content"]
    assert [r.logprobs for r in requests] == [0]
    assert [e["top_logprobs"] for e in entries] == [[]] * len(TOKENS)


def test_v1_logprobs_false_is_no_logprobs(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logprobs": False})
    assert ok(response)["choices"][0]["logprobs"] is None
    assert [r.logprobs for r in requests] == [None]


def test_streamed_chunks_carry_their_own_tokens_logprobs(server: InProcessServer) -> None:
    payloads, requests = stream(server, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 1})
    assert [r.logprobs for r in requests] == [1]
    first, *middle, last = payloads
    assert first["choices"][0]["logprobs"] is None
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["choices"][0]["logprobs"] is None
    assert len(middle) == len(TOKENS)
    for k, payload in enumerate(middle, start=1):
        choice = payload["choices"][0]
        token = choice["delta"]["content"]
        assert choice["logprobs"] == {"content": [expected_entry(token, k, 1)]}
    assert "".join(p["choices"][0]["delta"]["content"] for p in middle) == DEFAULT_TEXT


@pytest.mark.parametrize("logprobs", [None, False])
def test_top_logprobs_without_logprobs_is_400(server: InProcessServer, logprobs: bool | None) -> None:
    body: dict[str, Any] = {**CHAT, "top_logprobs": 2}
    if logprobs is not None:
        body["logprobs"] = logprobs
    response, requests = post(server, "/v1/chat/completions", body)
    assert_error(
        response, 400, "invalid_request", param="top_logprobs", message="`top_logprobs` needs `logprobs: true`"
    )
    assert requests == []


def test_top_logprobs_over_20_is_400(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 21})
    assert_error(
        response,
        400,
        "invalid_request",
        param="top_logprobs",
        message="`top_logprobs`: Input should be less than or equal to 20; got 21",
    )
    assert requests == []


def test_azure_integer_logprobs_means_that_many_alternatives(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "logprobs": 2}, PASS)
    entries = ok(response)["choices"][0]["logprobs"]["content"]
    assert [r.logprobs for r in requests] == [2]
    assert entries == [expected_entry(token, k, 2) for k, token in enumerate(TOKENS, start=1)]


def test_azure_logprobs_true_with_top_logprobs(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 3}, PASS)
    assert ok(response)["choices"][0]["logprobs"]["content"][0] == expected_entry(TOKENS[0], 1, 3)
    assert [r.logprobs for r in requests] == [3]


def test_azure_logprobs_over_20_is_400(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "logprobs": 21}, PASS)
    assert_error(response, 400, "invalid_request", param="logprobs")
    assert requests == []


def test_azure_logprobs_without_the_header_is_not_allowed(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "logprobs": 2})
    body = assert_error(response, 400, "extra_parameters_not_allowed", param="logprobs")
    assert body["detail"] == NOT_ALLOWED.format(names=["logprobs"])
    assert requests == []


def test_logprobs_on_azure_text_completions_is_422(server: InProcessServer) -> None:
    response, requests = post(server, "/completions", {**COMPLETION, "logprobs": 2}, PASS)
    body = assert_error(response, 422, "parameter_not_supported", param="logprobs")
    assert [(d["loc"], d["input"]) for d in body["detail"]] == [(["body", "logprobs"], 2)]
    assert requests == []


def test_logprobs_on_v1_text_completions_is_422(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/completions", {**COMPLETION, "logprobs": 2})
    assert_unsupported(
        response, [("logprobs", 2, "logprobs on text completions are not supported; chat completions have them")]
    )
    assert requests == []


# logit_bias -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
def test_logit_bias_on_the_fake_engine_is_422(server: InProcessServer, path: str, body: dict[str, Any]) -> None:
    response, requests = post(server, path, {**body, "logit_bias": {"50256": -100}})
    assert_unsupported(
        response, [("logit_bias", {"50256": -100.0}, "logit_bias is not supported by this deployment's engine")]
    )
    assert requests == []


@pytest.mark.parametrize("key", ["abc", "-1", "1.5", ""])
def test_logit_bias_keys_that_are_not_token_ids_are_400(server: InProcessServer, key: str) -> None:
    # A malformed request is a 400 whatever the engine: the bias count and values are checked first too.
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logit_bias": {key: 1}})
    assert_error(
        response,
        400,
        "invalid_request",
        param="logit_bias",
        message=f"`logit_bias` keys must be token ids; got {key!r}",
    )
    assert requests == []


@pytest.mark.parametrize("key", ["abc", "²", "³⁴"])
def test_logit_bias_key_check_refuses_what_int_cannot_read(key: str) -> None:
    # str.isdigit() is true for superscript digits, which int() cannot read: still a 400, never a 500
    # (reachable on engines that support logit_bias, where this check is the only one).
    controls = read_controls({"logit_bias": {key: 1.0}})
    with pytest.raises(ApiError) as raised:
        controls.token_bias()
    assert raised.value.status == 400
    assert raised.value.param == "logit_bias"
    assert raised.value.message == f"`logit_bias` keys must be token ids; got {key!r}"


@pytest.mark.parametrize("value", [101, -101])
def test_logit_bias_values_outside_100_are_400(server: InProcessServer, value: int) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logit_bias": {"50256": value}})
    body = assert_error(response, 400, "invalid_request", param="logit_bias.50256")
    bound = "less than or equal to 100" if value > 0 else "greater than or equal to -100"
    # The value may be echoed as the client wrote it or as a float (101.0).
    assert body["error"]["message"].startswith(f"`logit_bias.50256`: Input should be {bound}; got {value}")
    assert requests == []


def test_logit_bias_over_the_default_limit_is_400(server: InProcessServer) -> None:
    bias = {str(i): 1 for i in range(301)}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "logit_bias": bias})
    assert_error(
        response,
        400,
        "invalid_request",
        param="logit_bias",
        message="`logit_bias` may hold at most 300 tokens; got 301",
    )
    assert requests == []


# use_beam_search, skip_special_tokens, stop_token_ids ------------------------------------------

BEAM = "beam search is not supported by this deployment's engine"
SPECIAL = "this deployment's engine always leaves special tokens out of the text"
STOP_IDS = "stop_token_ids is not supported by this deployment's engine"


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
def test_use_beam_search_is_422(server: InProcessServer, path: str, body: dict[str, Any]) -> None:
    response, requests = post(server, path, {**body, "use_beam_search": True})
    assert_unsupported(response, [("use_beam_search", True, BEAM)])
    assert requests == []


def test_use_beam_search_false_is_fine(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "use_beam_search": False})
    assert ok(response)["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert len(requests) == 1
    assert requests[0].extra == {}  # handled by the gateway, never handed to the engine


def test_skip_special_tokens_false_is_422_and_true_is_200(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "skip_special_tokens": False})
    assert_unsupported(response, [("skip_special_tokens", False, SPECIAL)])
    assert requests == []
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "skip_special_tokens": True})
    assert ok(response)["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert len(requests) == 1 and requests[0].extra == {}


@pytest.mark.parametrize("path, body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
def test_stop_token_ids_on_the_fake_engine_is_422(server: InProcessServer, path: str, body: dict[str, Any]) -> None:
    response, requests = post(server, path, {**body, "stop_token_ids": [2, 32000]})
    assert_unsupported(response, [("stop_token_ids", [2, 32000], STOP_IDS)])
    assert requests == []


def test_too_many_or_negative_stop_token_ids_are_400(server: InProcessServer) -> None:
    response, _ = post(server, "/v1/chat/completions", {**CHAT, "stop_token_ids": list(range(65))})
    assert_error(response, 400, "invalid_request", param="stop_token_ids")
    response, _ = post(server, "/v1/chat/completions", {**CHAT, "stop_token_ids": [-1]})
    assert_error(response, 400, "invalid_request", param="stop_token_ids.0")


def test_every_unsupported_control_is_named_in_one_422(server: InProcessServer) -> None:
    body = {
        **CHAT,
        "use_beam_search": True,
        "skip_special_tokens": False,
        "stop_token_ids": [2],
        "logit_bias": {"7": 5},
    }
    response, requests = post(server, "/v1/chat/completions", body)
    assert_unsupported(
        response,
        [
            ("use_beam_search", True, BEAM),
            ("skip_special_tokens", False, SPECIAL),
            ("stop_token_ids", [2], STOP_IDS),
            ("logit_bias", {"7": 5.0}, "logit_bias is not supported by this deployment's engine"),
        ],
    )
    assert requests == []


def test_controls_on_the_azure_route_need_pass_through(server: InProcessServer) -> None:
    response, _ = post(server, "/chat/completions", {**CHAT, "use_beam_search": True})
    assert_error(response, 400, "extra_parameters_not_allowed", param="use_beam_search")
    response, _ = post(server, "/chat/completions", {**CHAT, "use_beam_search": True}, PASS)
    assert_unsupported(response, [("use_beam_search", True, BEAM)])
    response, requests = post(
        server, "/chat/completions", {**CHAT, "use_beam_search": True}, {"extra-parameters": "drop"}
    )
    assert ok(response)["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert len(requests) == 1


# safe_prompt ----------------------------------------------------------------------------------


def test_safe_prompt_puts_mistrals_system_prompt_first(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "safe_prompt": True})
    ok(response)
    assert requests[0].messages == [ChatTurn("system", SAFE_PROMPT), ChatTurn("user", "hi")]
    assert requests[0].extra == {}


def test_safe_prompt_merges_into_an_existing_system_message(server: InProcessServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    response, requests = post(server, "/v1/chat/completions", {"messages": messages, "safe_prompt": True})
    ok(response)
    assert requests[0].messages == [ChatTurn("system", f"{SAFE_PROMPT}\n\nBe brief."), ChatTurn("user", "hi")]
    assert [t.role for t in requests[0].messages or ()].count("system") == 1


def test_safe_prompt_false_adds_nothing(server: InProcessServer) -> None:
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "safe_prompt": False})
    ok(response)
    assert requests[0].messages == [ChatTurn("user", "hi")]


def test_safe_prompt_on_the_azure_route_needs_pass_through(server: InProcessServer) -> None:
    response, requests = post(server, "/chat/completions", {**CHAT, "safe_prompt": True})
    body = assert_error(response, 400, "extra_parameters_not_allowed", param="safe_prompt")
    assert body["detail"] == NOT_ALLOWED.format(names=["safe_prompt"])
    assert requests == []
    response, requests = post(server, "/chat/completions", {**CHAT, "safe_prompt": True}, PASS)
    ok(response)
    assert requests[0].messages == [ChatTurn("system", SAFE_PROMPT), ChatTurn("user", "hi")]


def test_safe_prompt_on_a_model_without_a_system_role_is_folded_into_the_first_user_turn() -> None:
    # Such a template refuses system turns: the safety prompt must reach it folded like any system message.
    model = replace(FAKE_MODEL, profile=ModelProfile(system_role=False))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    with in_process(model=model) as running:
        response, requests = post(running, "/v1/chat/completions", {"messages": messages, "safe_prompt": True})
        ok(response)
        assert requests[0].messages == [ChatTurn("user", f"{SAFE_PROMPT}\n\nBe brief.\n\nhi")]


def test_safe_prompt_on_text_completions_is_not_silently_ignored(server: InProcessServer) -> None:
    # A raw prompt has no system turn to carry the safety prompt: it must be applied or refused (422).
    response, requests = post(server, "/v1/completions", {**COMPLETION, "safe_prompt": True})
    if response.status_code == 422:
        body = assert_error(response, 422, "parameter_not_supported", param="safe_prompt")
        assert [d["loc"] for d in body["detail"]] == [["body", "safe_prompt"]]
        assert requests == []
    else:
        ok(response)
        assert (requests[0].prompt or "").startswith(SAFE_PROMPT), requests[0].prompt


# response_format ------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_json_object_reaches_the_engine_as_is(structured: InProcessServer, path: str) -> None:
    response, requests = post(structured, path, {**CHAT, "response_format": {"type": "json_object"}})
    ok(response)
    assert requests[0].response_format == JsonObject()


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_json_schema_reaches_the_engine_with_its_name_and_schema_only(structured: InProcessServer, path: str) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True, "description": "A person"},
    }
    response, requests = post(structured, path, {**CHAT, "response_format": fmt})
    ok(response)
    assert requests[0].response_format == JsonSchema("person", PERSON)


def test_response_format_text_is_no_constraint(structured: InProcessServer) -> None:
    response, requests = post(structured, "/v1/chat/completions", {**CHAT, "response_format": {"type": "text"}})
    ok(response)
    assert requests[0].response_format is None


def test_json_schema_without_its_object_is_400(structured: InProcessServer) -> None:
    response, requests = post(structured, "/v1/chat/completions", {**CHAT, "response_format": {"type": "json_schema"}})
    assert_error(
        response,
        400,
        "invalid_request",
        param="response_format.json_schema",
        message="`response_format.json_schema` is required when `response_format.type` is 'json_schema'",
    )
    assert requests == []


@pytest.mark.parametrize(
    "schema, message",
    [
        (
            {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
            "the JSON Schema keyword 'patternProperties' is not supported by constrained decoding "
            "(at #/patternProperties)",
        ),
        (
            {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
            "the format 'email' is not supported (supported: date, date-time, time, uuid) "
            "(at #/properties/email/format)",
        ),
        (
            {"$ref": "#/$defs/missing"},
            "the reference '#/$defs/missing' points to nothing in the schema (at #/$ref)",
        ),
    ],
)
def test_a_schema_constrained_decoding_cannot_enforce_is_400(
    structured: InProcessServer, schema: dict[str, Any], message: str
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    response, requests = post(structured, "/v1/chat/completions", {**CHAT, "response_format": fmt})
    assert_error(response, 400, "invalid_request", param="response_format.json_schema.schema", message=message)
    assert requests == []


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_response_format_on_an_engine_without_constrained_decoding_is_422(server: InProcessServer, kind: str) -> None:
    fmt: dict[str, Any] = {"type": kind}
    if kind == "json_schema":
        fmt["json_schema"] = {"name": "person", "schema": PERSON}
    response, requests = post(server, "/v1/chat/completions", {**CHAT, "response_format": fmt})
    assert_unsupported(
        response,
        [
            (
                "response_format",
                kind,
                f"response_format '{kind}' needs constrained decoding, which this deployment's engine lacks",
            )
        ],
    )
    assert requests == []
