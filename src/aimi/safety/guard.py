"""A guard model served by another deployment as the classifier, asked Llama Guard's way.

The guard reads a conversation under a list of unsafe-content categories and answers ``safe``, or
``unsafe`` and, on the next line, the codes of the categories violated (Llama Guard 3's format).
The codes map to aimi's four categories; a violation is reported at high severity, since the
guard answers yes or no. Options: ``deployment`` (the guard's deployment name), and ``max_tokens``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aimi.engines.api import ChatTurn, Engine, GenerationRequest, TextDelta
from aimi.protocol.ids import new_id
from aimi.safety.api import Analysis, ClassifierError, Severity

if TYPE_CHECKING:
    from aimi.safety.registry import Context

# Llama Guard 3's hazard taxonomy, and where each lands in aimi's four categories.
TAXONOMY = {
    "S1": ("Violent Crimes", "violence"),
    "S2": ("Non-Violent Crimes", None),
    "S3": ("Sex-Related Crimes", "sexual"),
    "S4": ("Child Sexual Exploitation", "sexual"),
    "S5": ("Defamation", None),
    "S6": ("Specialized Advice", None),
    "S7": ("Privacy", None),
    "S8": ("Intellectual Property", None),
    "S9": ("Indiscriminate Weapons", "violence"),
    "S10": ("Hate", "hate"),
    "S11": ("Suicide & Self-Harm", "self_harm"),
    "S12": ("Sexual Content", "sexual"),
    "S13": ("Elections", None),
    "S14": ("Code Interpreter Abuse", None),
}


def guard_prompt(text: str) -> str:
    categories = "\n".join(f"{code}: {name}." for code, (name, _) in TAXONOMY.items())
    return (
        "Task: Check if there is unsafe content in 'User' messages in conversations according to our safety "
        "policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>\n\n"
        "Provide your safety assessment for ONLY THE LAST User message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def parse_verdict(answer: str) -> Analysis:
    """``safe`` / ``unsafe\\nS1,S10`` to an :class:`Analysis`; anything else is a ClassifierError."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines or lines[0].lower() not in ("safe", "unsafe"):
        raise ClassifierError(f"the guard model answered neither safe nor unsafe: {answer[:80]!r}")
    severities = {}
    if lines[0].lower() == "unsafe":
        codes = [code.strip().upper() for code in (lines[1] if len(lines) > 1 else "").split(",") if code.strip()]
        for code in codes:
            category = TAXONOMY.get(code, (None, None))[1]
            if category is not None:
                severities[category] = Severity.HIGH
    return Analysis(severities)


class GuardClassifier:
    @classmethod
    def build(cls, options: dict[str, Any], context: Context) -> GuardClassifier:
        return cls(options, context.engine_of)

    def __init__(self, options: dict[str, Any], engine_of: Callable[[str], Awaitable[Engine]]) -> None:
        name = options.get("deployment")
        if not isinstance(name, str) or not name:
            raise ValueError("the guard classifier needs the name of the guard's deployment")
        self._name = name
        self._engine_of = engine_of
        self._max_tokens = int(options.get("max_tokens", 16))

    async def _one(self, text: str) -> Analysis:
        request = GenerationRequest(
            request_id=f"guard-{new_id()}",
            max_tokens=self._max_tokens,
            messages=[ChatTurn("user", guard_prompt(text))],
            temperature=0.0,
        )
        try:
            engine = await self._engine_of(self._name)
            pieces = [event.text async for event in engine.generate(request) if isinstance(event, TextDelta)]
        except Exception as exc:  # down, loading, failing: whatever it is, the policy's on_error decides
            raise ClassifierError(f"the guard deployment failed ({type(exc).__name__})") from None
        return parse_verdict("".join(pieces))

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        return list(await asyncio.gather(*(self._one(text) for text in texts)))

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        return None  # Llama Guard judges harm, not instruction overrides

    async def close(self) -> None:
        return None
