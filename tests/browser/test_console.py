"""The web console in a real browser: headless Chromium (Debian's ``chromium``) driven by
playwright-core (tests/browser/console.mjs) against a live ``aimi serve`` on the fake engine.

Each test runs one scenario of console.mjs and asserts on what the page showed; the scenarios
also save the screenshots in docs/console/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.usage.records import UsageRecord
from aimi.usage.store import LedgerStore
from tests.conftest import LiveServer, aimi_process, npm_installed

HERE = Path(__file__).parent
JS_DIR = HERE.parent / "clients" / "js"  # the JS SDK the README's examples use
SHOTS = HERE.parents[1] / "docs" / "console"
CHROMIUM = os.environ.get("AIMI_TEST_CHROMIUM", "/usr/bin/chromium")
# Long enough, at 20 tokens a second, to see the answer grow and to stop it half-way.
ANSWER = " ".join(f"word{i}" for i in range(60)) + "."
DEPLOYMENT = "console-demo"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"the browser tests need chromium at {CHROMIUM}"),
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="need node and npm"),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def driver() -> Path:
    """console.mjs, with playwright-core installed beside it."""
    return npm_installed(HERE, ["playwright-core"]) / "console.mjs"


LEDGER_ROWS = [
    # (days ago, key, prompt tokens, completion tokens): what the Usage page must draw.
    (2, "team-a", 1200, 300),
    (1, "team-b", 400, 900),
    (1, "team-a", 100, 50),
]


def _write_ledger(home: Path) -> None:
    store = LedgerStore.open(home, None)
    store.ensure()
    now = datetime.now(UTC)
    store.write(
        [
            UsageRecord(
                id=f"seeded-{i}",
                time=now - timedelta(days=ago),
                key=key,
                deployment=DEPLOYMENT,
                model="Console-Demo",
                surface="openai",
                route="chat",
                status=200,
                outcome="ok",
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_ms=100.0,
                ttft_ms=10.0,
                cost=None,
            )
            for i, (ago, key, prompt, completion) in enumerate(LEDGER_ROWS)
        ]
    )
    store.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("console-home")
    model = home / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    _write_ledger(home)
    options = json.dumps({"text": ANSWER, "tokens_per_second": 20})
    args = ["--model", str(model), "--engine", "fake", "--engine-options", options, "--name", DEPLOYMENT]
    with aimi_process(home, args) as running:
        yield running


def scenario(
    driver: Path,
    server: LiveServer,
    name: str,
    key: str | None = None,
    shot_prefix: str = "",
    max_tokens: int | None = None,
) -> dict[str, Any]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CONSOLE_URL": server.url, "CONSOLE_KEY": key or server.key, "SHOTS": str(SHOTS)}
    env["SHOT_PREFIX"] = shot_prefix
    if max_tokens is not None:
        env["CONSOLE_MAX_TOKENS"] = str(max_tokens)
    env["CONSOLE_MODEL"] = str(server.log.parent / "stand-in.gguf")
    env["CHROMIUM"] = CHROMIUM
    result = subprocess.run(["node", str(driver), name], cwd=HERE, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"console.mjs {name} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    seen: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen.pop("problems") == [], "the page logged errors (a CSP violation, an exception)"
    return seen


def test_a_wrong_key_is_refused_with_a_clear_message_and_not_kept(driver: Path, server: LiveServer) -> None:
    seen = scenario(driver, server, "wrong-key")
    assert seen["alert"] == "That key was not accepted: aimi answered 401 Unauthorized. Check it and try again."
    assert seen["stored"] == 0


def test_a_streamed_answer_appears_token_by_token(driver: Path, server: LiveServer) -> None:
    seen = scenario(driver, server, "stream")
    texts = [step["text"] for step in seen["seen"] if step["text"]]
    assert texts[-1] == ANSWER
    # The answer grew in many steps, each a prefix of the next, over time (20 tokens a second).
    assert len(texts) >= 20, texts
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
    times = [step["at"] for step in seen["seen"] if step["text"]]
    assert times[-1] - times[0] >= 1500
    assert seen["status"] == "Done (stop)."
    stats = seen["stats"]
    assert stats["Time to first token"].endswith(" ms")
    # What the server counted for the same conversation (the fake engine's tokens are words).
    same = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello."},
        ]
    }
    usage = httpx.post(f"{server.url}/v1/chat/completions", json=same, headers={"api-key": server.key}).json()["usage"]
    assert stats["Prompt tokens"] == str(usage["prompt_tokens"])
    assert stats["Completion tokens"] == str(usage["completion_tokens"]) == "60"
    # The key stays in this tab's sessionStorage: not in localStorage, not in the URL.
    assert seen["storage"]["local"] == 0
    assert seen["storage"]["session"] == ["aimi.console.key"]
    assert server.key not in seen["storage"]["url"]


def test_the_code_samples_carry_the_endpoint_and_each_one_runs(driver: Path, server: LiveServer) -> None:
    samples = scenario(driver, server, "stream")["samples"]
    assert f"curl {server.url}/models/chat/completions" in samples["curl"]
    assert f'endpoint="{server.url}/models"' in samples["Python (azure-ai-inference)"]
    assert f'base_url="{server.url}/v1"' in samples["Python (openai)"]
    assert f'ModelClient("{server.url}/models"' in samples["JavaScript (@azure-rest/ai-inference)"]
    for text in samples.values():
        assert server.key not in text
    for name in ("Python (openai)", "Python (azure-ai-inference)"):
        env = {**os.environ, "AIMI_API_KEY": server.key}
        ran = subprocess.run([sys.executable, "-c", samples[name]], env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        # The sample asks the whole conversation's request; the fake answers the same text.
        assert ran.stdout.strip() == ANSWER, name
    env = {**os.environ, "AIMI_API_KEY": server.key}
    if shutil.which("curl"):
        ran = subprocess.run(["sh", "-c", samples["curl"]], env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["choices"][0]["message"]["content"] == ANSWER
    js_dir = npm_installed(JS_DIR, ["@azure-rest/ai-inference", "@azure/core-auth"])
    script = js_dir / "console-sample.mjs"
    script.write_text(samples["JavaScript (@azure-rest/ai-inference)"])
    try:
        ran = subprocess.run(["node", str(script)], cwd=js_dir, env=env, capture_output=True, text=True, timeout=120)
    finally:
        script.unlink()
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == ANSWER


def test_stop_cancels_the_stream_and_keeps_the_partial_answer(driver: Path, server: LiveServer) -> None:
    seen = scenario(driver, server, "stop")
    assert seen["status"] == "Stopped: the request was cancelled."
    assert seen["atStop"] == seen["after"]
    assert ANSWER.startswith(seen["atStop"]) and seen["atStop"] != ANSWER
    assert seen["sendEnabled"] is True
    # The server saw the client go: the ledger has the aborted request.
    with httpx.Client(base_url=server.url, headers={"api-key": server.key}) as client:
        rows = client.get("/admin/usage", params={"by": "outcome"}).json()["data"]
    assert {row["outcome"] for row in rows} >= {"aborted"}


def test_the_deployments_page_shows_the_model_engine_state_slots_queue_and_quota(
    driver: Path, server: LiveServer
) -> None:
    seen = scenario(driver, server, "deployments")
    quota = "1000 req/min, 200000 tok/min"
    assert seen["rows"] == [[DEPLOYMENT, "stand-in", "fake", "ready", "0 / 2", "0 / 64", "2048", quota]]
    # The runtime deployment the page created showed up ready, and is gone after its deletion.
    assert seen["addedRow"] == ["extra-demo", "stand-in", "fake", "ready", "0 / 2", "0 / 64", "2048", quota]
    with httpx.Client(base_url=server.url, headers={"api-key": server.key}) as client:
        assert [d["name"] for d in client.get("/admin/deployments").json()["data"]] == [DEPLOYMENT]
        actions = [(row["action"], row["target"]) for row in client.get("/admin/audit").json()["data"]]
    assert ("deployments.create", "extra-demo") in actions and ("deployments.delete", "extra-demo") in actions


def test_a_key_is_created_with_its_secret_shown_once_and_revoked(driver: Path, server: LiveServer) -> None:
    seen = scenario(driver, server, "keys")
    assert seen["secretLength"] >= 32
    assert (seen["before"], seen["after"]) == (200, 401)
    assert seen["listed"][:4] == ["ci-reader", "active", "inference", "all"]
    assert seen["secretStillShown"] == 0
    assert seen["storage"] == {"local": 0, "session": 1}
    with httpx.Client(base_url=server.url, headers={"api-key": server.key}) as client:
        key = client.get("/admin/keys/ci-reader").json()
        actions = [(row["action"], row["target"], row["outcome"]) for row in client.get("/admin/audit").json()["data"]]
    assert key["state"] == "revoked"
    assert ("keys.create", "ci-reader", "ok") in actions and ("keys.revoke", "ci-reader", "ok") in actions


def test_the_usage_page_draws_the_ledger_rows_and_exports_them(driver: Path, server: LiveServer) -> None:
    seen = scenario(driver, server, "usage")
    charts = {
        chart["title"]: {(label, series): value for label, series, value in chart["bars"]} for chart in seen["charts"]
    }
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=ago)).isoformat() for ago in (2, 1)]
    # The seeded rows, stacked prompt over completion tokens (this module's own requests add today and key-1).
    by_day = charts["Tokens by day"]
    assert [by_day[days[0], "prompt tokens"], by_day[days[0], "completion tokens"]] == [1200, 300]
    assert [by_day[days[1], "prompt tokens"], by_day[days[1], "completion tokens"]] == [500, 950]
    by_key = charts["Tokens by key"]
    assert [by_key["team-a", "prompt tokens"], by_key["team-a", "completion tokens"]] == [1300, 350]
    assert [by_key["team-b", "prompt tokens"], by_key["team-b", "completion tokens"]] == [400, 900]
    assert seen["table"][:3] == [
        [days[0], "team-a", DEPLOYMENT, "1", "1200", "300", "–"],
        [days[1], "team-a", DEPLOYMENT, "1", "100", "50", "–"],
        [days[1], "team-b", DEPLOYMENT, "1", "400", "900", "–"],
    ]
    assert seen["csvName"] == f"aimi-usage-since-{(today - timedelta(days=30)).isoformat()}.csv"
    lines = seen["csv"].splitlines()
    assert lines[0].startswith("day,key,deployment,requests,prompt_tokens,completion_tokens")
    assert f"{days[0]},team-a,{DEPLOYMENT},1,1200,300" in "\n".join(lines)


@pytest.mark.model
def test_the_real_default_model_streams_into_the_playground(driver: Path, live_server: LiveServer) -> None:
    """The same page over SmolLM2-135M-Instruct on llama.cpp (its screenshots are the README's)."""
    seen = scenario(driver, live_server, "stream", shot_prefix="smollm2-", max_tokens=48)
    texts = [step["text"] for step in seen["seen"] if step["text"]]
    assert len(texts) >= 5, texts
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
    assert seen["status"] in ("Done (stop).", "Done (length).")
    assert int(seen["stats"]["Completion tokens"]) >= len(texts) - 1
    assert seen["stats"]["Time to first token"].endswith(" ms")
