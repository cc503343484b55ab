"""Classifiers by name: built once per (name, options) and shared by the deployments using them.

* ``embedded`` (the default): a classifier model shipped in a PyPI package, run on the CPU, offline;
* ``guard``: a guard model served by another deployment (Llama Guard's prompt and answer);
* ``azure``: Azure AI Content Safety's REST API;
* ``blocklist``: no model, only the policy's blocklists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aimi.engines.api import Engine
from aimi.safety.api import Analysis, Classifier

CLASSIFIERS = ("embedded", "guard", "azure", "blocklist")
log = logging.getLogger(__name__)


class NoClassifier:
    """Judges nothing as harmful: the policy's blocklists alone decide."""

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        return [Analysis() for _ in texts]

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        return None

    async def close(self) -> None:
        return None


EngineOf = Callable[[str], Awaitable[Engine]]
ModelPath = Callable[[str], Path]


def build_classifier(name: str, options: dict[str, Any], engine_of: EngineOf, model_path: ModelPath) -> Classifier:
    """``engine_of`` gives a deployment's engine (for ``guard``), ``model_path`` a model's local
    path from its reference (for ``embedded``)."""
    if name == "embedded":
        from aimi.safety.embedded import EmbeddedClassifier

        return EmbeddedClassifier(options, model_path)
    if name == "guard":
        from aimi.safety.guard import GuardClassifier

        return GuardClassifier(options, engine_of)
    if name == "azure":
        from aimi.safety.azure import AzureContentSafety

        return AzureContentSafety(options)
    if name == "blocklist":
        return NoClassifier()
    raise ValueError(f"no content safety classifier named {name!r}; choose from {', '.join(CLASSIFIERS)}")


class Classifiers:
    """The app's classifiers, one per distinct (name, options)."""

    def __init__(self, engine_of: EngineOf, model_path: ModelPath) -> None:
        self._engine_of = engine_of
        self._model_path = model_path
        self._built: dict[str, Classifier] = {}
        self._starting: asyncio.Task[Any] | None = None

    def get(self, name: str, options: dict[str, Any]) -> Classifier:
        key = name + json.dumps(options, sort_keys=True, default=str)
        if key not in self._built:
            self._built[key] = build_classifier(name, options, self._engine_of, self._model_path)
        return self._built[key]

    @property
    def loading(self) -> bool:
        """True while a classifier is still loading its models at startup."""
        return self._starting is not None and not self._starting.done()

    def launch(self) -> asyncio.Task[None]:
        """Start loading the classifiers in the background; :attr:`loading` until they are."""
        self._starting = asyncio.create_task(self.start())
        return self._starting

    async def start(self) -> None:
        """Load the classifiers that load models, so no request waits for it."""
        for classifier in self._built.values():
            start = getattr(classifier, "start", None)
            if start is not None:
                try:
                    await start()
                except Exception as exc:  # requests then get the policy's on_error answer
                    log.error("content safety classifier failed to load: %s", exc)

    async def close(self) -> None:
        for classifier in self._built.values():
            await classifier.close()
