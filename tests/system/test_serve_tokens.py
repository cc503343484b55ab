"""``aimi serve --config`` with ``[auth.oidc]``: the file's issuers and grants apply at start and
after a reload, and the TLS flags come as a pair (fake engine: no model needed)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import aimi_process, wait_until
from tests.oidc_issuer import running_issuer

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def test_the_files_issuers_and_grants_apply_at_start_and_after_a_reload(tmp_path: Path) -> None:
    model = tmp_path / "stand-in.gguf"
    model.write_bytes(b"GGUF")
    config = tmp_path / "aimi.toml"
    deployment = f'[[deployments]]\nname = "chat"\nmodel = "{model}"\nengine = "fake"\n'
    with running_issuer() as issuer:

        def write(grant_role: str) -> None:
            config.write_text(
                deployment
                + f'[[auth.oidc.issuers]]\nurl = "{issuer.url}"\n'
                + f'[[auth.oidc.grants]]\nclaim = "roles"\nvalue = "{grant_role}"\n'
            )

        def status(role: str) -> int:
            headers = {"authorization": f"Bearer {issuer.token(roles=[role])}"}
            return httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30).status_code

        write("Chat.User")
        with aimi_process(tmp_path / "home", ["--config", str(config)]) as server:
            assert (status("Chat.User"), status("Other")) == (200, 403)
            write("Other")
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda: status("Other") == 200, 30, "the reload to apply the new grant")
            assert status("Chat.User") == 403


def test_a_certificate_without_its_key_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aimi", "serve", "--ssl-certfile", str(tmp_path / "cert.pem"), "--no-auth"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"AIMI_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "aimi: give both --ssl-certfile and --ssl-keyfile, or neither"
