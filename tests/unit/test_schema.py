"""check_schema: what constrained decoding can guarantee is accepted, the rest refused by name and place."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aimi.pipeline.schema import MAX_DEPTH, MAX_SCHEMA_BYTES, SchemaError, check_schema
from aimi.protocol.errors import ApiError

PARAM = "response_format.json_schema.schema"


def refused(schema: dict[str, Any], param: str = PARAM) -> ApiError:
    with pytest.raises(SchemaError) as raised:
        check_schema(schema, param=param)
    error = raised.value
    assert isinstance(error, ApiError)
    assert error.status == 400
    assert error.code == "invalid_request"
    assert error.param == param
    return error


def nested(levels: int, leaf: dict[str, Any] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = leaf or {"type": "string"}
    for _ in range(levels):
        node = {"type": "array", "items": node}
    return node


# Accepted ---------------------------------------------------------------------------------------

ACCEPTED: dict[str, dict[str, Any]] = {
    "empty": {},
    "nested objects": {
        "type": "object",
        "properties": {
            "person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 40},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name"],
            }
        },
        "required": ["person"],
        "additionalProperties": {"type": "string"},
    },
    "arrays with bounds": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 10},
        "minItems": 1,
        "maxItems": 5,
    },
    "tuples": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": False},
    "numbers with exclusive bounds": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
    "enum": {"enum": ["red", "green", 3, None, {"a": 1}]},
    "const": {"const": {"any": ["json", 1]}},
    "anyOf": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    "oneOf": {"oneOf": [{"type": "boolean"}, {"type": "null"}]},
    "allOf": {"allOf": [{"type": "object"}, {"required": []}]},
    "$defs and $ref": {
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}},
        "type": "object",
        "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
    },
    "definitions and $ref": {
        "definitions": {"id": {"type": "string", "format": "uuid"}},
        "type": "array",
        "items": {"$ref": "#/definitions/id"},
    },
    "recursive $ref": {
        "$defs": {
            "node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}
        },
        "$ref": "#/$defs/node",
    },
    "$ref to the root": {"type": "object", "properties": {"self": {"$ref": "#"}}},
    "$ref with escapes": {
        "$defs": {"a/b": {"type": "string"}, "c~d": {"type": "integer"}},
        "anyOf": [{"$ref": "#/$defs/a~1b"}, {"$ref": "#/$defs/c~0d"}],
    },
    "formats": {
        "type": "object",
        "properties": {
            "d": {"type": "string", "format": "date"},
            "t": {"type": "string", "format": "time"},
            "dt": {"type": "string", "format": "date-time"},
            "u": {"type": "string", "format": "uuid"},
        },
    },
    "anchored patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{1,100}$"},
            "alt": {"type": "string", "pattern": "^(ab|cd)+$"},
            "opt": {"type": "string", "pattern": "^(x[0-9])?y*$"},
        },
    },
    "boolean subschemas": {"type": "object", "properties": {"anything": True, "nothing": False}, "items": True},
    "annotations": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/person",
        "$comment": "a note",
        "title": "Person",
        "description": "A person",
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "Ann", "examples": ["Bob"], "deprecated": True, "title": "Name"}
        },
    },
    "properties named like keywords": {
        "type": "object",
        "properties": {"not": {"type": "string"}, "pattern": {"type": "string"}, "format": {"type": "integer"}},
        "required": ["not", "pattern", "format"],
    },
    "unsupported keywords inside values are data": {
        "const": {"patternProperties": {}, "not": {}},
        "enum": [{"if": 1}],
        "default": {"format": "email"},
    },
    "all JSON types": {"type": ["object", "array", "string", "number", "integer", "boolean", "null"]},
    "nesting at the limit": nested(MAX_DEPTH),
}


@pytest.mark.parametrize("schema", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_accepted(schema: dict[str, Any]) -> None:
    check_schema(schema, param=PARAM)  # no exception


def test_a_schema_of_exactly_the_size_limit_is_accepted() -> None:
    base = '{"description":""}'
    schema = {"description": "x" * (MAX_SCHEMA_BYTES - len(base))}
    assert len(json.dumps(schema, separators=(",", ":"))) == MAX_SCHEMA_BYTES
    check_schema(schema, param=PARAM)


# Refused ----------------------------------------------------------------------------------------


def unsupported(keyword: str, where: str) -> str:
    return f"the JSON Schema keyword '{keyword}' is not supported by constrained decoding (at {where})"


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "patternProperties": (
        {"type": "object", "patternProperties": {"^s_": {"type": "string"}}},
        unsupported("patternProperties", "#/patternProperties"),
    ),
    "not": ({"not": {"type": "null"}}, unsupported("not", "#/not")),
    "if/then": (
        {"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
        unsupported("if", "#/if"),
    ),
    "then alone": ({"then": {"required": ["b"]}}, unsupported("then", "#/then")),
    "dependentRequired": (
        {"type": "object", "properties": {"a": {"type": "string"}}, "dependentRequired": {"a": ["b"]}},
        unsupported("dependentRequired", "#/dependentRequired"),
    ),
    "uniqueItems deep inside": (
        {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
        unsupported("uniqueItems", "#/properties/tags/uniqueItems"),
    ),
    "a keyword inside $defs": (
        {"$defs": {"x": {"contains": {"type": "string"}}}},
        unsupported("contains", "#/$defs/x/contains"),
    ),
    "a keyword inside anyOf": (
        {"anyOf": [{"type": "string"}, {"multipleOf": 2}]},
        unsupported("multipleOf", "#/anyOf/1/multipleOf"),
    ),
    "a keyword inside items": (
        {"type": "array", "items": {"minProperties": 1}},
        unsupported("minProperties", "#/items/minProperties"),
    ),
    "a keyword inside additionalProperties": (
        {"type": "object", "additionalProperties": {"propertyNames": {"pattern": "^a$"}}},
        unsupported("propertyNames", "#/additionalProperties/propertyNames"),
    ),
    "unknown format": (
        {"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}},
        "the format 'email' is not supported (supported: date, date-time, time, uuid) (at #/properties/mail/format)",
    ),
    "unanchored pattern": (
        {"type": "string", "pattern": "[a-z]+"},
        "'pattern' must be anchored with ^ and $; got '[a-z]+' (at #/pattern)",
    ),
    "pattern anchored at the start only": (
        {"type": "string", "pattern": "^[a-z]+"},
        "'pattern' must be anchored with ^ and $; got '^[a-z]+' (at #/pattern)",
    ),
    "pattern anchored at the end only": (
        {"type": "string", "pattern": "[a-z]+$"},
        "'pattern' must be anchored with ^ and $; got '[a-z]+$' (at #/pattern)",
    ),
    "invalid regex": (
        {"type": "string", "pattern": "^(abc$"},
        "'pattern' is not a valid regular expression: missing ), unterminated subpattern at position 1 (at #/pattern)",
    ),
    "invalid character range": (
        {"type": "string", "pattern": "^[z-a]$"},
        "'pattern' is not a valid regular expression: bad character range z-a at position 2 (at #/pattern)",
    ),
    "pattern not a string": ({"type": "string", "pattern": 5}, "'pattern' must be a string (at #/pattern)"),
    "nested quantifiers +": (
        {"type": "string", "pattern": "^(a+)+$"},
        "'pattern' nests repetitions, which cannot be compiled safely: '^(a+)+$' (at #/pattern)",
    ),
    "nested quantifiers *": (
        {"type": "string", "pattern": "^([a-z]*b)*$"},
        "'pattern' nests repetitions, which cannot be compiled safely: '^([a-z]*b)*$' (at #/pattern)",
    ),
    "nested quantifier with a count": (
        {"type": "string", "pattern": "^(ab+){2}$"},
        "'pattern' nests repetitions, which cannot be compiled safely: '^(ab+){2}$' (at #/pattern)",
    ),
    "nested counted repetitions": (
        # 100 x 100 = 10,000 copies once expanded into a grammar: each count is within the limit.
        {"type": "string", "pattern": "^(a{1,100}){1,100}$"},
        "'pattern' nests repetitions, which cannot be compiled safely: '^(a{1,100}){1,100}$' (at #/pattern)",
    ),
    "nested quantifiers behind an extra group": (
        {"type": "string", "pattern": "^((a+))+$"},
        "'pattern' nests repetitions, which cannot be compiled safely: '^((a+))+$' (at #/pattern)",
    ),
    "repeat count over 100": (
        {"type": "string", "pattern": "^a{101}$"},
        "'pattern' repeats more than 100 times: '^a{101}$' (at #/pattern)",
    ),
    "repeat upper bound over 100": (
        {"type": "string", "pattern": "^[0-9]{2,500}$"},
        "'pattern' repeats more than 100 times: '^[0-9]{2,500}$' (at #/pattern)",
    ),
    "repeat lower bound over 100": (
        {"type": "string", "pattern": "^x{101,}$"},
        "'pattern' repeats more than 100 times: '^x{101,}$' (at #/pattern)",
    ),
    "non-local $ref": (
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json#/a"}}},
        "only local references ('#/...') are supported; got 'https://example.com/schema.json#/a' "
        "(at #/properties/a/$ref)",
    ),
    "relative file $ref": (
        {"$ref": "other.json"},
        "only local references ('#/...') are supported; got 'other.json' (at #/$ref)",
    ),
    "$ref not a string": ({"$ref": 3}, "only local references ('#/...') are supported; got 3 (at #/$ref)"),
    "missing $ref target": (
        {"$defs": {"a": {"type": "string"}}, "properties": {"b": {"$ref": "#/$defs/b"}}},
        "the reference '#/$defs/b' points to nothing in the schema (at #/properties/b/$ref)",
    ),
    "$ref through a non-object": (
        {"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a/type/x"},
        "the reference '#/$defs/a/type/x' points to nothing in the schema (at #/$ref)",
    ),
    "too deep": (
        nested(MAX_DEPTH + 1),
        f"the schema is nested deeper than 32 levels (at #{'/items' * (MAX_DEPTH + 1)})",
    ),
    "too deep through properties": (
        {"type": "object", "properties": {"a": nested(MAX_DEPTH)}},
        f"the schema is nested deeper than 32 levels (at #/properties/a{'/items' * MAX_DEPTH})",
    ),
    "bad type": ({"type": "str"}, "'type' must name JSON types; got 'str' (at #/type)"),
    "bad type in a list": (
        {"type": ["string", "float"]},
        "'type' must name JSON types; got ['string', 'float'] (at #/type)",
    ),
    "empty type list": ({"type": []}, "'type' must name JSON types; got [] (at #/type)"),
    "enum empty": ({"enum": []}, "'enum' must be a non-empty array (at #/enum)"),
    "enum not an array": ({"enum": "red"}, "'enum' must be a non-empty array (at #/enum)"),
    "anyOf empty": ({"anyOf": []}, "'anyOf' must be a non-empty array of schemas (at #/anyOf)"),
    "oneOf not an array": ({"oneOf": {"type": "string"}}, "'oneOf' must be a non-empty array of schemas (at #/oneOf)"),
    "properties not an object": ({"properties": ["a"]}, "'properties' must be an object (at #/properties)"),
    "a subschema that is not a schema": (
        {"properties": {"a": "string"}},
        "a schema must be an object or a boolean; got str (at #/properties/a)",
    ),
    "required not names": ({"required": "a"}, "'required' must be an array of property names (at #/required)"),
    "negative minItems": ({"minItems": -1}, "'minItems' must be a non-negative integer; got -1 (at #/minItems)"),
    "boolean maxLength": ({"maxLength": True}, "'maxLength' must be a non-negative integer; got True (at #/maxLength)"),
    "fractional minLength": (
        {"minLength": 1.5},
        "'minLength' must be a non-negative integer; got 1.5 (at #/minLength)",
    ),
}


@pytest.mark.parametrize("schema, message", list(REFUSED.values()), ids=list(REFUSED))
def test_refused(schema: dict[str, Any], message: str) -> None:
    assert refused(schema).message == message


def test_over_the_size_limit_is_refused() -> None:
    schema = {"description": "x" * MAX_SCHEMA_BYTES}
    size = len('{"description":""}') + MAX_SCHEMA_BYTES
    error = refused(schema)
    assert error.message == f"the schema is {size} bytes long; the limit is 65536 (at #)"


def test_the_error_names_the_param_it_was_given_and_its_body_is_the_error_envelope() -> None:
    error = refused({"not": {}}, param="tools.3.function.parameters")
    assert error.body() == {
        "error": {
            "code": "invalid_request",
            "message": unsupported("not", "#/not"),
            "type": "invalid_request_error",
            "param": "tools.3.function.parameters",
        }
    }


def test_a_cached_check_still_reports_the_param_of_each_call() -> None:
    schema = {"type": "string", "format": "hostname"}
    assert refused(schema, param="a").param == "a"
    assert refused(schema, param="b").param == "b"
    assert refused(schema, param="a").param == "a"


def test_the_first_refusal_is_reported_in_key_order() -> None:
    # Two problems: the schema is walked in a stable order, so the same schema always names the same one.
    schema = {"type": "object", "patternProperties": {}, "not": {}}
    first = refused(schema).message
    assert first == refused(dict(reversed(list(schema.items())))).message
    assert first in (unsupported("not", "#/not"), unsupported("patternProperties", "#/patternProperties"))
