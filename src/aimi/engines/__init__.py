"""Engines, found by name through a registry of lazy import strings.

Importing aimi never imports llama.cpp, vLLM or torch: an engine's module is imported only when
a deployment asks for it. Any ``package.module:Class`` string works as an engine name too.
"""

from __future__ import annotations

import importlib

from aimi.engines.api import Engine, EngineConfig

ENGINES: dict[str, str] = {
    "llamacpp": "aimi.engines.llamacpp:LlamaCppEngine",
    "fake": "aimi.engines.fake:FakeEngine",
    "sentence-transformers": "aimi.engines.sentence_transformers:SentenceTransformersEngine",
    "clip": "aimi.engines.clip:ClipEngine",
    "upstream": "aimi.engines.upstream:UpstreamEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The engine class for a registry name or an import string ``module:attribute``."""
    target = ENGINES.get(name, name)
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(sorted(ENGINES))}")
    module = importlib.import_module(module_name)
    cls: type[Engine] = getattr(module, attribute)
    return cls


def build_engine(name: str, config: EngineConfig) -> Engine:
    """Build (not start) an engine from its name and config."""
    return engine_class(name)(config)  # type: ignore[call-arg]
