"""Custom blocklists: terms (whole words, any case) and regular expressions.

Text is normalised before matching, so simple disguises do not get through: Unicode NFKC (which
folds fullwidth and other compatibility forms), case folding, and the removal of invisible format
characters (zero-width spaces, soft hyphens). A term's words match across any run of spaces,
hyphens or line breaks. All of a list's terms are one alternation, so matching stays linear in
the text however many terms there are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Nested repetition, as in (a+)+ or (\w*)*: the shape of patterns that backtrack exponentially.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}]\)[+*{]")


def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def check_pattern(pattern: str) -> None:
    """Raise ValueError for a pattern that does not compile or could backtrack exponentially."""
    re.compile(pattern)
    if _NESTED_REPEAT.search(pattern):
        raise ValueError(f"pattern {pattern!r} repeats a repetition, which can take exponential time")


def _term(term: str) -> str:
    words = normalise(term).split()
    return r"[\s\-]+".join(re.escape(word) for word in words)


@dataclass(frozen=True)
class Blocklist:
    name: str
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = []
        terms = [_term(term) for term in self.terms if normalise(term).split()]
        if terms:
            parts.append(rf"(?<!\w)(?:{'|'.join(terms)})(?!\w)")
        parts += [f"(?:{p})" for p in self.patterns]
        object.__setattr__(self, "_compiled", re.compile("|".join(parts), re.IGNORECASE) if parts else None)

    def matches(self, text: str) -> bool:
        compiled: re.Pattern[str] | None = self._compiled  # type: ignore[attr-defined]
        return compiled is not None and compiled.search(normalise(text)) is not None


def matched(blocklists: Sequence[Blocklist], text: str) -> tuple[str, ...]:
    """The names of the blocklists ``text`` matches."""
    return tuple(b.name for b in blocklists if b.matches(text))
