"""What a classifier says about a text, and the shapes Azure reports it in.

Severities follow Azure AI Content Safety's four levels: safe (0), low (2), medium (4), high (6).
A policy's threshold for a category is the lowest severity it blocks (Azure's default: medium).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

CATEGORIES = ("hate", "sexual", "violence", "self_harm")


class Severity(IntEnum):
    SAFE = 0
    LOW = 2
    MEDIUM = 4
    HIGH = 6

    @classmethod
    def parse(cls, name: str) -> Severity:
        return cls[name.upper()]

    @classmethod
    def of_level(cls, level: int) -> Severity:
        """Azure's 0-7 scale (EightSeverityLevels) folded to the four levels."""
        return cls(min(6, max(0, level - level % 2)))

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Analysis:
    """One text's result: a severity per category, whether it reads as a jailbreak attempt
    (None: not checked), and the blocklist entries it matched."""

    severities: dict[str, Severity] = field(default_factory=dict)
    jailbreak: bool | None = None
    blocklist: tuple[str, ...] = ()

    def merge(self, other: Analysis) -> Analysis:
        """The worst of both, per category."""
        severities = dict(self.severities)
        for category, severity in other.severities.items():
            severities[category] = max(severities.get(category, Severity.SAFE), severity)
        jailbreak = self.jailbreak
        if other.jailbreak is not None:
            jailbreak = bool(jailbreak) or other.jailbreak
        return Analysis(severities, jailbreak, tuple(dict.fromkeys(self.blocklist + other.blocklist)))


class ClassifierError(Exception):
    """The classifier could not judge the text (down, timed out, answered nonsense)."""


class Classifier(Protocol):
    """Judges texts. ``analyze`` gives one :class:`Analysis` per text, in order; ``jailbreak``
    says whether prompts try to override the model's instructions (None: cannot tell)."""

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]: ...

    async def jailbreak(self, texts: Sequence[str]) -> bool | None: ...

    async def close(self) -> None: ...


def filter_results(
    analysis: Analysis, thresholds: dict[str, Severity], jailbreak_checked: bool, blocklists: bool
) -> dict[str, Any]:
    """Azure OpenAI's ``content_filter_results`` for ``analysis`` under ``thresholds``."""
    results: dict[str, Any] = {}
    for category in CATEGORIES:
        severity = analysis.severities.get(category, Severity.SAFE)
        threshold = thresholds.get(category)
        filtered = threshold is not None and severity >= threshold and severity > Severity.SAFE
        results[category] = {"filtered": filtered, "severity": severity.label}
    if jailbreak_checked:
        detected = bool(analysis.jailbreak)
        results["jailbreak"] = {"filtered": detected, "detected": detected}
    if blocklists:
        results["custom_blocklists"] = {
            "filtered": bool(analysis.blocklist),
            "details": [{"filtered": True, "id": entry} for entry in analysis.blocklist],
        }
    return results


def is_filtered(results: dict[str, Any]) -> bool:
    return any(isinstance(value, dict) and value.get("filtered") for value in results.values())
