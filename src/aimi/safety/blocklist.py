"""Custom blocklists: terms (whole words, any case) and regular expressions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Blocklist:
    name: str
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = [rf"(?<!\w){re.escape(term)}(?!\w)" for term in self.terms] + [f"(?:{p})" for p in self.patterns]
        object.__setattr__(self, "_compiled", re.compile("|".join(parts), re.IGNORECASE) if parts else None)

    def matches(self, text: str) -> bool:
        compiled: re.Pattern[str] | None = self._compiled  # type: ignore[attr-defined]
        return compiled is not None and compiled.search(text) is not None


def matched(blocklists: Sequence[Blocklist], text: str) -> tuple[str, ...]:
    """The names of the blocklists ``text`` matches."""
    return tuple(b.name for b in blocklists if b.matches(text))
