"""Classifiers by name, through a registry of lazy import strings (as engines are): built once
per (name, options) and shared by the deployments using them.

* ``embedded`` (the default): a classifier model shipped in a PyPI package, run on the CPU, offline;
* ``guard``: a guard model served by another deployment (Llama Guard's prompt and answer);
* ``azure``: Azure AI Content Safety's REST API;
* ``blocklist``: no model, only the policy's blocklists.

A classifier class builds itself with ``build(options, context)``; the :class:`Context` gives it
what it may need of the app. Importing this module loads no classifier model.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aimi.engines.api import Engine
from aimi.safety.api import Analysis, Classifier

CLASSIFIERS: dict[str, str] = {
    "embedded": "aimi.safety.embedded:EmbeddedClassifier",
    "guard": "aimi.safety.guard:GuardClassifier",
    "azure": "aimi.safety.azure:AzureContentSafety",
    "blocklist": "aimi.safety.registry:NoClassifier",
}
log = logging.getLogger(__name__)

EngineOf = Callable[[str], Awaitable[Engine]]
ModelPath = Callable[[str], Path]


@dataclass(frozen=True)
class Context:
    """``engine_of`` gives a deployment's engine (for ``guard``), ``model_path`` a model's local
    path from its reference (for ``embedded``)."""

    engine_of: EngineOf
    model_path: ModelPath


class ClassifierClass(Protocol):
    def build(self, options: dict[str, Any], context: Context) -> Classifier: ...


class NoClassifier:
    """Judges nothing as harmful: the policy's blocklists alone decide."""

    @classmethod
    def build(cls, options: dict[str, Any], context: Context) -> NoClassifier:
        return cls()

    async def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        return [Analysis() for _ in texts]

    async def jailbreak(self, texts: Sequence[str]) -> bool | None:
        return None

    async def close(self) -> None:
        return None


def build_classifier(name: str, options: dict[str, Any], engine_of: EngineOf, model_path: ModelPath) -> Classifier:
    """The classifier registered as ``name``, built from its options."""
    target = CLASSIFIERS.get(name)
    if target is None:
        raise ValueError(f"no content safety classifier named {name!r}; choose from {', '.join(CLASSIFIERS)}")
    module_name, _, attribute = target.partition(":")
    cls: ClassifierClass = getattr(importlib.import_module(module_name), attribute)
    return cls.build(options, Context(engine_of, model_path))


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
