"""Several deployments in one aimi: routing by body, header and path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from aimi.deployments.build import DeploymentSpec, from_settings
from aimi.deployments.limits import SamplingDefaults
from aimi.deployments.profile import ModelProfile
from aimi.runtime import runtime_of
from aimi.settings import Settings
from tests.conftest import FAKE_MODEL, InProcessServer, in_process, wait_until

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    settings = Settings(engine="fake", home="/nonexistent")
    [base] = from_settings(settings, FAKE_MODEL)

    def chat(name: str, text: str) -> DeploymentSpec:
        config = replace(base.engine_config, options={"text": text})
        return replace(base, name=name, display_name=name.title(), engine_config=config)

    embed_config = replace(base.engine_config, options={"kind": "embeddings"})
    specs = [
        chat("alpha", "from alpha"),
        chat("beta", "from beta"),
        replace(base, name="vectors", display_name="Vectors", engine_config=embed_config,
                profile=ModelProfile(model_type="embeddings")),
    ]  # fmt: skip
    with in_process(specs=specs) as running:
        yield running


def _text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions", "/models/chat/completions"])
def test_the_body_model_picks_the_deployment(server: InProcessServer, path: str) -> None:
    with server.client() as client:
        assert _text(client.post(path, json={**CHAT, "model": "alpha"})) == "from alpha"
        assert _text(client.post(path, json={**CHAT, "model": "beta"})) == "from beta"


def test_the_deployment_header_picks_the_deployment_and_wins_over_the_body(server: InProcessServer) -> None:
    with server.client() as client:
        response = client.post(
            "/chat/completions", json={**CHAT, "model": "alpha"}, headers={"azureml-model-deployment": "beta"}
        )
        assert _text(response) == "from beta"


@pytest.mark.parametrize("path", ["/deployments/beta/chat/completions", "/deployments/beta/v1/chat/completions"])
def test_the_path_pins_the_deployment_and_wins_over_header_and_body(server: InProcessServer, path: str) -> None:
    with server.client() as client:
        response = client.post(path, json={**CHAT, "model": "alpha"}, headers={"azureml-model-deployment": "alpha"})
        assert _text(response) == "from beta"


def test_info_names_the_deployment_asked_for(server: InProcessServer) -> None:
    with server.client() as client:
        assert client.get("/info", params={"model": "beta"}).json()["model_name"] == "Beta"
        assert client.get("/deployments/vectors/info").json() == {
            "model_name": "Vectors",
            "model_type": "embeddings",
            "model_provider_name": "unknown",
        }


def test_v1_models_lists_every_deployment(server: InProcessServer) -> None:
    with server.client() as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["alpha", "beta", "vectors"]


def test_without_a_name_several_deployments_are_a_400_saying_how_to_name_one(server: InProcessServer) -> None:
    with server.client() as client:
        response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "model")
    assert "azureml-model-deployment" in error["message"] and "/deployments/{name}/" in error["message"]


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/chat/completions", {"json": {**CHAT, "model": "gamma"}}),
        ("/deployments/gamma/chat/completions", {"json": CHAT}),
        ("/info", {"params": {"model": "gamma"}}),
    ],
)
def test_an_unknown_name_is_a_404_that_does_not_list_the_others(
    server: InProcessServer, path: str, kwargs: dict[str, Any]
) -> None:
    with server.client() as client:
        response = client.request("GET" if path == "/info" else "POST", path, **kwargs)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "NotFound",
        "message": "no deployment named 'gamma'",
        "type": "not_found_error",
        "param": "model",
    }


def test_each_deployment_serves_its_own_kind(server: InProcessServer) -> None:
    with server.client() as client:
        embedded = client.post("/embeddings", json={"input": ["x"], "model": "vectors"})
        assert embedded.status_code == 200 and len(embedded.json()["data"][0]["embedding"]) == 8
        wrong = client.post("/chat/completions", json={**CHAT, "model": "vectors"})
        assert wrong.status_code == 404
        assert wrong.json()["error"]["message"] == (
            "chat completions not found on deployment 'vectors', which serves embeddings"
        )


@pytest.fixture(scope="module")
def scoped() -> Iterator[InProcessServer]:
    """Two deployments and two named keys: one may use only "alpha"."""
    from aimi.auth.keys import ApiKey

    settings = Settings(engine="fake", home="/nonexistent")
    [base] = from_settings(settings, FAKE_MODEL)
    specs = [replace(base, name="alpha"), replace(base, name="beta")]
    keys = [
        ApiKey.from_secret("alpha-only-key-0123456789", "alpha-team", frozenset({"alpha"})),
        ApiKey.from_secret("every-deployment-key-0123", "platform"),
    ]
    with in_process(specs=specs, keys=keys) as running:
        yield running


def test_a_key_limited_to_some_deployments_gets_403_on_the_others(scoped: InProcessServer) -> None:
    headers = {"api-key": "alpha-only-key-0123456789"}
    with httpx.Client(base_url=scoped.url, headers=headers) as client:
        assert client.post("/chat/completions", json={**CHAT, "model": "alpha"}).status_code == 200
        denied = client.post("/chat/completions", json={**CHAT, "model": "beta"})
        assert denied.status_code == 403
        assert denied.headers["x-ms-error-code"] == "Forbidden"
        assert denied.json()["error"] == {
            "code": "Forbidden",
            "message": "key 'alpha-team' may not use deployment 'beta'",
            "type": "permission_error",
            "param": None,
        }
        assert client.get("/deployments/beta/info").status_code == 403
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["alpha"]


def test_a_key_without_limits_uses_every_deployment(scoped: InProcessServer) -> None:
    with httpx.Client(base_url=scoped.url, headers={"api-key": "every-deployment-key-0123"}) as client:
        assert client.post("/chat/completions", json={**CHAT, "model": "beta"}).status_code == 200
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["alpha", "beta"]


def test_health_shows_each_deployment_only_to_a_caller_with_a_key(scoped: InProcessServer) -> None:
    assert httpx.get(f"{scoped.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{scoped.url}/health", headers={"api-key": "wrong"}).json() == {"status": "ok"}
    limited = httpx.get(f"{scoped.url}/health", headers={"api-key": "alpha-only-key-0123456789"}).json()
    assert limited["deployments"] == {"alpha": "ready"}
    ledger = runtime_of(scoped.app).ledger
    wait_until(lambda: ledger.pending == 0, 10, "the earlier requests' usage records written")
    full = httpx.get(f"{scoped.url}/health", headers={"api-key": "every-deployment-key-0123"}).json()
    assert full == {
        "status": "ok",
        "deployments": {"alpha": "ready", "beta": "ready"},
        "quota": {"backend": "memory", "state": "ok", "on_error": "none"},
        "usage_ledger": {"state": "ok", "pending": 0, "dropped": 0},
    }


@pytest.fixture
def split() -> Iterator[InProcessServer]:
    """An endpoint "live" sending 80% to "blue" and 20% to "green", mirroring all of it to "shadow".

    One server per test: mirrored requests run in background tasks that outlive the response, so
    on a shared server the shadow would still be serving an earlier test's mirrors while the next
    test counts its own."""
    from aimi.deployments.registry import Endpoint

    settings = Settings(engine="fake", home="/nonexistent")
    [base] = from_settings(settings, FAKE_MODEL)

    def fake(name: str) -> DeploymentSpec:
        return replace(base, name=name, engine_config=replace(base.engine_config, options={"text": name}))

    endpoint = Endpoint("live", (("blue", 80.0), ("green", 20.0)), mirror="shadow", mirror_percent=100.0)
    specs = [fake("blue"), fake("green"), fake("shadow")]
    with in_process(specs=specs, endpoints=[endpoint]) as running:
        yield running


def test_an_endpoint_splits_traffic_by_weight(split: InProcessServer) -> None:
    counts = {"blue": 0, "green": 0}
    with split.client() as client:
        for _ in range(600):
            counts[_text(client.post("/v1/chat/completions", json={**CHAT, "model": "live", "max_tokens": 1}))] += 1
    # 600 draws at p = 0.8: sd = sqrt(600 * 0.8 * 0.2) = 9.8; 5 sd either side fails one run in millions.
    assert abs(counts["blue"] - 480) <= 49, counts


def test_an_endpoint_mirrors_to_its_shadow_whose_answers_are_discarded(split: InProcessServer) -> None:
    shadow = split.fake("shadow")
    before = shadow.completed
    with split.client() as client:
        answers = {_text(client.post("/chat/completions", json={**CHAT, "model": "live"})) for _ in range(5)}
    assert answers <= {"blue", "green"}
    wait_until(lambda: shadow.completed == before + 5, 10, "the shadow to serve every mirrored request")


def test_endpoints_are_listed_and_named_in_keys_like_deployments(split: InProcessServer) -> None:
    with split.client() as client:
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["blue", "green", "shadow", "live"]


def _on_demand(idle: float, cap: int = 0) -> AbstractContextManager[InProcessServer]:
    settings = Settings(engine="fake", home="/nonexistent", max_loaded_models=cap)
    [base] = from_settings(settings, FAKE_MODEL)

    def fake(name: str) -> DeploymentSpec:
        config = replace(base.engine_config, options={"text": name})
        return replace(base, name=name, engine_config=config, idle_unload_seconds=idle)

    return in_process({"max_loaded_models": cap}, specs=[fake("one"), fake("two")])


def _states(server: InProcessServer) -> dict[str, str]:
    states: dict[str, str] = httpx.get(f"{server.url}/health", headers=server.headers).json()["deployments"]
    return states


def test_on_demand_models_load_with_their_first_request_and_unload_when_idle() -> None:
    with _on_demand(idle=0.3) as server, server.client() as client:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        assert _states(server) == {"one": "unloaded", "two": "unloaded"}
        assert _text(client.post("/chat/completions", json={**CHAT, "model": "one"})) == "one"
        wait_until(lambda: _states(server)["one"] == "unloaded", 10, "the idle model to unload")
        assert _states(server)["two"] == "unloaded"
        assert _text(client.post("/chat/completions", json={**CHAT, "model": "one"})) == "one"


def test_past_the_cap_the_least_recently_used_model_unloads_first() -> None:
    with _on_demand(idle=3600, cap=1) as server, server.client() as client:
        assert _text(client.post("/chat/completions", json={**CHAT, "model": "one"})) == "one"
        assert _states(server) == {"one": "ready", "two": "unloaded"}
        assert _text(client.post("/chat/completions", json={**CHAT, "model": "two"})) == "two"
        assert _states(server) == {"one": "unloaded", "two": "ready"}


def test_deployment_sampling_defaults_apply_when_a_request_sets_none() -> None:
    settings = Settings(engine="fake", home="/nonexistent")
    [base] = from_settings(settings, FAKE_MODEL)
    defaults = SamplingDefaults(temperature=0.3, top_p=0.8, max_tokens=2)
    with in_process(specs=[replace(base, defaults=defaults)]) as server, server.client() as client:
        assert client.post("/chat/completions", json=CHAT).status_code == 200
        sent = server.engine.requests[-1]
        assert (sent.temperature, sent.top_p, sent.max_tokens) == (0.3, 0.8, 2)
        body = {**CHAT, "temperature": 1.0, "top_p": 0.5, "max_tokens": 5}
        assert client.post("/chat/completions", json=body).status_code == 200
        sent = server.engine.requests[-1]
        assert (sent.temperature, sent.top_p, sent.max_tokens) == (1.0, 0.5, 5)
