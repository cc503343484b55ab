"""Managed keys with the real azure-ai-inference SDK against a live ``aimi serve`` with the
default model: a key made over the admin API works with the SDK, rotation keeps the old secret
for its grace period, and a revoked key is refused within the refresh interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError

from tests.clients.helpers import azure_response, azure_user
from tests.conftest import LiveServer, aimi_process

REFRESH = 2.0  # AIMI_CONTROL_REFRESH_SECONDS's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("aimi-control-home")
    with aimi_process(home, ["--slots", "1", "--context-size", "512"]) as running:
        yield running


def sdk(server: LiveServer, secret: str) -> ChatCompletionsClient:
    return ChatCompletionsClient(endpoint=f"{server.url}/models", credential=AzureKeyCredential(secret), retry_total=0)


def answers(client: ChatCompletionsClient) -> bool:
    response = client.complete(messages=azure_user("Say hi."), max_tokens=4, temperature=0)
    return bool(response.choices[0].message.content) and response.usage.completion_tokens <= 4


def test_a_key_made_over_the_api_works_with_the_sdk_rotates_and_is_revoked(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, headers={"api-key": server.key}, timeout=30) as admin:
        check_the_key_life(server, admin)


def check_the_key_life(server: LiveServer, admin: httpx.Client) -> None:
    made = admin.post("/admin/keys", json={"name": "sdk-team", "scopes": ["inference"]})
    assert made.status_code == 201, made.text
    first = made.json()["key"]
    assert answers(sdk(server, first))

    rotated = admin.post("/admin/keys/sdk-team/rotate", json={"grace_hours": 24})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["key"]
    assert answers(sdk(server, first)) and answers(sdk(server, second))

    revoked = admin.post("/admin/keys/sdk-team/revoke")
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()
    for secret in (first, second):
        with pytest.raises(ClientAuthenticationError) as refused:
            sdk(server, secret).complete(messages=azure_user("Say hi."), max_tokens=4)
        response = azure_response(refused.value)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "Unauthorized"
    assert time.monotonic() - started < REFRESH  # the server that revoked refuses at once

    audit = admin.get("/admin/audit", params={"target": "sdk-team"}).json()["data"]
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("keys.revoke", "ok"),
        ("keys.rotate", "ok"),
        ("keys.create", "ok"),
    ]
    assert first not in str(audit) and second not in str(audit)
    assert first not in server.log.read_text() and second not in server.log.read_text()
