"""The ``extra-parameters`` header: what happens to body keys the surface does not define.

``error`` rejects them (400 naming them), ``drop`` removes them, ``pass-through`` (and its old
alias ``allow``) hands them to the engine; what the engine cannot use is a 422.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aimi.engines.api import EngineCapabilities
from aimi.protocol.errors import ApiError, extra_parameters_not_allowed, parameter_not_supported


class Policy(StrEnum):
    ERROR = "error"
    DROP = "drop"
    PASS_THROUGH = "pass-through"


_ALIASES = {
    "error": Policy.ERROR,
    "drop": Policy.DROP,
    "pass-through": Policy.PASS_THROUGH,
    "allow": Policy.PASS_THROUGH,
}


def policy_from_header(value: str | None, default: Policy) -> Policy:
    """The policy a request asks for; an unknown header value is a 400."""
    if value is None:
        return default
    policy = _ALIASES.get(value.strip().lower())
    if policy is None:
        message = f"Unexpected EXTRA_PARAMETERS option {value}, expected options are ['error', 'drop', 'pass-through']"
        raise ApiError("invalid_extra_parameters_header", message, param="extra-parameters", detail=message)
    return policy


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _fits(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def apply(
    extras: dict[str, Any], policy: Policy, capabilities: EngineCapabilities, gateway: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The extras under ``policy``, split into those the gateway handles (named in ``gateway``)
    and those handed to the engine."""
    if not extras or policy is Policy.DROP:
        return {}, {}
    if policy is Policy.ERROR:
        raise extra_parameters_not_allowed(list(extras))
    handled = {key: value for key, value in extras.items() if key in gateway}
    extras = {key: value for key, value in extras.items() if key not in gateway}
    problems: list[tuple[tuple[str | int, ...], Any, str]] = []
    for key, value in extras.items():
        kind = capabilities.extra_parameters.get(key)
        if kind is None:
            problems.append(((key,), value, f"extra parameter '{key}' is not supported by this deployment's engine"))
        elif not _fits(value, kind):
            problems.append(((key,), value, f"extra parameter '{key}' must be {_type_name(kind)}"))
    if problems:
        raise parameter_not_supported(problems)
    return handled, extras
