"""The supervisor over the real llama.cpp engine: a dead engine is replaced by a fresh one that
loads the model again and answers.

llama.cpp runs inside aimi's process (xllamacpp), so there is no separate engine process to
kill: a crash of llama.cpp itself takes the server down with it (that is for the service
manager). What aimi sees of a dead engine is an engine whose server is gone and whose health is
``dead``; the test makes it so by closing the live engine under the server, then watches the
supervisor restart it.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import httpx
import pytest

from aimi.deployments.profile import ModelProfile
from aimi.deployments.sources import ResolvedModel
from tests.conftest import in_process, wait_until

pytestmark = pytest.mark.model
CHAT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


def test_a_dead_llama_cpp_engine_is_restarted_with_its_model_and_answers_again(default_model_path: Path) -> None:
    model = ResolvedModel(default_model_path, "smollm2", "SmolLM2", ModelProfile())
    settings = {"engine": "llamacpp", "slots": 1, "context_size": 512, "threads": 2, "engine_restart_backoff": 1.0}
    with in_process(settings, model=model) as server, server.client() as http:
        assert http.post("/chat/completions", json=CHAT).status_code == 200
        dead = server.deployment.engine
        loop = server.server.servers[0].get_loop()
        asyncio.run_coroutine_threadsafe(dead.close(), loop).result(60)

        refused = http.post("/chat/completions", json=CHAT)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["message"] in (
            "deployment 'smollm2' has no running engine; it is being restarted",
            "deployment 'smollm2' is restarting its engine",
        )
        # Until the restart is due (at most the 1 s back-off), plus as long as the model took to load.
        loading = server.deployment.supervision.load_seconds
        assert 1 <= int(refused.headers["retry-after"]) <= math.ceil(1 + loading) + 1
        wait_until(lambda: httpx.get(f"{server.url}/health").status_code == 200, 120, "llama.cpp to be restarted")

        assert server.deployment.engine is not dead
        answer = http.post("/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
        metrics = http.get("/metrics").text
        assert 'aimi_engine_restarts_total{deployment="smollm2"} 1.0' in metrics
