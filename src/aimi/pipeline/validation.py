"""Reading a body into a wire model, with errors that name the field and the rule."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, TypeVar

import msgspec
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from aimi.protocol.errors import ApiError, invalid_request

M = TypeVar("M", bound=BaseModel)
_MAX_REPORTED = 5


def _not_json(literal: str) -> Any:
    # Python reads NaN and Infinity; JSON (RFC 8259) has no such numbers.
    raise json.JSONDecodeError(f"{literal} is not a JSON number", literal, 0)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw.strip():
        raise ApiError("invalid_json", "the request body is empty; expected a JSON object")
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError("invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError("invalid_json", "the request body is nested too deeply") from None
    except ValueError:  # the only other: an integer of more digits than Python converts
        raise ApiError(
            "invalid_json", f"the request body holds an integer of more than {sys.get_int_max_str_digits()} digits"
        ) from None
    if not isinstance(value, dict):
        raise ApiError("invalid_json", f"the request body must be a JSON object; got {type(value).__name__}")
    return value


_BRANCH_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_branch_label(part: str) -> bool:
    # pydantic names union branches "str", "list[str]", "function-after[...]", "constrained-str";
    # field names never hold brackets or hyphens.
    return part in _BRANCH_LABELS or any(c in part for c in "[]()-")


def _path(parts: tuple[int | str, ...], body: Any) -> str:
    """pydantic's error location as the JSON path the client wrote.

    Walks the body alongside the location, dropping what is pydantic's and not the client's:
    union branch labels, and the tags of discriminated unions (``messages.0.user.content``
    becomes ``messages.0.content``).
    """
    kept: list[str] = []
    node = body
    for part in parts:
        if isinstance(part, int):
            kept.append(str(part))
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif isinstance(node, dict) and part in node:
            kept.append(part)
            node = node[part]
        elif isinstance(node, dict) and part in (node.get("role"), node.get("type")):
            continue
        elif not _is_branch_label(part):
            kept.append(part)
            node = None
    return ".".join(kept) or "body"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(exc: ValidationError, body: Any) -> ApiError:
    """A pydantic validation error as a 400 naming each field, the rule and the value.

    Where a union produced several errors for one field, the one from the branch whose type
    matched is kept ("at most 16 items" rather than "not a string" for a long ``stop`` list).
    """
    best: dict[str, tuple[ErrorDetails, Any]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        value = error.get("input")
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the discriminator field itself: `messages.0.role`, not `messages.0`.
            field = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
            loc += (field,)
            value = error.get("ctx", {}).get("tag")
        where = _path(loc, body)
        if where not in best or (best[where][0]["type"].endswith("_type") and not error["type"].endswith("_type")):
            best[where] = (error, value)
    problems: list[str] = []
    for where, (error, value) in best.items():
        if error["type"] == "missing":
            problems.append(f"`{where}` is required")
        else:
            problems.append(f"`{where}`: {error['msg']}; got {_short(value)}")
    shown = problems[:_MAX_REPORTED]
    if len(problems) > _MAX_REPORTED:
        shown.append(f"and {len(problems) - _MAX_REPORTED} more")
    return invalid_request("; ".join(shown), param=next(iter(best), None))


def parse(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model``, strictly typed (no "3" for 3), or a 400 naming what broke."""
    try:
        return model.model_validate(body, strict=True)
    except ValidationError as exc:
        raise describe(exc, body) from None


def _too_many_messages(count: int, most: int) -> None:
    if count > most:
        raise invalid_request(f"`messages` may hold at most {most} messages; got {count}", param="messages")


def _too_many_inputs(count: int, most: int) -> None:
    if count > most:
        raise invalid_request(f"`input` may hold at most {most} items; got {count}", param="input")


def check_counts(body: dict[str, Any], most_messages: int, most_inputs: int) -> None:
    """Counts checked on the decoded JSON before the schema validates each item, so a body of
    100,000 messages is refused for its count at once, not after every message was read."""
    messages = body.get("messages")
    if isinstance(messages, list):
        _too_many_messages(len(messages), most_messages)
    inputs = body.get("input")
    # One token array is a list of integers as long as the input's limit allows, not a count of inputs.
    if isinstance(inputs, list) and inputs and type(inputs[0]) is not int:
        _too_many_inputs(len(inputs), most_inputs)


