"""ToolPlan: the schema the answer is constrained to, the prompt, and reading answers back as tool calls."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type hints (types-jsonschema is not installed)
import pytest

from aimi.engines.api import ChatTurn, Event, Finish, TextDelta, ToolCall, ToolCallDelta, Usage
from aimi.pipeline.tools import ToolPlan

WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "Wetter in einer Stadt, z. B. München",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PING: dict[str, Any] = {"name": "ping"}  # no parameters: any object
TOOLS: list[dict[str, Any]] = [WEATHER, PING]
LISTING = json.dumps(TOOLS, ensure_ascii=False)
HEADER = "You can call these functions, described in JSON:\n"
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")

WEATHER_CALL = {
    "type": "object",
    "properties": {"name": {"const": "get_weather"}, "arguments": WEATHER["parameters"]},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
PING_CALL = {
    "type": "object",
    "properties": {"name": {"const": "ping"}, "arguments": {"type": "object"}},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}


def plan(choice: str) -> ToolPlan:
    return ToolPlan(TOOLS, choice)


# schema() ---------------------------------------------------------------------------------------


def test_required_schema_is_any_of_the_calls() -> None:
    assert plan("required").schema() == {"anyOf": [WEATHER_CALL, PING_CALL]}


def test_named_schema_is_that_tools_call() -> None:
    assert plan("get_weather").schema() == WEATHER_CALL
    assert plan("ping").schema() == PING_CALL


def test_auto_schema_is_a_call_or_content() -> None:
    assert plan("auto").schema() == {
        "anyOf": [
            {
                "type": "object",
                "properties": {"tool_call": {"anyOf": [WEATHER_CALL, PING_CALL]}},
                "required": ["tool_call"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"content": {"type": "string"}},
                "required": ["content"],
                "additionalProperties": False,
            },
        ]
    }


@pytest.mark.parametrize(
    "choice, good, bad",
    [
        (
            "required",
            [{"name": "get_weather", "arguments": {"city": "Rome"}}, {"name": "ping", "arguments": {"x": 1}}],
            [{"name": "get_weather", "arguments": {}}, {"name": "other", "arguments": {}}, {"content": "hi"},
             {"name": "ping"}, {"name": "ping", "arguments": []}],
        ),
        (
            "ping",
            [{"name": "ping", "arguments": {}}],
            [{"name": "get_weather", "arguments": {"city": "Rome"}}],
        ),
        (
            "auto",
            [{"content": "hi"}, {"tool_call": {"name": "ping", "arguments": {}}}],
            [{"content": 1}, {"name": "ping", "arguments": {}}, {"tool_call": {"name": "x", "arguments": {}}},
             {"content": "hi", "tool_call": {"name": "ping", "arguments": {}}}],
        ),
    ],
)  # fmt: skip
def test_the_schemas_admit_exactly_the_answer_format(choice: str, good: list[Any], bad: list[Any]) -> None:
    schema = plan(choice).schema()
    for answer in good:
        jsonschema.validate(answer, schema)
    for answer in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(answer, schema)


def test_the_plans_schemas_are_checked_schemas() -> None:
    from aimi.pipeline.schema import check_schema

    for choice in ("auto", "required", "get_weather"):
        check_schema(plan(choice).schema(), param="tools")


# instructions() ---------------------------------------------------------------------------------


def test_instructions_per_mode() -> None:
    assert plan("auto").instructions() == (
        f"{HEADER}{LISTING}\n"
        'To call a function, answer with {"tool_call": {"name": <function name>, "arguments": '
        '<arguments object>}}. To answer directly, answer with {"content": <your answer>}.'
    )
    assert plan("required").instructions() == (
        f"{HEADER}{LISTING}\n"
        'Call one of them: answer with {"name": <function name>, "arguments": <arguments object>}.'
    )
    assert plan("ping").instructions() == (
        f'{HEADER}{LISTING}\nCall ping: answer with {{"name": "ping", "arguments": <arguments object>}}.'
    )


def test_instructions_keep_non_ascii_as_is() -> None:
    assert "München" in plan("auto").instructions()
    assert "\\u00fc" not in plan("auto").instructions()


# prompt() ---------------------------------------------------------------------------------------


def test_prompt_puts_the_instructions_in_a_new_system_turn_first() -> None:
    p = plan("required")
    turns = [ChatTurn("user", "hi")]
    assert p.prompt(turns) == [ChatTurn("system", p.instructions()), ChatTurn("user", "hi")]
    assert turns == [ChatTurn("user", "hi")]  # the input is not modified


def test_prompt_merges_the_instructions_after_an_existing_system_turn() -> None:
    p = plan("auto")
    turns = [ChatTurn("system", "Be brief."), ChatTurn("user", "hi")]
    assert p.prompt(turns) == [ChatTurn("system", f"Be brief.\n\n{p.instructions()}"), ChatTurn("user", "hi")]


def call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(call_id, name, arguments)


HISTORY = [
    ChatTurn("user", "Weather in Rome?"),
    ChatTurn("assistant", None, (call("call_1", "get_weather", '{"city": "Rome"}'),)),
    ChatTurn("tool", "21C", tool_call_id="call_1"),
    ChatTurn("assistant", "It is 21C."),
    ChatTurn("user", "Thanks"),
]


@pytest.mark.parametrize(
    "choice, rendered",
    [
        ("auto", '{"tool_call": {"name": "get_weather", "arguments": {"city": "Rome"}}}'),
        ("required", '{"name": "get_weather", "arguments": {"city": "Rome"}}'),
        ("get_weather", '{"name": "get_weather", "arguments": {"city": "Rome"}}'),
    ],
)
def test_prompt_shows_earlier_calls_in_the_answer_format_and_results_as_user_turns(choice: str, rendered: str) -> None:
    p = plan(choice)
    assert p.prompt(HISTORY) == [
        ChatTurn("system", p.instructions()),
        ChatTurn("user", "Weather in Rome?"),
        ChatTurn("assistant", rendered),
        ChatTurn("user", "Result of call call_1: 21C"),
        ChatTurn("assistant", "It is 21C."),
        ChatTurn("user", "Thanks"),
    ]


def test_prompt_renders_what_the_answer_schema_admits() -> None:
    for choice in ("auto", "required"):
        p = plan(choice)
        assistant = [t for t in p.prompt(HISTORY) if t.role == "assistant"][0]
        jsonschema.validate(json.loads(assistant.content or ""), p.schema())


def test_prompt_keeps_unparseable_arguments_as_a_string_and_empty_results_as_empty() -> None:
    turns = [
        ChatTurn("assistant", None, (call("call_9", "ping", "not json"),)),
        ChatTurn("tool", None, tool_call_id="call_9"),
    ]
    assert plan("required").prompt(turns)[1:] == [
        ChatTurn("assistant", '{"name": "ping", "arguments": "not json"}'),
        ChatTurn("user", "Result of call call_9: "),
    ]


def test_prompt_keeps_non_ascii_arguments_as_is() -> None:
    turns = [ChatTurn("assistant", None, (call("call_2", "get_weather", '{"city": "M\\u00fcnchen"}'),))]
    assert plan("required").prompt(turns)[1] == ChatTurn(
        "assistant", '{"name": "get_weather", "arguments": {"city": "München"}}'
    )


def test_prompt_shows_every_call_of_an_assistant_turn() -> None:
    # A conversation may hold a turn with parallel calls (made by another model); each has a result
    # the model will read, so none of the calls may vanish from the prompt.
    turns = [
        ChatTurn("user", "Weather in Rome and Oslo?"),
        ChatTurn(
            "assistant",
            None,
            (call("call_1", "get_weather", '{"city": "Rome"}'), call("call_2", "get_weather", '{"city": "Oslo"}')),
        ),
        ChatTurn("tool", "21C", tool_call_id="call_1"),
        ChatTurn("tool", "3C", tool_call_id="call_2"),
    ]
    shown = "\n".join(t.content or "" for t in plan("required").prompt(turns) if t.role == "assistant")
    assert '{"name": "get_weather", "arguments": {"city": "Rome"}}' in shown
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in shown


# read() -----------------------------------------------------------------------------------------


def read(p: ToolPlan, events: list[Event]) -> list[Event]:
    async def source() -> AsyncIterator[Event]:
        for event in events:
            yield event

    async def run() -> list[Event]:
        return [event async for event in p.read(source())]

    return asyncio.run(run())


def split_call(out: list[Event], index: int = 0) -> tuple[str, str, str, list[str]]:
    """(id, name, first arguments, argument fragments) of the tool call of ``index``."""
    deltas = [e for e in out if isinstance(e, ToolCallDelta) and e.index == index]
    first, *rest = deltas
    assert first.call_index == 0 and first.id is not None and first.name is not None
    assert all(d.id is None and d.name is None and d.call_index == 0 for d in rest)
    return first.id, first.name, first.arguments, [d.arguments for d in rest]


def test_read_turns_a_required_answer_into_a_tool_call() -> None:
    out = read(
        plan("required"),
        [
            TextDelta('{"name": "get_weather", ', 0),
            TextDelta('"arguments": {"city": "Rome"}}', 0),
            Finish("stop", 0),
            Usage(10, 2),
        ],
    )
    call_id, name, first, fragments = split_call(out)
    assert CALL_ID.match(call_id)
    assert (name, first, fragments) == ("get_weather", "", ['{"city": "Rome"}'])
    assert out[-2:] == [Finish("tool_calls", 0), Usage(10, 2)]
    assert not any(isinstance(e, TextDelta) for e in out)


def test_read_cuts_long_arguments_into_24_character_fragments() -> None:
    arguments = {"city": "Saint-Rémy-de-Provence", "country": "France", "days": 3}
    text = json.dumps({"name": "get_weather", "arguments": arguments})
    out = read(plan("get_weather"), [TextDelta(text, 0), Finish("stop", 0)])
    _, _, _, fragments = split_call(out)
    joined = json.dumps(arguments, ensure_ascii=False)
    assert "".join(fragments) == joined
    assert fragments == [joined[i : i + 24] for i in range(0, len(joined), 24)]
    assert all(len(f) == 24 for f in fragments[:-1]) and 0 < len(fragments[-1]) <= 24
    assert out[-1] == Finish("tool_calls", 0)


def test_read_gives_arguments_an_empty_object_when_the_answer_has_none() -> None:
    out = read(plan("required"), [TextDelta('{"name": "ping"}', 0), Finish("stop", 0)])
    assert split_call(out)[1:] == ("ping", "", ["{}"])


def test_read_turns_an_auto_call_into_a_tool_call() -> None:
    text = '{"tool_call": {"name": "ping", "arguments": {"n": 1}}}'
    out = read(plan("auto"), [TextDelta(text, 0), Finish("stop", 0), Usage(3, 4)])
    assert split_call(out)[1:] == ("ping", "", ['{"n": 1}'])
    assert out[-2:] == [Finish("tool_calls", 0), Usage(3, 4)]


def test_read_turns_an_auto_content_answer_into_content() -> None:
    out = read(
        plan("auto"), [TextDelta('{"content": ', 0), TextDelta('"Hallo, München!"}', 0), Finish("stop", 0), Usage(1, 2)]
    )
    assert out == [TextDelta("Hallo, München!", 0), Finish("stop", 0), Usage(1, 2)]


def test_read_gives_invalid_json_back_as_raw_text_with_its_finish_reason() -> None:
    cut = '{"name": "get_weather", "arguments": {"ci'
    out = read(plan("required"), [TextDelta(cut[:10], 0), TextDelta(cut[10:], 0), Finish("length", 0), Usage(5, 2)])
    assert out == [TextDelta(cut, 0), Finish("length", 0), Usage(5, 2)]


def test_read_gives_a_finish_alone_for_an_empty_answer() -> None:
    assert read(plan("auto"), [Finish("length", 0), Usage(5, 0)]) == [Finish("length", 0), Usage(5, 0)]


@pytest.mark.parametrize("choice", ["auto", "required"])
@pytest.mark.parametrize("text", ["[1, 2]", '"just a string"', "42", "null"])
def test_read_gives_json_that_is_not_an_object_back_as_raw_text(choice: str, text: str) -> None:
    out = read(plan(choice), [TextDelta(text, 0), Finish("stop", 0)])
    assert out == [TextDelta(text, 0), Finish("stop", 0)]


def test_read_keeps_choices_apart_and_gives_each_call_its_own_id() -> None:
    out = read(
        plan("auto"),
        [
            TextDelta('{"tool_call": {"name": "ping", ', 0),
            TextDelta('{"content": "no', 1),
            TextDelta('"arguments": {}}}', 0),
            TextDelta(' call"}', 1),
            Finish("stop", 1),
            Finish("stop", 0),
            TextDelta('{"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}', 2),
            Finish("stop", 2),
            Usage(9, 9),
        ],
    )
    assert [e for e in out if not isinstance(e, ToolCallDelta) and getattr(e, "index", None) == 1] == [
        TextDelta("no call", 1),
        Finish("stop", 1),
    ]
    first = split_call(out, 0)
    third = split_call(out, 2)
    assert first[1:] == ("ping", "", ["{}"])
    assert third[1:] == ("get_weather", "", ['{"city": "Oslo"}'])
    assert first[0] != third[0]
    assert Finish("tool_calls", 0) in out and Finish("tool_calls", 2) in out
    assert out[-1] == Usage(9, 9)
    # Each choice's events come out when that choice finishes, in finishing order.
    finishes = [e.index for e in out if isinstance(e, Finish)]
    assert finishes == [1, 0, 2]
