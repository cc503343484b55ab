"""hf:// model sources, fetched for real by huggingface_hub from a local stand-in of the Hub."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants
import pytest

from aimi.deployments import sources

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_StandInSecretToken0123456789"
REPO = {
    "weights.gguf": b"GGUF-hub-weights",
    "clip/config.json": b'{"model_type": "clip"}',
    "clip/model.safetensors": b"clip-tensors",
    "README.md": b"# a model",
}


@dataclass
class Hub:
    """What the stand-in serves, and every request it saw: (method, path, Authorization header)."""

    url: str = ""
    repos: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"org/model": dict(REPO)})
    private: set[str] = field(default_factory=set)
    revisions: tuple[str, ...] = ("main", "v1", COMMIT)
    failing: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def gets(self, suffix: str) -> int:
        return sum(1 for method, path, _ in self.requests if method == "GET" and path.endswith(suffix))


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _send(self, status: int, payload: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(payload)

        def _error(self, status: int, code: str, message: str, body: bool) -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": message, "X-Repo-Commit": COMMIT}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers, body)

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            auth = self.headers.get("Authorization")
            hub.requests.append((self.command, path, auth))
            api = path.startswith("/api/models/")
            parts = path.removeprefix("/api/models/" if api else "/").split("/")
            repo, files = "/".join(parts[:2]), hub.repos.get("/".join(parts[:2]))
            if files is None or (repo in hub.private and auth != f"Bearer {TOKEN}"):
                return self._error(401, "RepoNotFound", "Repository not found", body)
            if len(parts) < 4 or parts[3] not in hub.revisions:
                return self._error(404, "RevisionNotFound", "Invalid rev id", body)
            kind, name = parts[2], "/".join(parts[4:])
            if api and kind == "revision":
                info = {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            if api and kind == "tree":
                tree = [
                    {"type": "file", "path": f, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for f, data in files.items()
                    if f.startswith(name)
                ]
                return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
            if not api and kind == "resolve":
                if name in hub.failing:
                    status, message = hub.failing[name]
                    return self._error(status, "", message, body)
                if name not in files:
                    return self._error(404, "EntryNotFound", "Entry not found", body)
                data = files[name]
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._send(200, data, {"ETag": etag, "X-Repo-Commit": COMMIT}, body)
            return self._error(404, "", "no such route", body)

    return Handler


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Hub]:
    """The stand-in on a free port, with HF_ENDPOINT pointing at it and no token from the user's setup."""
    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _quiet(_: str) -> None:
    pass


def _index(cache: Path) -> dict[str, dict[str, object]]:
    models: dict[str, dict[str, object]] = json.loads((cache / "models" / "index.json").read_text())["models"]
    return models


