"""Typed helpers for the SDK tests, where an SDK's own annotations are narrower than what it does."""

from __future__ import annotations

from azure.ai.inference.models import ChatRequestMessage, UserMessage
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpResponse


def azure_user(text: str) -> list[ChatRequestMessage]:
    """One user turn for azure-ai-inference's ``complete``. Built inline, ``[UserMessage(text)]``
    is a ``list[UserMessage]``, which the SDK's ``list[ChatRequestMessage]`` refuses (``list`` is
    invariant)."""
    return [UserMessage(text)]


def azure_response(error: HttpResponseError) -> HttpResponse:
    """The HTTP response an azure SDK error carries. azure-core types it as a protocol with no
    ``json()`` or ``headers``; the inference client's is always an ``azure.core.rest.HttpResponse``."""
    response = error.response
    assert isinstance(response, HttpResponse), response
    return response
