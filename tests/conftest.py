"""Shared fixtures: aimi servers on free ports, in-process (fake engine) or as real processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from aimi.deployments.build import DeploymentSpec, from_settings
from aimi.deployments.profile import ModelProfile
from aimi.deployments.sources import ResolvedModel, resolve
from aimi.engines.fake import FakeEngine
from aimi.runtime import runtime_of
from aimi.server import create_app
from aimi.server.listen import uvicorn_config
from aimi.settings import DEFAULT_MODEL, Settings

KEY = "test-key-0123456789abcdef0123456"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll ``check`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _healthy(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class InProcessServer:
    """aimi's app under uvicorn in a thread of the test process, on a real socket."""

    url: str
    app: Any
    server: uvicorn.Server
    thread: threading.Thread
    headers: dict[str, str] = field(default_factory=lambda: {"api-key": KEY})

    @property
    def engine(self) -> Any:
        return next(iter(runtime_of(self.app).deployments)).engine

    def fake(self, name: str | None = None) -> FakeEngine:
        """The fake engine of deployment ``name`` (the first one by default)."""
        deployments = runtime_of(self.app).deployments
        engine = (deployments.resolve(None) if name is None else next(d for d in deployments if d.name == name)).engine
        assert isinstance(engine, FakeEngine)
        return engine

    @property
    def deployment(self) -> Any:
        return next(iter(runtime_of(self.app).deployments))

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


FAKE_MODEL = ResolvedModel(Path("/nonexistent/fake.gguf"), "fake-model", "Fake-Model", ModelProfile(provider="aimi"))


@contextlib.contextmanager
def in_process(
    settings: dict[str, Any] | None = None,
    model: ResolvedModel = FAKE_MODEL,
    keys: list[Any] | None = None,
    wait_ready: bool = True,
    specs: list[DeploymentSpec] | None = None,
    endpoints: list[Any] | None = None,
) -> Iterator[InProcessServer]:
    """An aimi app on the fake engine (unless ``settings`` say otherwise) in a background thread."""
    home = tempfile.mkdtemp(prefix="aimi-home-")
    values: dict[str, Any] = {"engine": "fake", "home": home, **(settings or {})}
    resolved = Settings(**values)
    app = create_app(
        resolved, specs or from_settings(resolved, model), [KEY] if keys is None else keys, endpoints or ()
    )
    port = free_port()
    config = uvicorn_config(app, resolved, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: server.started, 30, "uvicorn to start")
    running = InProcessServer(url, app, server, thread)
    if wait_ready:
        wait_until(lambda: _healthy(url), 30, "the fake deployment to be ready")
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def fake_server() -> Iterator[InProcessServer]:
    with in_process() as server:
        yield server


@pytest.fixture(scope="session")
def default_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model's file, fetched once into the user's model cache."""
    return resolve(DEFAULT_MODEL, Settings().cache_dir, status=lambda line: print(line, file=sys.stderr)).path


@dataclass
class LiveServer:
    """A real ``aimi serve`` process."""

    url: str
    key: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def aimi_process(
    home: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 300, ca_file: str | None = None
) -> Iterator[LiveServer]:
    """``aimi serve`` with ``args``; with ``ca_file`` (the certificate of ``--ssl-certfile``), over https."""
    port = free_port()
    log = home / "serve.log"
    home.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "AIMI_API_KEY"}
    environment.update({"AIMI_HOME": str(home), **(env or {})})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "aimi", "serve", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    url = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"aimi serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return _healthy(url, ssl.create_default_context(cafile=ca_file) if ca_file else True)

        wait_until(ready, timeout, "aimi serve to become healthy")
        key_file = home / "api-key"
        key = key_file.read_text().strip() if key_file.exists() else ""
        yield LiveServer(url, key, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def embeddings_model_path() -> Path:
    """all-MiniLM-L6-v2's directory, fetched once into the user's model cache."""
    return resolve("all-minilm-l6-v2", Settings().cache_dir, status=lambda line: print(line, file=sys.stderr)).path


@pytest.fixture(scope="session")
def live_embeddings_server(
    tmp_path_factory: pytest.TempPathFactory, embeddings_model_path: Path
) -> Iterator[LiveServer]:
    """``aimi serve --model all-minilm-l6-v2`` with a generated key, shared by the embeddings tests."""
    home = tmp_path_factory.mktemp("aimi-embeddings-home")
    with aimi_process(home, ["--model", "all-minilm-l6-v2"], env={"HF_HUB_OFFLINE": "1"}) as server:
        yield server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, default_model_path: Path) -> Iterator[LiveServer]:
    """``aimi serve`` with the default model and a generated key, shared by the client tests."""
    home = tmp_path_factory.mktemp("aimi-home")
    with aimi_process(home, ["--slots", "2", "--context-size", "2048"]) as server:
        yield server


REDIS_URL = os.environ.get("AIMI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("AIMI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis; the test is skipped, saying so, where there is none."""
    if not _reachable(REDIS_URL, 6379):
        pytest.skip(f"needs Redis at {REDIS_URL} (set AIMI_TEST_REDIS_URL)")
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this run's own on the machine's PostgreSQL, dropped at the end, so that what
    another run left (a newer schema, rows) cannot change what this one sees; the test is
    skipped, saying so, where there is no server."""
    if not _reachable(POSTGRES_URL, 5432):
        pytest.skip(f"needs PostgreSQL at {POSTGRES_URL} (set AIMI_TEST_POSTGRES_URL)")
    import psycopg

    name = f"aimi_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
