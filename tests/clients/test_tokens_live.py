"""The real azure-ai-inference clients (Python sync and async, JS) with a TokenCredential, as
``DefaultAzureCredential`` is used against Azure, calling a live ``aimi serve`` over https that
trusts a local OpenID Connect issuer (tests/oidc_issuer.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.ai.inference.aio import ChatCompletionsClient as AsyncChatCompletionsClient
from azure.core.credentials import AccessToken, AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError

from tests.clients.helpers import azure_response, azure_user
from tests.clients.test_js_sdk import js_dir  # noqa: F401 (a fixture)
from tests.conftest import LiveServer, aimi_process
from tests.oidc_issuer import Issuer, running_issuer, self_signed

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]
SCOPE = "https://ml.azure.com/.default"
PREFIX = "Auth token validation failed: "


@dataclass
class TlsServer:
    server: LiveServer
    issuer: Issuer
    ca_file: str

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/models"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Iterator[TlsServer]:
    """``aimi serve --ssl-certfile ... --ssl-keyfile ...`` trusting the local issuer."""
    home = tmp_path_factory.mktemp("aimi-tls-home")
    cert, key = self_signed(home)
    with running_issuer("RS256", "ES256") as issuer:
        args = ["--context-size", "2048", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
        env = {"AIMI_OIDC_ISSUER": issuer.url}
        with aimi_process(home, args, env=env, ca_file=str(cert)) as server:
            yield TlsServer(server, issuer, str(cert))


@dataclass
class IssuedCredential:
    """A TokenCredential handing out the issuer's tokens, as DefaultAzureCredential hands out Entra ID's."""

    issuer: Issuer
    claims: dict[str, Any] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes += scopes
        token = self.issuer.token(**self.claims)
        return AccessToken(token, int(self.issuer.claims(**self.claims)["exp"]))


class AsyncIssuedCredential(IssuedCredential):
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return IssuedCredential.get_token(self, *scopes, **kwargs)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncIssuedCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass


def sync_client(tls: TlsServer, credential: Any) -> ChatCompletionsClient:
    return ChatCompletionsClient(
        endpoint=tls.endpoint, credential=credential, connection_verify=tls.ca_file, retry_total=0
    )


def test_sync_client_with_a_token_credential_chats_and_streams(tls: TlsServer) -> None:
    credential = IssuedCredential(tls.issuer)
    with sync_client(tls, credential) as client:
        assert client.get_model_info().model_name == "SmolLM2-135M-Instruct"
        whole = client.complete(messages=azure_user("Name three colors."), max_tokens=12, temperature=0)
        streamed = list(
            client.complete(messages=azure_user("Name three colors."), max_tokens=12, temperature=0, stream=True)
        )
    assert whole.choices[0].message.content
    assert "".join(u.choices[0].delta.content or "" for u in streamed) == whole.choices[0].message.content
    assert set(credential.scopes) == {SCOPE}


def test_sync_client_with_an_expired_token_raises_client_authentication_error(tls: TlsServer) -> None:
    credential = IssuedCredential(tls.issuer, {"exp": 1_484_640_000, "iat": 1, "nbf": 1})
    with sync_client(tls, credential) as client, pytest.raises(ClientAuthenticationError) as caught:
        client.complete(messages=azure_user("hi"), max_tokens=4)
    response = azure_response(caught.value)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        PREFIX + "token expired at 2017-01-17T08:00:00Z (this server allows 60 s of clock skew); get a new token"
    )


def test_sync_client_with_a_token_for_another_audience_is_told_which_one_to_ask_for(tls: TlsServer) -> None:
    credential = IssuedCredential(tls.issuer, {"aud": "https://management.azure.com"})
    with sync_client(tls, credential) as client, pytest.raises(ClientAuthenticationError) as caught:
        client.get_model_info()
    assert azure_response(caught.value).json()["error"]["message"] == (
        PREFIX + "audience not accepted: the token is for 'https://management.azure.com'; this server accepts "
        "'https://ml.azure.com' (AIMI_OIDC_AUDIENCE); ask for a token for https://ml.azure.com/.default"
    )


def test_a_key_works_over_https_too(tls: TlsServer) -> None:
    with sync_client(tls, AzureKeyCredential(tls.server.key)) as client:
        assert client.get_model_info().model_type == "chat-completions"


@pytest.mark.anyio
async def test_async_client_with_a_token_credential_chats_and_streams(tls: TlsServer) -> None:
    credential = AsyncIssuedCredential(tls.issuer, {"oid": "async-caller-oid"})
    async with AsyncChatCompletionsClient(
        endpoint=tls.endpoint, credential=credential, connection_verify=tls.ca_file, retry_total=0
    ) as client:
        whole = await client.complete(messages=azure_user("Name three colors."), max_tokens=12, temperature=0)
        stream = await client.complete(
            messages=azure_user("Name three colors."), max_tokens=12, temperature=0, stream=True
        )
        text = "".join([u.choices[0].delta.content or "" async for u in stream if u.choices])
    assert text == whole.choices[0].message.content
    assert set(credential.scopes) == {SCOPE}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run_js(directory: Path, tls: TlsServer, token: str) -> Any:
    env = {**os.environ, "AIMI_ENDPOINT": tls.endpoint, "AIMI_TOKEN": token, "NODE_EXTRA_CA_CERTS": tls.ca_file}
    result = subprocess.run(
        ["node", "entra_token.mjs"], cwd=directory, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"node exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="the JS SDK tests need Node.js and npm"
)


@node
@pytest.mark.node
def test_js_client_with_a_token_credential_calls_info_and_chat(js_dir: Path, tls: TlsServer) -> None:  # noqa: F811
    out = run_js(js_dir, tls, tls.issuer.token())
    assert out["scopes"] == [SCOPE]
    assert (out["info"]["status"], out["info"]["body"]["model_name"]) == ("200", "SmolLM2-135M-Instruct")
    assert out["chat"]["status"] == "200" and out["chat"]["body"]["choices"][0]["message"]["content"]


@node
@pytest.mark.node
def test_js_client_with_a_token_of_an_untrusted_issuer_gets_401_saying_so(js_dir: Path, tls: TlsServer) -> None:  # noqa: F811
    out = run_js(js_dir, tls, tls.issuer.token(iss="https://sts.windows.net/someone-else/"))
    for call in ("info", "chat"):
        assert (out[call]["unexpected"], out[call]["status"]) == (True, "401"), out[call]
        assert out[call]["body"]["error"]["message"] == (
            PREFIX + "issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers"
        )
