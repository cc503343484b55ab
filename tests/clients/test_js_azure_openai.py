"""The openai npm package's ``AzureOpenAI`` under Node against a live ``aimi serve``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.helpers import CHAT_MODEL, EMBEDDINGS_DIMS, EMBEDDINGS_MODEL
from tests.clients.test_js_sdk import JS_DIR, last_json_line
from tests.conftest import LiveServer

pytestmark = [
    pytest.mark.node,
    pytest.mark.model,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="the JS SDK tests need Node.js (node) and npm on PATH",
    ),
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def js_dir() -> Path:
    """tests/clients/js with its locked node_modules installed (``npm ci`` once, if missing)."""
    if not (JS_DIR / "node_modules" / "openai" / "package.json").is_file():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return JS_DIR


def test_azure_openai_chat_stream_tool_json_and_wrong_key(js_dir: Path, live_server: LiveServer) -> None:
    env = {
        **os.environ,
        "AIMI_ENDPOINT": live_server.url,
        "AIMI_API_KEY": live_server.key,
        "AIMI_DEPLOYMENT": CHAT_MODEL,
    }
    result = subprocess.run(
        ["node", "azure_openai.mjs"], cwd=js_dir, env=env, capture_output=True, text=True, timeout=300
    )
    out = last_json_line(result)
    assert isinstance(out["content"], str) and out["content"]
    assert out["streamed"] == out["content"]
    calls = out["tool_calls"]
    assert len(calls) == 1 and calls[0]["function"]["name"] == "get_weather"
    assert set(json.loads(calls[0]["function"]["arguments"])) == {"city"}
    parsed = json.loads(out["json"])
    assert set(parsed) == {"color"} and parsed["color"] in ("red", "green", "blue")
    assert out["wrong_key"] == {"authentication_error": True, "status": 401}


def test_azure_openai_embeddings_and_wrong_key(js_dir: Path, live_embeddings_server: LiveServer) -> None:
    env = {
        **os.environ,
        "AIMI_ENDPOINT": live_embeddings_server.url,
        "AIMI_API_KEY": live_embeddings_server.key,
        "AIMI_DEPLOYMENT": EMBEDDINGS_MODEL,
    }
    result = subprocess.run(
        ["node", "azure_openai_embeddings.mjs"], cwd=js_dir, env=env, capture_output=True, text=True, timeout=300
    )
    out = last_json_line(result)
    assert out["model"] == EMBEDDINGS_MODEL
    assert out["data"] == [{"index": 0, "dims": EMBEDDINGS_DIMS}, {"index": 1, "dims": EMBEDDINGS_DIMS}]
    assert out["wrong_key"] == {"authentication_error": True, "status": 401}
