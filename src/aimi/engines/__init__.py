"""Engines, found by name through a registry of lazy import strings.

Importing aimi never imports llama.cpp, vLLM or torch: an engine's module is imported only when
a deployment asks for it, and those modules import their libraries only when the engine starts,
so :func:`engine_options` (what a deployments file is checked against) loads none of them. Any
``package.module:Class`` string works as an engine name too.
"""

from __future__ import annotations

import importlib

from aimi.engines.api import Engine, EngineConfig
from aimi.engines.options import AnyOptions, EngineOptions

ENGINES: dict[str, str] = {
    "llamacpp": "aimi.engines.llamacpp:LlamaCppEngine",
    "fake": "aimi.engines.fake:FakeEngine",
    "sentence-transformers": "aimi.engines.sentence_transformers:SentenceTransformersEngine",
    "clip": "aimi.engines.clip:ClipEngine",
    "upstream": "aimi.engines.upstream:UpstreamEngine",
    "vllm": "aimi.engines.vllm:VllmEngine",
}


def load(target: str, registry: dict[str, str], what: str) -> object:
    """The object an import string ``module:attribute`` names, or the one a registry name maps to."""
    module_name, sep, attribute = registry.get(target, target).partition(":")
    if not sep:
        raise ValueError(f"unknown {what} {target!r}; known {what}s: {', '.join(sorted(registry))}")
    return getattr(importlib.import_module(module_name), attribute)


def engine_class(name: str) -> type[Engine]:
    """The engine class for a registry name or an import string ``module:attribute``."""
    cls: type[Engine] = load(name, ENGINES, "engine")  # type: ignore[assignment]
    return cls


def engine_options(name: str) -> type[EngineOptions]:
    """The options model an engine declares as ``Options`` (one that declares none takes any)."""
    options: type[EngineOptions] = getattr(engine_class(name), "Options", AnyOptions)
    return options


def build_engine(name: str, config: EngineConfig) -> Engine:
    """Build (not start) an engine from its name and config."""
    return engine_class(name)(config)  # type: ignore[call-arg]
