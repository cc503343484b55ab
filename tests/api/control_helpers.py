"""Shared pieces of the control-plane tests: servers on SQLite or PostgreSQL, clean tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from aimi.usage.store import connect, migrate
from tests.conftest import InProcessServer, in_process

CONTROL_TABLES = ("managed_keys", "runtime_deployments", "audit_log")
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def clean(url: str) -> None:
    """Empty the control plane's tables (PostgreSQL is shared by the tests that use it)."""
    engine = connect(url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            for table in CONTROL_TABLES:
                connection.execute(sa.text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


@contextlib.contextmanager
def server_on(url: str, **settings: Any) -> Iterator[InProcessServer]:
    with in_process(settings={"database_url": url, "control_refresh_seconds": 0.5, **settings}) as running:
        yield running


def chat_as(server: InProcessServer, secret: str, deployment: str | None = None) -> httpx.Response:
    """A chat request with ``secret``, to ``deployment`` by path (a server of one deployment
    ignores the body's ``model``), else to the server's one deployment."""
    path = f"/deployments/{deployment}/v1/chat/completions" if deployment else "/v1/chat/completions"
    return httpx.post(f"{server.url}{path}", json=CHAT, headers={"api-key": secret}, timeout=30)


def fake_model(directory: Path) -> str:
    path = directory / "fake.gguf"
    path.write_bytes(b"")
    return str(path)
