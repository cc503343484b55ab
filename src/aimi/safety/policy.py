"""A deployment's content safety policy: one model, the ``[deployments.safety]`` table of a
deployments file as it is read and as the filter uses it."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aimi.safety.api import CATEGORIES, Severity
from aimi.safety.blocklist import Blocklist

Level = Literal["off", "safe", "low", "medium", "high"]
ClassifierName = Literal["embedded", "guard", "azure", "blocklist"]


class Action(StrEnum):
    BLOCK = "block"  # refuse harmful prompts, cut harmful completions
    ANNOTATE = "annotate"  # only report what was found


class SafetyPolicy(BaseModel):
    """Per category (``hate``, ``sexual``, ``violence``, ``self_harm``) the lowest severity blocked
    ("off": never; :attr:`thresholds` has them as severities), blocklists, jailbreak detection,
    block or only annotate, and the classifier that judges.

    ``window`` and ``overlap`` (characters): a stream's text is held back ``window`` characters at a
    time and checked together with the last ``overlap`` characters already sent, so a phrase split
    across two windows is still seen whole. ``on_error``: ``closed`` blocks what could not be
    judged, ``open`` lets it through. ``max_prompt_chars``: longer prompts are refused (400) rather
    than judged in part or made to hold the classifier.

    Built with ``thresholds={category: Severity}`` too: an absent category is then "off".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    action: Action = Action.BLOCK
    hate: Level = "medium"
    sexual: Level = "medium"
    violence: Level = "medium"
    self_harm: Level = "medium"
    jailbreak: bool = False
    annotate: bool = True
    blocklists: tuple[Blocklist, ...] = ()
    classifier: ClassifierName = "embedded"
    classifier_options: dict[str, Any] = Field(default_factory=dict)
    window: Annotated[int, Field(ge=16, le=10_000)] = 160
    overlap: Annotated[int, Field(ge=1, le=1_000)] = 48
    on_error: Literal["closed", "open"] = "closed"
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    max_prompt_chars: Annotated[int, Field(ge=1000)] = 200_000

    @property
    def thresholds(self) -> dict[str, Severity]:
        """The lowest severity blocked, per category (absent: never blocked)."""
        levels = {category: getattr(self, category) for category in CATEGORIES}
        return {category: Severity.parse(level) for category, level in levels.items() if level != "off"}

    @model_validator(mode="before")
    @classmethod
    def _from_thresholds(cls, data: Any) -> Any:
        if isinstance(data, dict) and "thresholds" in data:
            data = dict(data)
            thresholds: dict[str, Severity] = data.pop("thresholds")
            data.update({c: thresholds[c].label if c in thresholds else "off" for c in CATEGORIES})
        return data

    @field_validator("overlap")
    @classmethod
    def _overlap_within_window(cls, overlap: int, info: ValidationInfo) -> int:
        window: int = info.data.get("window", overlap)
        return min(overlap, window)

    @field_validator("classifier_options")
    @classmethod
    def _no_inline_secrets(cls, options: dict[str, Any]) -> dict[str, Any]:
        if any("key" in name.lower() and name != "key_env" for name in options):
            raise ValueError("name the environment variable holding the key with key_env, not the key itself")
        key_env = options.get("key_env")
        if key_env is not None and not (isinstance(key_env, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env)):
            raise ValueError("key_env must be the name of an environment variable (letters, digits, _)")
        return options

    @model_validator(mode="after")
    def _jailbreak_needs_a_detector(self) -> SafetyPolicy:
        if self.jailbreak and self.classifier in ("guard", "blocklist"):
            raise ValueError(
                f"jailbreak detection needs the embedded or azure classifier; {self.classifier} cannot tell"
            )
        return self
