"""Deployments files: valid ones parse, every kind of mistake names the deployment and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimi.deployments.build import from_config
from aimi.deployments.config import ConfigError, parse_config
from aimi.settings import Settings

VALID = """
[[deployments]]
name = "chat"
model = "model.gguf"
slots = 3
idle_unload_seconds = 120
[deployments.profile]
display_name = "Chat Model"
system_role = false
[deployments.defaults]
temperature = 0.2
top_p = 0.9
max_tokens = 64
[deployments.limits]
max_tokens = 100

[[deployments]]
name = "remote"
engine = "upstream"
[deployments.engine_options]
url = "http://127.0.0.1:9/v1"
api_key_env = "AIMI_TEST_UPSTREAM_KEY"
"""


def test_a_valid_file_builds_every_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIMI_TEST_UPSTREAM_KEY", "secret-upstream-key")
    chat, remote = from_config(Settings(home=tmp_path, cache_dir=tmp_path), parse_config(VALID), lambda _: None)
    assert (chat.name, chat.display_name, chat.engine) == ("chat", "Chat Model", "llamacpp")
    assert (chat.engine_config.slots, chat.idle_unload_seconds) == (3, 120)
    assert chat.profile.system_role is False
    assert (chat.limits.max_tokens, chat.defaults.temperature) == (100, 0.2)
    assert (chat.defaults.top_p, chat.defaults.max_tokens) == (0.9, 64)
    assert chat.limits.max_messages == Settings().limits.max_messages
    assert (remote.engine, remote.engine_config.model_path) == ("upstream", None)
    assert remote.engine_config.options == {"url": "http://127.0.0.1:9/v1", "api_key": "secret-upstream-key"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[deployments]\nname=", "config: not valid TOML: "),
        ("", "config: deployments: is required"),
        ('[[deployments]]\nmodel = "m.gguf"', "config: deployments[0].name: is required"),
        (
            '[[deployments]]\nname = "a b"\nmodel = "m.gguf"',
            "config: deployments[0] ('a b').name: String should match pattern",
        ),
        (
            '[[deployments]]\nname = "a"\nmodel = "m.gguf"\nslot = 2',
            "config: deployments[0] ('a').slot: Extra inputs are not permitted",
        ),
        (
            '[[deployments]]\nname = "a"\nmodel = "m.gguf"\n[deployments.limits]\nmax_tokens = 0',
            "config: deployments[0] ('a').limits.max_tokens: Input should be greater than or equal to 1",
        ),
        (
            '[[deployments]]\nname = "a"\nmodel = "m.gguf"\n[deployments.profile]\nmodel_type = "chat"',
            "config: deployments[0] ('a').profile.model_type: Input should be",
        ),
        ('[[deployments]]\nname = "a"', "config: deployments[0] ('a').model is required"),
        (
            '[[deployments]]\nname = "a"\nmodel = "x.gguf"\n[[deployments]]\nname = "a"\nmodel = "y.gguf"',
            "config: deployment names must be unique; repeated: a",
        ),
        (
            '[[deployments]]\nname = "u"\nengine = "upstream"',
            "config: deployments[0] ('u').engine_options.url is required",
        ),
        (
            '[[deployments]]\nname = "u"\nengine = "upstream"\n[deployments.engine_options]\nurl = "http://x/v1"\n'
            'api_key = "sk-secret"',
            "config: deployments[0] ('u').engine_options: Value error, put the upstream's key in the environment",
        ),
    ],
)
def test_each_mistake_names_the_deployment_and_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "sk-secret" not in str(caught.value)


def test_a_missing_key_variable_and_a_missing_model_name_the_deployment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, cache_dir=tmp_path)
    remote = parse_config(
        '[[deployments]]\nname = "r"\nengine = "upstream"\n[deployments.engine_options]\n'
        'url = "http://x/v1"\napi_key_env = "AIMI_TEST_NOT_SET"'
    )
    with pytest.raises(ConfigError, match=r"deployments\[0\] \('r'\).engine_options.api_key_env: the environment"):
        from_config(settings, remote, lambda _: None)
    missing = parse_config('[[deployments]]\nname = "m"\nmodel = "/nonexistent/m.gguf"')
    with pytest.raises(ConfigError, match=r"deployments\[0\] \('m'\).model: '/nonexistent/m.gguf' is neither"):
        from_config(settings, missing, lambda _: None)


KEYS = """
[[deployments]]
name = "chat"
model = "smollm2-135m-instruct"

