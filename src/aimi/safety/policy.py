"""A deployment's content safety policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from aimi.safety.api import CATEGORIES, Severity
from aimi.safety.blocklist import Blocklist


class Action(StrEnum):
    BLOCK = "block"  # refuse harmful prompts, cut harmful completions
    ANNOTATE = "annotate"  # only report what was found


@dataclass(frozen=True)
class SafetyPolicy:
    """``thresholds``: the lowest severity blocked, per category (absent: never blocked).
        ``window`` and ``overlap`` (characters): a stream's text is held back ``window`` characters
        at a time and checked together with the last ``overlap`` characters already sent, so a phrase
        split across two windows is still seen whole. ``on_error``: ``closed`` blocks what could not be
        judged, ``open`` lets it through. ``max_prompt_chars``: longer prompts are refused (400) rather
    than judged in part or made to hold the classifier."""

    enabled: bool = True
    action: Action = Action.BLOCK
    thresholds: dict[str, Severity] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, Severity.MEDIUM))
    blocklists: tuple[Blocklist, ...] = ()
    jailbreak: bool = False
    annotate: bool = True
    classifier: str = "embedded"
    classifier_options: dict[str, object] = field(default_factory=dict)
    window: int = 160
    overlap: int = 48
    on_error: str = "closed"
    timeout: float = 5.0
    max_prompt_chars: int = 200_000
