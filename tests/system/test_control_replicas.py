"""Two ``aimi serve`` processes sharing one database (SQLite file, then PostgreSQL), and the
``aimi keys``, ``aimi deployments`` and ``aimi audit`` commands on the same database: a change
made on one replica or from the command line holds on every replica within the refresh interval."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.control_helpers import clean
from tests.conftest import LiveServer, aimi_process, wait_until

REFRESH = 1.0
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    clean(url)
    return url


def env_for(database: str) -> dict[str, str]:
    return {"AIMI_DATABASE_URL": database, "AIMI_CONTROL_REFRESH_SECONDS": str(REFRESH)}


@contextlib.contextmanager
def replicas(tmp_path: Path, database: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"")
    args = ["--engine", "fake", "--model", str(model), "--name", "chat"]
    with (
        aimi_process(tmp_path / "a", args, env=env_for(database), timeout=60) as a,
        aimi_process(tmp_path / "b", args, env=env_for(database), timeout=60) as b,
    ):
        yield a, b


def chat(server: LiveServer, secret: str, model: str = "chat") -> int:
    # By path: a server of one deployment ignores the body's model.
    response = httpx.post(
        f"{server.url}/deployments/{model}/v1/chat/completions", json=CHAT, headers={"api-key": secret}, timeout=30
    )
    return response.status_code


def accepts(server: LiveServer, secret: str, model: str, status: int) -> bool:
    return chat(server, secret, model) == status


def admin(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An admin request with the server's own (generated, every scope) key."""
    return httpx.request(method, f"{server.url}{path}", headers={"api-key": server.key}, timeout=30, **kwargs)


def aimi(database: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "AIMI_API_KEY"}
    environment.update({"AIMI_HOME": str(home), **env_for(database)})
    return subprocess.run(
        [sys.executable, "-m", "aimi", *args], capture_output=True, text=True, timeout=120, env=environment
    )


def seconds_until(check: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    wait_until(check, timeout, what)
    return time.monotonic() - started


def test_a_key_made_on_one_replica_works_on_the_other_and_revocation_reaches_both(
    tmp_path: Path, database: str
) -> None:
    with replicas(tmp_path, database) as (a, b):
        made = admin(a, "POST", "/admin/keys", json={"name": "shared"})
        assert made.status_code == 201, made.text
        secret = made.json()["key"]
        assert chat(a, secret) == 200
        took = seconds_until(lambda: chat(b, secret) == 200, 2 * REFRESH + 5, "replica b to accept the key")
        assert took < 2 * REFRESH + 5
        revoked = admin(b, "POST", "/admin/keys/shared/revoke")
        assert revoked.status_code == 200, revoked.text
        assert chat(b, secret) == 401
        took = seconds_until(lambda: chat(a, secret) == 401, 2 * REFRESH + 5, "replica a to refuse the key")
        print(f"revocation reached the other replica in {took:.2f}s (refresh {REFRESH}s)")


def test_a_runtime_deployment_made_on_one_replica_is_served_by_both_and_removed_from_both(
    tmp_path: Path, database: str
) -> None:
    with replicas(tmp_path, database) as (a, b):
        model = tmp_path / "fake.gguf"
        put = admin(a, "PUT", "/admin/deployments/extra", json={"model": str(model), "engine": "fake"})
        assert put.status_code == 201, put.text
        wait_until(lambda: chat(b, b.key, "extra") == 200, 2 * REFRESH + 10, "replica b to serve it")
        deleted = admin(b, "DELETE", "/admin/deployments/extra")
        assert deleted.status_code == 204
        wait_until(lambda: chat(a, a.key, "extra") == 404, 2 * REFRESH + 10, "replica a to drop it")
        sources = {d["name"]: d["source"] for d in admin(a, "GET", "/admin/deployments").json()["data"]}
        assert sources == {"chat": "file"}


def test_the_command_line_issues_rotates_and_revokes_keys_the_servers_honour(tmp_path: Path, database: str) -> None:
    with replicas(tmp_path, database) as (a, b):
        home = tmp_path / "cli"
        created = aimi(
            database,
            home,
            "keys",
            "create",
            "--name",
            "cli-key",
            "--scope",
            "inference",
            "--expires-in",
            "30d",
            "--requests-per-minute",
            "100",
        )
        assert created.returncode == 0, created.stderr
        secret = created.stdout.strip().splitlines()[-1]
        shown = json.loads(created.stdout.strip().rsplit("\n", 1)[0])
        assert shown["name"] == "cli-key" and shown["quota"] == {"requests_per_minute": 100}
        assert shown["created_by"].startswith("cli:")
        for server in (a, b):
            wait_until(partial(accepts, server, secret, "chat", 200), 2 * REFRESH + 5, "the servers to accept it")
        listed = aimi(database, home, "keys", "list", "--format", "json")
        assert listed.returncode == 0 and secret not in listed.stdout
        assert [k["name"] for k in json.loads(listed.stdout)] == ["cli-key"]
        table = aimi(database, home, "keys", "list")
        assert table.stdout.splitlines()[0].split()[:2] == ["NAME", "STATE"]
        rotated = aimi(database, home, "keys", "rotate", "cli-key", "--grace", "0")
        assert rotated.returncode == 0, rotated.stderr
        new = rotated.stdout.strip().splitlines()[-1]
        wait_until(lambda: chat(a, secret) == 401 and chat(a, new) == 200, 2 * REFRESH + 5, "the rotation")
        revoked = aimi(database, home, "keys", "revoke", "cli-key")
        assert revoked.returncode == 0, revoked.stderr
        wait_until(lambda: chat(b, new) == 401, 2 * REFRESH + 5, "the revocation")
        again = aimi(database, home, "keys", "revoke", "cli-key")
        assert again.returncode == 1
        assert again.stderr.strip() == "aimi: the managed key 'cli-key' is already revoked"
        audit = aimi(database, home, "audit", "--format", "json")
        rows = json.loads(audit.stdout)
        assert [r["action"] for r in rows] == ["keys.revoke", "keys.rotate", "keys.create"]
        assert secret not in audit.stdout and new not in audit.stdout


def test_the_command_line_manages_runtime_deployments(tmp_path: Path, database: str) -> None:
    with replicas(tmp_path, database) as (a, b):
        home = tmp_path / "cli"
        model = tmp_path / "fake.gguf"
        created = aimi(
            database,
            home,
            "deployments",
            "create",
            "temp",
            "--model",
            str(model),
            "--engine",
            "fake",
            "--expires-in-hours",
            "168",
        )
        assert created.returncode == 0, created.stderr
        for server in (a, b):
            wait_until(partial(accepts, server, server.key, "temp", 200), 2 * REFRESH + 10, "both to serve it")
        listed = json.loads(aimi(database, home, "deployments", "list", "--format", "json").stdout)
        assert [(d["name"], d["config"]) for d in listed] == [("temp", {"model": str(model), "engine": "fake"})]
        assert listed[0]["expires_at"] is not None
        health = admin(a, "GET", "/health").json()
        assert health["expires"] == {"temp": listed[0]["expires_at"]}
        bad = aimi(database, home, "deployments", "create", "bad", "--engine", "fake")
        assert bad.returncode == 1 and bad.stderr.strip() == "aimi: model is required"
        deleted = aimi(database, home, "deployments", "delete", "temp")
        assert deleted.returncode == 0, deleted.stderr
        for server in (a, b):
            wait_until(partial(accepts, server, server.key, "temp", 404), 2 * REFRESH + 10, "both to drop it")