[[keys]]
name = "team-a"
secret_env = "AIMI_TEST_TEAM_A"
deployments = ["chat"]

[[keys]]
name = "ops"
sha256 = "{digest}"
"""


def test_file_keys_become_named_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from aimi.auth.keys import KeyVerifier
    from aimi.deployments.build import keys_from_config

    monkeypatch.setenv("AIMI_TEST_TEAM_A", "team-a-secret-0123456789")
    digest = hashlib.sha256(b"ops-secret-0123456789abc").hexdigest()
    keys = keys_from_config(parse_config(KEYS.replace("{digest}", digest)))
    verifier = KeyVerifier(keys)
    team = verifier.identify("team-a-secret-0123456789")
    ops = verifier.identify("ops-secret-0123456789abc")
    assert team is not None and (team.name, team.deployments) == ("team-a", frozenset({"chat"}))
    assert ops is not None and (ops.name, ops.deployments) == ("ops", None)
    assert verifier.identify("wrong") is None


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ('name = "k"', "config: keys[0] ('k'): give exactly one of secret, secret_env and sha256"),
        (
            'name = "k"\nsecret = "0123456789abcdef"\nsha256 = "' + "0" * 64 + '"',
            "config: keys[0] ('k'): give exactly one",
        ),
        ('name = "k"\nsecret = "short"', "config: keys[0] ('k').secret: String should have at least 16 characters"),
        ('name = "k"\nsha256 = "xyz"', "config: keys[0] ('k').sha256: String should match pattern"),
        (
            'name = "k"\nsecret_env = "X"\ndeployments = ["nope"]',
            "config: keys[0] ('k').deployments: no deployment named 'nope'",
        ),
    ],
)
def test_each_key_mistake_is_named(keys: str, message: str) -> None:
    text = '[[deployments]]\nname = "chat"\nmodel = "m.gguf"\n[[keys]]\n' + keys
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "0123456789abcdef" not in str(caught.value)


ENDPOINTS = '[[deployments]]\nname = "blue"\nmodel = "m.gguf"\n[[deployments]]\nname = "green"\nmodel = "m.gguf"\n'


def test_endpoints_become_weighted_routes() -> None:
    from aimi.deployments.build import endpoints_from_config

    text = ENDPOINTS + (
        '[[endpoints]]\nname = "live"\ntraffic = {blue = 90, green = 10}\n'
        'mirror = {deployment = "green", percent = 5}\n'
    )
    [live] = endpoints_from_config(parse_config(text))
    assert (live.name, live.traffic, live.mirror, live.mirror_percent) == (
        "live",
        (("blue", 90.0), ("green", 10.0)),
        "green",
        5.0,
    )


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ('name = "blue"\ntraffic = {green = 1}', "config: endpoints[0] ('blue').name: already names a deployment"),
        ('name = "e"\ntraffic = {red = 1}', "config: endpoints[0] ('e').traffic: no deployment named 'red'"),
        ('name = "e"\ntraffic = {blue = 0}', "config: endpoints[0] ('e').traffic: the weights add up to 0"),
        ('name = "e"\ntraffic = {blue = -1}', "config: endpoints[0] ('e').traffic.blue: Input should be greater than"),
        ('name = "e"\ntraffic = {}', "config: endpoints[0] ('e').traffic: Dictionary should have at least 1 item"),
        (
            'name = "e"\ntraffic = {blue = 1}\nmirror = {deployment = "x", percent = 5}',
            "config: endpoints[0] ('e').mirror.deployment: no deployment named 'x'",
        ),
        (
            'name = "e"\ntraffic = {blue = 1}\nmirror = {deployment = "green", percent = 101}',
            "config: endpoints[0] ('e').mirror.percent: Input should be less than or equal to 100",
        ),
    ],
)
def test_each_endpoint_mistake_is_named(endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(ENDPOINTS + "[[endpoints]]\n" + endpoint)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("written", ["chat-completions", "chat-completion"])
def test_model_type_chat_completions_is_read_in_either_spelling(written: str) -> None:
    text = f'[[deployments]]\nname = "a"\nmodel = "m.gguf"\n[deployments.profile]\nmodel_type = "{written}"'
    assert parse_config(text).deployments[0].profile.model_type == "chat-completions"
