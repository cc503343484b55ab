"""Signed bearer tokens through the whole server: accepted beside keys, refused with a 401 that
says why, limited by the file's grants, counted per caller by the quota and the ledger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError

from aimi.auth.oidc import AuthConfig, token_policy
from aimi.runtime import runtime_of
from tests.api.helpers import CHAT, assert_error
from tests.api.test_auth import PUBLIC, body_for, route_calls
from tests.conftest import KEY, InProcessServer, in_process
from tests.oidc_issuer import Issuer, running_issuer

OID = "5b3a0b0e-1111-4222-8333-944445555666"
PREFIX = "Auth token validation failed: "
UNTRUSTED = PREFIX + "issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer("RS256", "ES256") as running:
        yield running


@pytest.fixture(scope="module")
def server(issuer: Issuer) -> Iterator[InProcessServer]:
    with in_process({"oidc_issuer": [issuer.url]}) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def chat(server: InProcessServer, token: str, path: str = "/chat/completions") -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post(path, json=CHAT, headers=bearer(token))


def test_a_valid_token_calls_the_model_on_both_surfaces(server: InProcessServer, issuer: Issuer) -> None:
    token = issuer.token()
    assert chat(server, token).status_code == 200
    assert chat(server, token, "/v1/chat/completions").status_code == 200
    es256 = issuer.token(next(k for k in issuer.keys if k.alg == "ES256"))
    assert chat(server, es256, "/models/chat/completions").status_code == 200


def test_the_ledger_counts_a_token_under_its_oid(server: InProcessServer, issuer: Issuer) -> None:
    oid = "0000aaaa-ledger-test-oid"
    assert chat(server, issuer.token(oid=oid)).status_code == 200
    with httpx.Client(base_url=server.url, headers={"api-key": KEY}, timeout=30) as admin:
        rows = admin.get("/admin/usage", params={"by": "key"}).json()["data"]
    mine = [row for row in rows if row["key"] == oid]
    assert len(mine) == 1 and mine[0]["requests"] == 1, rows


def test_an_expired_token_gets_a_401_that_says_so(server: InProcessServer, issuer: Issuer) -> None:
    response = chat(server, issuer.token(exp=1_484_640_000, iat=1, nbf=1))
    body = assert_error(
        response,
        401,
        "Unauthorized",
        message=PREFIX
        + "token expired at 2017-01-17T08:00:00Z (this server allows 60 s of clock skew); get a new token",
    )
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert body["error"]["type"] == "authentication_error"


def test_a_token_for_another_audience_or_issuer_gets_a_401_naming_the_rule(
    server: InProcessServer, issuer: Issuer
) -> None:
    assert_error(
        chat(server, issuer.token(aud="api://someone-else")),
        401,
        "Unauthorized",
        message=PREFIX + "audience not accepted: the token is for 'api://someone-else'; this server accepts "
        "'https://ml.azure.com' (AIMI_OIDC_AUDIENCE); ask for a token for https://ml.azure.com/.default",
    )
    assert_error(
        chat(server, issuer.token(iss="https://sts.windows.net/another-tenant/")),
        401,
        "Unauthorized",
        message=PREFIX + "issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers",
    )


def test_a_key_still_works_beside_tokens_and_a_wrong_key_gets_the_usual_401(server: InProcessServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/chat/completions", json=CHAT, headers=bearer(KEY)).status_code == 200
        assert client.post("/chat/completions", json=CHAT, headers={"api-key": KEY}).status_code == 200
        response = client.post("/chat/completions", json=CHAT, headers=bearer("not-a-key-and-not-a-token"))
    assert_error(response, 401, "Unauthorized", message=PREFIX + "a valid api-key or bearer token is required")
    assert response.headers["www-authenticate"] == 'Bearer, ApiKey header="api-key"'


def test_every_route_refuses_a_bad_token_except_the_public_ones(server: InProcessServer, issuer: Issuer) -> None:
    forged = issuer.token(iss="https://evil.example.com/")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, method in route_calls(server):
            response = client.request(
                method, path, json=body_for(path) if method == "POST" else None, headers=bearer(forged)
            )
            if path in PUBLIC:
                assert response.status_code == 200, (path, response.text)
            elif method == "HEAD":
                assert (response.status_code, response.headers["x-ms-error-code"]) == (401, "Unauthorized"), path
            else:
                assert_error(response, 401, "Unauthorized", message=UNTRUSTED)


def test_a_token_without_grants_may_not_read_metrics(server: InProcessServer, issuer: Issuer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.get("/metrics", headers=bearer(issuer.token()))
    assert_error(response, 403, "Forbidden", message=f"token '{OID}' lacks the 'metrics' scope")


def test_without_an_issuer_a_token_gets_a_401_saying_how_to_accept_tokens(issuer: Issuer) -> None:
    with in_process() as plain:
        response = chat(plain, issuer.token())
    assert_error(
        response,
        401,
        "Unauthorized",
        message=PREFIX + "this server does not accept bearer tokens; configure AIMI_OIDC_ISSUER",
    )


def test_grants_limit_a_token_to_deployments_and_scopes(issuer: Issuer) -> None:
    with in_process({"oidc_issuer": [issuer.url]}) as limited:
        auth = AuthConfig.model_validate(
            {
                "oidc": {
                    "grants": [
                        {"claim": "roles", "value": "Chat.User", "deployments": ["elsewhere"]},
                        {"claim": "roles", "value": "Ops", "scopes": ["metrics"]},
                    ]
                }
            }
        )
        runtime_of(limited.app).tokens.policy = token_policy(runtime_of(limited.app).settings, auth)
        name = limited.deployment.name
        assert_error(
            chat(limited, issuer.token(roles=["Chat.User"])),
            403,
            "Forbidden",
            message=f"token '{OID}' may not use deployment '{name}'",
        )
        assert_error(
            chat(limited, issuer.token(roles=[])),
            403,
            "Forbidden",
            message=f"token '{OID}' lacks the 'inference' scope",
        )
        with httpx.Client(base_url=limited.url, timeout=30) as client:
            assert client.get("/metrics", headers=bearer(issuer.token(roles=["Ops"]))).status_code == 200


def test_each_caller_has_the_file_quota_of_its_own(issuer: Issuer) -> None:
    with in_process({"oidc_issuer": [issuer.url]}) as server:
        auth = AuthConfig.model_validate({"oidc": {"quota": {"requests_per_minute": 1}}})
        runtime_of(server.app).tokens.policy = token_policy(runtime_of(server.app).settings, auth)
        assert chat(server, issuer.token(oid="caller-one")).status_code == 200
        assert_error(chat(server, issuer.token(oid="caller-one")), 429, "TooManyRequests")
        assert chat(server, issuer.token(oid="caller-two")).status_code == 200


def test_with_the_issuer_down_and_no_keys_cached_a_token_gets_503_with_retry_after() -> None:
    with running_issuer() as down, in_process({"oidc_issuer": [down.url]}) as server:
        down.down = True
        response = chat(server, down.token())
        assert_error(
            response,
            503,
            "ServiceUnavailable",
            message="the signing keys of the token's issuer cannot be fetched right now; try again in 5 s",
        )
        assert response.headers["retry-after"] == "5"
        # /health stays public and answers without the token's help.
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/health", headers=bearer(down.token())).status_code == 200


def test_the_azure_sdk_sends_a_token_over_plain_http_only_when_told_to(server: InProcessServer, issuer: Issuer) -> None:
    """docs/auth.md's opt-out for a server on one's own machine: ``enforce_https=False`` per call."""

    class Credential:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken(issuer.token(), int(issuer.claims()["exp"]))

    with ChatCompletionsClient(endpoint=f"{server.url}/models", credential=Credential(), retry_total=0) as client:
        with pytest.raises(ServiceRequestError, match="Bearer token authentication is not permitted"):
            client.get_model_info()
        assert client.get_model_info(enforce_https=False).model_name == server.deployment.display_name
