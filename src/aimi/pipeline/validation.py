"""Reading a body into a wire model, with errors that name the field and the rule."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from aimi.protocol.errors import ApiError, invalid_request

M = TypeVar("M", bound=BaseModel)
_MAX_REPORTED = 5


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw.strip():
        raise ApiError("invalid_json", "the request body is empty; expected a JSON object")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError("invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_json", f"the request body must be a JSON object; got {type(value).__name__}")
    return value


def _loc(parts: tuple[int | str, ...]) -> str:
    # Drop pydantic's union-branch labels ("str", "list[str]", "function-after[...]") so the
    # location reads like the JSON path the client wrote.
    kept = [
        str(p)
        for p in parts
        if isinstance(p, int)
        or not any(c in p for c in "[]()")
        and p
        not in (
            "str",
            "int",
            "float",
            "bool",
            "list",
            "dict",
            "list[str]",
            "list[int]",
        )
    ]
    return ".".join(kept) or "body"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(exc: ValidationError) -> ApiError:
    """A pydantic validation error as a 400 naming each field, the rule and the value."""
    problems: list[str] = []
    seen: set[str] = set()
    first: str | None = None
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        value = error.get("input")
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the discriminator field itself: `messages.0.role`, not `messages.0`.
            field = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
            loc += (field,)
            value = error.get("ctx", {}).get("tag")
        where = _loc(loc)
        if where in seen:
            continue
        seen.add(where)
        first = first or where
        if error["type"] == "missing":
            problems.append(f"`{where}` is required")
        else:
            problems.append(f"`{where}`: {error['msg']}; got {_short(value)}")
    shown = problems[:_MAX_REPORTED]
    if len(problems) > _MAX_REPORTED:
        shown.append(f"and {len(problems) - _MAX_REPORTED} more")
    return invalid_request("; ".join(shown), param=first)


def parse(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model``, strictly typed (no "3" for 3), or a 400 naming what broke."""
    try:
        return model.model_validate(body, strict=True)
    except ValidationError as exc:
        raise describe(exc) from None
