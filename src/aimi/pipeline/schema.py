"""JSON Schemas checked against what grammar-constrained decoding can guarantee.

llama.cpp turns a schema into a grammar, and silently drops what it cannot express (a
``format`` it does not know, ``patternProperties``, ``not``, a ``$ref`` that points nowhere),
which would make a "guaranteed" answer unconstrained. So every schema is walked first: a
keyword outside the supported set, a bad ``$ref``, an unanchored or oversized ``pattern``, or a
schema too deep or too large is a 400 naming it. Results are cached by the schema's text.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from aimi.protocol.errors import ApiError

MAX_DEPTH = 32
MAX_SCHEMA_BYTES = 64 * 1024
MAX_REPEAT = 100

_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated"}
_STRUCTURE = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "pattern", "format",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip
_FORMATS = {"date", "time", "date-time", "uuid"}
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


class SchemaError(ApiError):
    """A schema aimi cannot enforce; names the keyword and where it is."""

    def __init__(self, where: str, message: str, param: str) -> None:
        super().__init__("invalid_request", f"{message} (at {where})", param=param)


def _check(node: Any, where: str, depth: int, root: dict[str, Any], param: str) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(where, f"the schema is nested deeper than {MAX_DEPTH} levels", param)
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise SchemaError(where, f"a schema must be an object or a boolean; got {type(node).__name__}", param)
    for key, value in node.items():
        here = f"{where}/{key}"
        if key in _ANNOTATIONS:
            continue
        if key not in _STRUCTURE:
            raise SchemaError(here, f"the JSON Schema keyword '{key}' is not supported by constrained decoding", param)
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            unknown = [k for k in kinds if k not in _TYPES]
            if unknown or not kinds:
                raise SchemaError(here, f"'type' must name JSON types; got {value!r}", param)
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise SchemaError(here, f"'{key}' must be an object", param)
            for name, sub in value.items():
                _check(sub, f"{here}/{name}", depth + 1, root, param)
        elif key in ("items", "additionalProperties"):
            _check(value, here, depth + 1, root, param)
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if not isinstance(value, list) or not value:
                raise SchemaError(here, f"'{key}' must be a non-empty array of schemas", param)
            for i, sub in enumerate(value):
                _check(sub, f"{here}/{i}", depth + 1, root, param)
        elif key == "$ref":
            _resolve(value, root, here, param)
        elif key == "format" and value not in _FORMATS:
            known = ", ".join(sorted(_FORMATS))
            raise SchemaError(here, f"the format {value!r} is not supported (supported: {known})", param)
        elif key == "pattern":
            _check_pattern(value, here, param)
        elif key in ("minItems", "maxItems", "minLength", "maxLength") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise SchemaError(here, f"'{key}' must be a non-negative integer; got {value!r}", param)
        elif key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SchemaError(here, "'required' must be an array of property names", param)
        elif key == "enum" and not (isinstance(value, list) and value):
            raise SchemaError(here, "'enum' must be a non-empty array", param)


def _resolve(ref: Any, root: dict[str, Any], where: str, param: str) -> None:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise SchemaError(where, f"only local references ('#/...') are supported; got {ref!r}", param)
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(where, f"the reference {ref!r} points to nothing in the schema", param)
        node = node[part]


def _check_pattern(pattern: Any, where: str, param: str) -> None:
    if not isinstance(pattern, str):
        raise SchemaError(where, "'pattern' must be a string", param)
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise SchemaError(where, f"'pattern' must be anchored with ^ and $; got {pattern!r}", param)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SchemaError(where, f"'pattern' is not a valid regular expression: {exc}", param) from None
    for low, high in _REPEAT.findall(pattern):
        if (low and int(low) > MAX_REPEAT) or (high and int(high) > MAX_REPEAT):
            raise SchemaError(where, f"'pattern' repeats more than {MAX_REPEAT} times: {pattern!r}", param)
    if _nests_repetition(pattern):
        raise SchemaError(where, f"'pattern' nests repetitions, which cannot be compiled safely: {pattern!r}", param)


def _nests_repetition(pattern: str) -> bool:
    """True when a group that repeats something is itself repeated: ``(a+)+``, ``((a{2}))*``."""
    repeats = [False]  # per open group: does it hold a repetition?
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":  # a character class holds no groups or quantifiers
            end = pattern.find("]", i + 2)
            i = len(pattern) if end < 0 else end + 1
            continue
        quantified = pattern[i + 1 : i + 2] in ("*", "+", "{")
        if char == "(":
            repeats.append(False)
        elif char == ")" and len(repeats) > 1:
            inner = repeats.pop()
            if inner and quantified:
                return True
            repeats[-1] |= inner or quantified
        elif char in "*+{" and i > 0:
            repeats[-1] = True
        i += 1
    return False


@lru_cache(maxsize=256)
def _checked(text: str, param: str) -> None:
    schema = json.loads(text)
    if not isinstance(schema, dict):
        raise SchemaError("#", "the schema must be a JSON object", param)
    _check(schema, "#", 0, schema, param)


def check_schema(schema: dict[str, Any], param: str) -> None:
    """Raise a 400 naming the first thing in ``schema`` constrained decoding cannot enforce."""
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_SCHEMA_BYTES:
        raise SchemaError("#", f"the schema is {len(text)} bytes long; the limit is {MAX_SCHEMA_BYTES}", param)
    _checked(text, param)
