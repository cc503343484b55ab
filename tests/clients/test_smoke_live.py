"""The live server fixture itself: the default model answers over HTTP."""

import httpx

from tests.conftest import LiveServer


def test_live_server_answers_chat(live_server: LiveServer) -> None:
    response = httpx.post(
        f"{live_server.url}/chat/completions",
        headers={"api-key": live_server.key},
        json={"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 5, "temperature": 0},
        timeout=60,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