def test_a_file_is_fetched_once_then_resolved_from_the_cache_without_a_request(hub: Hub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lines: list[str] = []
    first = sources.resolve("hf://org/model/weights.gguf", cache, lines.append)
    assert first.path.read_bytes() == REPO["weights.gguf"]
    assert (cache / "hf") in first.path.parents
    assert (first.name, first.engine) == ("weights", "llamacpp")
    assert lines[0] == f"aimi: fetching weights.gguf of org/model from {hub.url} into {cache / 'hf'}"
    assert hub.gets("/org/model/resolve/main/weights.gguf") == 1
    record = _index(cache)["hf://org/model/weights.gguf"]
    assert record["sha256"] == hashlib.sha256(REPO["weights.gguf"]).hexdigest()
    assert record["size"] == len(REPO["weights.gguf"])
    assert record["path"] == first.path.relative_to(cache).as_posix()

    seen = len(hub.requests)
    again: list[str] = []
    assert sources.resolve("hf://org/model/weights.gguf", cache, again.append) == first
    assert (len(hub.requests), again) == (seen, [])


def test_a_revision_is_asked_for_and_part_of_the_reference(hub: Hub, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    cache = tmp_path / "link"  # huggingface_hub resolves it; the index is relative to it all the same
    cache.symlink_to(tmp_path / "real")
    path = sources.fetch("hf://org/model@v1/weights.gguf", cache, _quiet)
    assert path.read_bytes() == REPO["weights.gguf"]
    assert hub.gets("/org/model/resolve/v1/weights.gguf") == 1
    assert list(_index(cache)) == ["hf://org/model@v1/weights.gguf"]
    assert str(_index(cache)["hf://org/model@v1/weights.gguf"]["path"]).startswith("hf/models--org--model/snapshots/")
    assert sources.fetch("hf://org/model@v1/weights.gguf", cache, _quiet).read_bytes() == REPO["weights.gguf"]


def test_a_directory_is_a_snapshot_of_just_that_directory(hub: Hub, tmp_path: Path) -> None:
    resolved = sources.resolve("hf://org/model/clip/", tmp_path, _quiet)
    assert sorted(p.name for p in resolved.path.iterdir()) == ["config.json", "model.safetensors"]
    assert (resolved.name, resolved.engine) == ("clip", "clip")
    assert hub.gets("/weights.gguf") == 0
    record = _index(tmp_path)["hf://org/model/clip/"]
    assert record["sha256"] == {
        name: hashlib.sha256(REPO[f"clip/{name}"]).hexdigest() for name in ["config.json", "model.safetensors"]
    }
    assert record["size"] == len(REPO["clip/config.json"]) + len(REPO["clip/model.safetensors"])

    whole = sources.resolve("hf://org/model", tmp_path, _quiet)
    assert whole.name == "model"
    assert sorted(p.relative_to(whole.path).as_posix() for p in whole.path.rglob("*") if p.is_file()) == sorted(REPO)
    assert sorted(_index(tmp_path)) == ["hf://org/model/", "hf://org/model/clip/"]


def test_what_is_not_there_is_named(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(sources.ModelSourceError, match=f"org/model on {hub.url} holds no nope.gguf"):
        sources.fetch("hf://org/model/nope.gguf", tmp_path, _quiet)
    with pytest.raises(sources.ModelSourceError, match="org/model on .* holds no nope/"):
        sources.fetch("hf://org/model/nope/", tmp_path, _quiet)
    with pytest.raises(sources.ModelSourceError, match="org/other is not a model repository on"):
        sources.fetch("hf://org/other/weights.gguf", tmp_path, _quiet)
    with pytest.raises(sources.ModelSourceError, match="has no revision 'v9'"):
        sources.fetch("hf://org/model@v9/weights.gguf", tmp_path, _quiet)
    with pytest.raises(sources.ModelSourceError, match="must look like hf://org/repo"):
        sources.fetch("hf://just-a-name", tmp_path, _quiet)
    with pytest.raises(sources.ModelSourceError, match="unsafe path"):
        sources.fetch("hf://org/model/../secrets", tmp_path, _quiet)
    assert not (tmp_path / "models" / "index.json").exists()


def test_the_token_is_sent_but_never_shown(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.private.add("org/model")
    with pytest.raises(sources.ModelSourceError, match="or is private") as no_token:
        sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet)
    assert "HF_TOKEN" in str(no_token.value)

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet).read_bytes() == REPO["weights.gguf"]
    fetched = [(method, auth) for method, path, auth in hub.requests if path.endswith("/resolve/main/weights.gguf")]
    assert fetched[-2:] == [("HEAD", f"Bearer {TOKEN}"), ("GET", f"Bearer {TOKEN}")]

    hub.failing["echo.gguf"] = (403, f"token Bearer {TOKEN} may not read this")
    for ref in ("hf://org/model/nope.gguf", "hf://org/model/echo.gguf"):
        with pytest.raises(sources.ModelSourceError) as failed:
            sources.fetch(ref, tmp_path, _quiet)
        assert TOKEN not in str(failed.value)
    assert "failed: HfHubHTTPError: 403 Forbidden: token Bearer *** may not read this" in str(failed.value)


def test_offline_and_not_cached_is_a_clear_error(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(sources.ModelSourceError, match="fetching hf://org/model/weights.gguf from .* failed: "):
        sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet)
    assert hub.requests == []


def test_a_changed_file_is_refused_and_verify_finds_a_same_size_change(hub: Hub, tmp_path: Path) -> None:
    path = sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet)
    path.resolve().write_bytes(b"X" * len(REPO["weights.gguf"]))  # the same size: only hashing sees it
    assert sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet) == path
    with pytest.raises(sources.ModelSourceError, match=f"{path} has sha256 [0-9a-f]{{64}}, expected"):
        sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet, verify=True)
    path.resolve().write_bytes(b"longer than it was")
    with pytest.raises(sources.ModelSourceError, match="aimi models rm hf://org/model/weights.gguf"):
        sources.resolve("hf://org/model/weights.gguf", tmp_path, _quiet)


def test_removing_keeps_what_another_reference_uses(hub: Hub, tmp_path: Path) -> None:
    file = sources.fetch("hf://org/model/clip/config.json", tmp_path, _quiet)
    whole = sources.fetch("hf://org/model/", tmp_path, _quiet)
    blobs = tmp_path / "hf" / "models--org--model" / "blobs"
    assert len(list(blobs.iterdir())) == len(REPO)

    assert sources.remove("hf://org/model", tmp_path) == whole
    assert file.read_bytes() == REPO["clip/config.json"]
    assert [blob.name for blob in blobs.iterdir()] == [hashlib.sha256(REPO["clip/config.json"]).hexdigest()]
    assert list(_index(tmp_path)) == ["hf://org/model/clip/config.json"]

    sources.remove("hf://org/model/clip/config.json", tmp_path)
    assert not (tmp_path / "hf" / "models--org--model").exists()
    assert _index(tmp_path) == {}
    with pytest.raises(sources.ModelSourceError, match="hf://org/model/ is not in the model cache"):
        sources.remove("hf://org/model/", tmp_path)


def test_without_huggingface_hub_the_error_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(sources.ModelSourceError, match="pip install huggingface_hub"):
        sources.fetch("hf://org/model/weights.gguf", tmp_path, _quiet)


def test_importing_aimi_does_not_import_huggingface_hub() -> None:
    code = "import sys, aimi.cli, aimi.deployments.sources; assert 'huggingface_hub' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
