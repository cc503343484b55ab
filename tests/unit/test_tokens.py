"""Signed bearer tokens: what is accepted, what is refused and the words of each refusal, and how
the issuer's keys are fetched (once, again on rotation, never in a flood, and not at all while
the issuer is down)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from aimi.auth.jwks import FetchOptions
from aimi.auth.oidc import OidcConfig, policy_from
from aimi.auth.tokens import NOT_CONFIGURED, TokenVerifier
from aimi.protocol.errors import ApiError
from tests.oidc_issuer import AUDIENCE, Issuer, running_issuer

PREFIX = "Auth token validation failed: "


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with running_issuer("RS256", "ES256") as running:
        yield running


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier_for(
    issuer: Issuer, clock: Clock | None = None, config: OidcConfig | None = None, refresh: float = 3600
) -> TokenVerifier:
    policy = policy_from([issuer.url], [AUDIENCE], config)
    options = FetchOptions(timeout=5, refresh=refresh, min_interval=60)
    return TokenVerifier(policy, options, leeway=60, clock=clock or Clock())


async def refusal(verifier: TokenVerifier, token: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await verifier.identify(token)
    error = caught.value
    assert token not in error.message and token not in json.dumps(error.body())
    return error


def segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_valid_token_is_its_oid_with_the_inference_scope(issuer: Issuer, alg: str) -> None:
    verifier = verifier_for(issuer)
    key = next(k for k in issuer.keys if k.alg == alg)
    principal = await verifier.identify(issuer.token(key))
    assert (principal.name, principal.kind) == ("5b3a0b0e-1111-4222-8333-944445555666", "token")
    assert principal.scopes == {"inference"}
    assert principal.deployments is None and principal.quota is None
    await verifier.close()


@pytest.mark.anyio
async def test_without_oid_the_caller_is_the_sub(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    assert (await verifier.identify(issuer.token(oid=None, sub="service-principal-1"))).name == "service-principal-1"
    error = await refusal(verifier, issuer.token(oid=None, sub=None))
    assert error.message == PREFIX + "the token names no caller (it has neither oid nor sub)"
    await verifier.close()


@pytest.mark.anyio
async def test_an_expired_token_is_refused_saying_so(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, issuer.token(exp=1_800_000_000 - 3600 * 24 * 365 * 10, iat=1, nbf=1))
    assert (error.status, error.code) == (401, "Unauthorized")
    assert error.message == (
        PREFIX + "token expired at 2017-01-17T08:00:00Z (this server allows 60 s of clock skew); get a new token"
    )
    assert error.headers()["www-authenticate"] == 'Bearer error="invalid_token"'
    await verifier.close()


@pytest.mark.anyio
async def test_the_leeway_forgives_a_slightly_early_clock(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    now = issuer.claims()["iat"]
    assert (await verifier.identify(issuer.token(exp=now - 30))).kind == "token"
    assert (await verifier.identify(issuer.token(nbf=now + 30))).kind == "token"
    await verifier.close()


@pytest.mark.anyio
async def test_a_token_not_yet_valid_is_refused_saying_so(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, issuer.token(nbf=4_102_444_800, exp=4_102_448_400))
    assert error.message == (
        PREFIX + "token not yet valid: not before 2100-01-01T00:00:00Z (this server allows 60 s of clock skew); "
        "check the clocks"
    )
    await verifier.close()


@pytest.mark.anyio
async def test_a_token_for_another_audience_is_refused_naming_both(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, issuer.token(aud="https://graph.microsoft.com"))
    assert error.message == (
        PREFIX + "audience not accepted: the token is for 'https://graph.microsoft.com'; this server accepts "
        "'https://ml.azure.com' (AIMI_OIDC_AUDIENCE); ask for a token for https://ml.azure.com/.default"
    )
    await verifier.close()


@pytest.mark.anyio
async def test_a_token_of_another_issuer_is_refused_without_fetching_anything(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, issuer.token(iss="https://login.microsoftonline.com/other-tenant/v2.0"))
    assert error.message == (
        PREFIX + "issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers"
    )
    assert issuer.discovery_fetches == issuer.jwks_fetches == 0
    await verifier.close()


@pytest.mark.anyio
async def test_a_tampered_payload_fails_the_signature(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    header, _, signature = issuer.token().split(".")
    forged = ".".join([header, segment(issuer.claims(roles=["Admin"], oid="someone-else")), signature])
    error = await refusal(verifier, forged)
    assert error.message == PREFIX + "the token's signature does not verify with its issuer's key"
    await verifier.close()


@pytest.mark.anyio
async def test_alg_none_is_refused(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    unsigned = segment({"alg": "none", "typ": "JWT"}) + "." + segment(issuer.claims()) + "."
    error = await refusal(verifier, unsigned)
    assert error.message == PREFIX + "tokens signed with none are not accepted; this server accepts RS256, ES256"
    await verifier.close()


@pytest.mark.anyio
async def test_hs256_keyed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    """The classic confusion: an HMAC whose secret is the issuer's public key, which anyone has."""
    verifier = verifier_for(issuer)
    rsa = issuer.keys[0]
    public_pem = rsa.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = segment({"alg": "HS256", "typ": "JWT", "kid": rsa.kid}) + "." + segment(issuer.claims())
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    error = await refusal(verifier, forged)
    assert error.message == PREFIX + "tokens signed with HS256 are not accepted; this server accepts RS256, ES256"
    await verifier.close()


