"""Deployments files: quotas, prices, key scopes and content safety parse into what the server
uses, and every mistake names the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimi.deployments.build import DeploymentSpec, from_config, keys_from_config
from aimi.deployments.config import ConfigError, parse_config
from aimi.quota.api import QuotaLimits
from aimi.safety.blocklist import Blocklist
from aimi.safety.policy import Action, SafetyPolicy
from aimi.settings import Settings
from aimi.usage.records import Prices

FILE = """
[[deployments]]
name = "chat"
model = "model.gguf"
[deployments.quota]
tokens_per_minute = 5000
requests_per_minute = 0
[deployments.prices]
prompt_per_1m = 0.5
completion_per_1m = 1.5
[deployments.safety]
violence = "low"
self_harm = "off"
jailbreak = true
action = "annotate"
window = 64
overlap = 16
on_error = "open"
[[deployments.safety.blocklists]]
name = "rules"
terms = ["bluebird"]
patterns = ['\\d{3}-\\d{4}']

[[deployments]]
name = "plain"
model = "model.gguf"

[[keys]]
name = "team"
secret = "team-secret-0123456789"
scopes = ["inference", "metrics"]
[keys.quota]
requests_per_minute = 60
max_concurrent = 2

[[keys]]
name = "ops"
secret = "ops-secret-0123456789ab"
"""


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[DeploymentSpec]:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    settings = Settings(home=tmp_path, cache_dir=tmp_path, quota_max_concurrent=4)
    return from_config(settings, parse_config(FILE), lambda _: None)


def test_quota_prices_and_safety_reach_the_deployment(specs: list[DeploymentSpec]) -> None:
    chat, plain = specs
    # 0 turns a limit off; an absent one keeps the server's.
    assert chat.quota == QuotaLimits(requests_per_minute=None, tokens_per_minute=5000, max_concurrent=4)
    assert plain.quota == QuotaLimits(requests_per_minute=1000, tokens_per_minute=200_000, max_concurrent=4)
    assert chat.prices == Prices(0.5, 1.5)
    assert plain.prices is None
    assert chat.safety == SafetyPolicy(
        action=Action.ANNOTATE,
        hate="medium",
        sexual="medium",
        violence="low",
        self_harm="off",
        blocklists=(Blocklist("rules", ("bluebird",), (r"\d{3}-\d{4}",)),),
        jailbreak=True,
        window=64,
        overlap=16,
        on_error="open",
    )
    assert plain.safety is None


def test_keys_carry_their_quota_and_scopes() -> None:
    team, ops = keys_from_config(parse_config(FILE))
    assert team.principal.quota == QuotaLimits(requests_per_minute=60, tokens_per_minute=None, max_concurrent=2)
    assert team.principal.scopes == frozenset({"inference", "metrics"})
    assert ops.principal.quota == QuotaLimits()
    assert ops.principal.scopes == frozenset({"inference"})
    assert not ops.principal.may("metrics") and not ops.principal.may("admin")


def test_blocklists_match_whole_terms_in_any_case_and_patterns() -> None:
    rules = Blocklist("rules", ("project bluebird",), (r"\b\d{3}-\d{2}-\d{4}\b",))
    assert rules.matches("Tell me about Project BLUEBIRD now")
    assert not rules.matches("project bluebirds are nice")  # a whole term, not a prefix
    assert rules.matches("ssn 123-45-6789")
    assert not rules.matches("call 123-456-7890")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('violence = "extreme"', "deployments[0] ('chat').safety.violence"),
        ("window = 4", "deployments[0] ('chat').safety.window"),
        ('classifier = "magic"', "deployments[0] ('chat').safety.classifier"),
        ("patterns = ['(unclosed']", "deployments[0] ('chat').safety.blocklists[0] ('rules').patterns"),
        ("patterns = ['(a+)+b']", "repeats a repetition, which can take exponential time"),
        ('jailbreak = true\nclassifier = "blocklist"', "jailbreak detection needs the embedded or azure classifier"),
        ("overlap = 0", "deployments[0] ('chat').safety.overlap"),
        (
            'classifier = "guard"\n[deployments.safety.classifier_options]\ndeployment = "nowhere"',
            "deployments[0] ('chat').safety.classifier_options.deployment: name another deployment",
        ),
        (
            'classifier = "azure"\n[deployments.safety.classifier_options]\nendpoint = "https://x"',
            "deployments[0] ('chat').safety.classifier_options.key_env is required",
        ),
        (
            'classifier = "azure"\n[deployments.safety.classifier_options]\nendpoint = "https://x"\nkey = "abc"',
            "not the key itself",
        ),
    ],
)
def test_safety_mistakes_name_the_field(change: str, message: str) -> None:
    head = '[[deployments]]\nname = "chat"\nmodel = "model.gguf"\n[deployments.safety]\n'
    blocklist = '[[deployments.safety.blocklists]]\nname = "rules"\n'
    if change.startswith("patterns"):
        text = head + blocklist + change + "\n"
    else:
        text = head + change + "\n" + blocklist + 'terms = ["x"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[deployments.quota]\ntokens_per_minute = -1", "deployments[0] ('chat').quota.tokens_per_minute"),
        ("[deployments.quota]\nper_hour = 5", "deployments[0] ('chat').quota.per_hour"),
        ("[deployments.prices]\nprompt_per_1m = -0.1", "deployments[0] ('chat').prices.prompt_per_1m"),
    ],
)
def test_quota_mistakes_name_the_field(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[[deployments]]\nname = "chat"\nmodel = "model.gguf"\n{table}\n')
    assert message in str(caught.value)


def test_a_key_scope_must_be_known() -> None:
    text = '[[deployments]]\nname = "c"\nmodel = "m.gguf"\n[[keys]]\nname = "k"\nsecret = "0123456789abcdefg"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text + 'scopes = ["root"]\n')
    assert "keys[0] ('k').scopes[0]: Input should be 'inference', 'metrics' or 'admin'" in str(caught.value)
