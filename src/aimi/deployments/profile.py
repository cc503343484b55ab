"""Capability profiles: what a model can do, beyond what its engine can.

The pipeline answers a request for something the profile lacks with 422
``parameter_not_supported``, or supplies it where the gateway can (system-role folding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What a model can do.

    ``system_role``: the chat template accepts system messages; when false, system and developer
    messages are folded into the first user turn (as Azure does for Mistral-7B-Instruct).
    ``tools`` / ``json_output``: false refuses tools / JSON ``response_format`` with 422 even where
    the engine could constrain the answer (a model that answers them badly).
    ``dimensions``: embeddings may be truncated to fewer dimensions and renormalised (models
    trained for it, Matryoshka-style). ``input_prefixes``: text put before each input per
    ``input_type`` (``query``, ``document``, ``text``), for models trained with such prefixes.
    """

    model_type: Literal["chat-completions", "embeddings", "image_embeddings"] = "chat-completions"
    provider: str = "unknown"
    system_role: bool = True
    vision: bool = False
    audio: bool = False
    tools: bool = True
    json_output: bool = True
    dimensions: bool = False
    input_prefixes: dict[str, str] = field(default_factory=dict)
