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
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

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


class Blocklist(BaseModel):
    """A named list of terms and patterns; a deployments file's ``[[deployments.safety.blocklists]]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    terms: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    patterns: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    _compiled: re.Pattern[str] | None = PrivateAttr(None)

    def __init__(self, name: str, terms: Sequence[str] = (), patterns: Sequence[str] = (), **extra: Any) -> None:
        super().__init__(name=name, terms=terms, patterns=patterns, **extra)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                check_pattern(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {exc}") from None
        return patterns

    def model_post_init(self, context: Any) -> None:
        parts = []
        terms = [_term(term) for term in self.terms if normalise(term).split()]
        if terms:
            parts.append(rf"(?<!\w)(?:{'|'.join(terms)})(?!\w)")
        parts += [f"(?:{p})" for p in self.patterns]
        self._compiled = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def matches(self, text: str) -> bool:
        return self._compiled is not None and self._compiled.search(normalise(text)) is not None


def matched(blocklists: Sequence[Blocklist], text: str) -> tuple[str, ...]:
    """The names of the blocklists ``text`` matches."""
    return tuple(b.name for b in blocklists if b.matches(text))
