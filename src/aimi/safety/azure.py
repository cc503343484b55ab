"""Azure AI Content Safety over REST as the classifier: ``text:analyze`` for the four categories
and ``text:shieldPrompt`` for jailbreak attempts.

Options: ``endpoint`` (``https://<name>.cognitiveservices.azure.com``), ``key_env`` (the
environment variable holding the resource key; never the key itself), ``api_version``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from aimi.safety.api import Analysis, ClassifierError, Severity

if TYPE_CHECKING:
    from aimi.safety.registry import Context

_CATEGORIES = {"Hate": "hate", "Sexual": "sexual", "Violence": "violence", "SelfHarm": "self_harm"}
_MAX_TEXT = 10_000  # the service's limit per text


class AzureContentSafety:
    @classmethod
    def build(cls, options: dict[str, Any], context: Context) -> AzureContentSafety:
        return cls(options)

    def __init__(self, options: dict[str, Any]) -> None:
        endpoint = options.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("the azure classifier needs an endpoint")
        key_env = options.get("key_env")
        key = os.environ.get(str(key_env)) if key_env else None
        if not key:  # never echo key_env: it may be a key pasted in the wrong place
            raise ValueError("the azure classifier's key_env names no variable set in the environment")
        self._version = str(options.get("api_version", "2024-09-01"))
        self._client = httpx.AsyncClient(
            base_url=endpoint.rstrip("/") + "/contentsafety",
            headers={"Ocp-Apim-Subscription-Key": key},
            timeout=float(options.get("timeout", 5.0)),
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, params={"api-version": self._version}, json=body)
        except httpx.HTTPError as exc:
            raise ClassifierError(f"Azure AI Content Safety unreachable: {exc.__class__.__name__}") from None
        if response.status_code != 200:
            raise ClassifierError(f"Azure AI Content Safety answered {response.status_code}")
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise ClassifierError("Azure AI Content Safety answered something that is not JSON") from None
        return answer

    async def _one(self, text: str) -> Analysis:
        answer = await self._post(
            "/text:analyze",
            {"text": text, "categories": list(_CATEGORIES), "outputType": "FourSeverityLevels"},
        )
        severities: dict[str, Severity] = {}
        try:
            for item in answer["categoriesAnalysis"]:
                category = _CATEGORIES.get(item["category"])
                if category is not None:
                    severities[category] = Severity.of_level(int(item["severity"]))
        except (KeyError, TypeError, ValueError):
            raise ClassifierError("Azure AI Content Safety's answer lacks categoriesAnalysis") from None
        return Analysis(severities)

    async def _text(self, text: str) -> Analysis:
        """A text longer than the service takes is judged in pieces; the worst counts."""
        pieces = [text[i : i + _MAX_TEXT] for i in range(0, len(text), _MAX_TEXT)] or [""]
        merged = Analysis()
        for analysis in await asyncio.gather(*(self._one(piece) for piece in pieces)):
            merged = merged.merge(analysis)
        return merged

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        return list(await asyncio.gather(*(self._text(text) for text in texts)))

    async def _shield(self, prompt: str) -> bool:
        answer = await self._post("/text:shieldPrompt", {"userPrompt": prompt, "documents": []})
        try:
            return bool(answer["userPromptAnalysis"]["attackDetected"])
        except (KeyError, TypeError):
            raise ClassifierError("Azure AI Content Safety's answer lacks userPromptAnalysis") from None

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        """Each user turn, in pieces the service takes whole; an attack anywhere is an attack."""
        pieces = [text[i : i + _MAX_TEXT] for text in texts for i in range(0, max(len(text), 1), _MAX_TEXT)]
        return any(await asyncio.gather(*(self._shield(piece) for piece in pieces)))

    async def close(self) -> None:
        await self._client.aclose()
