"""The real Azure AI Inference JS SDK (@azure-rest/ai-inference) under Node against a live aimi server.

The scripts in tests/clients/js are what the README shows; this module runs them and checks their output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer

JS_DIR = Path(__file__).parent / "js"
DEPENDENCIES = ("@azure-rest/ai-inference", "@azure/core-auth", "@azure/core-sse")
MAX_TOKENS = 16  # what quickstart.mjs asks for

pytestmark = [
    pytest.mark.node,
    pytest.mark.model,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="the JS SDK tests need Node.js (node) and npm on PATH",
    ),
    # The first test pays for `npm ci` and for starting the live server.
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def js_dir() -> Path:
    """tests/clients/js with its locked node_modules installed (``npm ci`` once, if missing)."""
    if not all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in DEPENDENCIES):
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return JS_DIR


def run_node(js_dir: Path, script: str, endpoint: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIMI_ENDPOINT": endpoint, "AIMI_API_KEY": key}
    return subprocess.run(["node", script], cwd=js_dir, env=env, capture_output=True, text=True, timeout=300)


def last_json_line(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"node exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output on stdout; stderr:\n{result.stderr}"
    return json.loads(lines[-1])


def test_quickstart_info_chat_and_stream(js_dir: Path, live_server: LiveServer) -> None:
    out = last_json_line(run_node(js_dir, "quickstart.mjs", f"{live_server.url}/models", live_server.key))

    assert out["info"] == {
        "model_name": "SmolLM2-135M-Instruct",
        "model_type": "chat-completions",
        "model_provider_name": "HuggingFaceTB",
    }

    chat = out["chat"]
    usage = chat["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= MAX_TOKENS
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Greedy decoding: the answer runs into max_tokens unless the model ends it first.
    assert chat["finish_reason"] == ("length" if usage["completion_tokens"] == MAX_TOKENS else "stop")
    assert isinstance(chat["content"], str) and chat["content"]

    stream = out["stream"]
    assert stream["first_role"] == "assistant"
    assert stream["content"] == chat["content"]  # same greedy request, streamed
    assert stream["finish_reason"] == chat["finish_reason"]
    assert stream["usage"] == usage
    # The role-only first event, at least one content delta; the last choice chunk also carries usage.
    assert 2 <= stream["events"] <= usage["completion_tokens"] + 2


def test_wrong_key_is_401_unauthorized(js_dir: Path, live_server: LiveServer) -> None:
    wrong_key = "wrong-" + live_server.key
    out = last_json_line(run_node(js_dir, "unauthorized.mjs", f"{live_server.url}/models", wrong_key))
    for call in ("info", "chat"):
        assert out[call]["unexpected"] is True, out[call]
        assert out[call]["status"] == "401", out[call]
        assert out[call]["body"]["error"]["code"] == "Unauthorized", out[call]


def test_quickstart_exits_nonzero_on_wrong_key(js_dir: Path, live_server: LiveServer) -> None:
    result = run_node(js_dir, "quickstart.mjs", f"{live_server.url}/models", "wrong-" + live_server.key)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "GET /info failed: HTTP 401" in result.stderr
    assert "Unauthorized" in result.stderr