# Below this size decoding the whole body costs well under a millisecond: no outline first.
OUTLINE_FROM_BYTES = 64 * 1024
_KINDS = {ord("["): "list", ord('"'): "str", ord("t"): "bool", ord("f"): "bool", ord("n"): "NoneType"}


def _at_most(name: str, most: int, forbid_more: bool) -> type[msgspec.Struct]:
    """An array read as the fields of a struct: its first ``most`` items kept unread, without a
    Python object for any other. Past them, a ``forbid_more`` struct stops the decoder at once;
    another skips the rest, keeping one more item to show there were more."""
    fields = [(f"item{i}", msgspec.Raw, None) for i in range(most + (0 if forbid_more else 1))]
    return msgspec.defstruct(name, fields, array_like=True, forbid_unknown_fields=forbid_more)


@functools.lru_cache(maxsize=4)
def _outline(most_messages: int) -> msgspec.json.Decoder[Any]:
    messages = _at_most("Messages", most_messages, forbid_more=True)
    outline = msgspec.defstruct("Outline", [("messages", messages | None, None), ("input", msgspec.Raw, None)])
    return msgspec.json.Decoder(outline)


@functools.lru_cache(maxsize=4)
def _inputs(most_inputs: int) -> msgspec.json.Decoder[Any]:
    # Not stopped past the cap: a token array is as long as the input's own limit allows.
    return msgspec.json.Decoder(_at_most("Inputs", most_inputs, forbid_more=False))


_PAST_THE_MESSAGES = "Expected `array` of at most length"  # only `messages` is read by a bounded struct


def check_prefix(prefix: bytes, most_messages: int) -> None:
    """While a large body still arrives: refuse it if what came so far already holds more
    messages than the cap, so that the rest is never read into the request (the server discards
    it as it arrives). What came may end anywhere; whatever else it shows waits for the whole."""
    try:
        _outline(most_messages).decode(prefix)
    except msgspec.ValidationError as exc:
        if str(exc).startswith(_PAST_THE_MESSAGES):
            raise _past_the_messages(most_messages) from None
    except (msgspec.DecodeError, RecursionError):
        pass


def _past_the_messages(most: int) -> ApiError:
    return invalid_request(f"`messages` may hold at most {most} messages; got more", param="messages")


def check_outline(raw: bytes, most_messages: int, most_inputs: int) -> None:
    """The counts of :func:`check_counts`, read from a large body's outline before it is decoded.

    Decoding 3.5 MB of 100,000 messages into Python objects holds the event loop for 70 ms or more
    (every request on the server waits behind it). msgspec reads the body's outline instead: it
    skips every field but ``messages`` and ``input`` without building them, at about a gigabyte a
    second, and stops at the message past the cap. A refusal here says "more than" the cap:
    counting the items exactly would cost what the refusal saves. A body the outline cannot read
    as JSON is not JSON (or not UTF-8, which RFC 8259 requires between systems): a 400 at once,
    without decoding what came before the fault. What is neither (``messages`` that is no array)
    is left to the schema.
    """
    if len(raw) < OUTLINE_FROM_BYTES:
        return
    stripped = raw.lstrip()
    if not stripped:
        return  # nothing but blanks: parse_json_object says the body is empty
    try:
        outline = _outline(most_messages).decode(raw)
        inputs = _inputs(most_inputs).decode(outline.input) if outline.input is not None else None
    except msgspec.ValidationError as exc:
        if stripped[:1] != b"{":  # a large array, string or number: no object at all
            kind = _KINDS.get(stripped[0], "float" if any(c in stripped[:400] for c in b".eE") else "int")
            raise ApiError("invalid_json", f"the request body must be a JSON object; got {kind}") from None
        if str(exc).startswith(_PAST_THE_MESSAGES):
            raise _past_the_messages(most_messages) from None
        return  # `messages` or `input` of another type: the schema says what is wrong with it
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError("invalid_json", f"the request body is not valid JSON: {exc}") from None
    if inputs is None or getattr(inputs, f"item{most_inputs}") is None:
        return
    if bytes(inputs.item0).strip().strip(b"-0123456789") != b"":  # a token array counts tokens, not inputs
        raise invalid_request(f"`input` may hold at most {most_inputs} items; got more", param="input")
