"""`aimi serve` and `aimi chat` as real processes (fake engine: no model needed)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from azure.ai.inference import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

from aimi.deployments.catalog import CATALOG
from aimi.engines import ENGINES
from tests.clients.helpers import azure_user
from tests.conftest import aimi_process, wait_until

FAKE = ["--engine", "fake", "--engine-options", '{"text": "Bonjour, le monde. 🙂"}']


def _model(tmp_path: Path) -> list[str]:
    path = tmp_path / "stand-in.gguf"
    path.write_bytes(b"GGUF")
    return ["--model", str(path), *FAKE]


def test_first_start_generates_a_key_prints_it_once_and_reuses_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with aimi_process(home, _model(tmp_path)) as server:
        key = (home / "api-key").read_text().strip()
        assert len(key) == 32
        assert httpx.get(f"{server.url}/info", headers={"api-key": key}).status_code == 200
        assert httpx.get(f"{server.url}/info").status_code == 401
    log = server.log.read_text()
    assert f"aimi: API key (generated and saved {home / 'api-key'}): {key}" in log
    assert f"aimi: serving stand-in at {server.url}" in log
    with aimi_process(home, _model(tmp_path)) as again:
        assert again.key == key
    # Printed once: a later start says where the key is kept, never the key (logs keep what a server prints).
    later = again.log.read_text()
    assert f"aimi: API key in {home / 'api-key'} (export AIMI_API_KEY=$(cat {home / 'api-key'}))" in later
    assert key not in later


def test_configured_keys_replace_the_generated_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = [*_model(tmp_path), "--api-key", "first-key", "--api-key", "second-key"]
    with aimi_process(home, args, env={"AIMI_API_KEY": "ignored-when-flags-given"}) as server:
        for key in ("first-key", "second-key"):
            assert httpx.get(f"{server.url}/info", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(f"{server.url}/info", headers={"api-key": "ignored-when-flags-given"}).status_code == 401
    assert not (home / "api-key").exists()
    assert "first-key" not in server.log.read_text()


def test_keys_from_the_environment(tmp_path: Path) -> None:
    with aimi_process(tmp_path / "home", _model(tmp_path), env={"AIMI_API_KEY": "env-one,env-two"}) as server:
        assert httpx.get(f"{server.url}/v1/models", headers={"api-key": "env-two"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/models", headers={"api-key": "env-three"}).status_code == 401


def test_keys_from_a_file_never_show_in_the_process_list(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# the team's keys\nfile-key-one-0123456789\n\n  file-key-two-0123456789  \n")
    with aimi_process(tmp_path / "home", [*_model(tmp_path), "--api-key-file", str(keys)]) as server:
        for key in ("file-key-one-0123456789", "file-key-two-0123456789"):
            assert httpx.get(f"{server.url}/v1/models", headers={"api-key": key}).status_code == 200
        assert httpx.get(f"{server.url}/v1/models", headers={"api-key": "# the team's keys"}).status_code == 401
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"file-key" not in command_line and str(keys).encode() in command_line
    assert not (tmp_path / "home" / "api-key").exists()


def test_an_unreadable_key_file_exits_with_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aimi", "serve", *_model(tmp_path), "--api-key-file", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIMI_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        f"aimi: cannot read the key file {tmp_path / 'missing'}: No such file or directory"
    )


def test_no_auth_serves_without_keys_and_warns(tmp_path: Path) -> None:
    with aimi_process(tmp_path / "home", [*_model(tmp_path), "--no-auth"]) as server:
        assert httpx.get(f"{server.url}/info").json()["model_name"] == "stand-in"
    assert "WARNING: --no-auth" in server.log.read_text()


def test_unknown_model_exits_with_a_clear_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aimi", "serve", "--model", "no-such-model"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"AIMI_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert (
        "'no-such-model' is neither a catalog model (all-minilm-l6-v2, smollm2-135m-instruct) "
        "nor an existing file or directory" in done.stderr
    )


def test_aimi_chat_streams_the_answer(tmp_path: Path) -> None:
    with aimi_process(tmp_path / "home", _model(tmp_path)) as server:
        done = subprocess.run(
            [sys.executable, "-m", "aimi", "chat", "--url", server.url, "-m", "Hello", "-m", "Again"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"AIMI_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Bonjour, le monde. 🙂\n" * 2


def test_aimi_chat_reports_a_wrong_key(tmp_path: Path) -> None:
    with aimi_process(tmp_path / "home", _model(tmp_path)) as server:
        done = subprocess.run(
            [sys.executable, "-m", "aimi", "chat", "--url", server.url, "--api-key", "wrong", "-m", "Hello"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stderr.startswith("aimi chat: 401: Auth token validation failed")


def test_engine_failure_mid_stream_is_visible_to_both_sdks(tmp_path: Path) -> None:
    args = [
        *_model(tmp_path)[:2],
        "--engine",
        "fake",
        "--engine-options",
        '{"text": "one two three four five six", "fail_after": 3}',
    ]
    with aimi_process(tmp_path / "home", args) as server, contextlib.ExitStack() as stack:
        seen: list[str] = []
        credential = AzureKeyCredential(server.key)
        with ChatCompletionsClient(endpoint=server.url, credential=credential, retry_total=0) as azure:
            with pytest.raises(HttpResponseError, match="Response ended prematurely"):
                for update in azure.complete(messages=azure_user("hi"), stream=True):
                    seen.append(update.choices[0].delta.content or "")
        assert "".join(seen) == "one two three "
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0)
        stack.callback(client.close)
        with pytest.raises(openai.APIError, match="the engine failed to generate a response"):
            for _ in client.chat.completions.create(
                model="x", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                pass
        # The server keeps serving: a request shorter than the failure point succeeds.
        whole = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert whole.choices[0].message.content == "one two "


def test_serve_config_serves_every_deployment_of_the_file(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    config = tmp_path / "aimi.toml"
    config.write_text(
        f'[[deployments]]\nname = "first"\nmodel = "{model}"\nengine = "fake"\n'
        '[deployments.engine_options]\ntext = "one"\n\n'
        f'[[deployments]]\nname = "second"\nmodel = "{model}"\nengine = "fake"\n'
        '[deployments.engine_options]\ntext = "two"\n'
    )
    with aimi_process(tmp_path / "home", ["--config", str(config)]) as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0) as client:
            assert [m.id for m in client.models.list().data] == ["first", "second"]
            for name, text in (("first", "one"), ("second", "two")):
                answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
                assert answer.choices[0].message.content == text
        endpoint = f"{server.url}/deployments/second"
        with ChatCompletionsClient(endpoint=endpoint, credential=AzureKeyCredential(server.key)) as azure:
            assert azure.complete(messages=azure_user("hi")).choices[0].message.content == "two"


def test_config_check_validates_without_starting(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[deployments]]\nname = "a"\nmodel = "smollm2-135m-instruct"\n')
    done = subprocess.run([sys.executable, "-m", "aimi", "config", "check", str(good)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{good}: 1 deployment(s), valid"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[deployments]]\nname = "a"\nmodel = "m.gguf"\ncontext_size = 10\n')
    done = subprocess.run([sys.executable, "-m", "aimi", "config", "check", str(bad)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"aimi: {bad}: deployments[0] ('a').context_size: Input should be greater than")


def test_serve_config_mixes_local_and_upstream_deployments(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    upstream_args = [*_model(tmp_path)[:2], "--engine", "fake", "--engine-options", '{"text": "from upstream"}',
                     "--api-key", "upstream-secret"]  # fmt: skip
    with aimi_process(tmp_path / "upstream-home", upstream_args) as upstream:
        config = tmp_path / "aimi.toml"
        config.write_text(
            f'[[deployments]]\nname = "local"\nmodel = "{model}"\nengine = "fake"\n'
            '[deployments.engine_options]\ntext = "from local"\n\n'
            '[[deployments]]\nname = "remote"\nengine = "upstream"\n'
            f'[deployments.engine_options]\nurl = "{upstream.url}/v1"\napi_key_env = "AIMI_TEST_UPSTREAM_KEY"\n'
        )
        env = {"AIMI_TEST_UPSTREAM_KEY": "upstream-secret"}
        with aimi_process(tmp_path / "home", ["--config", str(config)], env=env) as server:
            with openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0) as client:
                for name, text in (("local", "from local"), ("remote", "from upstream")):
                    answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
                    assert answer.choices[0].message.content == text
                chunks = client.chat.completions.create(
                    model="remote", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "from upstream"
            endpoint = f"{server.url}/deployments/remote"
            with ChatCompletionsClient(endpoint=endpoint, credential=AzureKeyCredential(server.key)) as azure:
                assert azure.complete(messages=azure_user("hi")).choices[0].message.content == "from upstream"
        assert "upstream-secret" not in server.log.read_text()


def test_sighup_and_aimi_reload_apply_the_file_without_dropping_a_stream(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    config = tmp_path / "aimi.toml"

    def slow(rate: int) -> str:
        return '[deployments.engine_options]\ntext = "' + "tick " * 40 + f'"\ntokens_per_second = {rate}\n'

    def write(*names_texts: tuple[str, str]) -> None:
        config.write_text(
            "".join(
                f'[[deployments]]\nname = "{name}"\nmodel = "{model}"\nengine = "fake"\n'
                + (
                    slow(int(text[4:]))
                    if text.startswith("slow")
                    else f'[deployments.engine_options]\ntext = "{text}"\n'
                )
                for name, text in names_texts
            )
        )

    write(("stream", "slow40"), ("changing", "before"))
    home = tmp_path / "home"
    with aimi_process(home, ["--config", str(config)]) as server:
        headers = {"api-key": server.key}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            body = {"model": "stream", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body) as streaming:
                lines = streaming.iter_lines()
                assert next(lines).startswith("data: ")
                # Every deployment changes, the streaming one included: its stream must still finish.
                write(("stream", "slow41"), ("changing", "after"), ("added", "new"))
                done = subprocess.run(
                    [sys.executable, "-m", "aimi", "reload"], capture_output=True, text=True, timeout=30,
                    env={**os.environ, "AIMI_HOME": str(home)},
                )  # fmt: skip
                assert done.returncode == 0, done.stderr

                def models() -> list[str]:
                    return [m["id"] for m in httpx.get(f"{server.url}/v1/models", headers=headers).json()["data"]]

                wait_until(lambda: models() == ["stream", "changing", "added"], 30, "the reload to apply")
                rest = list(lines)
            # The stream begun before the reload ran to its end on the replaced deployment.
            events = [line[6:] for line in rest if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "tick " * 40
            answer = client.post("/v1/chat/completions", json={"model": "changing", "messages": body["messages"]})
            assert answer.json()["choices"][0]["message"]["content"] == "after"
            write(("stream", "slow41"), ("changing", "after"), ("added", "new"), ("broken", "x"))
            config.write_text(config.read_text() + "\nnot toml [[[")
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "reload failed" in server.log.read_text(), 30, "the failed reload to be logged")
            assert models() == ["stream", "changing", "added"]


def test_serve_reports_loading_progress_with_the_model_size_and_when_it_is_done(tmp_path: Path) -> None:
    path = tmp_path / "stand-in.gguf"
    path.write_bytes(b"GGUF" * 500_000)  # 2 MB
    args = ["--model", str(path), "--engine", "fake", "--engine-options", '{"load_seconds": 0.5}']
    with aimi_process(tmp_path / "home", args) as server:
        wait_until(lambda: "loaded in" in server.log.read_text(), 30, "the loaded line")
    log = server.log.read_text()
    assert "aimi: loading stand-in (fake, 2 MB)" in log
    assert re.search(r"aimi: stand-in loaded in \d+\.\d s", log), log


def test_a_single_model_that_cannot_load_exits_non_zero_with_the_fix(tmp_path: Path) -> None:
    """A model whose engine cannot import its library (here: torch missing) says which extra to
    install and stops, instead of answering 503 forever."""
    model = tmp_path / "minilm"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "AIMI_API_KEY"}
    # A torch that cannot be imported, as on a plain install.
    blocker = tmp_path / "blocker"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    env.update({"AIMI_HOME": str(home), "PYTHONPATH": str(blocker)})
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "aimi",
            "serve",
            "--port",
            "0",
            "--model",
            str(model),
            "--engine",
            "sentence-transformers",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr
    assert "failed to load: sentence-transformers could not load" in ran.stderr
    assert "No module named 'torch'" in ran.stderr
    assert "to fix it, install the embeddings extra: pip install 'aimi[embeddings]'" in ran.stderr
    assert "https://download.pytorch.org/whl/cpu" in ran.stderr


def test_serve_help_lists_every_engine_and_every_form_of_model_reference() -> None:
    ran = subprocess.run([sys.executable, "-m", "aimi", "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0
    for engine in ENGINES:
        assert f"\n  {engine} " in ran.stdout, engine
    for name in CATALOG:
        assert name in ran.stdout
    for form in ("pypi://", "hf://", ".gguf", "directory"):
        assert form in ran.stdout
