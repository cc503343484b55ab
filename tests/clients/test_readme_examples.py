"""The README's quickstarts are the files in examples/, and they run against a live aimi."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EXAMPLES = [
    "examples/azure_quickstart.py",
    "examples/openai_quickstart.py",
    "examples/azure_openai_quickstart.py",
    "examples/curl.sh",
    "tests/clients/js/quickstart.mjs",
]


@pytest.mark.parametrize("example", EXAMPLES)
def test_readme_shows_the_example_verbatim(example: str) -> None:
    assert (ROOT / example).read_text().strip() in README


def _run(command: list[str], live_server: LiveServer) -> str:
    env = {
        **os.environ,
        "AIMI_API_KEY": live_server.key,
        "AIMI_ENDPOINT": f"{live_server.url}/models",
        "AIMI_OPENAI_BASE_URL": f"{live_server.url}/v1",
        "AIMI_URL": live_server.url,
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_azure_quickstart_runs(live_server: LiveServer) -> None:
    out = _run([sys.executable, "examples/azure_quickstart.py"], live_server)
    assert "'model_name': 'SmolLM2-135M-Instruct'" in out


def test_openai_quickstart_runs(live_server: LiveServer) -> None:
    out = _run([sys.executable, "examples/openai_quickstart.py"], live_server)
    assert out.rstrip().endswith("tokens]")


def test_azure_openai_quickstart_runs(live_server: LiveServer) -> None:
    out = _run([sys.executable, "examples/azure_openai_quickstart.py"], live_server)
    assert out.strip()


def test_curl_quickstart_runs(live_server: LiveServer) -> None:
    out = _run(["sh", "examples/curl.sh"], live_server)
    assert '"model_type":"chat-completions"' in out
    assert '"object":"chat.completion"' in out
    assert out.rstrip().endswith("data: [DONE]")
