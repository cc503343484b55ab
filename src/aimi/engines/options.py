"""What an engine accepts in ``EngineConfig.options``, declared by the engine itself.

Each engine class names its :class:`EngineOptions` model as ``Options``; the registry finds it
(:func:`aimi.engines.engine_options`) without building the engine. What a deployments file's
checks need to know about an engine comes from here too: whether a deployment must name a model,
which options it cannot do without, and options a file writes differently from the engine
(a secret named by its environment variable rather than written out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class OptionError(ValueError):
    """An option a deployments file cannot be served with; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


class EngineOptions(BaseModel):
    """An engine's options: an unknown one is an error, so a typo cannot pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_name: ClassVar[str] = "engine"
    needs_model: ClassVar[bool] = True
    """Whether a deployment served by this engine must name a model (an upstream names its own)."""

    @classmethod
    def required(cls) -> list[str]:
        """The options a deployment must give."""
        return [name for name, field in cls.model_fields.items() if field.is_required()]

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this engine cannot run in this environment (a package it needs is not installed), or
        None when it can; a deployments file naming it is refused with the reason."""
        return None

    @classmethod
    def check_file(cls, options: Mapping[str, Any]) -> None:
        """Raise ValueError for what a deployments file must not hold (a secret written out)."""

    @classmethod
    def from_file(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The engine's options from a file's ``engine_options`` (a secret read from the environment
        it names); an :class:`OptionError` names what is missing."""
        return dict(options)

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> Self:
        """The options, checked; a ValueError saying which are wrong and why."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False, include_input=False):
                if error["type"] == "value_error":
                    problems.append(str(error["ctx"]["error"]))
                    continue
                where = ".".join(map(str, error["loc"]))
                what = "is required" if error["type"] == "missing" else error["msg"]
                problems.append(f"{cls.engine_name} option {where!r}: {what}")
            raise ValueError("; ".join(problems)) from None


class AnyOptions(EngineOptions):
    """The options of an engine that declares none: whatever it is given."""

    model_config = ConfigDict(extra="allow", frozen=True)