@pytest.mark.anyio
async def test_a_token_whose_alg_does_not_match_its_key_is_refused(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    rsa, ec = issuer.keys
    # Signed with the EC key, but naming the RSA key's kid.
    token = jwt.encode(issuer.claims(), ec.private, algorithm="ES256", headers={"kid": rsa.kid})
    error = await refusal(verifier, token)
    assert error.message == PREFIX + "the token says ES256, but its issuer's key is for RS256"
    await verifier.close()


@pytest.mark.anyio
@pytest.mark.parametrize("claim", ["exp", "aud"])
async def test_a_token_without_a_required_claim_is_refused_naming_it(issuer: Issuer, claim: str) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, issuer.token(**{claim: None}))
    assert error.message == PREFIX + f"the token has no {claim} claim"
    await verifier.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("a.b.c", "the bearer token is not a well-formed JWT"),
        ("x" * 20_000 + ".y.z", "the bearer token is longer than 16384 characters"),
        # Well formed, signed with nothing, claiming nothing: refused before any key is fetched.
        (
            "eyJhbGciOiJSUzI1NiJ9.e30.",
            "issuer not trusted: the token's iss is not one of AIMI_OIDC_ISSUER or [auth.oidc] issuers",
        ),
    ],
)
async def test_garbage_is_refused_saying_what_is_wrong(issuer: Issuer, garbage: str, reason: str) -> None:
    verifier = verifier_for(issuer)
    error = await refusal(verifier, garbage)
    assert (error.status, error.message) == (401, PREFIX + reason)
    assert issuer.jwks_fetches == 0
    await verifier.close()


@pytest.mark.anyio
async def test_without_an_issuer_bearer_tokens_are_refused_saying_how_to_accept_them(issuer: Issuer) -> None:
    verifier = TokenVerifier(policy_from([], [AUDIENCE]), FetchOptions())
    error = await refusal(verifier, issuer.token())
    assert error.message == PREFIX + NOT_CONFIGURED
    assert NOT_CONFIGURED == "this server does not accept bearer tokens; configure AIMI_OIDC_ISSUER"


