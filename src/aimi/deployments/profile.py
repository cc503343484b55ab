"""Capability profiles: what a model can do, beyond what its engine can.

The pipeline answers a request for something the profile lacks with 422
``parameter_not_supported``, or supplies it where the gateway can (system-role folding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What a model can do.

    ``system_role``: the chat template accepts system messages; when false, system and developer
    messages are folded into the first user turn (as Azure does for Mistral-7B-Instruct).
    """

    model_type: Literal["chat-completion", "embeddings", "image_embeddings"] = "chat-completion"
    provider: str = "unknown"
    system_role: bool = True
    vision: bool = False
    audio: bool = False
