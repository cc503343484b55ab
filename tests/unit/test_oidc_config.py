"""``[auth.oidc]`` in a deployments file, and ``AIMI_OIDC_*``: what they trust, and each mistake named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aimi.auth.oidc import token_policy
from aimi.deployments.config import ConfigError, parse_config
from aimi.settings import Settings

DEPLOYMENT = '[[deployments]]\nname = "chat"\nmodel = "m.gguf"\n'
TENANT_A = "https://login.microsoftonline.com/tenant-a/v2.0"
TENANT_B = "https://sts.windows.net/tenant-b/"


def test_the_file_adds_issuers_with_their_audiences_to_the_settings_ones() -> None:
    config = parse_config(
        DEPLOYMENT
        + f"""
[auth.oidc]
audiences = ["api://aimi"]
[[auth.oidc.issuers]]
url = "{TENANT_A}"
[[auth.oidc.issuers]]
url = "{TENANT_B}"
audiences = ["https://ml.azure.com", "api://b"]
[[auth.oidc.grants]]
claim = "roles"
value = "Chat"
deployments = ["chat"]
"""
    )
    settings = Settings(oidc_issuer=["https://login.microsoftonline.com/tenant-c/v2.0"])
    policy = token_policy(settings, config.auth)
    assert dict(policy.issuers) == {
        "https://login.microsoftonline.com/tenant-c/v2.0": ("https://ml.azure.com",),
        TENANT_A: ("api://aimi",),
        TENANT_B.rstrip("/"): ("https://ml.azure.com", "api://b"),
    }
    assert policy.audiences(TENANT_B) == ("https://ml.azure.com", "api://b")  # with or without the slash
    assert [(g.claim, g.value, g.deployments) for g in policy.grants] == [("roles", "Chat", frozenset({"chat"}))]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[[auth.oidc.issuers]]\nurl = "http://login.example.com/t"',
            "auth.oidc.issuers[0].url: Value error, an issuer must be an https URL (http only on localhost); "
            "got 'http://login.example.com/t'",
        ),
        (
            '[[auth.oidc.grants]]\nclaim = "roles"\nvalue = "x"\ndeployments = ["nope"]',
            "auth.oidc.grants[0].deployments: no deployment named 'nope'",
        ),
        (
            '[[auth.oidc.grants]]\nclaim = "roles"\nvalue = "x"\nscopes = ["root"]',
            "auth.oidc.grants[0].scopes[0]: Input should be 'inference', 'metrics' or 'admin'",
        ),
        (
            '[[auth.oidc.grants]]\nclaim = "oid"\nvalue = "x"\nissuer = "https://elsewhere.example.com/"',
            "auth.oidc.grants[0].issuer: not one of auth.oidc.issuers",
        ),
        ("[auth.oidc]\nissuer = 'https://x'", "auth.oidc.issuer: Extra inputs are not permitted"),
    ],
)
def test_each_mistake_in_auth_oidc_is_named(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(DEPLOYMENT + table, "f.toml")
    assert str(caught.value) == f"f.toml: {message}"


def test_issuers_and_audiences_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMI_OIDC_ISSUER", f"{TENANT_A}, {TENANT_B}")
    monkeypatch.setenv("AIMI_OIDC_AUDIENCE", "https://ml.azure.com,api://aimi")
    settings = Settings()
    assert settings.oidc_issuer == [TENANT_A, TENANT_B]
    assert settings.oidc_audience == ["https://ml.azure.com", "api://aimi"]
    assert settings.oidc_leeway == 60


def test_an_http_issuer_elsewhere_than_localhost_is_refused() -> None:
    with pytest.raises(ValidationError, match="AIMI_OIDC_ISSUER must be an https URL"):
        Settings(oidc_issuer=["http://login.example.com/tenant"])
    assert Settings(oidc_issuer=["http://127.0.0.1:9/t"]).oidc_issuer == ["http://127.0.0.1:9/t"]