@pytest.mark.anyio
async def test_a_flood_of_unknown_kids_fetches_the_keys_once_per_interval(issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    await verifier.identify(issuer.token())
    assert issuer.jwks_fetches == 1
    for i in range(200):
        error = await refusal(verifier, issuer.token(headers={"kid": f"made-up-{i}"}))
        assert error.message == PREFIX + "the token's signing key (kid) is not one its issuer publishes"
    assert issuer.jwks_fetches == 1  # the first was fetched less than min_interval (60 s) ago
    clock.now += 61
    await refusal(verifier, issuer.token(headers={"kid": "made-up-again"}))
    assert issuer.jwks_fetches == 2
    await verifier.close()


@pytest.mark.anyio
async def test_a_rotated_key_is_fetched_on_first_sight_and_the_old_one_keeps_working(issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    old = issuer.keys[0]
    await verifier.identify(issuer.token(old))
    clock.now += 61
    new = issuer.rotate()
    assert (await verifier.identify(issuer.token(new))).kind == "token"
    assert issuer.jwks_fetches == 2
    assert (await verifier.identify(issuer.token(old))).kind == "token"
    # The issuer retires the old key; once the cache is refreshed, tokens signed with it are refused.
    issuer.keys.remove(old)
    clock.now += 3601
    await refusal(verifier, issuer.token(old))
    assert issuer.jwks_fetches == 3
    await verifier.close()


@pytest.mark.anyio
async def test_cached_keys_keep_working_while_the_issuer_is_down(issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock, refresh=600)
    await verifier.identify(issuer.token())
    issuer.down = True
    clock.now += 601  # the keys are stale: the refresh fails, the cached ones serve
    assert (await verifier.identify(issuer.token())).kind == "token"
    assert (await verifier.identify(issuer.token())).kind == "token"
    await verifier.close()


@pytest.mark.anyio
async def test_with_no_keys_cached_and_the_issuer_down_the_answer_is_503_with_retry_after(issuer: Issuer) -> None:
    clock = Clock()
    verifier = verifier_for(issuer, clock)
    issuer.down = True
    error = await refusal(verifier, issuer.token())
    assert (error.status, error.code) == (503, "ServiceUnavailable")
    assert error.message == "the signing keys of the token's issuer cannot be fetched right now; try again in 5 s"
    assert error.headers()["Retry-After"] == "5"
    # Within those seconds the issuer is not asked again; after them it is, and it is back.
    await refusal(verifier, issuer.token())
    assert issuer.discovery_fetches == 0
    issuer.down = False
    clock.now += 5
    assert (await verifier.identify(issuer.token())).kind == "token"
    await verifier.close()


@pytest.mark.anyio
async def test_an_issuer_that_does_not_answer_in_time_is_taken_for_down(issuer: Issuer) -> None:
    policy = policy_from([issuer.url], [AUDIENCE])
    verifier = TokenVerifier(policy, FetchOptions(timeout=0.3, min_interval=60), clock=Clock())
    issuer.stall = 2.0
    error = await refusal(verifier, issuer.token())
    assert (error.status, error.retry_after) == (503, 5.0)
    await verifier.close()


@pytest.mark.anyio
async def test_a_discovery_document_naming_another_issuer_is_not_trusted(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    url = issuer.url
    issuer.url = "https://login.example.com/elsewhere"
    try:
        error = await refusal(verifier, issuer.token(iss=url))
    finally:
        issuer.url = url
    assert error.status == 503
    await verifier.close()


@pytest.mark.anyio
async def test_grants_map_roles_scp_and_groups_to_scopes_and_deployments(issuer: Issuer) -> None:
    config = OidcConfig.model_validate(
        {
            "grants": [
                {"claim": "roles", "value": "Chat.User", "deployments": ["chat"]},
                {"claim": "scp", "value": "Embed", "deployments": ["embed"]},
                {"claim": "groups", "value": "ops-group-id", "scopes": ["metrics", "admin"]},
                {"claim": "oid", "value": "limited-oid", "quota": {"requests_per_minute": 5}},
            ]
        }
    )
    verifier = verifier_for(issuer, config=config)

    chat = await verifier.identify(issuer.token(roles=["Chat.User"]))
    assert (chat.scopes, chat.deployments) == (frozenset({"inference"}), frozenset({"chat"}))
    both = await verifier.identify(issuer.token(roles=["Chat.User"], scp="openid Embed"))
    assert (both.scopes, both.deployments) == (frozenset({"inference"}), frozenset({"chat", "embed"}))
    ops = await verifier.identify(issuer.token(groups=["ops-group-id"]))
    assert ops.scopes == {"metrics", "admin"} and ops.deployments is None
    limited = await verifier.identify(issuer.token(oid="limited-oid"))
    assert limited.quota is not None and limited.quota.requests_per_minute == 5 and limited.deployments is None
    nobody = await verifier.identify(issuer.token(roles=["Something.Else"]))
    assert nobody.scopes == frozenset() and not nobody.may("inference")
    await verifier.close()
