"""Deploying a deployments file on the suite's Ray cluster, and looking at its replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from aimi.scale.app import APP_NAME, application, from_file
from aimi.settings import Settings
from tests.conftest import KEY

HEADERS = {"api-key": KEY}
GATEWAY = "\n[gateway]\nnum_cpus = 0.2\n"
DEPLOY_TIMEOUT = 180


def deploy(port: int, tmp_path: Path, text: str, **settings: Any) -> str:
    """Run ``text`` (a deployments file) as the cluster's aimi application; its URL once healthy."""
    from ray import serve

    path = tmp_path / "aimi.toml"
    path.write_text(text)
    values: dict[str, Any] = {"home": tmp_path / "home", "api_key": [KEY], **settings}
    planned = from_file(Settings(**values), path, lambda _: None, [KEY])
    serve.run(application(planned), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(url), DEPLOY_TIMEOUT, "the gateway to be healthy")
    return url


def undeploy() -> None:
    from ray import serve

    serve.delete(APP_NAME)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", headers=HEADERS, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def replicas(deployment: str, state: str = "RUNNING") -> list[dict[str, Any]]:
    """The replicas of one of the application's Serve deployments, in ``state``."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    app = details["applications"].get(APP_NAME)
    if app is None or deployment not in app["deployments"]:
        return []
    return [r for r in app["deployments"][deployment]["replicas"] if r["state"] == state]


def replaced(deployment: str, old: dict[str, Any]) -> bool:
    """Whether a replica other than ``old`` runs for ``deployment``."""
    return any(r["replica_id"] != old["replica_id"] for r in replicas(deployment))


def kill_replica(replica: dict[str, Any]) -> None:
    import ray

    ray.kill(ray.get_actor(replica["actor_name"], namespace="serve"), no_restart=True)
