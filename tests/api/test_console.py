"""The web console's page and assets: public, static, under a strict Content-Security-Policy; and
``GET /admin/status``, the Deployments page's data, behind the admin scope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aimi.auth.keys import ApiKey
from aimi.console import ASSETS, asset
from aimi.server.console import CONTENT_SECURITY_POLICY
from tests.conftest import KEY, InProcessServer, in_process, wait_until


@pytest.fixture(scope="module")
def server() -> Iterator[InProcessServer]:
    inference_only = ApiKey.from_secret("inference-only-key", "app", scopes=frozenset({"inference"}))
    with in_process(keys=[KEY, inference_only]) as running:
        yield running


@pytest.mark.parametrize(
    "path, name", [("/", "index.html"), ("/console/app.js", "app.js"), ("/console/app.css", "app.css")]
)
def test_the_console_files_are_served_without_a_key_under_a_strict_policy(
    server: InProcessServer, path: str, name: str
) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 200
    assert response.content == asset(name)
    assert response.headers["content-type"] == ASSETS[name]
    assert response.headers["content-security-policy"] == (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in response.headers


def test_the_page_loads_only_its_own_script_and_style_and_no_inline_code() -> None:
    page = asset("index.html").decode()
    assert '<script type="module" crossorigin src="/console/app.js"></script>' in page
    assert '<link rel="stylesheet" crossorigin href="/console/app.css">' in page
    assert page.count("<script") == 1 and "style=" not in page and "<style" not in page
    assert "http://" not in page and "https://" not in page  # nothing from another origin
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY


def test_the_script_keeps_the_key_out_of_local_storage_and_urls() -> None:
    script = asset("app.js").decode()
    assert "sessionStorage" in script
    assert "localStorage" not in script
    assert "document.cookie" not in script


def test_an_unchanged_asset_revalidates_with_a_304(server: InProcessServer) -> None:
    first = httpx.get(f"{server.url}/console/app.js")
    again = httpx.get(f"{server.url}/console/app.js", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert first.headers["cache-control"] == "no-cache"


def test_a_cross_site_preflight_gets_no_cors_permission(server: InProcessServer) -> None:
    """A page of another origin cannot send the api-key header (its preflight is refused), so it
    cannot drive the admin routes through a signed-in console: the key is never ambient."""
    response = httpx.options(
        f"{server.url}/admin/status",
        headers={
            "origin": "https://evil.example",
            "access-control-request-method": "GET",
            "access-control-request-headers": "api-key",
        },
    )
    assert response.status_code == 401
    assert not [name for name in response.headers if name.startswith("access-control-")]


def test_admin_status_describes_each_deployment(server: InProcessServer) -> None:
    response = httpx.get(f"{server.url}/admin/status", headers={"api-key": KEY})
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [
            {
                "name": "fake-model",
                "model": "Fake-Model",
                "engine": "fake",
                "state": "ready",
                "reason": None,
                "slots": 2,
                "busy": 0,
                "queued": 0,
                "max_queue": 64,
                "context_length": 2048,
                "quota": {"requests_per_minute": 1000, "tokens_per_minute": 200000},
            }
        ],
    }


def test_admin_status_needs_the_admin_scope(server: InProcessServer) -> None:
    assert httpx.get(f"{server.url}/admin/status").status_code == 401
    refused = httpx.get(f"{server.url}/admin/status", headers={"api-key": "inference-only-key"})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "key 'app' lacks the 'admin' scope"


def test_admin_status_gives_the_reason_a_deployment_failed() -> None:
    with (
        in_process({"engine_options": {"fail_load": True}}, wait_ready=False) as server,
        httpx.Client(base_url=server.url, headers={"api-key": KEY}) as client,
    ):

        def row() -> dict[str, Any]:
            found: dict[str, Any] = client.get("/admin/status").json()["data"][0]
            return found

        wait_until(lambda: row()["reason"] is not None, 30, "the deployment to fail")
        failed = row()
        assert failed["state"] in ("failed", "restarting")
        assert failed["reason"] == "the fake engine was told to fail loading"
